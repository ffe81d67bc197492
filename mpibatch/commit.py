"""The result file and its journal: every returned element is written exactly once.

Commit = append the mini-batch's bytes to the result file, then journal (id, end offset).
The journal is flushed in groups, always after the result bytes it covers are on disk, so a
journaled offset never points past data. Resume truncates the result file to the last
journaled offset and skips journaled mini-batches.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

from .config import ConfigError, JobConfig, fingerprint_fields
from .logs import Layout
from .records import BatchId

JOURNAL = "journal.jsonl"
STATE = "state.json"
LOCK = "lock"
FLUSH_EVERY_S = 1.0
FLUSH_EVERY_N = 4096  # and at least every FLUSH_EVERY_S: fsyncs must not pace a fast job
CSV_COLUMNS = ["id", "input", "items", "attempts", "status", "succeeded", "failed", "seconds", "rank",
               "error_class", "error"]


@dataclass(frozen=True)
class Fingerprint:
    """What decides a job's output: its configuration, its entry script and its inputs."""

    config: dict[str, Any]
    script: str
    inputs: str

    @staticmethod
    def of(config: JobConfig, input_digests: list[str]) -> "Fingerprint":
        script = hashlib.sha256(config.script_path.read_bytes()).hexdigest()
        inputs = hashlib.sha256("\n".join(input_digests).encode()).hexdigest()
        return Fingerprint(fingerprint_fields(config), script, inputs)

    def difference(self, other: "Fingerprint") -> Optional[str]:
        """Why `other` (the earlier run) is not the same job, or None."""
        if other.script != self.script:
            return "the entry script changed"
        if other.inputs != self.inputs:
            return "the inputs changed"
        for key in sorted(set(self.config) | set(other.config)):
            if self.config.get(key) != other.config.get(key):
                return f"configuration key '{key}' changed (was {other.config.get(key)!r}, now {self.config.get(key)!r})"
        return None


def journal_line(batch_id: BatchId, end: int, status: str, ok: int, fail: int, attempts: int,
                 errors: Optional[dict[str, int]] = None) -> str:
    """The journal line of an entry without an isolated item. Rank 0 writes one per mini-batch, so
    the common one, without errors, is formatted directly instead of through json.dumps."""
    if errors:
        return json.dumps({"id": batch_id, "end": end, "status": status, "ok": ok, "fail": fail,
                           "attempts": attempts, "errors": errors}, separators=(",", ":")) + "\n"
    shown = json.dumps(batch_id) if isinstance(batch_id, str) else batch_id
    return (f'{{"id":{shown},"end":{end},"status":"{status}","ok":{ok},"fail":{fail},"attempts":{attempts},'
            f'"errors":{{}}}}\n')


@dataclass
class JournalEntry:
    """One final mini-batch: committed (its bytes end at `end`), failed after all tries, split in
    halves (split.py), or a single item isolated by splitting (with its error)."""

    id: BatchId
    end: int
    status: str  # succeeded, failed, split, isolated
    ok: int
    fail: int
    attempts: int
    errors: dict[str, int] = field(default_factory=dict)
    item: str = ""
    error_class: str = ""
    error: str = ""

    def to_json(self) -> str:
        """One journal line; the isolated item's fields only where set, to keep the journal small."""
        if not self.item:
            return journal_line(self.id, self.end, self.status, self.ok, self.fail, self.attempts, self.errors)
        data = {k: v for k, v in vars(self).items() if v != "" or k not in ("item", "error_class", "error")}
        return json.dumps(data, separators=(",", ":")) + "\n"


@dataclass
class Prepared:
    """An output folder ready for this run: locked, truncated, with what earlier runs committed."""

    lock_fd: int
    entries: list[JournalEntry]
    reuse: bool = False


def _read_journal(path: Path) -> list[JournalEntry]:
    entries = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entries.append(JournalEntry(**json.loads(line)))
            except (ValueError, TypeError):
                break  # a torn last line from a killed run: everything after it is uncommitted
    return entries


