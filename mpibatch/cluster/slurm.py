"""`mpibatch submit`: render an sbatch script from the Jinja2 templates in mpibatch/cluster/templates/slurm/
and submit it.

Values reach the script in two ways only: shell-quoted (the `q` filter) in commands, or checked
against a strict pattern (the `slurm` filter) on #SBATCH lines, where no quoting helps (a newline
would end the comment and start a command). So no user string can inject shell.

Join jobs (`--join-jobs K`, or `--max-join-jobs J` for the allocator in join_alloc.py) are the same profile
rendered through join.sbatch.j2, which extends it: its ranks run `mpibatch join OUTPUT`, never requeued.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import jinja2

from ..config import ConfigError, suggest
from ..output.progress import write_json_atomic
from ..output.status import SUBMITTED
from .join_alloc import JOIN_SCRIPT, record_join_jobs
from .launch import MPI_NAMES, Flavour, mpi_flavour, srun_launch

TEMPLATES_ENV = "MPIBATCH_SLURM_TEMPLATES"
SUFFIX = ".sbatch.j2"
BASE = "base"
DEFAULT_PROFILE = "cpu"
JOIN, JOIN_ALLOCATOR = "join", "join-allocator"  # extend a profile: a join job; the main job with the allocator
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:@%+=/-]+")
_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")
_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|UNLIMITED|INFINITE", re.IGNORECASE)


def templates_dir() -> Path:
    """The profiles shipped inside the package (so an installed wheel has them), or the folder
    MPIBATCH_SLURM_TEMPLATES names."""
    return Path(os.environ.get(TEMPLATES_ENV) or Path(__file__).resolve().parent / "templates" / "slurm")


def profiles() -> list[str]:
    folder = templates_dir()
    names = [p.name[:-len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")] if folder.is_dir() else []
    return sorted(n for n in names if n not in (BASE, JOIN, JOIN_ALLOCATOR))


@dataclass
class JoinRequest:
    """Worker groups from other allocations: `jobs` join jobs now, or an allocator that keeps up to
    `max_jobs` alive (at most `backlog` of them waiting in the queue) while work waits."""

    jobs: Optional[int] = None
    max_jobs: Optional[int] = None
    backlog: Optional[int] = None
    nodes: Optional[int] = None
    time: Optional[str] = None
    wait_s: Optional[float] = None

    @property
    def allocator(self) -> bool:
        return self.max_jobs is not None

    def check(self) -> None:
        if self.jobs is not None and self.max_jobs is not None:
            raise ConfigError("--join-jobs and --max-join-jobs: give one of them")
        if self.backlog is not None and self.max_jobs is None:
            raise ConfigError("--backlog: only with --max-join-jobs (how many join jobs may wait in the queue)")
        if self.backlog is not None and self.max_jobs is not None and self.backlog > self.max_jobs:
            raise ConfigError(f"--backlog: {self.backlog} is more than --max-join-jobs {self.max_jobs}")
        if self.jobs is None and self.max_jobs is None:
            given = [f for f, v in (("--join-nodes", self.nodes), ("--join-time", self.time),
                                    ("--join-wait", self.wait_s)) if v is not None]
            if given:
                raise ConfigError(f"{given[0]}: only with --join-jobs or --max-join-jobs")
        if self.time is not None and not _TIME.fullmatch(self.time):
            raise ConfigError(f"--join-time: '{self.time}' is not a Slurm time (minutes, HH:MM:SS, D-HH:MM...)")

    @property
    def wait(self) -> float:
        return self.wait_s if self.wait_s is not None else 600.0

    @property
    def queued(self) -> int:
        """The allocator's backlog: join jobs that may wait in the queue at once."""
        return self.backlog or 1


def join_request(options: dict[str, Any], join_address: str) -> Optional[JoinRequest]:
    """The join jobs the flags ask for, None for none; refused when the job listens for no group."""
    join = JoinRequest(options.get("join_jobs"), options.get("max_join_jobs"), options.get("backlog"),
                       options.get("join_nodes"), options.get("join_time"), options.get("join_wait"))
    join.check()
    if join.jobs is None and join.max_jobs is None:
        return None
    if join_address.strip() == "none":
        flag = "--join-jobs" if join.jobs is not None else "--max-join-jobs"
        raise ConfigError(f"{flag}: the job's join_address is none, so no group could join it "
                          "(leave join_address auto or name an interface)")
    return join


