"""Parsing mini_batch_size values: a count of files, a byte size (`64KB`) or a row count (`5000rows`)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(rows|[KMGT]?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BatchSize:
    """How big one mini-batch is: `count` items (files), `bytes` of a table, or `rows`."""

    unit: Literal["count", "bytes", "rows"]
    value: int


def parse_mini_batch_size(value: Union[int, str]) -> BatchSize:
    """Read `10`, `'64KB'`, `'5000rows'`; a bare number means a count for files and bytes for tables."""
    if isinstance(value, bool):
        raise ValueError("must be a count, a size such as '64KB' or a row count such as '5000rows'")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("must be 1 or more")
        return BatchSize("count", value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError("must be a count, a size such as '64KB' or a row count such as '5000rows'")
    number, unit = match.group(1), (match.group(2) or "").upper()
    if unit == "ROWS":
        if "." in number or int(number) < 1:
            raise ValueError("a row count must be a whole number of 1 or more")
        return BatchSize("rows", int(number))
    amount = int(float(number) * UNITS[unit])
    if amount < 1:
        raise ValueError("must be 1 or more")
    return BatchSize("count" if unit == "" else "bytes", amount)


def files_per_batch(value: Union[int, str, None], default: int = 10) -> int:
    """The number of files in one mini-batch of a file input."""
    if value is None:
        return default
    size = parse_mini_batch_size(value)
    if size.unit != "count":
        raise ValueError(f"file inputs take a count of files, not '{value}'")
    return size.value


def parse_bytes(value: Union[int, str]) -> int:
    """A memory size such as `8GB`, `200MB` or a bare byte count; rows and counts make no sense here."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as '8GB' or '500MB'")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("must be 1 byte or more")
        return value
    match = _PATTERN.match(str(value))
    if not match or (match.group(2) or "").upper() == "ROWS":
        raise ValueError("must be a size such as '8GB' or '500MB'")
    amount = int(float(match.group(1)) * UNITS[(match.group(2) or "").upper()])
    if amount < 1:
        raise ValueError("must be 1 byte or more")
    return amount


def format_bytes(amount: float) -> str:
    """A size for people: '231 MB', '9.1 GB' (KB = 1024 bytes, as in parse_bytes)."""
    if amount >= UNITS["GB"]:
        return f"{amount / UNITS['GB']:.1f} GB"
    if amount >= UNITS["MB"]:
        return f"{amount / UNITS['MB']:.0f} MB"
    return f"{amount / UNITS['KB']:.0f} KB"
