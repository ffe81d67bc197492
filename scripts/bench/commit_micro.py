"""Micro-benchmark of rank 0's commit path: mpibatch's ResultStore against plain file writes.

    python commit_micro.py --commits N --payload BYTES [--rounds R]

ResultStore.commit(outcome, attempts, errors) then maybe_flush() per mini-batch, as the
coordinator does, and close() at the end (which flushes and fsyncs the result file and the
journal); the baseline appends the same payloads with f.write() to a plain file and fsyncs it at
the end. Both run in this process, alternating (the first one alternates round by round), each
into a fresh folder. Prints one JSON line: {"store": [seconds per round], "write": [...]}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from mpibatch.output.commit import Fingerprint, ResultStore, prepare_output
from mpibatch.config import JobConfig
from mpibatch.output.logs import Layout
from mpibatch.records import Outcome


def payload_of(size: int) -> tuple[bytes, int]:
    """About `size` bytes of ~100-byte lines (or one line when smaller), and its line count."""
    line = b"/data/item-0000000.dat " + b"x" * 76 + b"\n"
    if size <= len(line):
        return b"y" * (size - 1) + b"\n", 1
    lines = size // len(line)
    return line * lines, lines


def with_store(folder: Path, commits: int, payload: bytes, lines: int) -> float:
    (folder / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    config = JobConfig(entry_script=str(folder / "score.py"), inputs=[str(folder / "data")],
                       output=str(folder / "out"))
    layout = Layout(config.output_path, config.result_path)
    fingerprint = Fingerprint.of(config, ["commit-micro"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    started = time.perf_counter()
    for i in range(commits):
        store.commit(Outcome(i, 1, 0, lines, True, payload, b"", lines), 1, {})
        store.maybe_flush()
    store.close("Completed")
    seconds = time.perf_counter() - started
    if layout.result_file.stat().st_size != commits * len(payload):
        raise SystemExit("commit_micro.py: the result file has the wrong size")
    return seconds


def with_write(folder: Path, commits: int, payload: bytes) -> float:
    started = time.perf_counter()
    with open(folder / "plain.txt", "ab") as fh:
        fh.writelines(payload for _ in range(commits))
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, required=True)
    parser.add_argument("--payload", type=int, required=True, help="bytes per commit")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    payload, lines = payload_of(args.payload)
    times: dict[str, list[float]] = {"store": [], "write": []}
    for round_no in range(args.rounds):
        order = ["store", "write"] if round_no % 2 == 0 else ["write", "store"]
        for name in order:
            folder = Path(tempfile.mkdtemp(prefix="commit-micro-", dir=os.getcwd()))
            try:
                seconds = (with_store(folder, args.commits, payload, lines) if name == "store"
                           else with_write(folder, args.commits, payload))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            times[name].append(seconds)
    print(json.dumps({"commits": args.commits, "bytes": len(payload), **times}), flush=True)


if __name__ == "__main__":
    main()
