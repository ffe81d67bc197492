"""Records that cross process boundaries: a mini-batch, a task (one attempt of it) and its outcome."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Union

BatchId = Union[int, str]  # planned mini-batches: 0, 1, 2...; halves of a split one: "17.0", "17.1.0" (engine/bisection.py)
ERROR_CLASSES = ("exception", "timeout", "crash", "oom", "init", "preempted")
# Slots from Python 3.10 on; an older interpreter of the script's own environment (script_env.FLOOR)
# loads the same records without them (their pickles do not depend on it: __reduce__).
_SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True)
class TableSlice:
    """Part of one table file: rows [start, stop) (parquet, hdf5) or bytes [start, stop) (csv, json)."""

    path: str
    unit: str  # "rows" or "bytes"
    start: int
    stop: int
    rows: int  # exact when known from metadata or a scan, else an estimate
    filters: tuple[tuple[str, Any], ...] = ()  # partition_keys: keep only rows with these values
    columns: tuple[tuple[str, str], ...] = ()  # values from hive-style folder names, added as columns


@dataclass(**_SLOTS)
class MiniBatch:
    """A descriptor, never data: what the worker must read for one call of run()."""

    id: BatchId
    input_index: int
    items: tuple[Any, ...]  # file paths, or TableSlices of a tabular input
    partition_key_value: dict[str, Any] = field(default_factory=dict)
    n_items: int = -1  # rows of a tabular mini-batch (maybe estimated); files: len(items)
    rows_part: tuple[int, int, int] = ()  # a bisected tabular half: rows [lo/den, hi/den) of what items hold

    @property
    def size(self) -> int:
        return self.n_items if self.n_items >= 0 else len(self.items)


@dataclass(**_SLOTS)
class Task:
    """One attempt of a mini-batch, sent from the coordinator to a worker."""

    batch: MiniBatch
    attempt: int

    def __reduce__(self) -> tuple:
        """Pickled flat (rank 0 sends one per mini-batch): half the bytes and time of a dataclass pickle."""
        b = self.batch
        return _task, (b.id, b.input_index, b.items, b.partition_key_value, b.n_items, b.rows_part, self.attempt)


def _task(batch_id: BatchId, input_index: int, items: tuple, partition_key_value: dict, n_items: int,
          rows_part: tuple, attempt: int) -> Task:
    return Task(MiniBatch(batch_id, input_index, items, partition_key_value, n_items, rows_part), attempt)


@dataclass(**_SLOTS)
class Outcome:
    """What one attempt produced: result bytes ready to append, counts, or the error."""

    batch_id: BatchId
    attempt: int
    rank: int
    n_items: int
    ok: bool
    payload: bytes = b""
    header: bytes = b""
    n_returned: int = 0
    error_class: Optional[str] = None
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    label: str = ""  # the rows of a bisected tabular half, for failed_items.txt
    extra_lines: int = 0  # result lines beyond one per element (elements that hold newlines)
    # Phases, measured in the entry-script process (0 where it was killed): making the data ready (staging,
    # reading, converting, building the list), the run() call alone, and the part of data_seconds spent while
    # another mini-batch's run() ran (a prefetch's; what run() waited for is data_seconds - overlap_seconds).
    data_seconds: float = 0.0
    run_seconds: float = 0.0
    overlap_seconds: float = 0.0

    def __reduce__(self) -> tuple:
        """Pickled as the constructor's arguments: a quarter of the time of a dataclass pickle to load."""
        return Outcome, (self.batch_id, self.attempt, self.rank, self.n_items, self.ok, self.payload, self.header,
                         self.n_returned, self.error_class, self.error, self.traceback, self.seconds, self.label,
                         self.extra_lines, self.data_seconds, self.run_seconds, self.overlap_seconds)

    @property
    def succeeded(self) -> int:
        return min(self.n_returned, self.n_items) if self.ok else 0

    @property
    def failed(self) -> int:
        return self.n_items - self.succeeded

    @property
    def extra_elements(self) -> int:
        """Elements run() returned beyond one per item: written, but no item's result."""
        return self.n_returned - self.n_items if self.n_returned > self.n_items and self.payload else 0


@dataclass(frozen=True)
class InputInfo:
    """What a worker needs to know of an input to read its mini-batches."""

    name: str
    remote: bool
    storage_options: dict[str, Any] = field(default_factory=dict)
    url: Optional[str] = None  # items are paths inside this URL's filesystem; None: each item is a URL
    format: Optional[str] = None  # a tabular input's format: csv, parquet, json, hdf5
    options: dict[str, Any] = field(default_factory=dict)  # its reader options (delimiter, hdf5_key...)
