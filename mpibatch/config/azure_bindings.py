"""Where a v2 file's `${{…}}` bindings resolve: the node's inputs and outputs, the pipeline's, and the
--set values given on the command line (azure_v2.py turns the resolved node into mpibatch keys)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError
from .paths import is_url

BINDING = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
DATA_TYPES = ("uri_folder", "uri_file", "mltable", "custom_model", "mlflow_model", "triton_model")
LITERAL_TYPES = ("string", "integer", "number", "boolean")
@dataclass(frozen=True)
class Options:
    """--node and --set as given on the command line (paths relative to `cwd`)."""

    node: Optional[str] = None
    sets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take(cls, flags: dict[str, Any]) -> "Options":
        """Pop --node / --set from the flags (they name parts of a v2 file, not job keys)."""
        sets: dict[str, str] = {}
        for item in flags.pop("set", None) or []:
            key, sep, value = str(item).partition("=")
            if not sep or not re.fullmatch(r"(inputs|outputs)\.[A-Za-z0-9_.\-]+", key) or not value:
                raise ConfigError(f"--set: '{item}' is not inputs.NAME=PATH or outputs.NAME=PATH")
            sets[key] = value
        node = flags.pop("node", None)
        return cls(None if node is None else str(node), sets)

    def __bool__(self) -> bool:
        return self.node is not None or bool(self.sets)


def shown_keys(keys: list[str]) -> str:
    return ", ".join(dict.fromkeys(keys))


class Context:
    """Where bindings resolve: the pipeline (if any), the node's inputs and outputs, the --set values."""

    def __init__(self, node_name: str, node: dict[str, Any], base: Path, pipeline: Optional[dict[str, Any]],
                 pipeline_base: Path, options: Options, cwd: Path) -> None:
        self.node_name, self.node, self.base = node_name, node, base
        self.pipeline, self.pipeline_base = pipeline, pipeline_base
        self.options, self.cwd = options, cwd

    def _given(self, key: str) -> Optional[str]:
        value = self.options.sets.get(key)
        if value is None or is_url(value):
            return value
        return os.path.abspath(self.cwd / os.path.expanduser(value))

    def local(self, where: str, path: str, base: Path) -> str:
        if path.startswith("azureml:") or (is_url(path) and not path.startswith("file://")):
            raise ConfigError(f"{where}: '{path}' is an Azure ML asset or cloud URI that mpibatch cannot read; "
                              f"pass --set {where}=PATH")
        return os.path.abspath(base / os.path.expanduser(path.removeprefix("file://").removeprefix("file:")))

    def bound(self, where: str, expression: str) -> Any:
        """A `${{parent.…}}` binding's value: a path, or a literal of the pipeline."""
        parts = expression.split(".")
        if parts[:2] == ["parent", "inputs"] and len(parts) == 3 and self.pipeline is not None:
            spec = (self.pipeline.get("inputs") or {}).get(parts[2])
            if spec is None:
                raise ConfigError(f"{where}: binds ${{{{{expression}}}}}, but the pipeline has no input '{parts[2]}'")
            return self._value(where, spec, self.pipeline_base)
        if parts[:2] == ["parent", "outputs"] and len(parts) == 3 and self.pipeline is not None:
            spec = (self.pipeline.get("outputs") or {}).get(parts[2])
            path = spec.get("path") if isinstance(spec, dict) else None
            if not isinstance(path, str):
                raise ConfigError(f"{where}: binds ${{{{{expression}}}}}, which has no local path; pass --set {where}=PATH")
            return self.local(where, path, self.pipeline_base)
        if parts[:2] == ["parent", "jobs"] and len(parts) == 5:
            raise ConfigError(f"{where}: binds ${{{{{expression}}}}}, the output of pipeline step '{parts[2]}', which "
                              f"mpibatch does not run; pass --set {where}=PATH")
        raise ConfigError(f"{where}: cannot resolve ${{{{{expression}}}}} here; pass --set {where}=PATH")

    def _value(self, where: str, spec: Any, base: Path) -> Any:
        """An input's value: a local path for data, the literal for a literal."""
        if isinstance(spec, str):
            match = BINDING.fullmatch(spec.strip())
            if match:
                return self.bound(where, match.group(1))
            return spec
        if not isinstance(spec, dict):
            return spec
        path = spec.get("path")
        if isinstance(path, str):
            match = BINDING.fullmatch(path.strip())
            return self.bound(where, match.group(1)) if match else self.local(where, path, base)
        if "default" in spec:
            return spec["default"] if spec.get("type") in LITERAL_TYPES else self.local(where, str(spec["default"]), base)
        if spec.get("type") in LITERAL_TYPES and "value" in spec:
            return spec["value"]
        raise ConfigError(f"{where}: has no local path; pass --set {where}=PATH")

    def input(self, name: str) -> Any:
        where = f"inputs.{name}"
        given = self._given(where)
        if given is not None:
            return given
        inputs = self.node.get("inputs") or {}
        if name not in inputs:
            raise ConfigError(f"{where}: the parallel job '{self.node_name}' has no input '{name}' "
                              f"(it has: {shown_keys(list(inputs)) or 'none'})")
        return self._value(where, inputs[name], self.base)

    def input_type(self, name: str) -> Optional[str]:
        spec = (self.node.get("inputs") or {}).get(name)
        return spec.get("type") if isinstance(spec, dict) else None

    def output(self, name: str) -> str:
        where = f"outputs.{name}"
        given = self._given(where)
        if given is not None:
            return given
        outputs = self.node.get("outputs") or {}
        if name not in outputs:
            raise ConfigError(f"{where}: the parallel job '{self.node_name}' has no output '{name}' "
                              f"(it has: {shown_keys(list(outputs)) or 'none'})")
        spec = outputs[name]
        if isinstance(spec, str) and BINDING.fullmatch(spec.strip()):
            return self.bound(where, BINDING.fullmatch(spec.strip()).group(1))  # type: ignore[union-attr]
        path = spec.get("path") if isinstance(spec, dict) else None
        if not isinstance(path, str):
            raise ConfigError(f"{where}: has no local path; pass --set {where}=PATH")
        match = BINDING.fullmatch(path.strip())
        return self.bound(where, match.group(1)) if match else self.local(where, path, self.base)

    def output_type(self, name: str) -> str:
        spec = (self.node.get("outputs") or {}).get(name)
        return str(spec.get("type", "uri_folder")) if isinstance(spec, dict) else "uri_folder"

    def substitute(self, where: str, text: str) -> str:
        """Every `${{inputs.X}}` / `${{outputs.X}}` in a text replaced by its value."""
        def replace(match: re.Match) -> str:
            parts = match.group(1).split(".")
            if len(parts) == 2 and parts[0] == "inputs":
                return str(self.input(parts[1]))
            if len(parts) == 2 and parts[0] == "outputs":
                return self.output(parts[1])
            raise ConfigError(f"{where}: cannot resolve {match.group(0)} (only ${{{{inputs.NAME}}}} and "
                              "${{outputs.NAME}} are known there)")
        return BINDING.sub(replace, text)
