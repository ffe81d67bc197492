"""The column steps of an MLTable input, applied by the worker to each slice it reads (mltable.py plans them).

Columns land where Azure ML puts them: `Path` (the file's absolute path) first, the data columns,
then the partition-format columns in the format's order; keep_columns keeps the table's order.
Standard library and pandas only: this runs in the entry-script process.
"""
from __future__ import annotations

import io
import json
from typing import Any, Optional


def read_json_lines(data: bytes, encoding: str, drop_invalid: bool) -> Any:
    """JSON Lines records; with invalid_lines: drop, a line that is not a JSON object is left out."""
    import pandas as pd

    if not drop_invalid:
        return pd.read_json(io.BytesIO(data), lines=True, encoding=encoding)
    records = []
    for line in data.decode(encoding).splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return pd.DataFrame.from_records(records)


def drops_invalid_lines(options: dict[str, Any]) -> bool:
    return ("invalid_lines", "drop") in [tuple(s) for s in options.get("mltable", {}).get("steps", ())]


def _convert(frame: Any, columns: list[str], kind: str, opts: dict) -> None:
    import pandas as pd

    for name in columns:
        column = frame[name]
        if kind in ("int", "float"):
            values = pd.to_numeric(column, errors="coerce")
            frame[name] = values.astype("float64" if kind == "float" else ("int64" if values.notna().all() else "Int64"))
        elif kind == "string":
            frame[name] = column.astype(object).where(column.isna(), column.astype(str))
        elif kind == "boolean":
            true = {str(v) for v in opts.get("true_values", ["True", "true", "1"])}
            false = {str(v) for v in opts.get("false_values", ["False", "false", "0"])}
            text = column.astype(str)
            result = pd.Series(pd.NA, index=frame.index, dtype="boolean")
            result[text.isin(true)] = True
            result[text.isin(false)] = False
            mismatch = column.notna() & ~text.isin(true | false)
            if mismatch.any() and opts.get("mismatch_as") == "error":
                raise ValueError(f"column '{name}': '{text[mismatch].iloc[0]}' is neither a true nor a false value")
            if mismatch.any() and opts.get("mismatch_as") in (True, "true"):
                result[mismatch] = True
            if mismatch.any() and opts.get("mismatch_as") in (False, "false"):
                result[mismatch] = False
            frame[name] = result
        else:  # datetime: the first of the formats that reads a value
            formats = opts.get("formats") or [None]
            values = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
            for fmt in formats:
                values = values.fillna(pd.to_datetime(column, format=fmt, errors="coerce"))
            frame[name] = values


def _missing(frame: Any, names: list[str], pending: set[str], step: str) -> None:
    absent = [n for n in names if n not in frame.columns or n in pending]
    if absent:
        raise KeyError(f"MLTable {step}_columns: no column '{absent[0]}'")


def apply_steps(frame: Any, path: str, partition: tuple, steps: list) -> Any:
    """A read slice as the MLTable's transformations leave it. `partition`: the (column, value) pairs
    read_slice appended for this file; they take their place at the extract step."""
    pending = {name for name, _ in partition}
    for step, args in steps:
        if step == "number_columns":
            data = [c for c in frame.columns if c not in pending]
            frame = frame.rename(columns={c: f"Column{i + 1}" for i, c in enumerate(data)})
        elif step == "path":
            frame.insert(0, "Path", path)
        elif step == "extract":
            frame = frame.reindex(columns=[c for c in frame.columns if c not in pending] + [c for c in args if c in pending])
            pending.clear()
        elif step == "keep":
            _missing(frame, args, pending, step)
            frame = frame.reindex(columns=[c for c in frame.columns if c in args or c in pending])
        elif step == "drop":
            _missing(frame, args, pending, step)
            frame = frame.drop(columns=list(args))
        elif step == "convert":
            for columns, kind, opts in args:
                _missing(frame, columns, pending, "convert")
                _convert(frame, columns, kind, opts)
    return frame


def shape(frame: Any, piece: Any, options: dict[str, Any], columns: Optional[Any] = None) -> Any:
    """What read_slice calls for an input with MLTable steps (not when it reads a few key columns)."""
    spec = options.get("mltable")
    if not spec or columns:
        return frame
    return apply_steps(frame, piece.path, piece.columns, [tuple(s) for s in spec["steps"]])
