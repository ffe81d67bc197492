"""The OUTPUT/logs layout (SPEC section 4) and the job_result files, the first thing users read."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ..config.paths import LOGS_DIR, STATE_DIR
from .group_lines import group_lines


@dataclass(frozen=True)
class Layout:
    """Where every file of a job lives, so no other module spells a log path."""

    output: Path
    result_file: Path
    remote_url: Optional[str] = None  # a remote output: `output` is its local staging folder

    def shown(self, path: Path) -> str:
        """A path as the user knows it: inside the remote URL for a remote output."""
        return f"{self.remote_url.rstrip('/')}/{self.relative(path)}" if self.remote_url else str(path)

    def rank_files(self, rank: int) -> list[Path]:
        return [self.rank_log(rank), self.error_log(rank), self.stdout_log(rank), self.stderr_log(rank),
                self.entry_log(rank), self.perf_log(rank)]

    @property
    def logs(self) -> Path:
        return self.output / LOGS_DIR

    @property
    def state_dir(self) -> Path:
        return self.output / STATE_DIR

    @property
    def job_result_txt(self) -> Path:
        return self.logs / "job_result.txt"

    @property
    def job_result_json(self) -> Path:
        return self.logs / "job_result.json"

    @property
    def progress_overview(self) -> Path:
        return self.logs / "job_progress_overview.txt"

    @property
    def progress_json(self) -> Path:
        """The running job's counts, rate and per-rank activity, rewritten every few seconds."""
        return self.logs / "job_progress.json"

    @property
    def mini_batches_csv(self) -> Path:
        return self.logs / "sys" / "mini_batches.csv"

    @property
    def error_txt(self) -> Path:
        return self.logs / "user" / "error.txt"

    @property
    def failed_items_txt(self) -> Path:
        """Items isolated by bisection: item, error class, first error line (tab-separated)."""
        return self.logs / "user" / "failed_items.txt"

    def rank_log(self, rank: int) -> Path:
        return self.logs / "sys" / f"rank-{rank:04d}.txt"

    def error_log(self, rank: int) -> Path:
        return self.logs / "user" / "error" / f"rank-{rank:04d}.txt"

    def stdout_log(self, rank: int) -> Path:
        return self.logs / "user" / "stdout" / f"rank-{rank:04d}.txt"

    def stderr_log(self, rank: int) -> Path:
        return self.logs / "user" / "stderr" / f"rank-{rank:04d}.txt"

    def entry_log(self, rank: int) -> Path:
        return self.logs / "user" / "entry_script_log" / f"rank-{rank:04d}.txt"

    def perf_log(self, rank: int) -> Path:
        """CPU, memory and GPU of the rank's entry-script process, a line every few seconds."""
        return self.logs / "perf" / f"rank-{rank:04d}.csv"

    def make_dirs(self) -> None:
        for sub in ("sys", "perf", "user/error", "user/stdout", "user/stderr", "user/entry_script_log"):
            (self.logs / sub).mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.output)


class QuietFileHandler(logging.FileHandler):
    """A log file that cannot be written (a full disk, the output removed) loses the record
    quietly: the job says what failed in one line, logging must not add a traceback per record."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def rank_logger(layout: Layout, rank: int, level: str) -> logging.Logger:
    """The logger of one rank, writing logs/sys/rank-NNNN.txt."""
    logger = logging.getLogger(f"mpibatch.rank{rank}")
    logger.setLevel(level)
    logger.propagate = False
    handler = QuietFileHandler(layout.rank_log(rank))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def log_lines(logger: logging.Logger, lines: Iterable[str], level: int = logging.INFO) -> None:
    """Many records of one moment at once, formatted like rank_logger's: one write for the
    per-mini-batch lines of a fast job instead of a logging call each (`lines` are only made
    when the level is enabled)."""
    if not logger.isEnabledFor(level):
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d} "
    prefix = f"{stamp}{logging.getLevelName(level)} "
    text = "".join([f"{prefix}{line}\n" for line in lines])
    if not text:
        return
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.level <= level:
            with handler.lock:  # type: ignore[union-attr]
                try:
                    handler.stream.write(text)
                    handler.flush()
                except OSError:  # a full disk: the log loses lines, the rank goes on (QuietFileHandler)
                    pass


@dataclass
class FirstError:
    """The first real error of a job, with where its whole story is."""

    batch_id: Optional[int]
    attempt: int
    rank: int
    error_class: str
    summary: str
    traceback: str
    log_file: str

    def to_json(self) -> dict[str, Any]:
        return {"mini_batch_id": self.batch_id, "attempt": self.attempt, "rank": self.rank,
                "class": self.error_class, "summary": self.summary, "log_file": self.log_file}


def _result_lines_warning(counts: dict[str, int]) -> list[str]:
    """The result file's lines that are not one per item (README: "One line per element")."""
    extra, elements = counts.get("extra_lines_in_elements", 0), counts.get("extra_elements", 0)
    if not extra and not elements:
        return []
    return [f"warning: result lines are not one per item: extra_lines_in_elements: {extra} (elements whose str() "
            f"holds a newline), extra_elements: {elements} (returned beyond one per item)"]


