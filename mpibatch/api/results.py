"""What a job wrote, read back for `Run.results()`, `failed_items()`, `errors()` and `logs()`: the result
file parsed with the job's own append_row_options (from its state, so any output folder will do), the
isolated items, the error logs with their tracebacks, and the per-rank logs."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..config import APPEND_ROW_DEFAULTS, ConfigError

if TYPE_CHECKING:
    import pandas

DEFAULT_OPTIONS = APPEND_ROW_DEFAULTS
_READ_ALIKE = ("sep", "quotechar", "escapechar", "decimal", "encoding", "compression", "quoting", "doublequote")


def read_state(output: Path) -> dict[str, Any]:
    try:
        return json.loads((output / ".mpibatch" / "state.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"output: '{output}' holds no mpibatch job (no .mpibatch/state.json)") from None


def _result_file(output: Path) -> tuple[Path, dict[str, Any]]:
    state = read_state(output)
    config = state["fingerprint"]["config"]
    return output / (state.get("result_file") or config["append_row_file_name"]), config["append_row_options"] or {}


def _read_options(options: dict[str, Any], lines: Optional[bool],
                  overrides: dict[str, Any]) -> Optional[dict[str, Any]]:
    """pandas.read_csv keywords that read what to_csv wrote with `options`; None: read plain lines."""
    if lines or (lines is None and not overrides and options == DEFAULT_OPTIONS):
        return None
    read = {k: options[k] for k in _READ_ALIKE if k in options}
    read["header"] = 0 if options.get("header") else None
    if not options.get("header") and options.get("columns"):
        read["names"] = list(options["columns"])
    if options.get("na_rep"):
        read["na_values"] = [options["na_rep"]]
    if options.get("index") and options.get("header"):
        read["index_col"] = 0
    return {**read, **overrides}


def _line_frames(path: Path, chunksize: int) -> Iterator["pandas.DataFrame"]:
    import pandas

    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        chunk: list[str] = []
        for line in fh:
            chunk.append(line.rstrip("\n"))
            if len(chunk) == chunksize:
                yield pandas.DataFrame({"line": chunk})
                chunk = []
        if chunk:
            yield pandas.DataFrame({"line": chunk})


def results(output: Path, lines: Optional[bool], overrides: dict[str, Any]) -> "pandas.DataFrame":
    import pandas

    path, options = _result_file(output)
    read = _read_options(options, lines, overrides)
    empty = not path.exists() or path.stat().st_size == 0
    if read is None:
        return pandas.concat(list(_line_frames(path, 1 << 20)), ignore_index=True) if not empty else \
            pandas.DataFrame({"line": pandas.Series([], dtype=object)})
    return pandas.DataFrame(columns=read.get("names")) if empty else pandas.read_csv(path, **read)


def iter_results(output: Path, chunksize: int, lines: Optional[bool],
                  overrides: dict[str, Any]) -> Iterator["pandas.DataFrame"]:
    import pandas

    path, options = _result_file(output)
    read = _read_options(options, lines, overrides)
    if not path.exists() or path.stat().st_size == 0:
        return
    if read is None:
        yield from _line_frames(path, chunksize)
        return
    with pandas.read_csv(path, chunksize=chunksize, **read) as reader:
        yield from reader


def failed_items(output: Path) -> "pandas.DataFrame":
    import pandas

    path = output / "logs" / "user" / "failed_items.txt"
    rows = [line.split("\t", 2) for line in path.read_text(errors="replace").splitlines() if line] \
        if path.exists() else []
    return pandas.DataFrame([r + [""] * (3 - len(r)) for r in rows], columns=["item", "error_class", "error"])


@dataclass
class ErrorRecord:
    """One failed attempt as logs/user/error/rank-N.txt holds it."""

    mini_batch_id: str
    attempt: int
    rank: int
    error_class: str
    summary: str
    traceback: str


@dataclass
class ErrorReport:
    """What went wrong: counts by class, the first error (with its traceback) and every logged one."""

    by_class: dict[str, int]
    first: Optional[dict[str, Any]]
    records: list[ErrorRecord] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.records and not self.first:
            return "no errors"
        counts = ", ".join(f"{k} {v}" for k, v in self.by_class.items() if v)
        head = f"errors by class: {counts or 'none'}"
        if self.first:
            head += f"\nfirst error ({self.first['class']}, rank {self.first['rank']}): {self.first['summary']}"
            if self.first.get("traceback"):
                head += "\n" + self.first["traceback"]
        return head


def errors(output: Path, data: dict[str, Any]) -> ErrorReport:
    records = []
    header = re.compile(r"=== (?:mini-batch (\S+) attempt (\d+)|(init\(\)))[^(]*\((\w+)\): (.*)")
    for log in sorted((output / "logs" / "user" / "error").glob("rank-*.txt")):
        rank = int(log.stem.split("-")[1])
        current: Optional[ErrorRecord] = None
        for line in log.read_text(errors="replace").splitlines():
            found = header.match(line)
            if found:
                current = ErrorRecord(found.group(1) or "init", int(found.group(2) or 0), rank, found.group(4),
                                      found.group(5), "")
                records.append(current)
            elif current is not None:
                current.traceback += line + "\n"
    for record in records:
        record.traceback = record.traceback.strip("\n")
    first = dict(data["first_error"]) if data.get("first_error") else None
    if first:
        same = [r for r in records if r.rank == first["rank"] and r.summary == first["summary"]
                and (first.get("mini_batch_id") is None or r.mini_batch_id == str(first["mini_batch_id"]))]
        first["traceback"] = same[0].traceback if same else None
    by_class = {k: v for k, v in (data.get("errors_by_class") or {}).items()}
    return ErrorReport(by_class, first, records)


_RANK_KINDS = {"sys": ("sys",), "stdout": ("user", "stdout"), "stderr": ("user", "stderr"),
               "error": ("user", "error"), "entry": ("user", "entry_script_log")}


def logs(output: Path, rank: Optional[int], kind: Optional[str], launcher_log: Optional[Path]) -> str:
    if kind is not None and kind not in _RANK_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(_RANK_KINDS)} (got {kind!r})")
    if rank is None and kind is None:
        files = [output / "logs" / "job_result.txt", launcher_log or output / "logs" / "python" / "launcher.txt"]
    else:
        ranks = [rank] if rank is not None else sorted(
            int(p.stem.split("-")[1]) for p in (output / "logs" / "sys").glob("rank-*.txt"))
        kinds = [kind] if kind else list(_RANK_KINDS)
        files = [output / "logs" / Path(*_RANK_KINDS[k]) / f"rank-{r:04d}.txt" for r in ranks for k in kinds]
    parts = [f"=== {p}\n{p.read_text(errors='replace')}" for p in files if p.exists()]
    return "\n".join(parts)


__all__ = ["ErrorRecord", "ErrorReport", "errors", "failed_items", "iter_results", "logs", "read_state", "results"]
