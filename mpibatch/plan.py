"""Splitting listed inputs into mini-batches with ids that are stable from run to run."""
from __future__ import annotations

from typing import Iterator

from .config import ConfigError, JobConfig
from .inputs import InputListing
from .records import MiniBatch
from .sizes import files_per_batch


def plan_batches(listings: list[InputListing], config: JobConfig) -> Iterator[MiniBatch]:
    """Yield every mini-batch of the job; each input is split separately, ids count up from 0."""
    try:
        per_batch = files_per_batch(config.mini_batch_size)
    except ValueError as exc:
        raise ConfigError(f"mini_batch_size: {exc}") from None
    if config.partition_keys:
        raise ConfigError("partition_keys: not supported for file inputs by this version yet")
    next_id = 0
    for listing in listings:
        items = listing.items
        for start in range(0, len(items), per_batch):
            yield MiniBatch(next_id, listing.index, tuple(items[start:start + per_batch]))
            next_id += 1
