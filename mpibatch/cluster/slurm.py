"""`mpibatch submit`: render an sbatch script from the Jinja2 templates in mpibatch/cluster/templates/slurm/
and submit it.

Values reach the script in two ways only: shell-quoted (the `q` filter) in commands, or checked
against a strict pattern (the `slurm` filter) on #SBATCH lines, where no quoting helps (a newline
would end the comment and start a command). So no user string can inject shell.
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
from .launch import MPI_NAMES, Flavour, mpi_flavour, srun_launch

TEMPLATES_ENV = "MPIBATCH_SLURM_TEMPLATES"
SUFFIX = ".sbatch.j2"
BASE = "base"
DEFAULT_PROFILE = "cpu"
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
    return sorted(n for n in names if n != BASE)


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

    @property
    def name(self) -> str:
        return self.template.name if self.template else (self.profile or DEFAULT_PROFILE)

    @property
    def slurm_log(self) -> Optional[str]:
        """Slurm's own log beside the job's logs, when the path can stand on an #SBATCH line."""
        path = str(self.output / "logs" / "slurm-%j.out")
        return path if _SBATCH_VALUE.fullmatch(path) else None


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
                         template=Path(template) if template else None)


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


def _environment(request: SubmitRequest) -> jinja2.Environment:
    folders = [str(templates_dir())]
    if request.template is not None:
        folders.insert(0, str(request.template.resolve().parent))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folders), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = _quote
    env.filters["slurm"] = _sbatch_value
    return env


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
    """The sbatch script for this request; ConfigError names what is wrong."""
    request.check()
    file = request.template.name if request.template else request.name + SUFFIX
    context = {
        "job_name": request.job_name, "nodes": request.nodes, "ntasks_per_node": request.ntasks_per_node,
        "gpus_per_node": request.gpus_per_node, "time": request.time, "partition": request.partition,
        "account": request.account, "slurm_log": request.slurm_log, "workdir": str(request.workdir),
        "python": sys.executable, "venv": sys.prefix, "run_args": request.run_args, "profile": request.name,
        "time_limit_s": time_limit_seconds(request.time),
        "job_result": str(request.output / "logs" / "job_result.json"),
        "signal_lead": None, "walltime_margin": None, "max_requeues": None,
        **launch_context(mpi_flavour()),
    }
    try:
        return _environment(request).get_template(file).render(context)
    except jinja2.TemplateError as exc:
        where = f"--template {request.template}" if request.template else f"--profile {request.name}"
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None


def sbatch(script: str) -> str:
    """Submit the script (on sbatch's stdin) and return the job id."""
    try:
        proc = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ConfigError("sbatch not found: submit from a Slurm login node (or use --dry-run)") from None
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise RuntimeError(f"sbatch refused the job: {message}")
    return proc.stdout.strip().split(";")[0]


def submit(request: SubmitRequest, dry_run: bool = False) -> int:
    """Render, then print the script (dry run) or submit it and say how to watch it."""
    script = render(request)
    if dry_run:
        sys.stdout.write(script)
        return 0
    (request.output / "logs").mkdir(parents=True, exist_ok=True)  # Slurm opens its log there
    try:
        job_id = sbatch(script)
    except RuntimeError as exc:
        print(f"mpibatch: error: {exc}", file=sys.stderr)
        return 1
    write_json_atomic(request.output / SUBMITTED, {"job_id": job_id, "submitted": time.time()})
    log = request.slurm_log.replace("%j", job_id) if request.slurm_log else f"slurm-{job_id}.out"
    print(f"mpibatch: submitted Slurm job {job_id} ({request.nodes} node(s), profile {request.name}); "
          f"Slurm's log: {log}")
    print(f"watch it with: mpibatch status {shlex.quote(str(request.output))} --watch")
    return 0
