"""Progress while a job runs: a live bar or plain lines on the launcher's stderr, and
logs/job_progress_overview.txt for whoever watches the output folder."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .integrity import with_path

LINE_EVERY_S = float(os.environ.get("MPIBATCH_PROGRESS_INTERVAL", "10"))
OVERVIEW_EVERY_S = 2.0
LAUNCHERS = ("mpiexec", "mpirun", "hydra_pmi_proxy", "mpiexec.hydra", "srun", "prterun", "orterun")


def _is_terminal(pid: int) -> bool:
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return False
    return target.startswith(("/dev/pts/", "/dev/tty"))


def launched_from_terminal() -> bool:
    """True when our stderr, or the launcher's (mpiexec pipes our output), is a terminal."""
    if sys.stderr.isatty():
        return True
    try:
        import psutil

        for parent in psutil.Process().parents()[:3]:
            if parent.name() in LAUNCHERS and _is_terminal(parent.pid):
                return True
    except Exception:  # noqa: BLE001 - no /proc, no permission: not interactive
        return False
    return False


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Rate-limited progress reports from the coordinator's loop."""

    def __init__(self, mode: str, total: int, done_before: int, overview: Path) -> None:
        if mode == "auto":
            mode = "bar" if launched_from_terminal() else "lines"
        self.mode = mode
        self.total = total
        self.done_before = done_before
        self.started = time.monotonic()
        self.overview = overview
        self._last_line = self._last_overview = self.started
        self._last_text = ""
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done_before, unit="mini-batch", file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5, smoothing=0.1)

    def rate(self, done: int) -> tuple[float, Optional[float]]:
        """Mini-batches per second in this run, and the seconds left at that rate (None: unknown)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (done - self.done_before) / elapsed
        left = self.total - done
        return rate, (left / rate if rate > 0 else None) if left else 0.0

    def summary(self, done: int, items_ok: int, items_failed: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate, eta_s = self.rate(done)
        eta = format_seconds(eta_s) if eta_s is not None else "?"
        percent = 100.0 * done / self.total if self.total else 100.0
        return (f"{done}/{self.total} mini-batches ({percent:.1f}%), items {items_ok} succeeded "
                f"{items_failed} failed, {rate:.1f} mini-batches/s, elapsed {format_seconds(elapsed)}, ETA {eta}")

    def update(self, done: int, items_ok: int, items_failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh() if force else self._bar.update(0)
        if self.mode == "lines" and (force or now - self._last_line >= LINE_EVERY_S):
            print(f"mpibatch: {self.summary(done, items_ok, items_failed)}", file=sys.stderr, flush=True)
            self._last_line = now
        if force or now - self._last_overview >= OVERVIEW_EVERY_S:
            text = self.summary(done, items_ok, items_failed)
            if text != self._last_text or force:
                try:
                    with open(self.overview, "a") as fh:
                        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
                except OSError as exc:
                    raise with_path(exc, self.overview) from exc
                self._last_text = text
            self._last_overview = now

    def close(self, done: int, items_ok: int, items_failed: int) -> None:
        self.update(done, items_ok, items_failed, force=True)
        if self._bar is not None:
            self._bar.close()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace a JSON file in one step, so a reader on another node never sees half of it (and a
    full disk leaves the last whole one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise with_path(exc, path) from exc
