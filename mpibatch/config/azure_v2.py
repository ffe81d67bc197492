"""Azure ML v2 job files as they are: a parallel job, a parallel component, or a pipeline job holding
parallel nodes becomes the dict a mpibatch job file would hold; the normal config path validates it.

`${{inputs.X}}`, `${{outputs.X}}`, `${{parent.inputs.X}}`, `${{parent.outputs.X}}` and
`${{parent.jobs.N.outputs.X}}` resolve from the file's local `path:` values or from
`--set inputs.X=PATH` / `--set outputs.X=PATH`; an `azureml:` asset or cloud URI needs a --set.
Keys that only mean something to the Azure service are listed once in rank 0's log.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .azure_bindings import BINDING, DATA_TYPES, Options, Context, shown_keys
from .azure_names import ProgramArguments, split_program_arguments
from .errors import ConfigError
from .jobfile import read_yaml
from .keys import InputSpec
from .paths import is_url

# Keys of a parallel node that only the Azure service reads: listed as ignored.
_SERVICE_KEYS = ("compute", "name", "display_name", "description", "tags", "experiment_name", "identity", "version",
                 "is_deterministic", "properties", "services", "$schema", "type", "component", "queue_settings")
_NODE_KEYS = ("inputs", "outputs", "input_data", "mini_batch_size", "partition_keys", "mini_batch_error_threshold",
              "error_threshold", "logging_level", "resources", "max_concurrency_per_instance", "instance_count",
              "retry_settings", "environment_variables", "task", "code", *_SERVICE_KEYS)
_TASK_KEYS = ("type", "code", "entry_script", "program_arguments", "append_row_to", "environment")
_PIPELINE_SERVICE_KEYS = ("$schema", "type", "name", "display_name", "description", "experiment_name", "tags",
                          "settings", "identity", "properties", "compute", "services")


@dataclass
class V2Job:
    """A v2 file's parallel node as mpibatch keys, with what only the log needs to know."""

    data: dict[str, Any]
    sizing: dict[str, int]  # instance_count / max_concurrency_per_instance: compared with the world, a warning
    notes: list[str]
    make_dirs: list[str]  # uri_folder outputs the script writes to (Azure mounts them; here they are made)

    def extras(self) -> dict[str, Any]:
        return {"v2_sizing": self.sizing, "v2_notes": self.notes, "v2_dirs": self.make_dirs}


def is_v2(data: dict[str, Any]) -> bool:
    """A file with `$schema` or `type` is an Azure ML v2 file (no mpibatch key has either name)."""
    return "$schema" in data or "type" in data


def _single_binding(where: str, value: Any, kind: str) -> str:
    """The NAME of a value that must be exactly `${{kind.NAME}}`."""
    match = BINDING.fullmatch(str(value).strip()) if isinstance(value, str) else None
    parts = match.group(1).split(".") if match else []
    if len(parts) != 2 or parts[0] != kind:
        raise ConfigError(f"{where}: must be ${{{{{kind}.NAME}}}} (got {value!r})")
    return parts[1]


def _load_component(where: str, ref: Any, base: Path) -> tuple[dict[str, Any], Path]:
    if isinstance(ref, dict):
        return ref, base
    text = str(ref)
    if text.startswith("azureml:") and not text.startswith("azureml://"):
        raise ConfigError(f"{where}: '{text}' is a registered Azure ML component; mpibatch reads a local component "
                          "file (component: ./component.yml)")
    path = base / os.path.expanduser(text.removeprefix("file:"))
    return read_yaml(str(path)), path.resolve().parent


def _pick_node(data: dict[str, Any], file: Path, options: Options) -> tuple[str, dict[str, Any], Path, Optional[dict]]:
    """(name, node, base folder of the node's relative paths, the pipeline or None)."""
    base = file.resolve().parent
    kind = data.get("type")
    if kind == "parallel" or (kind is None and "task" in data):
        if options.node is not None:
            raise ConfigError(f"--node: '{file}' is a single parallel job, not a pipeline with nodes")
        return str(data.get("name") or file.stem), data, base, None
    if kind != "pipeline":
        raise ConfigError(f"type: '{kind}' in {file} is not a parallel job; mpibatch runs Azure ML v2 files of "
                          "type: parallel (a job or component) or type: pipeline holding parallel nodes")
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise ConfigError(f"jobs: the pipeline in {file} has no jobs")
    parallel = {}
    for name, node in jobs.items():
        if not isinstance(node, dict):
            raise ConfigError(f"jobs.{name}: must be a mapping")
        component, comp_base = (node, base)
        if node.get("type") in (None, "parallel") and "component" in node:
            component, comp_base = _load_component(f"jobs.{name}.component", node["component"], base)
        if node.get("type") == "parallel" or (node.get("type") is None and component.get("type") == "parallel"):
            parallel[name] = (node, component, comp_base)
    others = ", ".join(f"{n} ({(j or {}).get('type', '?')})" for n, j in jobs.items() if n not in parallel)
    if not parallel:
        raise ConfigError(f"jobs: the pipeline in {file} holds no parallel node (it holds: {others})")
    if options.node is None and len(parallel) > 1:
        raise ConfigError(f"--node: the pipeline in {file} holds {len(parallel)} parallel nodes ({', '.join(parallel)}); "
                          "name one with --node NAME")
    name = options.node if options.node is not None else next(iter(parallel))
    if name not in parallel:
        why = "is not a parallel node" if name in jobs else "is not a node"
        raise ConfigError(f"--node: '{name}' {why} of the pipeline in {file} (parallel nodes: {', '.join(parallel)})")
    node, component, comp_base = parallel[name]
    if component is not node:
        return name, _merged(node, component, base), comp_base, data
    return name, node, base, data