def _lock(layout: Layout) -> int:
    fd = os.open(layout.state_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(f"output '{layout.output}' is in use by another running job ({holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def prepare_output(config: JobConfig, layout: Layout, fingerprint: Fingerprint) -> Prepared:
    """Lock the output and decide: fresh start, resume, reuse, or refuse (ConfigError)."""
    existed = layout.output.exists()
    if existed and not layout.output.is_dir():
        raise ConfigError(f"output: '{layout.output}' exists and is not a folder")
    had_results = layout.result_file.exists()
    layout.make_dirs()
    lock_fd = _lock(layout)
    try:
        state_file = layout.state_dir / STATE
        if not state_file.exists():
            if had_results:
                raise ConfigError(f"output: '{layout.output}' already holds {layout.result_file.name} "
                                  "from another run; choose another output folder")
            _write_state(layout, fingerprint, "Running")
            return Prepared(lock_fd, [])
        state = json.loads(state_file.read_text())
        earlier = Fingerprint(**state["fingerprint"])
        why = fingerprint.difference(earlier)
        if config.allow_reuse and state.get("status") == "Completed" and why is None:
            return Prepared(lock_fd, [], reuse=True)
        if not config.resume:
            raise ConfigError(f"output: '{layout.output}' already holds a run (status {state.get('status')}); "
                              "pass --resume to continue it or choose another output folder")
        if why is not None:
            raise ConfigError(f"resume refused: {why} since the run in '{layout.output}'")
        entries = _read_journal(layout.state_dir / JOURNAL)
        end = entries[-1].end if entries else 0
        if config.retry_failed:  # failed work wrote no bytes: forgetting it re-queues it (split.py re-creates halves)
            entries = [e for e in entries if e.status not in ("failed", "isolated")]
        if layout.result_file.exists():
            with open(layout.result_file, "r+b") as fh:
                fh.truncate(end)
        elif end:
            raise ConfigError(f"resume refused: '{layout.result_file}' is missing")
        _rewrite_journal(layout.state_dir / JOURNAL, entries)
        _write_state(layout, fingerprint, "Running")
        return Prepared(lock_fd, entries)
    except BaseException:
        os.close(lock_fd)
        raise


def _rewrite_journal(path: Path, entries: list[JournalEntry]) -> None:
    """Drop a torn tail so that new entries follow whole lines."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(e.to_json() for e in entries))
    os.replace(tmp, path)


def _write_state(layout: Layout, fingerprint: Fingerprint, status: str) -> None:
    tmp = layout.state_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps({"status": status, "fingerprint": asdict(fingerprint),
                               "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    os.replace(tmp, layout.state_dir / STATE)


class ResultStore:
    """Rank 0's writer of the result file, the journal and logs/sys/mini_batches.csv."""

    def __init__(self, config: JobConfig, layout: Layout, prepared: Prepared, fingerprint: Fingerprint) -> None:
        self.layout = layout
        self.fingerprint = fingerprint
        self.lock_fd = prepared.lock_fd
        self.append_rows = config.output_action == "append_row"
        self.result: Optional[IO[bytes]] = open(layout.result_file, "ab") if self.append_rows else None
        self.offset = self.result.tell() if self.result else 0
        self.journal = open(layout.state_dir / JOURNAL, "a")
        new_csv = not layout.mini_batches_csv.exists()
        self.csv_file = open(layout.mini_batches_csv, "a", newline="")
        self.csv = csv.writer(self.csv_file)
        if new_csv:
            self.csv.writerow(CSV_COLUMNS)
        self._pending: list[str] = []
        self._first_pending = 0.0
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="mpibatch-commit")
        self._syncing: Optional[Future] = None  # the last group's fsyncs

    def commit(self, outcome: Any, attempts: int, errors: dict[str, int]) -> None:
        """Append a succeeded attempt's bytes, then journal it (exactly once: the caller never repeats an id)."""
        self.commit_many([(outcome, attempts, errors)])

    def commit_many(self, done: list[tuple[Any, int, dict[str, int]]]) -> None:
        """commit() of (outcome, attempts, errors of earlier attempts) in order, with one write and
        one append to the journal's group: rank 0 commits a worker's whole message at once."""
        offset, chunks, lines = self.offset, [], []
        for outcome, attempts, errors in done:
            if self.result is not None:
                if offset == 0 and outcome.header:
                    chunks.append(outcome.header)
                    offset += len(outcome.header)
                chunks.append(outcome.payload)
                offset += len(outcome.payload)
            ok = outcome.succeeded
            lines.append(journal_line(outcome.batch_id, offset, "succeeded", ok, outcome.n_items - ok, attempts, errors))
        if chunks:
            self.result.writelines(chunks)
        self.offset = offset
        self._journal(*lines)

    def record_failed(self, batch_id: BatchId, n_items: int, attempts: int, errors: dict[str, int]) -> None:
        self._journal(JournalEntry(batch_id, self.offset, "failed", 0, n_items, attempts, errors).to_json())

    def record_split(self, batch_id: BatchId, attempts: int, errors: dict[str, int]) -> None:
        """Journaled before its halves run, so a resume re-creates the halves it lacks."""
        self._journal(JournalEntry(batch_id, self.offset, "split", 0, 0, attempts, errors).to_json())

    def record_isolated(self, batch_id: BatchId, item: str, errors: dict[str, int], error_class: str,
                        error: str) -> None:
        self._journal(JournalEntry(batch_id, self.offset, "isolated", 0, 1, 1, errors, item, error_class,
                                   error).to_json())

    def add_csv_rows(self, *rows: list[Any]) -> None:
        self.csv.writerows(rows)

    def _journal(self, *lines: str) -> None:
        if not self._pending:
            self._first_pending = time.monotonic()
        self._pending.extend(lines)
        if len(self._pending) >= FLUSH_EVERY_N:
            self.flush(wait=False)

    def maybe_flush(self) -> None:
        if self._pending and time.monotonic() - self._first_pending >= FLUSH_EVERY_S:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Make everything committed so far durable: result bytes reach the disk before the
        journal lines that cover them. With wait=False the fsyncs happen on a thread, so a slow
        disk never stalls dispatch; a group that finds the thread still busy waits for the next."""
        if self._syncing is not None:
            if not wait and not self._syncing.done():
                return
            self._syncing.result()  # (raises what the fsyncs raised)
        if self.result is not None:
            self.result.flush()  # the bytes the pending lines cover are in the kernel now
        self.csv_file.flush()
        lines, self._pending = "".join(self._pending), []
        self._syncing = self._syncer.submit(self._sync, lines)
        if wait:
            self._syncing.result()

    def _sync(self, lines: str) -> None:
        if self.result is not None:
            os.fsync(self.result.fileno())
        if lines:
            self.journal.write(lines)
            self.journal.flush()
            os.fsync(self.journal.fileno())

    @property
    def committed_files(self) -> list[Path]:
        """What a remote output must receive, in order: the result before the journal that covers it."""
        files = [self.layout.result_file] if self.result is not None else []
        return [*files, self.layout.state_dir / JOURNAL, self.layout.state_dir / STATE, self.layout.mini_batches_csv]

    def close(self, status: str) -> None:
        self.flush()
        self._syncer.shutdown()
        for fh in (self.result, self.journal, self.csv_file):
            if fh is not None:
                fh.close()
        _write_state(self.layout, self.fingerprint, status)
        os.close(self.lock_fd)
