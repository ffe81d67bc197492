"""Loading a job: the job file read once (an Azure ML v2 file translated), flags merged over it (flags win),
local paths made absolute against where each was given, then validated into one JobConfig."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from . import azure_v2
from .azure_names import azure_hint
from .checks import append_row_options, check_output_outside_inputs, check_storable
from .errors import ConfigError, suggest
from .jobfile import read_yaml
from .keys import KEY_ALIASES, MAX_WORLD, RANGES, JobConfig, known_keys
from .paths import is_url, path_problem


def _absolute(value: str, base: Path) -> str:
    if path_problem(value) or is_url(value):
        return value  # JobConfig names the key of an unusable path
    path = base / os.path.expanduser(value)
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # a symlink loop: listing or check_entry_script names it
        return os.path.abspath(path)
    return str(resolved) if resolved.exists() or not path.is_symlink() else os.path.abspath(path)  # a broken link: named as given


def _resolve_paths(data: dict[str, Any], bases: dict[str, Path]) -> dict[str, Any]:
    """Make local paths absolute, each against the folder of where it was given.

    YAML values resolve against the YAML file's folder, flags against the cwd, and a relative
    entry_script against source_directory when that is set.
    """
    out = dict(data)
    for key in ("source_directory", "output"):
        if isinstance(out.get(key), str):
            out[key] = _absolute(out[key], bases[key])
    if isinstance(out.get("entry_script"), str):
        home = out.get("source_directory")
        home = Path(home) if isinstance(home, str) and not path_problem(home) else bases["entry_script"]
        out["entry_script"] = _absolute(out["entry_script"], home)
    if "inputs" in out:
        items = out["inputs"] if isinstance(out["inputs"], list) else [out["inputs"]]
        resolved: list[Any] = []
        for item in items:
            if isinstance(item, str):
                item = _absolute(item, bases["inputs"])
            elif isinstance(item, dict) and isinstance(item.get("path"), str):
                item = {**item, "path": _absolute(item["path"], bases["inputs"])}
            resolved.append(item)
        out["inputs"] = resolved
    if isinstance(out.get("python"), str) and "/" in out["python"] and not path_problem(out["python"]):
        # a venv's bin/python is a symlink that must stay unresolved (its pyvenv.cfg is found beside it);
        # a bare name (python3) is looked up on PATH
        out["python"] = os.path.abspath(bases["python"] / os.path.expanduser(out["python"]))
    if isinstance(out.get("models"), dict):
        out["models"] = {k: _absolute(v, bases["models"]) if isinstance(v, str) else v
                         for k, v in out["models"].items()}
    return out


def key_hint(key: object, keys: list[str]) -> str:
    """Azure ML's own name for a key gets its mpibatch equivalent named; other keys a near-miss."""
    return azure_hint(key) or suggest(key, keys)


def check_keys(data: dict[str, Any], where: str) -> None:
    keys = known_keys()
    for key in data:
        if key not in keys and key not in KEY_ALIASES:
            raise ConfigError(f"unknown key '{key}' {where}{key_hint(key, keys)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"] if not str(part).startswith(("function-", "literal["))]
    key = loc[0] if loc else ""
    if key == "inputs" and len(loc) > 1:
        key = f"inputs[{loc[1]}]" + (f".{loc[2]}" if len(loc) > 2 and not loc[2].isdigit() else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'{key_hint(key, known_keys())}"
    if key in RANGES:
        msg = RANGES[key].says  # 'not a number', nan, 1e306 as an int: the range says it all
    value = err.get("input")
    shown = f" (got {_shown(value)})" if value is not None and not isinstance(value, (dict, list)) else ""
    if err["type"].startswith("literal_error"):
        msg = msg.replace("Input should be", "must be")
    return f"{key}: {msg}{shown}" if key else f"{msg}{shown}"



class _Sizing(BaseModel):
    """ParallelRunConfig's node_count / process_count_per_node, checked against the MPI world later."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    node_count: Optional[int] = None
    process_count_per_node: Optional[int] = None

    @field_validator("node_count", "process_count_per_node", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, (int, float)) and not 1 <= value <= MAX_WORLD):
            raise ValueError(f"must be a count from 1 to {MAX_WORLD}")
        return value


def sizing_keys(data: dict[str, Any]) -> dict[str, int]:
    """The validated ParallelRunConfig sizing keys among `data`."""
    try:
        sizing = _Sizing(**{k: v for k, v in data.items() if k in KEY_ALIASES})
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    return sizing.model_dump(exclude_none=True)



def load_job(job_file: Optional[str], flags: dict[str, Any],
             cwd: Optional[Path] = None) -> tuple[JobConfig, dict[str, Any]]:
    """Read the job file once (an Azure ML v2 file translated: azure_v2.py), merge the flags (flags win),
    validate: the config and its sizing keys (with a v2 file's v2_sizing, v2_notes and v2_dirs)."""
    cwd = cwd or Path.cwd()
    flags = dict(flags)
    v2_options = azure_v2.Options.take(flags)
    v2: Optional[azure_v2.V2Job] = None
    data: dict[str, Any] = {}
    bases: dict[str, Path] = {}
    if job_file:
        from_file = read_yaml(job_file)
        if azure_v2.is_v2(from_file):
            v2 = azure_v2.translate(from_file, Path(job_file), v2_options, cwd, set(flags))
            from_file = v2.data
        check_keys(from_file, f"in {job_file}")
        data.update(from_file)
        bases.update(dict.fromkeys(from_file, Path(job_file).resolve().parent))
    if v2_options and v2 is None:
        raise ConfigError(f"--{'node' if v2_options.node is not None else 'set'}: only for an Azure ML v2 job file "
                          "($schema / type: parallel or pipeline)")
    check_keys(flags, "given as a flag")
    data.update(flags)
    bases.update(dict.fromkeys(flags, cwd))
    sizing = sizing_keys(data)
    for alias in KEY_ALIASES:
        data.pop(alias, None)
    try:
        config = JobConfig(**_resolve_paths(data, bases))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        config = config.model_copy(update={"append_row_options": append_row_options(config)})
        check_output_outside_inputs(config)
    except OSError as exc:  # a folder we may not look into, say
        raise ConfigError(f"cannot check '{exc.filename}': {exc.strerror}") from None
    check_storable(config)
    return config, {**sizing, **(v2.extras() if v2 else {})}


def build_config(job_file: Optional[str], flags: dict[str, Any], cwd: Optional[Path] = None) -> JobConfig:
    """Merge a job file and flags (flags win) into a validated JobConfig."""
    return load_job(job_file, flags, cwd)[0]


def aliases_in(job_file: Optional[str], flags: dict[str, Any]) -> dict[str, Any]:
    """ParallelRunConfig keys (node_count, process_count_per_node) given, to check against MPI."""
    return sizing_keys({**(read_yaml(job_file) if job_file else {}), **flags})
