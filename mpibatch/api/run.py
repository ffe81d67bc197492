"""`mpibatch.Run`: a handle on one job, started here, submitted to Slurm, or attached to by its output
folder. Everything it says is read from the output's files (as `mpibatch status` reads them), so a
handle made today on yesterday's output, or in a notebook that reconnected, tells the truth."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, TextIO

from ..config import ConfigError
from ..output.status import LIVE, SLURM_GOING, _slurm_state, read_status, render, still_going
from .results import ErrorReport, errors, failed_items, iter_results, logs, results

if TYPE_CHECKING:
    import pandas

    from .job import Job

POLL_S = 0.5
START_WAIT_S = 30.0  # job.run() waits this long at most for the job to pass its checks


class JobFailed(RuntimeError):
    """wait(raise_on_failure=True) on a job that ended Failed (or Interrupted)."""


class Status:
    """The facts of `mpibatch status --json` as attributes (`s.status`, `s.items`, `s.rate`, ...);
    `s.data` is the JSON object itself; str(s) is what `mpibatch status` prints."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            if name.startswith("_") or name not in _KNOWN:
                raise AttributeError(name) from None
            return None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def done(self) -> int:
        """Mini-batches finished (succeeded, failed, or split in halves that are counted on their own)."""
        mb = self.data.get("mini_batches") or {}
        return mb.get("succeeded", 0) + mb.get("failed", 0) + (self.data.get("bisection") or {}).get(
            "mini_batches_split", 0)

    @property
    def total(self) -> Optional[int]:
        return (self.data.get("mini_batches") or {}).get("total")

    @property
    def finished(self) -> bool:
        return not still_going(self.data) and self.data["status"] not in ("Submitted", "Starting")

    def __str__(self) -> str:
        return render(self.data)

    def __repr__(self) -> str:
        return f"<mpibatch.Status {self.data['status']} {self.done}/{self.total} mini-batches>"


_KNOWN = frozenset({"status", "reason", "exit_code", "started", "finished", "elapsed_s", "ranks", "workers",
                    "mini_batches", "items", "errors_by_class", "first_error", "warnings", "rate", "eta_s",
                    "per_rank", "hosts", "slurm_job_id", "slurm_state", "slurm_restart_count", "output_file",
                    "error", "stale", "output", "resources", "output_problem", "last_status", "updated", "phases",
                    "phases_line"})


