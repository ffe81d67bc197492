"""JobConfig: every key of a job, its default and its validation, built from YAML and flags.

Errors surface as ConfigError with one line that names the key; the CLI turns it into exit 2.
Every number has a stated range (RANGES), so no value can switch a limit off (nan) or overflow
a timer later (1e306).
"""
from __future__ import annotations

import difflib
import glob
import hashlib
import itertools
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .jobfile import read_job_file
from ..logs import Layout


class ConfigError(Exception):
    """Invalid usage, configuration or input: reported as one line, exit status 2."""


def error_line(message: object) -> str:
    """The one stderr line for a usage error: control characters (a newline in a path) escaped."""
    text = str(message)
    return "mpibatch: error: " + "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text)


def report_error(message: object) -> None:
    """Print a usage error's one line in one write, so a launcher never splits or interleaves it."""
    sys.stderr.write(error_line(message) + "\n")
    sys.stderr.flush()


def is_url(path: str) -> bool:
    """True for fsspec URLs such as memory://x or az://c/p (file:// included)."""
    return "://" in path


MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # Linux NAME_MAX and PATH_MAX


def path_problem(value: str) -> Optional[str]:
    """Why a text cannot name a path (empty, or holding a NUL), or None."""
    if not value.strip():
        return "must name a path, not an empty text"
    if "\0" in value:
        return "must not hold a NUL character"
    encoded = value.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        return f"is longer than a path can be ({MAX_NAME_BYTES} bytes a name, {MAX_PATH_BYTES} in all)"
    return None


DAY_S = 86_400
MAX_CREDITS_PER_WORKER = 256  # coordinator.MAX_CREDITS: what credits_per_worker: auto may reach
MAX_BATCH_COUNT = 10**12  # files or rows in one mini-batch
MAX_BATCH_BYTES = 1024**4  # 1TB of table in one mini-batch
MAX_WORKER_MEMORY = 1024**5  # 1024TB
MAX_WORLD = 10**6  # node_count, process_count_per_node


@dataclass(frozen=True)
class Range:
    """The values a number key admits, and the error that says so."""

    low: float
    high: float
    says: str
    low_open: bool = False

    def admits(self, value: float) -> bool:
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high


_TIMEOUT = Range(0, 30 * DAY_S, "must be a number of seconds above 0 and at most 2592000 (30 days)", low_open=True)
_LIMIT = Range(-1, 10**15, "must be -1 (no limit) or a count from 0 to 10^15")
RANGES = {
    "run_invocation_timeout": _TIMEOUT,
    "init_timeout": _TIMEOUT,
    "stop_grace": Range(0, DAY_S, "must be a number of seconds above 0 and at most 86400 (1 day)", low_open=True),
    "error_threshold": _LIMIT,
    "allowed_failed_count": _LIMIT,
    "allowed_failed_percent": Range(0, 100, "must be a percentage from 0 to 100"),
    "run_max_try": Range(1, 1000, "must be 1 or more and at most 1000"),
    "speculation_factor": Range(1, 1000, "must be from 1 to 1000 (a multiple of the median mini-batch duration)"),
    "credits_per_worker": Range(1, MAX_CREDITS_PER_WORKER, f"must be 'auto' or 1 to {MAX_CREDITS_PER_WORKER}"),
    "gpus_per_node": Range(0, 256, "must be 'auto' or a count from 0 to 256"),
    "threads_per_worker": Range(1, 4096, "must be 'auto' or 1 to 4096"),
}