READ_BOUND_SHARE = 0.5  # data_share from which the entry scripts wait on data more than they compute
SHORT_CALL_S = 0.01  # a mini-batch's data and run() below this: the per-call overhead weighs


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 1 else f"{value:.1f} s"


def phases_line(phases: Optional[dict[str, Any]]) -> Optional[str]:
    """One line from job_result's phases: read-bound or compute-bound, and what to change; None before
    a mini-batch has finished (or for an older job_result)."""
    if not phases or phases.get("data_share") is None:
        return None
    data_s, run_s, overlap_s = phases["data_s"], phases["run_s"], phases.get("overlap_s", 0.0)
    share = phases["data_share"]
    hidden = f", {_seconds(overlap_s)} of it hidden behind run()" if overlap_s else ""
    times = f"data {_seconds(data_s)}{hidden}, run() {_seconds(run_s)}"
    if share >= READ_BOUND_SHARE:
        line = (f"read-bound: {100 * share:.0f}% of the entry scripts' busy time waits for data ({times}): add ranks "
                "to read in parallel, or make mini-batches larger if opening each file or slice costs more than its "
                "rows")
    else:
        line = (f"compute-bound: run() takes {100 * (1 - share):.0f}% of the entry scripts' busy time ({times}): add "
                "ranks (or GPUs) to go faster; reading is not the limit")
    count = phases.get("mini_batches") or 0
    if count and (data_s + run_s) / count < SHORT_CALL_S:
        line += (f"; mini-batches are short ({1000 * (data_s + run_s) / count:.1f} ms each): larger ones cut "
                 "the per-call overhead")
    return line


def write_job_result(layout: Layout, result: dict[str, Any], first_error: Optional[FirstError]) -> None:
    """Write logs/job_result.json and the human-readable logs/job_result.txt, each whole or not at all
    (a full disk must not leave half a file, or an earlier run's, to be read as this run's end)."""
    _replace_or_remove(layout.job_result_json, json.dumps(result, indent=2) + "\n")
    mb, items, errors = result["mini_batches"], result["items"], result["errors_by_class"]
    bisection = result.get("bisection") or {}
    split, isolated = bisection.get("mini_batches_split", 0), bisection.get("items_isolated", 0)
    lines = [
        f"status: {result['status']}",
        *[f"warning: {warning}" for warning in result.get("warnings") or ()],
        *([f"reason: {result['reason']}"] if result.get("reason") else []),
        f"started: {result['started']}   finished: {result['finished']}   elapsed: {result['elapsed_s']:.1f} s",
        f"ranks: {result['ranks']}   workers: {result['workers']}",
        f"mini-batches: {mb['total']} total, {mb['succeeded']} succeeded, {mb['failed']} failed, "
        + (f"{split} split ({isolated} failing item{'s' * (isolated != 1)} isolated: logs/user/failed_items.txt), "
           if split else "")
        + f"{mb['retried']} retried, {mb['total'] - mb['succeeded'] - mb['failed'] - split} not run",
        f"items: {items['total']} total, {items['succeeded']} succeeded, {items['failed']} failed",
        "errors by class: " + ", ".join(f"{k} {v}" for k, v in errors.items()),
        f"output: {result['output_file'] or '(summary_only: no result file)'}",
        *_result_lines_warning(result.get("result_lines") or {}),
        *[f"phases: {line}" for line in [phases_line(result.get("phases"))] if line],
        *([f"bisection stopped: {bisection['stopped']}"] if bisection.get("stopped") else []),
        *group_lines(result.get("groups") or []),
        "",
    ]
    if first_error is None:
        lines.append("no errors")
    else:
        where = (f"mini-batch {first_error.batch_id}, attempt {first_error.attempt}"
                 if first_error.batch_id is not None else "init()")
        lines += [
            f"first error ({first_error.error_class}, {where}, rank {first_error.rank}):",
            f"  {first_error.summary}",
            f"  full log: {first_error.log_file}",
        ]
        if first_error.traceback:
            lines += ["", first_error.traceback.rstrip()]
    _replace_or_remove(layout.job_result_txt, "\n".join(lines) + "\n")


def _replace_or_remove(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        for stale in (tmp, path):
            try:
                stale.unlink(missing_ok=True)
            except OSError:
                pass
        raise
