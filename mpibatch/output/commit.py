"""The result file and its journal: every returned element is written exactly once.

Commit = append the mini-batch's bytes to the result file, then journal (id, end offset, seal:
journal.py). The journal is flushed in groups, always after the result bytes it covers are on disk,
so a journaled offset never points past data. Resume checks the result file against the journal
(integrity.py), keeps the entries it bears out, truncates the result file after them and runs the
others again: never padding, never trusting a line it cannot check.
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

from ..config import ConfigError, JobConfig, fingerprint_fields
from ..records import BatchId
from .integrity import check_entries, describe_write_error, no_room, overwrite_in_place, with_path
from .journal import JOURNAL, Journal, JournalEntry, journal_line, read_journal
from .logs import Layout

STATE = "state.json"
LOCK = "lock"
FLUSH_EVERY_S = 1.0
FLUSH_EVERY_N = 4096  # and at least every FLUSH_EVERY_S: fsyncs must not pace a fast job
LOCK_TRIES, LOCK_RETRY_S = 5, 0.05  # `mpibatch status` takes the free lock for an instant to see if a job holds it
CSV_COLUMNS = ["id", "input", "items", "attempts", "status", "succeeded", "failed", "seconds", "rank",
               "error_class", "error", "data_s", "run_s"]  # data_s, run_s: the last attempt's phases (records.Outcome)


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


@dataclass
class Prepared:
    """An output folder ready for this run: locked, truncated, with what earlier runs committed."""

    lock_fd: int
    entries: list[JournalEntry]
    reuse: bool = False
    notes: list[str] = field(default_factory=list)  # what the resume repaired, for the launcher's stderr


def _lock(layout: Layout) -> int:
    fd = os.open(layout.state_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt + 1 < LOCK_TRIES:
                time.sleep(LOCK_RETRY_S)
    else:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(f"output '{layout.output}' is in use by another running job ({holder})")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def prepare_output(config: JobConfig, layout: Layout, fingerprint: Fingerprint) -> Prepared:
    """Lock the output and decide: fresh start, resume, reuse, or refuse (ConfigError, also for an
    output that cannot be written: a full disk is one line, not a traceback)."""
    if layout.output.exists() and not layout.output.is_dir():
        raise ConfigError(f"output: '{layout.output}' exists and is not a folder")
    had_results = layout.result_file.exists()
    try:
        layout.make_dirs()
        lock_fd = _lock(layout)
    except OSError as exc:
        raise ConfigError(describe_write_error(exc, layout.state_dir / LOCK, layout.output)[0]) from None
    full = no_room(layout.output)
    if full:
        os.close(lock_fd)
        raise ConfigError(f"{full}: free some space, then run again")
    try:
        return _decide(config, layout, fingerprint, lock_fd, had_results)
    except OSError as exc:
        os.close(lock_fd)
        raise ConfigError(describe_write_error(exc, None, layout.output)[0]) from None
    except BaseException:
        os.close(lock_fd)
        raise


def _decide(config: JobConfig, layout: Layout, fingerprint: Fingerprint, lock_fd: int,
            had_results: bool) -> Prepared:
    state_file = layout.state_dir / STATE
    if not state_file.exists():
        if had_results and config.resume:
            raise ConfigError(f"resume refused: '{state_file}' is missing, so the run in '{layout.output}' cannot "
                              "be checked; choose another output folder")
        if had_results:
            raise ConfigError(f"output: '{layout.output}' already holds {layout.result_file.name} "
                              "from another run; choose another output folder")
        (layout.state_dir / JOURNAL).unlink(missing_ok=True)  # a journal without its state is no run's
        _write_state(layout, fingerprint, "Running")
        return Prepared(lock_fd, [])
    state = _read_state(state_file)
    earlier = Fingerprint(**state["fingerprint"])
    why = fingerprint.difference(earlier)
    journal = read_journal(layout.state_dir / JOURNAL)
    if config.allow_reuse and state.get("status") == "Completed" and why is None:
        mismatch = _reuse_mismatch(layout, journal, check_entries(layout.result_file, journal.entries, journal.lines))
        if mismatch is None:
            return Prepared(lock_fd, [], reuse=True)
        if not config.resume:
            raise ConfigError(f"output: '{layout.output}' holds this completed job but {mismatch}: not reused; "
                              "pass --resume to run the lost mini-batches again")
    if not config.resume:
        raise ConfigError(f"output: '{layout.output}' already holds a run (status {state.get('status')}); "
                          "pass --resume to continue it or choose another output folder")
    if why is not None:
        raise ConfigError(f"resume refused: {why} since the run in '{layout.output}'")
    check = check_entries(layout.result_file, journal.entries, journal.lines)
    notes = _repair_notes(layout, journal, check)
    entries, lines = journal.entries[:check.kept], journal.lines[:check.kept]
    if config.retry_failed:  # failed work wrote no bytes: forgetting it re-queues it (engine/bisection.py re-creates halves)
        kept = [i for i, e in enumerate(entries) if e.status not in ("failed", "isolated")]
        entries, lines = [entries[i] for i in kept], [lines[i] for i in kept]
    end = entries[-1].end if entries else 0
    if layout.result_file.exists() or end:
        with open(layout.result_file, "ab") as fh:
            fh.truncate(end)
    _shorten_journal(layout.state_dir / JOURNAL, journal, lines)
    _write_state(layout, fingerprint, "Running")
    return Prepared(lock_fd, entries, notes=notes)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_bytes())
        Fingerprint(**state["fingerprint"])
        return state
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"output: '{path}' is damaged ({type(exc).__name__}); the run there cannot be "
                          "resumed: choose another output folder") from None


def _reuse_mismatch(layout: Layout, journal: Journal, check: Any) -> Optional[str]:
    """Why a completed output may not be reused as it is: its result file no longer matches the journal."""
    if check.problem:
        return check.problem
    if journal.kept_bytes != journal.size:
        return "its journal is damaged"
    end = journal.entries[-1].end if journal.entries else 0
    if check.size != end:
        return f"{layout.result_file.name} holds {check.size} bytes, not the {end} its journal committed"
    return None


def _repair_notes(layout: Layout, journal: Journal, check: Any) -> list[str]:
    """What a resume repairs beyond a killed run's torn tail, said on the launcher's stderr."""
    lost = len(journal.entries) - check.kept
    notes = []
    if check.problem:
        end = journal.entries[check.kept - 1].end if check.kept else 0
        notes.append(f"'{layout.result_file}': {check.problem}; truncated to {end} bytes: the {lost} "
                     f"mini-batch entr{'y' if lost == 1 else 'ies'} journaled after that run again")
    rest = journal.size - journal.kept_bytes
    if rest and b"\n" in (layout.state_dir / JOURNAL).read_bytes()[journal.kept_bytes:]:
        notes.append(f"'{layout.state_dir / JOURNAL}' is damaged after entry {len(journal.entries)}: "
                     "the mini-batches journaled after that run again")
    return notes


def _shorten_journal(path: Path, journal: Journal, lines: list[bytes]) -> None:
    """Keep `lines`: cut in place when they are the journal's first lines (works on a full disk),
    else write them anew, so that new entries follow whole lines."""
    size = sum(len(line) for line in lines)
    if lines == journal.lines[:len(lines)]:
        if size != journal.size:
            with open(path, "r+b") as fh:
                fh.truncate(size)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(lines))
    os.replace(tmp, path)


def _write_state(layout: Layout, fingerprint: Fingerprint, status: str) -> None:
    """Replace state.json in one step; on a full disk, rewrite it within its own blocks instead,
    so that a stopped job never stays Running there."""
    path = layout.state_dir / STATE
    data = json.dumps({"status": status, "fingerprint": asdict(fingerprint),
                       "result_file": layout.relative(layout.result_file),
                       "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1).encode()
    tmp = layout.state_dir / (STATE + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        if not path.exists():
            raise
        overwrite_in_place(path, data)


class ResultStore:
    """Rank 0's writer of the result file, the journal and logs/sys/mini_batches.csv.

    A write that fails (a full disk, the output removed) breaks the store: the lines not yet
    journaled are dropped and nothing more is appended, since the bytes on disk are no longer
    known; every later commit raises the same error, with the path it failed on.
    """

    def __init__(self, config: JobConfig, layout: Layout, prepared: Prepared, fingerprint: Fingerprint) -> None:
        self.layout = layout
        self.fingerprint = fingerprint
        self.lock_fd = prepared.lock_fd
        self.append_rows = config.output_action == "append_row"
        self.result: Optional[IO[bytes]] = open(layout.result_file, "ab") if self.append_rows else None
        self.offset = self.result.tell() if self.result else 0
        self.journal = open(layout.state_dir / JOURNAL, "a")
        self.csv_file = _open_csv(layout.mini_batches_csv)
        self.csv = csv.writer(self.csv_file)
        if not self.csv_file.tell():
            self.csv.writerow(CSV_COLUMNS)
        self._pending: list[str] = []
        self._first_pending = 0.0
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="mpibatch-commit")
        self._syncing: Optional[Future] = None  # the last group's fsyncs
        self.broken: Optional[OSError] = None

    def commit(self, outcome: Any, attempts: int, errors: dict[str, int]) -> None:
        """Append a succeeded attempt's bytes, then journal it (exactly once: the caller never repeats an id)."""
        self.commit_many([(outcome, attempts, errors)])

    def commit_many(self, done: list[tuple[Any, int, dict[str, int]]]) -> None:
        """commit() of (outcome, attempts, errors of earlier attempts) in order, with one write and
        one append to the journal's group: rank 0 commits a worker's whole message at once. Each
        journal line is sealed over the bytes it commits (the header, where written, included)."""
        if self.broken is not None:
            raise self.broken
        offset, chunks, lines = self.offset, [], []
        for outcome, attempts, errors in done:
            payload = header = b""
            if self.result is not None:
                payload = outcome.payload
                header = outcome.header if offset == 0 else b""  # written once, by the entry at offset 0
                if header:
                    chunks.append(header)
                chunks.append(payload)
                offset += len(header) + len(payload)
            ok = outcome.succeeded
            lines.append(journal_line(outcome.batch_id, offset, "succeeded", ok, outcome.n_items - ok, attempts,
                                      errors, payload, header))
        if chunks:
            try:
                self.result.writelines(chunks)
            except OSError as exc:
                self._break(exc, self.layout.result_file)
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
        try:
            self.csv.writerows(rows)
        except OSError as exc:
            self._break(exc, self.layout.mini_batches_csv)

    def _journal(self, *lines: str) -> None:
        if self.broken is not None:
            raise self.broken
        if not self._pending:
            self._first_pending = time.monotonic()
        self._pending.extend(lines)
        if len(self._pending) >= FLUSH_EVERY_N:
            self.flush(wait=False)

    def _break(self, exc: OSError, path: Path) -> None:
        """Stop committing for good after a failed write, and raise it with the path it failed on."""
        self._pending.clear()
        self.broken = with_path(exc, path)
        raise self.broken from exc

    def maybe_flush(self) -> None:
        if self._pending and time.monotonic() - self._first_pending >= FLUSH_EVERY_S:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Make everything committed so far durable: result bytes reach the disk before the
        journal lines that cover them. With wait=False the fsyncs happen on a thread, so a slow
        disk never stalls dispatch; a group that finds the thread still busy waits for the next."""
        if self.broken is not None:
            return
        path = self.layout.result_file
        try:
            if self._syncing is not None:
                if not wait and not self._syncing.done():
                    return
                self._syncing.result()  # (raises what the fsyncs raised)
            if self.result is not None:
                self.result.flush()  # the bytes the pending lines cover are in the kernel now
            path = self.layout.mini_batches_csv
            self.csv_file.flush()
        except OSError as exc:
            self._break(exc, path)
        lines, self._pending = "".join(self._pending), []
        self._syncing = self._syncer.submit(self._sync, lines)
        if wait:
            try:
                self._syncing.result()
            except OSError as exc:
                self._break(exc, self.layout.state_dir / JOURNAL)

    def _sync(self, lines: str) -> None:
        path = self.layout.result_file
        try:
            if self.result is not None:
                os.fsync(self.result.fileno())
            if lines:
                path = self.layout.state_dir / JOURNAL
                self.journal.write(lines)
                self.journal.flush()
                os.fsync(self.journal.fileno())
        except OSError as exc:
            raise with_path(exc, path) from exc

    def verify_written(self) -> Optional[str]:
        """Flush, then say why the result file at its path is not what this run wrote (truncated,
        replaced or removed while the job ran), or None: a job says Completed only of a whole file."""
        self.flush()
        if self.result is None or self.broken is not None:
            return None
        path = self.layout.result_file
        mine = os.fstat(self.result.fileno())
        try:
            theirs = os.stat(path)
        except FileNotFoundError:
            return f"'{path}' was removed while the job ran"
        if (theirs.st_dev, theirs.st_ino) != (mine.st_dev, mine.st_ino):
            return f"'{path}' was replaced while the job ran"
        if mine.st_size != self.offset:
            return (f"'{path}' holds {mine.st_size} bytes, not the {self.offset} this job committed: it was "
                    "truncated or written to while the job ran")
        return None

    @property
    def committed_files(self) -> list[Path]:
        """What a remote output must receive, in order: the result before the journal that covers it."""
        files = [self.layout.result_file] if self.result is not None else []
        return [*files, self.layout.state_dir / JOURNAL, self.layout.state_dir / STATE, self.layout.mini_batches_csv]

    def write_status(self, status: str) -> None:
        """Say the run's status in state.json now (a stop's first word), before close() says the last."""
        _write_state(self.layout, self.fingerprint, status)

    def close(self, status: str) -> None:
        """Flush, close the files, write the final state and release the output. Every step is
        tried even when one fails (a full disk); the first error is raised at the end. A store that
        broke never says Completed: its last lines were not journaled."""
        errors: list[OSError] = []
        _attempt(errors, self.flush)
        self._syncer.shutdown()
        for fh in (self.result, self.journal, self.csv_file):
            if fh is not None:
                _attempt(errors, fh.close)
        final = "Interrupted" if self.broken is not None and status == "Completed" else status
        _attempt(errors, _write_state, self.layout, self.fingerprint, final)
        os.close(self.lock_fd)
        if errors:
            raise errors[0]


def _attempt(errors: list[OSError], step: Any, *args: Any) -> None:
    try:
        step(*args)
    except OSError as exc:
        errors.append(exc)


def _open_csv(path: Path) -> IO[str]:
    """mini_batches.csv for appending, after the newline that a killed run's torn last row lacks."""
    fh = open(path, "a", newline="")
    if fh.tell():
        with open(path, "rb") as tail:
            tail.seek(-1, os.SEEK_END)
            if tail.read(1) != b"\n":
                fh.write("\n")
    return fh