class Run:
    """`Run(output)` attaches to the job in an output folder; `job.run()` and `job.submit()` return one too."""

    def __init__(self, output: "str | os.PathLike[str]", job: Optional["Job"] = None, *,
                 _process: Optional[subprocess.Popen] = None, _launch: Optional[dict[str, Any]] = None,
                 _slurm: Optional[dict[str, Any]] = None) -> None:
        self.output = Path(os.fspath(output).removeprefix("file://"))
        self.job = job
        self._process = _process
        self._launch = _launch or {}
        self._slurm = _slurm or {}
        self._views: list[Any] = []
        if _process is None and not _slurm:
            read_status(self.output)  # ConfigError now when the folder holds no job

    # ---- watching -------------------------------------------------------------------------

    @property
    def slurm_job_id(self) -> Optional[str]:
        return self._slurm.get("job_id") or self.status().slurm_job_id

    def status(self) -> Status:
        """The job's status now (read from its files; cheap enough to call in a loop)."""
        if self._process is not None and not self._this_launch_started():
            code = self._process.poll()
            if code is None:
                return Status({"status": "Starting", "output": str(self.output), "stale": False})
            if code != 0:
                return Status({"status": "Failed", "output": str(self.output), "exit_code": code, "stale": False,
                               "reason": self._launch_error() or f"the launcher exited {code} before the job started"})
        try:
            data = read_status(self.output)
        except ConfigError:
            if self._slurm:
                data = {"status": "Submitted", "output": str(self.output), "stale": False}
            else:
                raise
        if self._process is not None and self._process.poll() is None and data["status"] not in LIVE:
            data = {**data, "status": "Stopping" if self._this_launch_started() else "Starting"}
        if data["status"] == "Submitted" and self._slurm:
            data = {**data, "slurm_job_id": self._slurm["job_id"], "slurm_state": _slurm_state(self._slurm["job_id"])}
        return Status(data)

    def running(self) -> bool:
        return not self._finished(self.status())

    def _finished(self, status: Status) -> bool:
        if self._process is not None:
            return self._process.poll() is not None
        if status.status == "Submitted":
            return status.slurm_state not in SLURM_GOING
        return status.finished

    def wait(self, show_output: bool = True, raise_on_failure: bool = False, timeout: Optional[float] = None,
             interval: float = 2.0, file: Optional[TextIO] = None) -> Status:
        """Until the job ends (the seed's wait_for_completion): a progress line whenever it changes
        (at most every `interval` s), then the final status. Returns that status; with raise_on_failure,
        a job that did not complete raises JobFailed."""
        out = file or sys.stdout
        deadline = None if timeout is None else time.monotonic() + timeout
        last_line, last_print = None, 0.0
        while True:
            status = self.status()
            if self._finished(status):
                status = self.status()
                break
            line = progress_line(status)
            if show_output and line != last_line and time.monotonic() - last_print >= interval:
                print(line, file=out, flush=True)
                last_line, last_print = line, time.monotonic()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.output}: still {status.status} after {timeout} s")
            time.sleep(POLL_S)
        if self._process is not None:
            self._process.wait()
        self._refresh_views()
        if show_output:
            print(str(status), end="", file=out, flush=True)
        if raise_on_failure and status.status != "Completed":
            raise JobFailed(f"{self.output}: {status.status}" + (f": {status.reason}" if status.reason else ""))
        return status

    # ---- control -----------------------------------------------------------------------------

    def cancel(self, wait: bool = True, timeout: float = 120.0) -> Status:
        """A clean stop, as SIGTERM from the CLI or scancel: running mini-batches get stop_grace, what is done
        is committed, the job ends Interrupted and `resume()` continues it."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)  # the launcher forwards it to every rank
        elif self.slurm_job_id and (self._slurm or self.status().slurm_state in SLURM_GOING):
            subprocess.run(["scancel", str(self.slurm_job_id)], capture_output=True, text=True, timeout=60)
        else:
            self._signal_rank_zero()
        return self.wait(show_output=False, timeout=timeout) if wait else self.status()

    def _signal_rank_zero(self) -> None:
        """An attached job started elsewhere: SIGTERM to rank 0 (named in the output's lock) stops it cleanly."""
        status = self.status()
        if status.status not in LIVE:
            return
        try:
            words = (self.output / ".mpibatch" / "lock").read_text().split()  # "pid N on HOST"
            pid, host = int(words[1]), words[3]
        except (OSError, IndexError, ValueError):
            raise RuntimeError(f"{self.output}: cannot tell which process runs the job") from None
        if host != socket.gethostname():
            raise RuntimeError(f"{self.output}: the job runs on {host}; stop it there (kill -TERM {pid})")
        os.kill(pid, signal.SIGTERM)

    def resume(self, ranks: Optional[int] = None, **run_options: Any) -> "Run":
        """Start the job again with resume: it continues exactly where it stopped (same handle)."""
        from .job import job_from_state

        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"{self.output}: the job is still running")
        job = self.job or job_from_state(self.output)
        if self._slurm:
            new = job.replace(resume=True).submit(**{k: v for k, v in self._slurm["options"].items() if v})
        else:
            launch = {k: self._launch[k] for k in ("python", "mpiexec", "env") if self._launch.get(k)}
            ranks = ranks or self._launch.get("ranks") or self.status().ranks
            new = job.run(ranks=ranks, resume=True, **{**launch, **run_options})
        self.job, self._process, self._launch, self._slurm = new.job, new._process, new._launch, new._slurm
        self._refresh_views()
        return self

    # ---- what came out ----------------------------------------------------------------------

    def results(self, lines: Optional[bool] = None, **read_csv: Any) -> "pandas.DataFrame":
        """The result file as a DataFrame, parsed with the job's append_row_options (`lines=True`: one
        column `line` per result line, what plain `str()` results are; keywords go to pandas.read_csv)."""
        return results(self.output, lines, read_csv)

    def iter_results(self, chunksize: int = 100_000, lines: Optional[bool] = None,
                     **read_csv: Any) -> Iterator["pandas.DataFrame"]:
        """The result file in DataFrames of `chunksize` rows, for files larger than memory."""
        return iter_results(self.output, chunksize, lines, read_csv)

    def failed_items(self) -> "pandas.DataFrame":
        """Items isolated by bisection: item, error_class, error."""
        return failed_items(self.output)

    def errors(self) -> ErrorReport:
        """Errors by class, the first error and every logged error with its traceback."""
        return errors(self.output, self.status().data)

    def logs(self, rank: Optional[int] = None, kind: Optional[str] = None) -> str:
        """job_result.txt and the launcher's output (rank None), or one rank's logs (kind: sys, stdout,
        stderr, error, entry)."""
        return logs(self.output, rank, kind, self._launch.get("log"))

    def report(self, html: "Optional[str | os.PathLike[str]]" = None) -> Path:
        """The job's HTML report (plots of throughput, per-rank timeline, errors); its path."""
        from ..report import write_report

        return write_report(self.output, Path(html) if html else None)

    # ---- notebooks --------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        from .notebook_view import render_html

        return render_html(self.status().data)

    def _ipython_display_(self) -> None:
        from .notebook_view import LiveView

        self._views.append(LiveView(self).show())

    def _refresh_views(self) -> None:
        for view in self._views:
            view.refresh()

    def __repr__(self) -> str:
        return f"<mpibatch.Run {self.output}: {self.status().status}>"

    # ---- the launch ---------------------------------------------------------------------------

    def _this_launch_started(self) -> bool:
        """Whether the job this handle launched has written its state (so the files are its, not an earlier
        run's): state.json is no longer the file that was there at launch (a clock comparison is not enough
        when an earlier run ended within the same second)."""
        if "state_before" not in self._launch:
            return True
        now = state_signature(self.output)
        return now is not None and now != self._launch["state_before"]

    def _launch_error(self) -> Optional[str]:
        """The launched job's `mpibatch: error:` line (what the CLI exits 2 with), if it printed one."""
        try:
            with open(self._launch["log"], "rb") as fh:
                fh.seek(self._launch["log_offset"])
                text = fh.read().decode(errors="replace")
        except (OSError, KeyError):
            return None
        found = [line.removeprefix("mpibatch: error: ") for line in text.splitlines()
                 if line.startswith("mpibatch: error: ")]
        return found[0] if found else None

    def _await_start(self) -> None:
        """Until the launched job has passed its checks; a job refused with exit 2 raises its ConfigError here."""
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline and not self._this_launch_started():
            code = self._process.poll() if self._process else None
            if code is not None:
                if code == 2 and self._launch_error():
                    raise ConfigError(self._launch_error())
                return
            time.sleep(0.05)


def state_signature(output: Path) -> Optional[tuple[int, int, int]]:
    """Which state.json the output holds now (inode, size, mtime in ns); None when there is none."""
    try:
        st = (Path(output) / ".mpibatch" / "state.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def progress_line(status: Status) -> str:
    """One line for wait(show_output=True)."""
    from ..output.progress import format_seconds

    data = status.data
    if not status.total:
        return f"{data['status']}"
    items = data.get("items") or {}
    parts = [f"{data['status']}: {status.done}/{status.total} mini-batches "
             f"({100.0 * status.done / status.total:.1f}%)",
             f"items {items.get('succeeded', 0)} succeeded, {items.get('failed', 0)} failed"]
    if data.get("rate") is not None:
        parts.append(f"{data['rate']:.1f} mini-batches/s")
    if data.get("eta_s") is not None:
        parts.append(f"ETA {format_seconds(data['eta_s'])}")
    return ", ".join(parts)


__all__ = ["JobFailed", "Run", "Status", "progress_line", "state_signature"]
