"""`mpibatch.Job`: a job built in Python with the keys and the validation of a job file, and started
under the local MPI launcher (`job.run`) or through Slurm (`job.submit`), each giving a Run handle.

A Job holds its keys with local paths made absolute (relative ones against the cwd, as flags are), so a
later change of folder changes nothing; `to_yaml` writes them back relative to the file where they lie
inside its folder, so `Job.from_yaml(job.to_yaml(p))` is the same job.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import time as clock
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ..config import KEY_ALIASES, ConfigError, JobConfig, check_keys, is_url, load_job, read_yaml

if TYPE_CHECKING:
    from .run import Run

PathLike = Union[str, "os.PathLike[str]"]
LAUNCH_FOLDER = Path("logs") / "python"  # inside the output: the job file a launch ran and the launcher's output
PATH_KEYS = ("entry_script", "source_directory", "output")


def _plain(value: Any) -> Any:
    """Python values as YAML would hold them: paths as text, tuples as lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class Job:
    """One job: `Job(entry_script=..., inputs=[...], output=..., mini_batch_size=..., ...)` with the keys of
    a job file. A bad key or value raises ConfigError whose message is the CLI's exit-2 line."""

    def __init__(self, entry_script: Optional[PathLike] = None, inputs: Any = None, output: Optional[PathLike] = None,
                 **keys: Any) -> None:
        named = {"entry_script": entry_script, "inputs": inputs, "output": output}
        given = {**{k: v for k, v in named.items() if v is not None}, **keys}
        given = {k: _plain(v) for k, v in given.items()}
        check_keys(given, "given to mpibatch.Job")
        self._set(given, *load_job(None, given))

    @classmethod
    def from_yaml(cls, path: PathLike) -> "Job":
        """The job in a job file, its relative paths read against the file's folder (as `mpibatch run` does)."""
        config, sizing = load_job(os.fspath(path), {})
        job = cls.__new__(cls)
        job._set(read_yaml(os.fspath(path)), config, sizing)
        return job

    def _set(self, given: dict[str, Any], config: JobConfig, sizing: dict[str, int]) -> None:
        self.config = config
        self.sizing = sizing
        self.name = Path(config.entry_script).stem
        self._keys = _resolved(given, config)

    @property
    def keys(self) -> dict[str, Any]:
        """The keys given, local paths absolute."""
        return dict(self._keys)

    @property
    def output(self) -> str:
        return self.config.output

    def replace(self, **keys: Any) -> "Job":
        """This job with some keys changed (None removes a key)."""
        merged = {**self._keys, **keys}
        job = Job(**{k: v for k, v in merged.items() if v is not None})
        job.name = self.name
        return job

    def to_yaml(self, path: PathLike, relative: bool = True) -> Path:
        """Write the job file; paths inside its folder are written relative to it (or all absolute)."""
        return _write_yaml(self._keys, Path(path), relative)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._keys.items())
        return f"mpibatch.Job({shown})"

    # ---- starting it -----------------------------------------------------------------------

    def run(self, ranks: Optional[int] = None, *, resume: Optional[bool] = None, python: Optional[PathLike] = None,
            mpiexec: Optional[PathLike] = None, env: Optional[dict[str, str]] = None) -> "Run":
        """Start the job in the background on `ranks` MPI ranks of this machine (default: node_count x
        process_count_per_node, else 2) with the mpiexec of `python`'s environment (default: this one).
        Returns once the job has started (or refused to: then ConfigError, as the CLI's exit 2)."""
        from .run import Run, state_signature
        from ..script.checks import check_entry_script

        job = self if resume is None else self.replace(resume=resume)
        check_entry_script(job.config)
        ranks = ranks or job.default_ranks()
        python = os.fspath(python or sys.executable)
        launcher = os.fspath(mpiexec or _mpiexec_beside(python))
        folder = job._launch_folder()
        job_file = job._launch_file(folder, with_sizing=False)
        progress = [] if "progress" in job._keys else ["--progress", "lines"]
        command = [launcher, *launcher_flags(launcher), "-n", str(ranks), python, "-m", "mpibatch", "run",
                   str(job_file), *progress]
        log = folder / "launcher.txt"
        state_before = state_signature(job.output)
        with open(log, "ab") as out:
            offset = out.tell()
            out.write(f"=== {clock.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
            out.flush()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=launch_env(launcher, env), start_new_session=True)
        run = Run(job.output, job=job, _process=process, _launch=dict(
            ranks=ranks, python=python, mpiexec=launcher, env=env, log=log, log_offset=offset, state_before=state_before))
        run._await_start()
        return run

    def default_ranks(self) -> int:
        nodes, per_node = self.sizing.get("node_count"), self.sizing.get("process_count_per_node")
        return (nodes or 1) * per_node if per_node else 2

    def submit(self, nodes: Optional[int] = None, gpus_per_node: Optional[int] = None, time: Optional[str] = None,
               partition: Optional[str] = None, profile: Optional[str] = None, *, account: Optional[str] = None,
               ntasks_per_node: Optional[int] = None, template: Optional[PathLike] = None) -> "Run":
        """Submit the job as a Slurm batch job, as `mpibatch submit` does (resumes after a requeue, stops
        before its time limit). nodes / ntasks_per_node default to node_count / process_count_per_node."""
        from .run import Run
        from ..output.progress import write_json_atomic
        from ..cluster.slurm import render, sbatch, submit_request
        from ..output.status import SUBMITTED

        options = dict(nodes=nodes, ntasks_per_node=ntasks_per_node, gpus_per_node=gpus_per_node, time=time,
                       partition=partition, account=account, profile=profile,
                       template=os.fspath(template) if template else None)
        if is_url(self.output) and not self.output.startswith("file://"):
            raise ConfigError(f"output: a Slurm job needs a shared local folder, not '{self.output}'")
        job_file = self._launch_file(self._launch_folder(), with_sizing=True)
        request = submit_request(str(job_file), {}, [], [], options)
        request.job_name = "mpibatch-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)[:60]
        job_id = sbatch(render(request))
        write_json_atomic(request.output / SUBMITTED, {"job_id": job_id, "submitted": clock.time()})
        return Run(self.output, job=self, _slurm=dict(job_id=job_id, options=options))

    def _launch_folder(self) -> Path:
        """OUTPUT/logs/python for a local output; a temporary folder for a remote one."""
        if is_url(self.output) and not self.output.startswith("file://"):
            import tempfile

            return Path(tempfile.mkdtemp(prefix="mpibatch-launch-"))
        folder = Path(self.output.removeprefix("file://")) / LAUNCH_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _launch_file(self, folder: Path, with_sizing: bool) -> Path:
        keys = self.keys if with_sizing else {k: v for k, v in self._keys.items() if k not in KEY_ALIASES}
        return _write_yaml(keys, folder / "job.yaml", relative=False)


