"""The seed notebook's cells, kept: `ParallelRunConfig(...)` and `ParallelRunStep(...)` with Azure ML's
arguments build an mpibatch Job (validated as a job file is), which then runs here (`step.run(ranks=4)`)
or through Slurm (`step.submit(...)`).

What has no meaning off Azure is said once, as a UserWarning, and then ignored: `environment` (the entry
script runs with this Python, or the one a `python:` key names) and `compute_target` (`run()` runs on this
machine, `submit()` on Slurm). `node_count` and `process_count_per_node` size `submit()` and `run()`.
`compat: azureml` is on, so `from azureml.core import Model, Run` in the entry script works unchanged.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Optional

from .api.job import Job

__all__ = ["ParallelRunConfig", "ParallelRunStep", "PipelineParameter"]


@dataclass(frozen=True)
class PipelineParameter:
    """Azure ML's pipeline parameter: here its default value is the value."""

    name: str
    default_value: Any


def _value(value: Any) -> Any:
    return value.default_value if isinstance(value, PipelineParameter) else value


def _ignored(key: str, value: Any, why: str) -> None:
    if value is not None:
        warnings.warn(f"mpibatch.azureml: {key} is ignored: {why}", UserWarning, stacklevel=3)


class ParallelRunConfig:
    """Azure ML's ParallelRunConfig, arguments and defaults alike; mpibatch job keys may be added (`models=`,
    `inputs` go to the step). Nothing is validated until the step builds its Job."""

    def __init__(self, entry_script: str, mini_batch_size: Any = None, error_threshold: Any = -1,
                 output_action: str = "append_row", environment: Any = None, compute_target: Any = None,
                 node_count: Any = None, process_count_per_node: Any = None, source_directory: Optional[str] = None,
                 description: Optional[str] = None, logging_level: Any = "INFO", run_invocation_timeout: Any = 60,
                 run_max_try: Any = 3, append_row_file_name: Optional[str] = None,
                 allowed_failed_count: Any = None, allowed_failed_percent: Any = None,
                 partition_keys: Optional[list[str]] = None, environment_variables: Optional[dict[str, str]] = None,
                 **keys: Any) -> None:
        _ignored("environment", environment, "the entry script runs with this Python environment "
                 "(a python: key, ParallelRunConfig(..., python=PATH), names another interpreter)")
        _ignored("compute_target", compute_target, "run(ranks=N) runs on this machine, submit(...) through Slurm")
        given = {
            "entry_script": entry_script, "source_directory": source_directory,
            "mini_batch_size": mini_batch_size, "error_threshold": error_threshold,
            "output_action": output_action, "append_row_file_name": append_row_file_name,
            "node_count": node_count, "process_count_per_node": process_count_per_node,
            "logging_level": logging_level, "run_invocation_timeout": run_invocation_timeout,
            "run_max_try": run_max_try, "allowed_failed_count": allowed_failed_count,
            "allowed_failed_percent": allowed_failed_percent, "partition_keys": partition_keys,
            "environment_variables": environment_variables,
        }
        self.keys: dict[str, Any] = {k: _value(v) for k, v in given.items() if _value(v) is not None}
        self.keys.setdefault("compat", "azureml")
        self.keys.update({k: _value(v) for k, v in keys.items()})
        self.description = description

    @property
    def append_row_file_name(self) -> str:
        return self.keys.get("append_row_file_name", "parallel_run_step.txt")

    def __getattr__(self, name: str) -> Any:
        keys = self.__dict__.get("keys", {})
        if name in keys:
            return keys[name]
        raise AttributeError(name)


def _input(item: Any) -> Any:
    """A path, a mapping, or an object that carries one (a dataset-like `.path`)."""
    if isinstance(item, (str, dict, os.PathLike)):
        return item
    path = getattr(item, "path", None)
    if path is None:
        raise TypeError(f"inputs: {type(item).__name__} is not a path; give the data's folder, file or URL")
    return path


def ParallelRunStep(name: str, parallel_run_config: ParallelRunConfig, inputs: list[Any], output: Any = None,
                    arguments: Optional[list[Any]] = None, side_inputs: Optional[list[Any]] = None,
                    allow_reuse: bool = True, **keys: Any) -> Job:
    """Azure ML's ParallelRunStep as an mpibatch Job named `name` (allow_reuse defaults to True, as there)."""
    _ignored("side_inputs", side_inputs or None, "read side files from the entry script by path (or models:)")
    if output is not None and not isinstance(output, (str, os.PathLike)):
        output = getattr(output, "path", None) or output
    given = {**parallel_run_config.keys, "inputs": [_input(i) for i in inputs], "allow_reuse": allow_reuse,
             **({"output": output} if output is not None else {}),
             **({"arguments": [str(_value(a)) for a in arguments]} if arguments else {}), **keys}
    job = Job(**given)
    job.name = name
    return job
