"""What the baseline scripts share (farm.py, futures_map.py, pool_map.py, listing.py): the items
they are given and the one JSON line the harness reads back (harness.time_baseline)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_items(filelist: str) -> list[str]:
    return Path(filelist).read_text().split()


def timed_map(map_items: Callable[[], list[str]], items: list[str], script: str) -> float:
    """Seconds of one map over the items, checked to return every item unchanged."""
    started = time.perf_counter()
    results = map_items()
    seconds = time.perf_counter() - started
    if results != items:
        raise SystemExit(f"{script}: results differ from the items")
    return seconds


def print_result(**found: Any) -> None:
    print(json.dumps(found), flush=True)
