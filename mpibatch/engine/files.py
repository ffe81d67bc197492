"""What rank 0 writes into the output besides commits: flushes and the remote copy while the job runs,
logs/job_progress.json, job_result.json and state.json at a stop and at the end; and what a failed write
into the output means (one line, said once)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..output.commit import ResultStore
from ..output.integrity import describe_write_error
from ..output.logs import FirstError, Layout, write_job_result
from ..output.progress import OVERVIEW_EVERY_S, Progress, write_json_atomic
from ..output.remote import RemoteOutput
from .tally import Tally

Report = Callable[[], dict[str, Any]]


class JobFiles:
    """Every write goes through guarded(): a failed one goes to `on_error` (the loop stops the job),
    and write_failed() says what it means once, in `error`."""

    def __init__(self, store: ResultStore, layout: Layout, remote: Optional[RemoteOutput], progress: Progress,
                 tally: Tally, on_error: Callable[[OSError], None]) -> None:
        self.store = store
        self.layout = layout
        self.remote = remote
        self.progress = progress
        self.tally = tally
        self.on_error = on_error
        self.error: Optional[str] = None  # a write into the output failed: the one line that says so
        self.closed = False  # the results and the journal are whole
        self._next_snapshot = 0.0

    def guarded(self, step: Callable[..., Any], *args: Any) -> None:
        """A step that writes into the output; a failed write goes to on_error."""
        try:
            step(*args)
        except OSError as exc:
            self.on_error(exc)

    def write_failed(self, exc: OSError) -> Optional[tuple[str, bool]]:
        """A write into the output failed: its one line and whether a resume can go on from it, the
        first time and while results could still be committed; else None (once closed, only a log
        was lost, and `error` says so)."""
        if self.error is not None:
            return None
        message, resumable = describe_write_error(exc, None, self.layout.output)
        if self.closed:
            self.error = f"{message}; the job's logs are incomplete"
            return None
        self.error = message + ("; resume with --resume once it can be written" if resumable else "")
        return message, resumable

    def flush(self) -> None:
        """The periodic flushes: results and journal when due, the remote copy, the progress line."""
        self.store.maybe_flush()
        if self.remote is not None and self.remote.push_due():
            self.store.flush()
            self.remote.push(self.store.committed_files)
        self.progress.update(self.tally.batches_final, self.tally.items_ok, self.tally.items_failed)

    def snapshot(self, now: float, snapshot: Report) -> None:
        """logs/job_progress.json, every OVERVIEW_EVERY_S."""
        if now >= self._next_snapshot:
            self._next_snapshot = now + OVERVIEW_EVERY_S
            write_json_atomic(self.layout.progress_json, snapshot())

    def stopped(self, result: dict[str, Any], first_error: Optional[FirstError], status: str) -> None:
        """A stop began: results, job_result and state.json say it at once (a launcher may kill the ranks soon)."""
        self.guarded(self.store.flush, False)
        self.guarded(write_job_result, self.layout, result, first_error)
        self.guarded(self.store.write_status, status)

    def lost_results(self) -> Optional[str]:
        """Why the result file is not the bytes this run committed; None when it is."""
        problem = self.store.verify_written()
        if problem and self.error is None:
            self.error = f"{problem}; resume with --resume to run the lost mini-batches again"
            return problem
        return None

    def close(self, status: str) -> None:
        self.guarded(self.store.close, status)
        self.closed = True

    def write_end(self, result: dict[str, Any], first_error: Optional[FirstError], snapshot: Report) -> None:
        """The job's end: the last progress line, job_result, the remote copy, the last snapshot."""
        tally = self.tally
        self.guarded(self.progress.close, tally.batches_final, tally.items_ok, tally.items_failed)
        self.guarded(write_job_result, self.layout, result, first_error)
        if self.remote is not None:
            self.remote.push_all(first=self.store.committed_files[:2])
        self.guarded(lambda: write_json_atomic(self.layout.progress_json, snapshot()))
