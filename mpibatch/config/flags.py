"""Flag text to the values YAML would give, so one model validates flags and job files alike.

`--mini-batch-size 1.5` becomes the float 1.5 that `mini_batch_size: 1.5` gives (and is refused
the same way); `--output 123` stays text. Every parse error is a ConfigError naming the key.
"""
from __future__ import annotations

import json
import typing
from typing import Any

import yaml

from .errors import ConfigError
from .keys import KEY_ALIASES, JobConfig


def key_kind(annotation: Any) -> str:
    """How a configuration key is given as a flag: bool, list, map or a plain value."""
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        return "bool"
    if origin is list:
        return "list"
    if origin is dict:
        return "map"
    return "value"


def takes_number(annotation: Any) -> bool:
    """Whether a key's type admits an int or a float (then its flag text is read as YAML reads it)."""
    if annotation in (int, float):
        return True
    return any(takes_number(arg) for arg in typing.get_args(annotation))


def scalar(text: str) -> Any:
    """`true`, `3`, `0.5` and `null` become what they say in YAML; anything else (`,`, `|`, a tab) stays text."""
    if text.strip().lower() in ("null", "none", "~"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name}: must be a JSON object")
    return parsed


def parse_mapping(name: str, values: list[str]) -> dict[str, Any]:
    """A mapping flag: one JSON object, or key=value pairs."""
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        return _json_object(name, values[0])
    out: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"{name}: '{value}' is not key=value")
        out[key] = scalar(text)
    return out


def _list_item(name: str, text: str) -> Any:
    """A list flag's value: text, or for inputs a JSON mapping when it looks like one."""
    if name == "inputs" and text.lstrip().startswith("{"):
        return _json_object("inputs", text)
    return text


def typed_flags(raw: dict[str, Any]) -> dict[str, Any]:
    """Flags as argparse gave them (text, lists of text, booleans) -> the values YAML would give."""
    typed: dict[str, Any] = {}
    for name, value in raw.items():
        field = JobConfig.model_fields.get(name)
        if field is None:
            typed[name] = scalar(value) if name in KEY_ALIASES else value
            continue
        kind = key_kind(field.annotation)
        if kind == "map":
            typed[name] = parse_mapping(name, value)
        elif kind == "list":
            typed[name] = [_list_item(name, text) for text in value]
        elif kind == "value" and takes_number(field.annotation):
            typed[name] = scalar(value)
        else:
            typed[name] = value
    return typed
