"""Splitting listed inputs into mini-batches with ids that are stable from run to run."""
from __future__ import annotations

import logging
from itertools import count
from typing import Iterator

from .config import ConfigError, JobConfig
from .inputs import InputListing, TableListing
from .inputs.tabular import DEFAULT_SIZE, UNPLANNED, FileOpener, file_partitions, file_slices, partition_batches
from .records import MiniBatch, TableSlice
from .sizes import BatchSize, files_per_batch, parse_mini_batch_size


log = logging.getLogger("mpibatch.plan")


def table_batch_size(value: object) -> BatchSize:
    """A tabular mini_batch_size: bytes (a bare number too) or rows."""
    if value is None:
        return DEFAULT_SIZE
    size = parse_mini_batch_size(value)  # type: ignore[arg-type]
    return BatchSize("bytes", size.value) if size.unit == "count" else size


def _file_batches(listing: InputListing, config: JobConfig, ids: Iterator[int]) -> Iterator[MiniBatch]:
    if config.partition_keys:
        spec = config.inputs[listing.index]
        if not spec.partition_format:
            raise ConfigError(f"inputs[{listing.index}]: partition_keys on file inputs need partition_format, "
                              "e.g. '{user}/{genre}/*.wav'")
        for values, items in file_partitions(listing.items, spec.partition_format, config.partition_keys):
            yield MiniBatch(next(ids), listing.index, tuple(items), values)
        return
    try:
        per_batch = files_per_batch(config.mini_batch_size)
    except ValueError as exc:
        raise ConfigError(f"mini_batch_size: {exc}") from None
    items = listing.items
    for start in range(0, len(items), per_batch):
        yield MiniBatch(next(ids), listing.index, tuple(items[start:start + per_batch]))


def _table_batches(listing: TableListing, config: JobConfig, ids: Iterator[int]) -> Iterator[MiniBatch]:
    opener = FileOpener(listing.remote, listing.url, listing.storage_options)
    if config.partition_keys:
        for values, pieces in partition_batches(listing, config.partition_keys, opener):
            yield MiniBatch(next(ids), listing.index, tuple(pieces), values, sum(p.rows for p in pieces))
        return
    try:
        size = table_batch_size(config.mini_batch_size)
    except ValueError as exc:
        raise ConfigError(f"mini_batch_size: {exc}") from None
    for path in listing.items:
        try:
            pieces = list(file_slices(path, listing.format, size, opener, listing.options))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt file fails its own mini-batch, not the job
            log.warning("%s: cannot read its %s metadata (%s); it becomes one mini-batch that will fail "
                        "with this error", path, listing.format, exc)
            pieces = [TableSlice(path, "rows", 0, UNPLANNED, 1)]
        for piece in pieces:
            yield MiniBatch(next(ids), listing.index, (piece,), {}, piece.rows)


def plan_batches(listings: list[InputListing], config: JobConfig) -> Iterator[MiniBatch]:
    """Yield every mini-batch of the job; each input is split separately, ids count up from 0."""
    ids = count()
    for listing in listings:
        if isinstance(listing, TableListing):
            yield from _table_batches(listing, config, ids)
        else:
            yield from _file_batches(listing, config, ids)