class InputSpec(BaseModel):
    """One item of `inputs:` in its mapping form."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    path: str
    name: Optional[str] = None
    type: Literal["files", "tabular", "filelist", "mltable"] = "files"  # mltable: also found by its MLTable file
    format: Optional[Literal["csv", "parquet", "json", "hdf5"]] = None
    partition_format: Optional[str] = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _usable_path(cls, value: str) -> str:
        problem = path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def options(self) -> dict[str, Any]:
        """Format options given beside the known keys (e.g. hdf5_key, delimiter)."""
        return dict(self.model_extra or {})


LEVELS = ("WARNING", "INFO", "DEBUG")


def _parsed(parse: Callable[[Any], Any], value: Any) -> Any:
    """A size parsed by `parse`, which raises ValueError with the reason; too large to hold is one too."""
    try:
        return parse(value)
    except OverflowError:
        raise ValueError("is too large") from None


class JobConfig(BaseModel):
    """The validated, immutable description of one job (SPEC section 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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
    python: Optional[str] = None  # the entry-script process's interpreter (script_env.py)
    command_prefix: Optional[Union[str, list[str]]] = None  # words put before it: a container launcher

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

    @field_validator("entry_script", "output", "source_directory")
    @classmethod
    def _usable_path(cls, value: Optional[str]) -> Optional[str]:
        problem = None if value is None else path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("python")
    @classmethod
    def _interpreter(cls, value: Optional[str]) -> Optional[str]:
        problem = None if value is None else path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("command_prefix", mode="before")
    @classmethod
    def _prefix_words(cls, value: Any) -> Any:
        from ..script_env import prefix_words

        return None if value is None else prefix_words(value)

    @field_validator("models")
    @classmethod
    def _model_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            problem = path_problem(path)
            if problem:
                raise ValueError(f"model '{name}': {problem}")
        return value

    @field_validator("environment_variables")
    @classmethod
    def _settable_environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"'{name}' is not a variable name (empty, or holding '=' or NUL)")
            if "\0" in text:
                raise ValueError(f"the value of '{name}' holds a NUL character")
        return value

    @field_validator(*RANGES, mode="before")
    @classmethod
    def _no_boolean_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            raise ValueError(RANGES[info.field_name].says)
        return value

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (int, float)) and not RANGES[info.field_name].admits(value):
            raise ValueError(RANGES[info.field_name].says)
        return value

    @field_validator("logging_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> str:
        level = str(value).upper()
        if level not in LEVELS:
            raise ValueError(f"must be one of {', '.join(LEVELS)}")
        return level

    @field_validator("append_row_file_name")
    @classmethod
    def _result_file_name(cls, value: str) -> str:
        problem = result_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("mini_batch_size", mode="before")
    @classmethod
    def _whole_size(cls, value: Any) -> Any:
        """A float from YAML or a flag (`1.5`) is no count: refused, never rounded down."""
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole count, a size such as '64KB' or a row count such as '5000rows'")
        return int(value) if isinstance(value, float) else value

    @field_validator("mini_batch_size")
    @classmethod
    def _batch_size(cls, value: Union[int, str, None]) -> Union[int, str, None]:
        if value is None:
            return value
        from .sizes import parse_mini_batch_size

        size = _parsed(parse_mini_batch_size, value)
        if isinstance(value, str) and size.unit == "count" and not value.strip().isdigit():
            raise ValueError("a count must be a whole number (a size needs a unit such as '64KB')")
        if size.value > (MAX_BATCH_BYTES if size.unit == "bytes" else MAX_BATCH_COUNT):
            raise ValueError("must be at most 10^12 files or rows, or a size of at most 1TB")
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # '5' from a flag and 5 from YAML are the same job
        return value

    @field_validator("max_worker_memory", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if value is None:
            return value
        from .sizes import parse_bytes

        if _parsed(parse_bytes, value) > MAX_WORKER_MEMORY:
            raise ValueError("must be at most 1024TB")
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @model_validator(mode="after")
    def _combinations(self) -> "JobConfig":
        if self.retry_failed and not self.resume:
            raise ValueError("retry_failed: needs resume (--resume --retry-failed re-runs an earlier run's failures)")
        if self.max_worker_memory is not None and self.executor != "process":
            raise ValueError("max_worker_memory: needs executor: process (an inline script cannot be killed alone)")
        for key in ("python", "command_prefix"):
            if getattr(self, key) is not None and self.executor != "process":
                raise ValueError(f"{key}: needs executor: process (the inline executor runs the entry script "
                                 "in the rank's own interpreter)")
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
        "python", "command_prefix",  # where the script runs: a resume may bring a fixed environment
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


def suggest(key: object, choices: list[str]) -> str:
    """A ' (did you mean ...?)' tail for near-miss names, or ''."""
    close = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _reserved_names() -> frozenset[str]:
    """What mpibatch itself keeps in an output folder, so no result file may take the name."""
    layout = Layout(Path("/output"), Path("/output/result"))
    return frozenset({layout.logs.name.casefold(), layout.state_dir.name.casefold()})


def result_name_problem(name: str) -> Optional[str]:
    """Why a text cannot be the result file's name in the output folder, or None."""
    if not name.strip():
        return "must name a file, not an empty text"
    if "/" in name or "\0" in name or name in (".", ".."):
        return "must be a plain file name (no '/' or NUL, not '.' or '..')"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_BYTES} bytes long"
    if name.casefold() in _reserved_names():
        return f"'{name}' is a name mpibatch itself uses in the output folder (logs, .mpibatch)"
    return None


def read_yaml(path: str) -> dict[str, Any]:
    """Load a job file; its relative paths are later resolved against its folder."""
    try:
        data = read_job_file(path)
    except ValueError as exc:
        raise ConfigError(f"job file '{path}' {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"job file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


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
    from .azure_names import azure_hint

    return azure_hint(key) or suggest(key, keys)


def _check_keys(data: dict[str, Any], where: str) -> None:
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


def _local_path(path: str) -> Optional[str]:
    """The local path of a plain path or a file:// URL; None for a remote URL."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if is_url(path) else path


def glob_root(path: str) -> str:
    """The folder a glob searches (its leading parts without wildcards); the path itself if no glob."""
    parts = list(itertools.takewhile(lambda part: not glob.has_magic(part), Path(path).parts))
    return str(Path(*parts)) if parts else os.sep


def _check_output_outside_inputs(config: JobConfig) -> None:
    """An output inside an input would be listed as input by the next run, and a resume refused."""
    output = _local_path(config.output)
    if output is None:
        return
    out = os.path.realpath(output)
    for index, spec in enumerate(config.inputs):
        local = _local_path(spec.path)
        if local is None or spec.type == "filelist":
            continue
        root = os.path.realpath(glob_root(local))
        if out == root or out.startswith(root.rstrip(os.sep) + os.sep):
            where = "is the same folder as" if out == root else "is inside"
            raise ConfigError(f"output: '{config.output}' {where} inputs[{index}] '{spec.path}': the job would "
                              "read its own output; choose an output folder outside every input")


def _to_csv_keywords() -> list[str]:
    import inspect

    import pandas

    return [name for name in inspect.signature(pandas.DataFrame.to_csv).parameters if name != "self"]


def _check_csv_keywords(options: dict[str, Any], where: str) -> None:
    keywords = _to_csv_keywords()
    for key in options:
        if key not in keywords:
            raise ConfigError(f"{where}: '{key}' is not a pandas.DataFrame.to_csv keyword{suggest(key, keywords)}")


def _try_csv_options(options: dict[str, Any]) -> None:
    """Format a tiny DataFrame as a worker would: options to_csv refuses fail here, not in every mini-batch."""
    import pandas

    from ..entry import format_result

    frame = pandas.DataFrame({"item": ["a.txt", "b c"], "score": [0.5, None], "n": [1, 2]})
    trial = {k: v for k, v in options.items() if k != "columns"}  # columns name the user's frame, not this one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            format_result(frame, "append_row", trial)
    except Exception as exc:  # noqa: BLE001 - whatever to_csv raises, the options are what is wrong
        reason = str(exc).strip().splitlines()
        raise ConfigError(f"append_row_options: pandas.DataFrame.to_csv refuses them: {type(exc).__name__}"
                          f"{': ' + reason[0] if reason else ''}") from None


def _settings_json_options(settings: Path) -> dict[str, Any]:
    """The to_csv options of a parallel_run_step.settings.json (Azure ML's format)."""
    try:
        parsed = json.loads(settings.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"'{settings}' is not valid settings JSON: {exc}") from None
    section = parsed.get("append_row", {}) if isinstance(parsed, dict) else None
    options = section.get("pandas.DataFrame.to_csv", {}) if isinstance(section, dict) else None
    if not isinstance(options, dict):
        raise ConfigError(f"'{settings}': append_row.pandas.DataFrame.to_csv must be a JSON object")
    return options


def _append_row_options(config: JobConfig) -> dict[str, Any]:
    """Merge append_row options: defaults < parallel_run_step.settings.json < the job's key.

    Options a user gave are checked here, before any work: a key to_csv does not know, or a
    value it refuses, would otherwise fail every mini-batch.
    """
    options: dict[str, Any] = {"sep": " ", "header": False, "index": False}
    settings = config.script_home / "parallel_run_step.settings.json"
    given = False
    if settings.is_file():
        from_settings = _settings_json_options(settings)
        _check_csv_keywords(from_settings, f"'{settings}'")
        options.update(from_settings)
        given = bool(from_settings)
    if config.append_row_options:
        _check_csv_keywords(config.append_row_options, "append_row_options")
        options.update(config.append_row_options)
        given = True
    if given:
        _try_csv_options(options)
    return options


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


def _check_storable(config: JobConfig) -> None:
    """The fingerprint goes into state.json: a value JSON cannot hold is refused now, not after the work."""
    try:
        config_digest(config)
    except Exception as exc:  # noqa: BLE001 - pydantic's and json's errors differ; the cause is the value
        raise ConfigError(f"the configuration holds a value that cannot be stored as JSON: {exc}") from None


def load_job(job_file: Optional[str], flags: dict[str, Any],
             cwd: Optional[Path] = None) -> tuple[JobConfig, dict[str, Any]]:
    """Read the job file once (an Azure ML v2 file translated: azure_v2.py), merge the flags (flags win),
    validate: the config and its sizing keys (with a v2 file's v2_sizing, v2_notes and v2_dirs)."""
    from . import azure_v2

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
        _check_keys(from_file, f"in {job_file}")
        data.update(from_file)
        bases.update(dict.fromkeys(from_file, Path(job_file).resolve().parent))
    if v2_options and v2 is None:
        raise ConfigError(f"--{'node' if v2_options.node is not None else 'set'}: only for an Azure ML v2 job file "
                          "($schema / type: parallel or pipeline)")
    _check_keys(flags, "given as a flag")
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
        config = config.model_copy(update={"append_row_options": _append_row_options(config)})
        _check_output_outside_inputs(config)
    except OSError as exc:  # a folder we may not look into, say
        raise ConfigError(f"cannot check '{exc.filename}': {exc.strerror}") from None
    _check_storable(config)
    return config, {**sizing, **(v2.extras() if v2 else {})}


def build_config(job_file: Optional[str], flags: dict[str, Any], cwd: Optional[Path] = None) -> JobConfig:
    """Merge a job file and flags (flags win) into a validated JobConfig."""
    return load_job(job_file, flags, cwd)[0]


def aliases_in(job_file: Optional[str], flags: dict[str, Any]) -> dict[str, Any]:
    """ParallelRunConfig keys (node_count, process_count_per_node) given, to check against MPI."""
    return sizing_keys({**(read_yaml(job_file) if job_file else {}), **flags})