def _merged(node: dict[str, Any], component: dict[str, Any], base: Path) -> dict[str, Any]:
    """A pipeline node over its component: the node's settings win, its inputs bind the component's
    (a local path given in the pipeline file is relative to that file, `base`)."""
    def local(path: Any) -> Any:
        if not isinstance(path, str) or BINDING.fullmatch(path.strip()) or is_url(path) or path.startswith("azureml:"):
            return path
        return os.path.abspath(base / os.path.expanduser(path.removeprefix("file:")))

    merged = {**component, **{k: v for k, v in node.items() if k not in ("inputs", "outputs", "component")}}
    for section in ("inputs", "outputs"):
        declared = dict(component.get(section) or {})
        for key, value in (node.get(section) or {}).items():
            spec = declared.get(key)
            if isinstance(value, dict):
                value = {**value, "path": local(value["path"])} if "path" in value else value
                declared[key] = {**(spec if isinstance(spec, dict) else {}), **value}
            elif isinstance(spec, dict) and spec.get("type") in DATA_TYPES and isinstance(value, str) \
                    and not BINDING.fullmatch(value.strip()):
                declared[key] = {**spec, "path": local(value)}
            else:
                declared[key] = value
        merged[section] = declared
    return merged


def _check_node_keys(name: str, node: dict[str, Any], task: dict[str, Any]) -> None:
    for key in node:
        if key not in _NODE_KEYS:
            raise ConfigError(f"unknown key '{key}' in the parallel job '{name}' (not an Azure ML v2 parallel job key)")
    for key in task:
        if key not in _TASK_KEYS:
            raise ConfigError(f"task.{key}: not a key of an Azure ML v2 parallel task")


def translate(data: dict[str, Any], file: Path, options: Options, cwd: Path, given: set[str]) -> V2Job:
    """The parallel node of a v2 file as mpibatch keys; `given` are the flags that will win over them."""
    name, node, base, pipeline = _pick_node(data, file, options)
    task = node.get("task")
    if not isinstance(task, dict):
        raise ConfigError(f"task: the parallel job '{name}' in {file} needs a task mapping (type: run_function)")
    _check_node_keys(name, node, task)
    if task.get("type", "run_function") != "run_function":
        raise ConfigError(f"task.type: '{task.get('type')}' is not supported; mpibatch runs task.type: run_function")
    ctx = Context(name, node, base, pipeline, file.resolve().parent, options, cwd)
    for key in options.sets:
        section, _, item = key.partition(".")
        if item not in (node.get(section) or {}):
            raise ConfigError(f"--set: the parallel job '{name}' has no {section[:-1]} '{item}' (it has: "
                              f"{shown_keys(list(node.get(section) or {})) or 'none'})")
    out: dict[str, Any] = {}
    notes: list[str] = []
    if "entry_script" not in task:
        raise ConfigError(f"task.entry_script: required in the parallel job '{name}'")
    code = task.get("code", node.get("code"))
    if code is not None:
        out["source_directory"] = ctx.local("task.code", str(code), base)
        out["entry_script"] = os.path.join(out["source_directory"], str(task["entry_script"]))
    else:
        out["entry_script"] = os.path.abspath(base / str(task["entry_script"]))
    if "input_data" not in node and "inputs" not in given:
        raise ConfigError(f"input_data: required in the parallel job '{name}' (input_data: ${{{{inputs.NAME}}}})")
    if "input_data" in node:
        input_name = _single_binding("input_data", node["input_data"], "inputs")
        out["inputs"] = [_input_item(ctx, input_name)]
    out.update(_settings(ctx, node, notes, table=any(_is_table(item) for item in out.get("inputs", []))))
    sizing = _sizing(ctx, node)
    args = ProgramArguments()
    if task.get("program_arguments") is not None:
        args = split_program_arguments(str(task["program_arguments"]), "task.program_arguments",
                                       lambda word: ctx.substitute("task.program_arguments", word))
        for key, value in args.settings.items():
            if key in out and out[key] != value:
                notes.append(f"task.program_arguments --{key} {value} wins over {key}: {out[key]}")
            out[key] = value
        sizing.update({k: int(v) for k, v in args.sizing.items() if isinstance(v, int)})
        out["arguments"] = args.arguments
    make_dirs = [ctx.output(o) if ctx.output_type(o) != "uri_file" else os.path.dirname(ctx.output(o))
                 for o in _outputs_named(str(task.get("program_arguments") or ""))]
    out.update(_result(ctx, task, given, name))
    notes[:0] = _ignored_notes(name, node, task, pipeline, args)
    notes.extend(_environment_note(task.get("environment"), given))
    return V2Job(out, sizing, notes, make_dirs)


