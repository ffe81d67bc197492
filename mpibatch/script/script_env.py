"""The entry script's own environment: `python:` and `command_prefix:`.

Azure ML runs an entry script in an Environment of its own (a conda env, a Docker image), separate
from the runner's. Here the entry-script process may run under another interpreter (a venv's or a
conda env's `bin/python`) and behind a command prefix (`apptainer exec --nv IMAGE`, `srun
--container-image=...`, `nice -n 7`). That interpreter sees only the mpibatch package itself, loaded
from its folder (BOOT), never the runner's site-packages: pydantic, mpi4py and the runner's pandas
stay out, and the script gets the packages its own environment pins.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the mpibatch package folder, which BOOT loads
FLOOR = (3, 8)  # the oldest Python the entry-script side (script/child.py and what it imports) is written for
PROBE_TIMEOUT_S = 300.0  # a container's first start may unpack an image

# The child's main, loaded under a foreign interpreter: the package comes from its own folder
# (argv[1]) without the folder above it on sys.path, so nothing installed beside mpibatch is importable.
BOOT = ("import sys;from importlib.util import spec_from_file_location as s,module_from_spec as m;"
        "p=s('mpibatch',sys.argv[1]+'/__init__.py',submodule_search_locations=[sys.argv[1]]);"
        "k=m(p);sys.modules['mpibatch']=k;p.loader.exec_module(k);"
        "from mpibatch.script.child import main;sys.exit(main(sys.argv[2:]))")

# What rank 0 runs once at the start: the version first (in syntax any Python reads), then the
# child's imports, then the packages that the job's inputs need in that environment.
PROBE = """\
import sys
sys.stdout.write("%d.%d.%d\\n" % tuple(sys.version_info[:3]))
sys.stdout.flush()
if tuple(sys.version_info[:2]) < __FLOOR__:
    sys.exit(0)
from importlib.util import spec_from_file_location as s, module_from_spec as m
p = s('mpibatch', sys.argv[1] + '/__init__.py', submodule_search_locations=[sys.argv[1]])
k = m(p); sys.modules['mpibatch'] = k; p.loader.exec_module(k)
import mpibatch.script.child
for name in sys.argv[2:]:
    try:
        __import__(name)
    except ImportError:
        sys.stdout.write("missing " + name + "\\n")
        sys.exit(0)
sys.stdout.write("ok\\n")
""".replace("__FLOOR__", repr(FLOOR))

# Variables that point an interpreter at the runner's installation, not the script's environment.
_RUNNER_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


class ScriptEnvError(Exception):
    """The script's environment cannot run the entry script; the message is one line naming the key."""


def prefix_words(value: Any) -> list[str]:
    """command_prefix as argv words: a text is split as a shell would, a list is taken as it is."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into words: {exc}") from None
    elif isinstance(value, list):
        if not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in value):
            raise ValueError("must be a text or a list of words")
        words = [str(w) for w in value]
    else:
        raise ValueError("must be a text or a list of words")
    if not words or not words[0].strip():
        raise ValueError("must name a command (e.g. 'apptainer exec --nv IMAGE')")
    if any("\0" in w for w in words):
        raise ValueError("must not hold a NUL character")
    return words


def child_command(python: Optional[str], prefix: Sequence[str]) -> list[str]:
    """The argv of the entry-script process, before its two pipe descriptors."""
    if python is None:
        return [*prefix, sys.executable, "-m", "mpibatch.script.child"]
    return [*prefix, python, "-c", BOOT, str(PACKAGE_DIR)]


def child_environment(env: dict[str, str], python: Optional[str]) -> dict[str, str]:
    """The environment of a foreign interpreter: the runner's Python variables out, and the
    interpreter's folder first on PATH (as activating its venv or conda env does)."""
    if python is None:
        return env
    out = {k: v for k, v in env.items() if k not in _RUNNER_VARIABLES}
    runner_bin = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    path = [p for p in out.get("PATH", os.defpath).split(os.pathsep) if p and p != runner_bin]
    if "/" in python:
        path.insert(0, os.path.dirname(python))
    out["PATH"] = os.pathsep.join(path)
    return out


