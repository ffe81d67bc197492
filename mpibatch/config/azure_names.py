"""Azure ML's own names for mpibatch's keys: the hints for a plain job file, and the
ParallelRunStep flags a v2 `task.program_arguments` may hold (settings, not script arguments).

A key Azure spells differently gets its mpibatch equivalent named, never a near-miss
(`mini_batch_error_threshold` is `allowed_failed_count`, not 'error_threshold').
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# Azure ML v2 (and ParallelRunStep) names -> what to write in a mpibatch job file instead.
AZURE_NAMES: dict[str, str] = {
    "mini_batch_error_threshold": "use 'allowed_failed_count'",
    "retry_settings": "use 'run_max_try' (max_retries) and 'run_invocation_timeout' (timeout)",
    "max_retries": "use 'run_max_try'",
    "timeout": "use 'run_invocation_timeout'",
    "resources": "use 'node_count', or start the job with mpiexec / srun -N",
    "instance_count": "use 'node_count', or start the job with mpiexec / srun -N",
    "max_concurrency_per_instance": "use 'process_count_per_node', or start the job with mpiexec -n / srun --ntasks-per-node",
    "process_count_per_instance": "use 'process_count_per_node'",
    "input_data": "use 'inputs'",
    "task": "use 'entry_script', 'source_directory' and 'arguments'",
    "code": "use 'source_directory'",
    "program_arguments": "use 'arguments'",
    "append_row_to": "use 'output' and 'append_row_file_name'",
    "environment": "use 'python' (an interpreter) or 'command_prefix' (a container)",
    "compute": "none needed: the job runs where mpiexec / srun starts it",
    "default_compute": "none needed: the job runs where mpiexec / srun starts it",
    "compute_target": "none needed: the job runs where mpiexec / srun starts it",
    "output_action_append_row": "use 'output_action: append_row'",
    "append_row": "use 'output_action: append_row'",
    "summary_only": "use 'output_action: summary_only'",
    "run_function": "use 'entry_script'",
    "outputs": "use 'output' (a folder)",
    "jobs": "add '$schema' or 'type: pipeline' to run it as an Azure ML v2 pipeline job",
}
for _name in ("experiment_name", "display_name", "description", "tags", "identity", "name", "version",
              "settings", "is_deterministic", "properties", "services"):
    AZURE_NAMES.setdefault(_name, "it has no meaning here: remove it, or add '$schema' / 'type: parallel' to run "
                                  "the file as an Azure ML v2 job")


def azure_hint(key: object) -> Optional[str]:
    """' (Azure ML v2 name: use ...)' for a key Azure spells its own way, or None."""
    text = str(key).lstrip("-").replace("-", "_")
    advice = AZURE_NAMES.get(text)
    return f" (Azure ML v2 name: {advice})" if advice else None


# ParallelRunStep's flags in program_arguments: mpibatch keys they set ...
PRS_SETTINGS = {
    "error_threshold": "error_threshold",
    "allowed_failed_percent": "allowed_failed_percent",
    "allowed_failed_count": "allowed_failed_count",
    "run_invocation_timeout": "run_invocation_timeout",
    "run_max_try": "run_max_try",
    "mini_batch_size": "mini_batch_size",
    "logging_level": "logging_level",
    "append_row_file_name": "append_row_file_name",
}
# ... sizes checked against the MPI world ...
PRS_SIZING = {"process_count_per_node": "process_count_per_node", "node_count": "node_count"}
# ... and Azure's service settings that mean nothing on an MPI world (acknowledged in the log).
PRS_SERVICE = ("task_overhead_timeout", "progress_update_timeout", "first_task_creation_timeout",
               "copy_logs_to_parent", "resource_monitor_interval", "metrics_name_prefix", "push_metrics_to_parent",
               "create_snapshot_at_runtime", "enable_sampling")
PRS_FLAGS = (*PRS_SETTINGS, *PRS_SIZING, *PRS_SERVICE)
MIN_PREFIX = 10  # '--' and 8 characters: Azure's argparse takes abbreviations, a script's short flags stay its own


@dataclass
class ProgramArguments:
    """program_arguments split into the script's arguments and what the PRS flags among them say."""

    arguments: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    sizing: dict[str, Any] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)
    abbreviations: list[str] = field(default_factory=list)


def prs_flag(word: str) -> Optional[str]:
    """The PRS flag `--name` or `--name=value` stands for (an unambiguous long prefix counts, as in argparse)."""
    if not word.startswith("--"):
        return None
    name = word[2:].split("=", 1)[0]
    if name in PRS_FLAGS:
        return name
    if len(word.split("=", 1)[0]) < MIN_PREFIX:
        return None
    matches = [flag for flag in PRS_FLAGS if flag.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def split_program_arguments(text: str, where: str, resolve: Callable[[str], str] = str) -> ProgramArguments:
    """Shell words of program_arguments (each passed through `resolve`, which fills in bindings); PRS flags
    with their values become settings, the rest the script's argv."""
    from .errors import ConfigError
    from .flags import scalar

    try:
        words = [resolve(word) for word in shlex.split(text)]
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot be split into words: {exc}") from None
    out = ProgramArguments()
    index = 0
    while index < len(words):
        word = words[index]
        flag = prs_flag(word)
        if flag is None:
            out.arguments.append(word)
            index += 1
            continue
        if "=" in word:
            value, index = word.split("=", 1)[1], index + 1
        elif index + 1 < len(words):
            value, index = words[index + 1], index + 2
        else:
            raise ConfigError(f"{where}: {word} needs a value")
        if word.split("=", 1)[0] != "--" + flag:
            out.abbreviations.append(f"{word.split('=', 1)[0]} as --{flag}")
        if flag in PRS_SETTINGS:
            out.settings[PRS_SETTINGS[flag]] = scalar(value)
        elif flag in PRS_SIZING:
            out.sizing[PRS_SIZING[flag]] = scalar(value)
        else:
            out.acknowledged.append(f"--{flag} {value}")
    return out