def _write_yaml(keys: dict[str, Any], path: Path, relative: bool) -> Path:
    import yaml

    keys = _relative_to(keys, path.resolve().parent) if relative else keys
    path.write_text(yaml.safe_dump(keys, sort_keys=False, allow_unicode=True))
    return path


def _resolved(given: dict[str, Any], config: JobConfig) -> dict[str, Any]:
    """The keys as given, with each local path replaced by the absolute one the config holds."""
    keys = dict(given)
    for key in PATH_KEYS:
        if key in keys:
            keys[key] = getattr(config, key)
    if "inputs" in keys:
        items = keys["inputs"] if isinstance(keys["inputs"], list) else [keys["inputs"]]
        keys["inputs"] = [spec.path if isinstance(item, str) else {**item, "path": spec.path}
                          for item, spec in zip(items, config.inputs)]
    if "models" in keys:
        keys["models"] = dict(config.models)
    return keys


def _relative_path(value: str, folder: Path) -> str:
    if is_url(value) or not os.path.isabs(value):
        return value
    relative = os.path.relpath(value, folder)
    return value if relative == ".." or relative.startswith(".." + os.sep) else relative


def _relative_to(keys: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Paths inside `folder` made relative to it (as a job file there reads them); others stay absolute.
    entry_script is relative to source_directory when that is given (load_job reads it so)."""
    out = dict(keys)
    for key in ("source_directory", "output"):
        if isinstance(out.get(key), str):
            out[key] = _relative_path(out[key], folder)
    if isinstance(out.get("entry_script"), str):
        home = keys.get("source_directory")
        out["entry_script"] = _relative_path(out["entry_script"], Path(home) if isinstance(home, str) else folder)
    if isinstance(out.get("inputs"), list):
        out["inputs"] = [_relative_path(i, folder) if isinstance(i, str) else
                         {**i, "path": _relative_path(i["path"], folder)} if isinstance(i, dict) and "path" in i
                         else i for i in out["inputs"]]
    if isinstance(out.get("models"), dict):
        out["models"] = {k: _relative_path(v, folder) if isinstance(v, str) else v for k, v in out["models"].items()}
    return out


def _mpiexec_beside(python: str) -> str:
    """The mpiexec of the environment `python` belongs to, else the one on PATH."""
    beside = Path(python).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if not found:
        raise ConfigError(f"no mpiexec beside {python} or on PATH: install an MPI (pip install 'mpibatch[mpich]')")
    return found


@functools.lru_cache(maxsize=8)
def launcher_flavour(launcher: str) -> str:
    """Which MPI a launcher belongs to, from its --version text (Open MPI's says so; Hydra's need not)."""
    from ..cluster.launch import flavour_of

    try:
        proc = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return flavour_of(proc.stdout + proc.stderr)


def launcher_flags(launcher: str) -> list[str]:
    """Open MPI's mpiexec refuses more ranks than cores without --oversubscribe; a laptop run wants them."""
    return ["--oversubscribe"] if launcher_flavour(launcher) == "openmpi" else []


def launch_env(launcher: str, extra: Optional[dict[str, str]]) -> dict[str, str]:
    """This environment, plus Open MPI's consent to run as root where this process is root (containers)."""
    env = dict(os.environ)
    if launcher_flavour(launcher) == "openmpi" and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.update(extra or {})
    return env


def job_from_state(output: PathLike, **keys: Any) -> Job:
    """The job a finished or interrupted output ran, rebuilt from its state (for resuming an attached run).
    Input storage options are not stored (credentials): give them again in `keys` if the inputs need them."""
    from .results import read_state

    config = dict(read_state(Path(os.fspath(output).removeprefix("file://")))["fingerprint"]["config"])
    fields = JobConfig.model_fields
    given = {k: v for k, v in config.items()
             if k in fields and v != fields[k].get_default(call_default_factory=True)}
    given["inputs"] = [{k: v for k, v in item.items() if v is not None} for item in config["inputs"]]
    return Job(**{**given, **keys})


__all__ = ["ConfigError", "Job", "job_from_state"]
