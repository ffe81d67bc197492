"""JobConfig: every key of a job, its default, its range and its validation (SPEC section 2).

Every number has a stated range (RANGES), so no value can switch a limit off (nan) or overflow
a timer later (1e306). A validator raises ValueError; load.py turns it into a ConfigError naming the key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .paths import path_problem, result_name_problem
from .sizes import parse_bytes, parse_mini_batch_size


DAY_S = 86_400
MAX_CREDITS_PER_WORKER = 256  # engine/coordinator.MAX_CREDITS: what credits_per_worker: auto may reach
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
    "prefetch": Range(0, 16, "must be a count of mini-batches from 0 (off) to 16"),
}


def _checked(value: Any, problem_of: Callable[[str], Optional[str]]) -> Any:
    """`value` unchanged, or the ValueError (pydantic's way to refuse) that says what is wrong with it."""
    problem = None if value is None else problem_of(value)
    if problem:
        raise ValueError(problem)
    return value


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
        return _checked(value, path_problem)

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
    bisect_failures: Optional[bool] = None  # None: on for file inputs (engine/bisection.py)
    retry_failed: bool = False
    prefetch: int = 1  # mini-batches whose data the entry-script process prepares while run() runs (script/prefetch.py)
    python: Optional[str] = None  # the entry-script process's interpreter (script/script_env.py)
    command_prefix: Optional[Union[str, list[str]]] = None  # words put before it: a container launcher
    join_address: str = "auto"  # where rank 0 listens for `mpibatch join` (cluster/listen.py); "none": nowhere

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

    @field_validator("entry_script", "output", "source_directory", "python")
    @classmethod
    def _usable_path(cls, value: Optional[str]) -> Optional[str]:
        return _checked(value, path_problem)

    @field_validator("command_prefix", mode="before")
    @classmethod
    def _prefix_words(cls, value: Any) -> Any:
        from ..script.script_env import prefix_words

        return None if value is None else prefix_words(value)

    @field_validator("join_address")
    @classmethod
    def _join_address(cls, value: str) -> str:
        from .listen_syntax import join_address_problem

        return _checked(value, join_address_problem)

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
        return _checked(value, result_name_problem)

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
    def prefetch_depth(self) -> int:
        """Mini-batches read ahead in the entry-script process: `prefetch`, or 0 under the inline executor
        (its script runs in a thread of the rank, which has no queue of its own to read ahead from)."""
        return self.prefetch if self.executor == "process" else 0

    @property
    def memory_limit(self) -> Optional[int]:
        """max_worker_memory in bytes, or None for no limit."""
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
        "prefetch",  # when data is read, never what is written
        "python", "command_prefix",  # where the script runs: a resume may bring a fixed environment
        "join_address",  # who may help, never what is written
    }
)

# append_row's pandas.DataFrame.to_csv options before the settings file and the job's key (results are str() lines).
APPEND_ROW_DEFAULTS: dict[str, Any] = {"sep": " ", "header": False, "index": False}

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