@dataclass
class SubmitRequest:
    """One `mpibatch submit`: the Slurm request and the `mpibatch run` arguments to launch."""

    job_name: str
    nodes: int
    output: Path
    run_args: list[str]
    ntasks_per_node: Optional[int] = None
    gpus_per_node: Optional[int] = None
    time: Optional[str] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    profile: Optional[str] = None
    template: Optional[Path] = None
    workdir: Path = field(default_factory=Path.cwd)
    join: Optional[JoinRequest] = None

    def check(self) -> None:
        """Every value that lands on an #SBATCH line, checked before anything is rendered."""
        if self.time is not None and not _TIME.fullmatch(self.time):
            raise ConfigError(f"--time: '{self.time}' is not a Slurm time (minutes, HH:MM:SS, D-HH:MM...)")
        for flag, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not _NAME.fullmatch(value):
                raise ConfigError(f"{flag}: {value!r} is not a valid Slurm name")
        if self.profile is not None and self.template is not None:
            raise ConfigError("--profile and --template: give one of them")
        if self.template is not None and not self.template.is_file():
            raise ConfigError(f"--template: '{self.template}' does not exist")
        if self.template is None and self.name not in profiles():
            raise ConfigError(f"--profile: no profile '{self.name}' in {templates_dir()} "
                              f"(profiles: {', '.join(profiles()) or 'none'}){suggest(self.name, profiles())}")
        if self.join is not None:
            self.join.check()

    @property
    def name(self) -> str:
        return self.template.name if self.template else (self.profile or DEFAULT_PROFILE)

    @property
    def slurm_log(self) -> Optional[str]:
        """Slurm's own log beside the job's logs, when the path can stand on an #SBATCH line."""
        path = str(self.output / "logs" / "slurm-%j.out")
        return path if _SBATCH_VALUE.fullmatch(path) else None

    @property
    def join_script(self) -> Path:
        """Where the allocator finds the join job's script (written at submit)."""
        return self.output / JOIN_SCRIPT


def submit_request(job_file: Optional[str], flags: dict[str, Any], run_flags: list[str], script_args: list[str],
                   options: dict[str, Any]) -> SubmitRequest:
    """Check the job as `mpibatch run` would (exit 2 before anything is submitted) and build the request."""
    from ..config import aliases_in, build_config
    from ..script.checks import check_entry_script

    config = build_config(job_file, flags)
    check_entry_script(config)
    if "://" in config.output and not config.output.startswith("file://"):
        raise ConfigError(f"output: a Slurm job needs a shared local folder, not '{config.output}'")
    aliases = aliases_in(job_file, flags)
    nodes = _agree("--nodes", options.get("nodes"), "node_count", aliases.get("node_count"))
    if nodes is None:
        raise ConfigError("--nodes: required (or node_count in the job)")
    per_node = _agree("--ntasks-per-node", options.get("ntasks_per_node"), "process_count_per_node",
                      aliases.get("process_count_per_node"))
    job = [str(Path(job_file).resolve())] if job_file else []
    run_args = [*job, "--progress", "lines", *run_flags, "--resume", *(["--", *script_args] if script_args else [])]
    template = options.get("template")
    return SubmitRequest(job_name(job_file), nodes, Path(config.output.removeprefix("file://")), run_args,
                         ntasks_per_node=per_node, gpus_per_node=options.get("gpus_per_node"),
                         time=options.get("time"), partition=options.get("partition"),
                         account=options.get("account"), profile=options.get("profile"),
                         template=Path(template) if template else None,
                         join=join_request(options, config.join_address))


def _agree(flag: str, value: Optional[int], key: str, from_job: Any) -> Optional[int]:
    """A submit flag and its ParallelRunConfig key in the job must not disagree (the run would refuse)."""
    if value is not None and from_job is not None and int(from_job) != value:
        raise ConfigError(f"{flag}: {value} but the job says {key}: {from_job}")
    return value if value is not None else (int(from_job) if from_job is not None else None)


