"""JobConfig: every key of a job, its default and its validation, built from YAML and flags.

Errors surface as ConfigError with one line that names the key; the CLI turns it into exit 2.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """Invalid usage, configuration or input: reported as one line, exit status 2."""


def is_url(path: str) -> bool:
    """True for fsspec URLs such as memory://x or az://c/p (file:// included)."""
    return "://" in path


class InputSpec(BaseModel):
    """One item of `inputs:` in its mapping form."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str
    name: Optional[str] = None
    type: Literal["files", "tabular", "filelist"] = "files"
    format: Optional[Literal["csv", "parquet", "json", "hdf5"]] = None
    partition_format: Optional[str] = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        """Format options given beside the known keys (e.g. hdf5_key, delimiter)."""
        return dict(self.model_extra or {})


LEVELS = ("WARNING", "INFO", "DEBUG")


class JobConfig(BaseModel):
    """The validated, immutable description of one job (SPEC section 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_script: str
    source_directory: Optional[str] = None
    inputs: list[InputSpec]
    mini_batch_size: Optional[Union[int, str]] = None
    partition_keys: Optional[list[str]] = None
    error_threshold: int = -1
    allowed_failed_count: int = -1
    allowed_failed_percent: float = 100.0
    output_action: Literal["append_row", "summary_only"] = "append_row"
    append_row_file_name: str = "parallel_run_step.txt"
    append_row_options: Optional[dict[str, Any]] = None
    output: str
    output_storage_options: dict[str, Any] = Field(default_factory=dict)
    run_invocation_timeout: float = 60.0
    init_timeout: float = 600.0
    run_max_try: int = 3
    logging_level: str = "INFO"
    arguments: list[str] = Field(default_factory=list)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    compat: Optional[Literal["azureml"]] = None
    gpus_per_node: Union[int, Literal["auto"]] = "auto"
    threads_per_worker: Union[int, Literal["auto"]] = "auto"
    executor: Literal["process", "inline"] = "process"
    coordinator_works: bool = True
    resume: bool = False
    allow_reuse: bool = False
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    credits_per_worker: Union[int, Literal["auto"]] = "auto"
    speculative: bool = True
    speculation_factor: float = 3.0
    stop_grace: float = 10.0
    max_worker_memory: Optional[Union[int, str]] = None
    bisect_failures: Optional[bool] = None  # None: on for file inputs (split.py)
    retry_failed: bool = False

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_as_specs(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs_not_empty(cls, value: list[InputSpec]) -> list[InputSpec]:
        if not value:
            raise ValueError("needs at least one input")
        return value

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_text(cls, value: Any) -> Any:
        """YAML reads `[--batch-size, 32]` with a number in it; sys.argv holds strings."""
        return [str(v) if isinstance(v, (int, float)) else v for v in value] if isinstance(value, list) else value

    @field_validator("environment_variables", mode="before")
    @classmethod
    def _environment_as_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) if isinstance(v, (int, float)) else v
                for k, v in value.items()}

    @field_validator("mini_batch_size", mode="before")
    @classmethod
    def _no_boolean_size(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a count, a size such as '64KB' or a row count such as '5000rows'")
        return value

    @field_validator("logging_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        level = str(value).upper()
        if level not in LEVELS:
            raise ValueError(f"must be one of {', '.join(LEVELS)}")
        return level

    @field_validator("error_threshold", "allowed_failed_count")
    @classmethod
    def _minus_one_or_more(cls, value: int) -> int:
        if value < -1:
            raise ValueError("must be -1 (no limit) or a count of 0 or more")
        return value

    @field_validator("allowed_failed_percent")
    @classmethod
    def _percent(cls, value: float) -> float:
        if not 0 <= value <= 100:
            raise ValueError("must be a percentage from 0 to 100")
        return value

    @field_validator("run_invocation_timeout", "init_timeout", "stop_grace")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a number of seconds above 0")
        return value

    @field_validator("speculation_factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be 1 or more (a multiple of the median mini-batch duration)")
        return value

    @field_validator("credits_per_worker")
    @classmethod
    def _credits(cls, value: Union[int, str]) -> Union[int, str]:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'auto' or 1 or more")
        return value

    @field_validator("run_max_try")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be 1 or more")
        return value

    @field_validator("gpus_per_node", "threads_per_worker")
    @classmethod
    def _auto_or_count(cls, value: Union[int, str]) -> Union[int, str]:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 'auto' or a count of 0 or more")
        return value

    @field_validator("append_row_file_name")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if not value or "/" in value or value in (".", ".."):
            raise ValueError("must be a plain file name without folders")
        return value

    @field_validator("mini_batch_size")
    @classmethod
    def _batch_size(cls, value: Union[int, str, None]) -> Union[int, str, None]:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 1 or more")
        if isinstance(value, str):
            from .sizes import parse_mini_batch_size

            parse_mini_batch_size(value)  # raises ValueError with the reason
            if value.strip().isdigit():
                return int(value)  # '5' from a flag and 5 from YAML are the same job
        return value

    @field_validator("max_worker_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if value is None:
            return value
        from .sizes import parse_bytes

        parse_bytes(value)  # raises ValueError with the reason
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @model_validator(mode="after")
    def _threads(self) -> "JobConfig":
        if self.threads_per_worker == 0:
            raise ValueError("threads_per_worker: must be 'auto' or 1 or more")
        if self.retry_failed and not self.resume:
            raise ValueError("retry_failed: needs resume (--resume --retry-failed re-runs an earlier run's failures)")
        if self.max_worker_memory is not None and self.executor != "process":
            raise ValueError("max_worker_memory: needs executor: process (an inline script cannot be killed alone)")
        return self

    # ---- derived views -------------------------------------------------------------------

    @property
    def script_path(self) -> Path:
        return Path(self.entry_script)

    @property
    def script_home(self) -> Path:
        """The folder put on the entry script's sys.path."""
        return Path(self.source_directory) if self.source_directory else self.script_path.parent

    @property
    def memory_limit(self) -> Optional[int]:
        """max_worker_memory in bytes, or None for no limit."""
        from .sizes import parse_bytes

        return None if self.max_worker_memory is None else parse_bytes(self.max_worker_memory)

    @property
    def output_path(self) -> Path:
        return Path(self.output)

    @property
    def result_path(self) -> Path:
        return self.output_path / self.append_row_file_name


# Keys that may change between an interrupted run and its resume without changing the output.
RESUME_NEUTRAL_KEYS = frozenset(
    {
        "resume", "allow_reuse", "logging_level", "progress", "coordinator_works", "executor",
        "threads_per_worker", "gpus_per_node", "init_timeout", "run_invocation_timeout",
        "credits_per_worker", "stop_grace", "speculative", "speculation_factor", "output_storage_options", "max_worker_memory", "retry_failed",
    }
)

# ParallelRunConfig spellings accepted as they are in Azure ML.
KEY_ALIASES = {"process_count_per_node": None, "node_count": None}


def fingerprint_fields(config: JobConfig) -> dict[str, Any]:
    """The configuration that decides what a job writes (compared on resume)."""
    data = config.model_dump(mode="json")
    for item in data["inputs"]:
        item.pop("storage_options", None)  # credentials: neither part of the job nor to be stored
    return {k: v for k, v in sorted(data.items()) if k not in RESUME_NEUTRAL_KEYS}


def config_digest(config: JobConfig) -> str:
    text = json.dumps(fingerprint_fields(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def known_keys() -> list[str]:
    return list(JobConfig.model_fields)


def suggest(key: str, choices: list[str]) -> str:
    """A ' (did you mean ...?)' tail for near-miss names, or ''."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_yaml(path: str) -> dict[str, Any]:
    """Load a job file; its relative paths are later resolved against its folder."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"job file '{path}' does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"job file '{path}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict):
        raise ConfigError(f"job file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def _absolute(value: str, base: Path) -> str:
    if not value or is_url(value):
        return value
    return str((base / os.path.expanduser(value)).resolve())


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
        home = Path(out["source_directory"]) if out.get("source_directory") else bases["entry_script"]
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
    if isinstance(out.get("models"), dict):
        out["models"] = {k: _absolute(str(v), bases["models"]) for k, v in out["models"].items()}
    return out


def _check_keys(data: dict[str, Any], where: str) -> None:
    keys = known_keys()
    for key in data:
        if key not in keys and key not in KEY_ALIASES:
            raise ConfigError(f"unknown key '{key}' {where}{suggest(key, keys)}")


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
        return f"unknown key '{key}'{suggest(key, known_keys())}"
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else ""
    if err["type"].startswith("literal_error"):
        msg = msg.replace("Input should be", "must be")
    return f"{key}: {msg}{shown}" if key else f"{msg}{shown}"


def _append_row_options(config: JobConfig) -> dict[str, Any]:
    """Merge append_row options: defaults < parallel_run_step.settings.json < the job's key."""
    options: dict[str, Any] = {"sep": " ", "header": False, "index": False}
    settings = config.script_home / "parallel_run_step.settings.json"
    if settings.is_file():
        try:
            parsed = json.loads(settings.read_text())
            options.update(parsed.get("append_row", {}).get("pandas.DataFrame.to_csv", {}))
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"'{settings}' is not valid settings JSON: {exc}") from None
    options.update(config.append_row_options or {})
    return options


def build_config(job_file: Optional[str], flags: dict[str, Any], cwd: Optional[Path] = None) -> JobConfig:
    """Merge a job file and flags (flags win) into a validated JobConfig."""
    cwd = cwd or Path.cwd()
    data: dict[str, Any] = {}
    bases: dict[str, Path] = {}
    if job_file:
        from_file = read_yaml(job_file)
        _check_keys(from_file, f"in {job_file}")
        data.update(from_file)
        bases.update(dict.fromkeys(from_file, Path(job_file).resolve().parent))
    _check_keys(flags, "given as a flag")
    data.update(flags)
    bases.update(dict.fromkeys(flags, cwd))
    for alias in KEY_ALIASES:
        data.pop(alias, None)
    try:
        config = JobConfig(**_resolve_paths(data, bases))
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = _append_row_options(config)
    return config.model_copy(update={"append_row_options": options})


def aliases_in(job_file: Optional[str], flags: dict[str, Any]) -> dict[str, Any]:
    """ParallelRunConfig keys (node_count, process_count_per_node) given, to check against MPI."""
    found = {k: v for k, v in (read_yaml(job_file) if job_file else {}).items() if k in KEY_ALIASES}
    found.update({k: v for k, v in flags.items() if k in KEY_ALIASES})
    return found
