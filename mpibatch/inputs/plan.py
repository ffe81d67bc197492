"""Splitting listed inputs into mini-batches with ids that are stable from run to run."""
from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from itertools import accumulate, chain, count
from typing import Iterator, Optional

from ..config import ConfigError, JobConfig
from ..config.sizes import BatchSize, files_per_batch, parse_mini_batch_size
from ..records import MiniBatch
from .files import InputListing
from .mltable import MLTableListing
from .mltable_plan import mltable_batches
from .tabular import DEFAULT_SIZE, FileOpener, TableListing, file_partitions, partition_batches, slices_or_one_failing


log = logging.getLogger("mpibatch.plan")


def table_batch_size(value: object) -> BatchSize:
    """A tabular mini_batch_size: bytes (a bare number too) or rows."""
    if value is None:
        return DEFAULT_SIZE
    size = parse_mini_batch_size(value)  # type: ignore[arg-type]
    return BatchSize("bytes", size.value) if size.unit == "count" else size


class FileRun(Sequence):
    """The mini-batches of one file input, made when asked for: a job of a million files holds
    its paths once, not a million mini-batch objects (that took seconds before the first dispatch)."""

    def __init__(self, items: list[str], per_batch: int, input_index: int, first_id: int) -> None:
        self.items, self.per_batch, self.input_index, self.first_id = items, per_batch, input_index, first_id

    def __len__(self) -> int:
        return -(-len(self.items) // self.per_batch)

    def __getitem__(self, i: int) -> MiniBatch:  # type: ignore[override] - no slices: nothing needs them
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.per_batch
        return MiniBatch(self.first_id + i, self.input_index, tuple(self.items[start:start + self.per_batch]))

    def __iter__(self) -> Iterator[MiniBatch]:  # (what __getitem__ makes, without its checks: the hot path)
        items, per, index = self.items, self.per_batch, self.input_index
        for i, start in enumerate(range(0, len(items), per), self.first_id):
            yield MiniBatch(i, index, tuple(items[start:start + per]))

    @property
    def n_items(self) -> int:
        return len(self.items)


class BatchPlan(Sequence):
    """Every mini-batch of a job in id order (ids 0, 1, 2...): lazy runs of file inputs, and the
    tabular or partitioned ones that had to be made to be counted."""

    def __init__(self, parts: list[Sequence]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.starts = [0, *accumulate(len(p) for p in self.parts)]

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: int) -> MiniBatch:  # type: ignore[override] - no slices: nothing needs them
        if not 0 <= i < len(self):
            raise IndexError(i)
        part = bisect.bisect_right(self.starts, i) - 1
        return self.parts[part][i - self.starts[part]]

    def __iter__(self) -> Iterator[MiniBatch]:
        return chain.from_iterable(self.parts)

    def get(self, batch_id: object) -> Optional[MiniBatch]:
        """A planned mini-batch by id (halves of split ones are not planned: None)."""
        if isinstance(batch_id, int) and 0 <= batch_id < len(self):
            return self[batch_id]
        return None

    def after(self, done: set) -> Iterator[MiniBatch]:
        """The planned mini-batches not in `done`, in order."""
        return (self[i] for i in range(len(self)) if i not in done) if done else iter(self)

    @property
    def n_items(self) -> int:
        return sum(p.n_items if isinstance(p, FileRun) else sum(b.size for b in p) for p in self.parts)


def _file_batches(listing: InputListing, config: JobConfig, first_id: int) -> Sequence:
    if config.partition_keys:
        spec = config.inputs[listing.index]
        partition_format = getattr(listing, "partition_format", None) or spec.partition_format
        if not partition_format:
            raise ConfigError(f"inputs[{listing.index}]: partition_keys on file inputs need partition_format, "
                              "e.g. '{user}/{genre}/*.wav'")
        partitions = file_partitions(listing.items, partition_format, config.partition_keys)
        return [MiniBatch(i, listing.index, tuple(items), values) for i, (values, items) in enumerate(partitions, first_id)]
    try:
        per_batch = files_per_batch(config.mini_batch_size)
    except ValueError as exc:
        raise ConfigError(f"mini_batch_size: {exc}") from None
    return FileRun(listing.items, per_batch, listing.index, first_id)


def _size(config: JobConfig) -> BatchSize:
    try:
        return table_batch_size(config.mini_batch_size)
    except ValueError as exc:
        raise ConfigError(f"mini_batch_size: {exc}") from None


def _table_batches(listing: TableListing, config: JobConfig, first_id: int) -> Iterator[MiniBatch]:
    ids = count(first_id)
    opener = FileOpener(listing.remote, listing.url, listing.storage_options)
    if config.partition_keys:
        for values, pieces in partition_batches(listing, config.partition_keys, opener):
            yield MiniBatch(next(ids), listing.index, tuple(pieces), values, sum(p.rows for p in pieces))
        return
    size = _size(config)
    for path in listing.items:
        for piece in slices_or_one_failing(path, listing.format, size, opener, listing.options):
            yield MiniBatch(next(ids), listing.index, (piece,), {}, piece.rows)


def plan_batches(listings: list[InputListing], config: JobConfig) -> BatchPlan:
    """Every mini-batch of the job; each input is split separately, ids count up from 0."""
    parts: list[Sequence] = []
    for listing in listings:
        first_id = sum(len(p) for p in parts)
        if isinstance(listing, MLTableListing):
            parts.append(mltable_batches(listing, config, _size(config), first_id))
        else:
            parts.append(list(_table_batches(listing, config, first_id)) if isinstance(listing, TableListing)
                         else _file_batches(listing, config, first_id))
    return BatchPlan(parts)