def time_limit_seconds(text: Optional[str]) -> Optional[int]:
    """Seconds in a Slurm --time value (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S); None if unlimited."""
    if not text or text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        h, m, sec = (parts + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + m) * 60 + sec
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def job_name(job_file: Optional[str]) -> str:
    stem = Path(job_file).stem if job_file else "job"
    return "mpibatch-" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:60]


def _quote(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


def _sbatch_value(value: Any) -> str:
    text = str(value)
    if not _SBATCH_VALUE.fullmatch(text):
        raise jinja2.TemplateRuntimeError(f"{text!r} cannot stand on an #SBATCH line")
    return text


def _comment(value: Any) -> str:
    """A value shown in a `#` comment line: control characters (a newline would end the comment and
    start a command) written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(value))


def _environment(request: SubmitRequest) -> jinja2.Environment:
    """Profiles from the user's folders; the join leaves always from the package (`mpibatch/NAME`)."""
    folders = [str(templates_dir())]
    if request.template is not None:
        folders.insert(0, str(request.template.resolve().parent))
    own = jinja2.PrefixLoader({"mpibatch": jinja2.FileSystemLoader(str(Path(__file__).parent / "templates/slurm"))})
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([own, jinja2.FileSystemLoader(folders)]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = _quote
    env.filters["slurm"] = _sbatch_value
    env.filters["as_join"] = _as_join
    env.filters["comment"] = _comment
    return env


def _as_join(launch: str, join_args: list[str]) -> str:
    """The profile's launch with `mpibatch run ARGS` made `mpibatch join ARGS` (the join job's run_args are
    join's), so a profile's own launcher (srun, a site's mpiexec) starts the group too."""
    words = _quote(join_args)
    if launch.count(f"mpibatch run {words}") != 1:
        raise jinja2.TemplateRuntimeError("its launch block does not run `mpibatch run {{ run_args | q }}` once, "
                                          "so no join job can be made from it")
    return launch.replace(f"mpibatch run {words}", f"mpibatch join {words}")


def launch_context(flavour: Flavour) -> dict[str, Any]:
    """What the templates' launch block needs: `mpi` (mpich, openmpi, impi, unknown), its name, the srun
    words for it, the variables to export before srun and comment lines that say why."""
    launch = srun_launch(flavour)
    comment = ([f"{MPI_NAMES[flavour]} is the MPI this environment's mpi4py uses: srun starts its ranks so"]
               if flavour != "unknown" else
               ["mpibatch does not know this environment's MPI: srun uses the site's default --mpi"])
    return {"mpi": flavour, "mpi_name": MPI_NAMES[flavour], "srun": list(launch.words), "launch_env": launch.env,
            "launch_comment": comment + ([launch.note] if launch.note else [])}


def render(request: SubmitRequest) -> str:
    """The sbatch script for this request (the main job's); ConfigError names what is wrong."""
    request.check()
    if request.join is not None and request.join.allocator:
        join = request.join
        allocator_args = [str(request.output), "--script", str(request.join_script), "--max-jobs", join.max_jobs,
                          "--backlog", join.queued]
        return _render(request, JOIN_ALLOCATOR, join_script=str(request.join_script), allocator_args=allocator_args)
    return _render(request, None)


def render_join(request: SubmitRequest) -> str:
    """The sbatch script of one join job: the same profile, `mpibatch join OUTPUT --wait S` on its ranks."""
    request.check()
    join = request.join or JoinRequest()
    time = join.time or request.time
    return _render(request, JOIN, join=True, nodes=join.nodes or request.nodes, time=time,
                   time_limit_s=time_limit_seconds(time), job_name=request.job_name + "-join",
                   run_args=[str(request.output), "--wait", f"{join.wait:g}"])


def _render(request: SubmitRequest, leaf: Optional[str], **overrides: Any) -> str:
    """Render the profile, or `leaf` extending it (a join job, the main job with its allocator)."""
    profile_file = request.template.name if request.template else request.name + SUFFIX
    context = {
        "job_name": request.job_name, "nodes": request.nodes, "ntasks_per_node": request.ntasks_per_node,
        "gpus_per_node": request.gpus_per_node, "time": request.time, "partition": request.partition,
        "account": request.account, "slurm_log": request.slurm_log, "workdir": str(request.workdir),
        "python": sys.executable, "venv": sys.prefix, "run_args": request.run_args, "profile": request.name,
        "time_limit_s": time_limit_seconds(request.time),
        "job_result": str(request.output / "logs" / "job_result.json"),
        "signal_lead": None, "walltime_margin": None, "max_requeues": None, "join": False,
        "profile_template": profile_file,
        **launch_context(mpi_flavour()), **overrides,
    }
    try:
        return _environment(request).get_template(f"mpibatch/{leaf}{SUFFIX}" if leaf else profile_file).render(context)
    except jinja2.TemplateError as exc:
        where = f"--template {request.template}" if request.template else f"--profile {request.name}"
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None


def sbatch(script: str, args: tuple[str, ...] = (), env: Optional[dict[str, str]] = None) -> str:
    """Submit the script (on sbatch's stdin) and return the job id."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", *args], input=script, capture_output=True, text=True,
                              timeout=120, env=env)
    except FileNotFoundError:
        raise ConfigError("sbatch not found: submit from a Slurm login node (or use --dry-run)") from None
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise RuntimeError(f"sbatch refused the job: {message}")
    return proc.stdout.strip().split(";")[0]


def submit(request: SubmitRequest, dry_run: bool = False) -> int:
    """Render, then print the scripts (dry run) or submit them and say how to watch the job."""
    script = render(request)
    join = request.join
    join_script = render_join(request) if join is not None else None
    if dry_run:
        sys.stdout.write(_dry_run(request, script, join_script))
        return 0
    (request.output / "logs").mkdir(parents=True, exist_ok=True)  # Slurm opens its log there
    if join is not None and join.allocator:
        request.join_script.write_text(join_script or "")
    try:
        job_id = sbatch(script)
    except RuntimeError as exc:
        print(f"mpibatch: error: {exc}", file=sys.stderr)
        return 1
    write_json_atomic(request.output / SUBMITTED, {"job_id": job_id, "submitted": time.time()})
    log = request.slurm_log.replace("%j", job_id) if request.slurm_log else f"slurm-{job_id}.out"
    print(f"mpibatch: submitted Slurm job {job_id} ({request.nodes} node(s), profile {request.name}); "
          f"Slurm's log: {log}")
    code = _submit_joins(request, job_id, join_script) if join is not None else 0
    print(f"watch it with: mpibatch status {shlex.quote(str(request.output))} --watch")
    return code


def _submit_joins(request: SubmitRequest, job_id: str, script: Optional[str]) -> int:
    """K join jobs that start once the main job has (after:), or word of the allocator that submits them."""
    join = request.join
    assert join is not None and script is not None
    nodes = join.nodes or request.nodes
    if join.allocator:
        print(f"mpibatch: job {job_id} submits join jobs of {nodes} node(s) itself while mini-batches wait: at most "
              f"{join.queued} waiting in the queue, {join.max_jobs} at a time (script: {request.join_script})")
        return 0
    ids: list[str] = []
    try:
        for _ in range(join.jobs or 0):
            ids.append(sbatch(script, (f"--dependency=after:{job_id}",)))
    except RuntimeError as exc:
        print(f"mpibatch: error: join job {len(ids) + 1} of {join.jobs}: {exc}; job {job_id} runs without it",
              file=sys.stderr)
    finally:
        record_join_jobs(request.output, ids, "submit")
    if ids:
        print(f"mpibatch: submitted {len(ids)} join job(s) of {nodes} node(s), starting once job {job_id} has: "
              f"{' '.join(ids)}")
    return 0 if len(ids) == join.jobs else 1


def _dry_run(request: SubmitRequest, script: str, join_script: Optional[str]) -> str:
    """The main script alone, or each script under a banner saying which job it is."""
    join = request.join
    if join is None or join_script is None:
        return script
    rule = "=" * 20
    parts = [f"# {rule} the main job {rule}\n{script}"]
    if join.allocator:
        parts.append(f"# {rule} the join job: the main job's allocator submits this script ({request.join_script}), "
                     f"at most {join.queued} waiting and {join.max_jobs} at a time {rule}\n{join_script}")
    else:
        for i in range(join.jobs or 0):
            parts.append(f"# {rule} join job {i + 1} of {join.jobs}: sbatch --dependency=after:<main job id> "
                         f"{rule}\n{join_script}")
    return "\n".join(parts)