def _input_item(ctx: Context, name: str) -> dict[str, Any]:
    path = ctx.input(name)
    item: dict[str, Any] = {"path": str(path), "name": name}
    if ctx.input_type(name) == "mltable" and _input_types_accept("mltable"):
        item["type"] = "mltable"
    return item


def _input_types_accept(kind: str) -> bool:
    import typing

    return kind in typing.get_args(InputSpec.model_fields["type"].annotation)


def _literal(ctx: Context, where: str, value: Any) -> Any:
    """A setting's value; `${{parent.inputs.X}}` gives the pipeline input's literal."""
    if isinstance(value, str) and BINDING.fullmatch(value.strip()):
        return ctx.bound(where, BINDING.fullmatch(value.strip()).group(1))  # type: ignore[union-attr]
    return value


def _is_table(item: dict[str, Any]) -> bool:
    """An mltable input whose MLTable reads a table (mini_batch_size then means bytes, not files)."""
    from ..inputs.mltable import mltable_file, reads_a_table

    if item.get("type") != "mltable":
        return False
    try:
        source = mltable_file(0, InputSpec(**item))
    except Exception:  # noqa: BLE001 - a missing or odd MLTable: the listing names it
        return False
    return source is not None and reads_a_table(source)


def _settings(ctx: Context, node: dict[str, Any], notes: list[str], table: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plain = {"mini_batch_size": "mini_batch_size", "partition_keys": "partition_keys",
             "mini_batch_error_threshold": "allowed_failed_count", "error_threshold": "error_threshold",
             "logging_level": "logging_level", "environment_variables": "environment_variables"}
    for azure, key in plain.items():
        if node.get(azure) is not None:
            out[key] = _literal(ctx, azure, node[azure])
    if "mini_batch_size" not in out and "partition_keys" not in out:
        if table:  # v2's 1 would be 1 byte: one row per mini-batch, a million messages for a million rows
            notes.append("mini_batch_size: not given for a table, so mpibatch's tabular default 1MB applies "
                         "(v2's default 1 would make one-row mini-batches)")
        else:
            out["mini_batch_size"] = 1
            notes.append("mini_batch_size: not given, so v2's default 1 applies")
    if isinstance(out.get("partition_keys"), str):
        out["partition_keys"] = [k.strip() for k in out["partition_keys"].split(",") if k.strip()]
    retry = node.get("retry_settings") or {}
    if not isinstance(retry, dict):
        raise ConfigError("retry_settings: must be a mapping (max_retries, timeout)")
    for key in retry:
        if key not in ("max_retries", "timeout"):
            raise ConfigError(f"retry_settings.{key}: not a key of Azure ML's retry_settings (max_retries, timeout)")
    if retry.get("max_retries") is not None:
        out["run_max_try"] = _literal(ctx, "retry_settings.max_retries", retry["max_retries"])
    if retry.get("timeout") is not None:
        out["run_invocation_timeout"] = _literal(ctx, "retry_settings.timeout", retry["timeout"])
    return out


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
            or int(value) < 1:
        raise ConfigError(f"{where}: must be a count of 1 or more (got {value!r})")
    return int(value)


def _sizing(ctx: Context, node: dict[str, Any]) -> dict[str, int]:
    resources = node.get("resources") or {}
    if not isinstance(resources, dict):
        raise ConfigError("resources: must be a mapping (instance_count, instance_type, …)")
    sizing: dict[str, int] = {}
    count = resources.get("instance_count", node.get("instance_count"))
    if count is not None:
        sizing["node_count"] = _count("resources.instance_count", _literal(ctx, "resources.instance_count", count))
    if node.get("max_concurrency_per_instance") is not None:
        sizing["process_count_per_node"] = _count("max_concurrency_per_instance", _literal(
            ctx, "max_concurrency_per_instance", node["max_concurrency_per_instance"]))
    return sizing


def _outputs_named(text: str) -> list[str]:
    return [m.group(1).split(".")[1] for m in BINDING.finditer(text)
            if m.group(1).startswith("outputs.") and len(m.group(1).split(".")) == 2]


def _result(ctx: Context, task: dict[str, Any], given: set[str], name: str) -> dict[str, Any]:
    """append_row_to: the output (a uri_file names the result file); without it a summary_only job."""
    target = task.get("append_row_to")
    if target is None:
        if "output" not in given:
            raise ConfigError(f"output: the parallel job '{name}' has no task.append_row_to, so give mpibatch's "
                              "own output folder (logs, state) with --output DIR")
        return {"output_action": "summary_only"}
    output = _single_binding("task.append_row_to", target, "outputs")
    try:
        path = ctx.output(output)
    except ConfigError:
        if "output" not in given:
            raise
        return {"output_action": "append_row"}  # --output names the folder; the file keeps its default name
    if ctx.output_type(output) == "uri_file":
        folder, file_name = os.path.split(path.rstrip("/"))
        return {"output_action": "append_row", "output": folder or ".", "append_row_file_name": file_name}
    return {"output_action": "append_row", "output": path}


def _ignored_notes(name: str, node: dict[str, Any], task: dict[str, Any], pipeline: Optional[dict[str, Any]],
                   args: ProgramArguments) -> list[str]:
    ignored = [k for k in node if k in _SERVICE_KEYS and k not in ("type", "$schema", "component")]
    ignored += [f"resources.{k}" for k in (node.get("resources") or {}) if k != "instance_count"]
    ignored += [f"inputs.{k}.mode" for k, v in (node.get("inputs") or {}).items() if isinstance(v, dict) and "mode" in v]
    ignored += [f"outputs.{k}.mode" for k, v in (node.get("outputs") or {}).items() if isinstance(v, dict) and "mode" in v]
    if pipeline is not None:
        ignored += [k for k in pipeline if k in _PIPELINE_SERVICE_KEYS and k not in ("type", "$schema")]
        ignored += [f"jobs.{k}" for k in pipeline.get("jobs", {}) if k != name]
    notes = [f"Azure ML v2 parallel job '{name}'; ignored here (Azure service settings): {shown_keys(ignored)}"]
    if args.acknowledged:
        notes.append("task.program_arguments: Azure service flags with no meaning here (not passed to the script): "
                     + ", ".join(args.acknowledged))
    if args.abbreviations:
        notes.append("task.program_arguments: abbreviations taken as Azure's argparse takes them: "
                     + ", ".join(args.abbreviations))
    return notes


def _environment_note(environment: Any, given: set[str]) -> list[str]:
    """task.environment is not built here: say which flags give the script its environment."""
    if environment is None or given & {"python", "command_prefix"}:
        return []
    line = ("task.environment is not built here: the entry script runs with mpibatch's interpreter unless you give "
            "--python PATH (a venv or conda env's python) or --command-prefix 'PREFIX' (a container)")
    image = environment.get("image") if isinstance(environment, dict) else None
    if image:
        line += f"; for its image, e.g. --command-prefix 'apptainer exec docker://{image}'"
    return [line]


def world_notes(sizing: dict[str, Any], n_nodes: int, per_node: int) -> list[str]:
    """Warnings where a v2 file's instance_count / max_concurrency_per_instance differ from the MPI world.

    A v2 file sizes an Azure cluster; mpibatch takes its size from the launcher, so a difference is
    said, never refused (ParallelRunConfig's node_count / process_count_per_node keys are refused).
    """
    notes = []
    for key, azure, actual, flag in (("node_count", "resources.instance_count", n_nodes, "srun -N"),
                                     ("process_count_per_node", "max_concurrency_per_instance", per_node,
                                      "mpiexec -n / srun --ntasks-per-node")):
        wanted = sizing.get(key)
        if wanted is not None and wanted != actual:
            notes.append(f"{azure}: the v2 job asks for {wanted} but runs with {actual}; mpibatch takes its size "
                         f"from the launcher ({flag})")
    return notes


def announce(extras: dict[str, Any], n_nodes: int, per_node: int, log: Any) -> None:
    """Rank 0 says once, on stderr and in its log, what of a v2 file was ignored and where the world differs."""
    import sys

    for note in extras.get("v2_notes", []):
        log.info("%s", note)
        sys.stderr.write(f"mpibatch: {note}\n")
    for warning in world_notes(extras.get("v2_sizing", {}), n_nodes, per_node):
        log.warning("%s", warning)
        sys.stderr.write(f"mpibatch: warning: {warning}\n")
    sys.stderr.flush()


def make_output_dirs(extras: dict[str, Any]) -> None:
    """The v2 outputs the script writes to exist before it starts, as Azure's mounts do."""
    for folder in extras.get("v2_dirs", []):
        if not is_url(folder):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot make the output folder '{folder}': {exc.strerror}") from None