def _needed_modules(formats: Sequence[Optional[str]]) -> list[str]:
    """What the entry-script process imports itself for the job's inputs (inputs/read.py)."""
    needed: list[str] = []
    for fmt in formats:
        wants = {"csv": ["pandas"], "json": ["pandas"], "parquet": ["pandas", "pyarrow"],
                 "hdf5": ["pandas", "h5py"]}.get(fmt or "", [])
        needed += [name for name in wants if name not in needed]
    return needed


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def check_script_env(python: Optional[str], prefix: Sequence[str], cwd: str, env: dict[str, str],
                     formats: Sequence[Optional[str]] = ()) -> Optional[str]:
    """Run the script's interpreter once, as the executor will: raises ScriptEnvError naming the key
    when it cannot host the entry script; returns its Python version (None if nothing was set)."""
    if python is None and not prefix:
        return None
    if prefix and shutil.which(prefix[0], path=env.get("PATH")) is None:
        raise ScriptEnvError(f"command_prefix: '{prefix[0]}' is not a command found on PATH")
    key = "python" if python is not None else "command_prefix"
    shown = f"'{python}'" if python is not None else f"'{shlex.join(prefix)}'"
    if python is not None and not prefix:
        _check_host_interpreter(python, env)
    argv = [*prefix, python or sys.executable, "-c", PROBE, str(PACKAGE_DIR), *_needed_modules(formats)]
    under = f" under command_prefix '{shlex.join(prefix)}'" if prefix and python is not None else ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", cwd=cwd, timeout=PROBE_TIMEOUT_S,
                              env=child_environment(env, python), stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ScriptEnvError(f"{key}: cannot run {shown}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise ScriptEnvError(f"{key}: {shown}{under} did not answer within {PROBE_TIMEOUT_S:g}s") from None
    lines = done.stdout.splitlines()
    version = lines[0].strip() if lines else ""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        why = _one_line(done.stderr) or f"exit status {done.returncode}"
        raise ScriptEnvError(f"{key}: {shown}{under} did not run as a Python interpreter: {why}")
    if tuple(int(p) for p in parts[:2]) < FLOOR:
        raise ScriptEnvError(f"{key}: {shown} is Python {version}; the entry-script process needs Python "
                             f"{FLOOR[0]}.{FLOOR[1]} or newer")
    last = lines[-1].strip() if len(lines) > 1 else ""
    if last.startswith("missing "):
        name = last.split(" ", 1)[1]
        raise ScriptEnvError(f"{key}: {shown} (Python {version}) cannot import {name}, which the job's tabular "
                             f"inputs need in the entry-script process: install it into that environment")
    if last != "ok" or done.returncode != 0:
        why = _one_line(done.stderr) or f"exit status {done.returncode}"
        raise ScriptEnvError(f"{key}: {shown} (Python {version}) cannot load mpibatch's entry-script side: {why}")
    return version


def _check_host_interpreter(python: str, env: dict[str, str]) -> None:
    """Without a prefix the interpreter is a file of this machine: it must exist and be executable."""
    found = python if "/" in python else shutil.which(python, path=env.get("PATH"))
    if found is None:
        raise ScriptEnvError(f"python: '{python}' is not a command found on PATH")
    if not os.path.exists(found):
        what = "a broken symbolic link" if os.path.islink(found) else "missing"
        raise ScriptEnvError(f"python: '{python}' does not exist" + (f" ({what})" if what != "missing" else ""))
    if os.path.isdir(found):
        raise ScriptEnvError(f"python: '{python}' is a folder, not an interpreter (name its bin/python)")
    if not os.access(found, os.X_OK):
        raise ScriptEnvError(f"python: '{python}' is not executable")

