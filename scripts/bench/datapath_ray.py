"""Ray Data on the datapath section's work: read_parquet(FOLDER) (read_csv for csv).map_batches(work,
batch_size=ROWS, concurrency=C) on `ray.init(num_cpus=C)`, the peer a user would pick for overlapping
reads with compute.

    python datapath_ray.py FOLDER --cpus C --rows ROWS --sleep-ms X [--format parquet|csv]

Ray is started and its worker processes have read one file through the same pipeline before the clock starts; the
clock covers the whole pipeline, materialised. A thread samples the object store's bytes in use.
Prints one JSON line: {"items": batches, "rows": rows, "seconds": S, "object_store_peak": bytes}."""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from baseline_io import print_result
from datapath_entry import work


class StoreSampler(threading.Thread):
    """The object store's bytes in use, polled from the raylet (what `ray memory --stats-only` reads)."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every, self.peak, self.error = every, 0, ""
        self.stop = threading.Event()

    def used(self) -> int:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        reply = get_memory_info_reply(get_state_from_address())
        return int(reply.store_stats.object_store_bytes_used)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.used())
            except Exception as exc:  # noqa: BLE001 - a private API: say it failed, keep the run
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.stop.wait(self.every)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--sleep-ms", type=float, required=True)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    import pandas as pd
    import ray

    sleep_s = args.sleep_ms / 1e3

    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"rows": [work(frame, sleep_s)]})

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    read = ray.data.read_csv if args.format == "csv" else ray.data.read_parquet
    first = str(sorted(args.folder.glob(f"*.{args.format}"))[0])
    for _ in range(2):  # every worker process started and has imported pyarrow and pandas
        read(first).map_batches(lambda b: b, batch_size=args.rows, concurrency=args.cpus,
                                                 batch_format="pandas").materialize()
    sampler = StoreSampler()
    sampler.start()
    started = time.perf_counter()
    done = read(str(args.folder)).map_batches(
        fn, batch_size=args.rows, concurrency=args.cpus, batch_format="pandas").materialize()
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    counts = done.to_pandas()["rows"]
    ray.shutdown()
    print_result(items=len(counts), rows=int(counts.sum()), seconds=seconds, object_store_peak=sampler.peak,
                 sampler_error=sampler.error)


if __name__ == "__main__":
    main()
