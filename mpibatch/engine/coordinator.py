"""Rank 0: hands out mini-batches with credits, retries failures elsewhere, enforces the error
thresholds, commits results exactly once, reports progress and stops cleanly on signals."""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, deque
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from .. import installed_version
from ..commit import JournalEntry, ResultStore
from ..config import JobConfig
from ..executor import InlineExecutor
from ..integrity import describe_write_error
from ..logs import FirstError, Layout, write_job_result
from ..placement import ranks_by_host
from ..plan import BatchPlan
from ..polling import LATENCY_TO_HIDE_S, QUIET_MAX_SLEEP_S, Backoff
from ..progress import OVERVIEW_EVERY_S, Progress, write_json_atomic
from ..records import ERROR_CLASSES, BatchId, Outcome, Task
from ..remote import RemoteOutput
from ..signals import StopSignals
from ..walltime import EXIT_TIME_LIMIT, Walltime
from ..worker import TAG, Worker, idle_policy
from .bisection import Bisection, failed_item_line, halves, halves_to_redo, is_half, rewrite_failed_items
from .pending import Pending
from .retry import Retries
from .speculation import Speculation
from .stops import STOPPED_NOTE, Stops
from .tally import Tally
from .thresholds import Thresholds

HOUSEKEEPING_EVERY_S = 0.2
MIN_CREDITS, MAX_CREDITS = 2, 256
LOCAL_MAX_CREDITS = 8  # rank 0's own worker, when there are others (+6% no-op throughput at 2 ranks, A/B)
# How long rank 0's inline script may keep the GIL from the coordinator once it asks (Python's default is
# 5 ms, so a CPU-bound run() let rank 0 answer the other workers only ~200 times a second: a worker with 1 ms
# mini-batches beside 12 ms ones on rank 0 got ~200 of them done a second, ~800 at 0.2 ms; docs/benchmarks.md)
SHARED_GIL_SWITCH_S = 0.0002


@contextmanager
def switch_interval(seconds: Optional[float]) -> Iterator[None]:
    """Python's GIL switch interval set to `seconds` (None: left as it is) for the time of the block."""
    previous = sys.getswitchinterval()
    if seconds is not None:
        sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _process_started() -> float:
    """The monotonic time this process began, from /proc (its start in clock ticks since boot
    against /proc/uptime, to 10 ms); psutil's create_time rests on a boot time in whole seconds."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic()


PROCESS_STARTED = _process_started()


class Coordinator:
    """The dispatch loop of rank 0; run() returns the job's exit status."""

    def __init__(self, comm: Any, config: JobConfig, layout: Layout, batches: BatchPlan,
                 store: ResultStore, earlier: list[JournalEntry], worker_ranks: list[int],
                 local: Optional[Worker], signals: StopSignals, log: logging.Logger, n_ranks: int,
                 input_names: list[str], walltime: Optional[Walltime] = None,
                 hosts: Optional[dict[int, str]] = None) -> None:
        self.comm = comm
        self.config = config
        self.layout = layout
        self.store = store
        self.local = local
        self.signals = signals
        self.log = log
        self.n_ranks = n_ranks
        self.input_names = input_names
        self.remote = RemoteOutput(layout.remote_url, dict(config.output_storage_options)) if layout.remote_url else None
        self.inbox: deque[tuple] = deque()
        self.live = list(worker_ranks)
        self.stalled: set[int] = set()  # inline workers held by an abandoned call
        self.last_stall = 0.0  # monotonic time a worker last stalled
        self.stall_error: Optional[FirstError] = None  # the first hung inline call, for job_result
        self.worker_count = len(worker_ranks)
        self.outstanding: dict[int, dict[BatchId, Task]] = {r: {} for r in worker_ranks}
        done = {e.id for e in earlier}
        redo = halves_to_redo(batches.get, earlier)  # halves of splits a killed run did not finish
        self.pending = Pending(batches.after(done), [Task(b, 1) for b in redo])
        rewrite_failed_items(layout.failed_items_txt, earlier)  # a resume keeps exactly the journaled isolations
        self.retries = Retries(config.run_max_try)
        self.thresholds = Thresholds.of(config)
        self.bisection = Bisection(config.bisect_failures)
        self.batch_errors: dict[BatchId, Counter] = {}
        planned_done = (batches.get(e.id) for e in earlier)
        items_left = batches.n_items - sum(b.size for b in planned_done if b is not None) + sum(b.size for b in redo)
        self.tally = Tally(batches_total=len(batches), items_total=items_left + sum(e.ok + e.fail for e in earlier))
        self.tally.add_journal(earlier)
        self.first_error: Optional[FirstError] = None
        self.output_error: Optional[str] = None  # a write into the output failed: the one line that says so
        self.store_closed = False
        self.init_error: Optional[FirstError] = None
        self.requests: list[Any] = []
        self.status = "Completed"
        self.reason = ""
        self.exit_code = 0
        self.started_wall = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.started = time.monotonic()
        self.progress = Progress(config.progress, len(batches), self.tally.batches_final,
                                 layout.progress_overview)
        self._dirty = True
        self._mean_seconds: Optional[float] = None  # of run() calls, for the credits
        self.speculation = Speculation(config.speculative and config.executor == "process",
                                       config.speculation_factor, config.run_invocation_timeout)
        self.walltime = walltime or Walltime(None)
        self.stops = Stops(signals, self.walltime, config.stop_grace)
        self.hosts = hosts or {}  # rank -> host, so a job that vanished says where it ran
        self.activity: dict[int, dict[str, Any]] = {
            r: {"mini_batches": 0, "items": 0, "last": None, "host": self.hosts.get(r)} for r in worker_ranks}
        self._next_snapshot = 0.0
        self._finished_at: Optional[float] = None
        self.first_dispatch: Optional[float] = None  # monotonic time of the first task handed out
        self.first_ready = 0.0  # monotonic time the first worker finished init()
        self.last_final = 0.0  # monotonic time the last mini-batch became final

    # ---- messages ----------------------------------------------------------------------------

    def to_worker(self, rank: int, message: tuple) -> None:
        if self.local is not None and rank == 0:
            kind, body = message
            if kind == "tasks":
                self.local.take(body)
            elif kind == "cancel":
                self.local.cancel()
            elif kind == "abort":
                self.local.abort(body)
        else:
            self.requests.append(self.comm.isend(message, dest=rank, tag=TAG))

    def _receive(self) -> bool:
        got = False
        while self.inbox:
            self._handle(self.inbox.popleft())
            got = True
        if self.n_ranks > 1:
            while (message := self.comm.improbe(tag=TAG)) is not None:
                self._handle(message.recv())
                got = True
        return got

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "outcomes":
            self._on_outcomes(message[1])
        elif kind == "ready":
            self.first_ready = self.first_ready or time.monotonic()
            self.log.info("worker on rank %d ready (init %.3f s)", message[1], message[2])
            if message[1] in self.stalled:
                self.stalled.discard(message[1])
                self.live.append(message[1])
                self._dirty = True
        elif kind == "stalled":
            self._on_stalled(*message[1:])
        elif kind == "init_failed":
            self._on_init_failed(message[1], message[2], message[3])
        elif kind == "returned":
            self._on_returned(message[1], message[2])
        elif kind == "signal":
            self.log.warning("rank %d received signal %d", message[1], message[2])
            if not self.stops.stopping:
                self.begin_stop("Interrupted", 128 + message[2], f"signal {message[2]} on rank {message[1]}")

    def _on_stalled(self, rank: int, batch_id: BatchId, attempt: int, error: str) -> None:
        """An inline worker held by a call past its timeout is written off until the call returns ("ready").
        The call's retry waits until all other work is handed out: it would likely stall another worker."""
        self.stalled.add(rank)
        if rank in self.live:
            self.live.remove(rank)
        self.last_stall = time.monotonic()
        self.retries.defer(batch_id)
        self.stall_error = self.stall_error or FirstError(
            batch_id, attempt, rank, "timeout", error, "", self.layout.relative(self.layout.rank_log(rank)))

    def _on_returned(self, rank: int, ids: list[BatchId]) -> None:
        tasks = [self.outstanding[rank].pop(i) for i in ids if i in self.outstanding[rank]]
        self.speculation.mark(rank, self.outstanding[rank], time.monotonic())
        tasks = [t for t in tasks if not self.speculation.handed_back(t.batch.id, rank)]
        if not self.stops.stopping:
            self.pending.extendleft(reversed(tasks))
        self._dirty = True

    def _on_init_failed(self, rank: int, error: str, traceback: str) -> None:
        self.log.error("init() failed on rank %d: %s", rank, error)
        self.tally.errors["init"] += 1
        self._append_error_line(f"init() rank {rank} (init): {error}")
        failure = FirstError(None, 0, rank, "init", error, traceback, self.layout.relative(self.layout.error_log(rank)))
        self.init_error = self.init_error or failure
        self.first_error = self.first_error or failure
        if rank in self.live:
            self.live.remove(rank)
        self._on_returned(rank, list(self.outstanding[rank]))

    def _on_outcomes(self, outcomes: list[Outcome]) -> None:
        """A worker's outcomes, in order. Attempts that returned every item are committed together
        (one write, one group of journal lines and CSV rows); any other outcome commits those
        before it first, so the result file keeps the order of the worker's events."""
        if not outcomes:
            return
        whole: list[tuple[Task, Outcome]] = []
        settled = False
        for outcome in outcomes:
            task = self._attempt_over(outcome)
            if task is None:
                continue
            settled = True
            if outcome.ok and outcome.n_returned >= outcome.n_items:
                whole.append((task, outcome))
                continue
            self._commit(whole)
            whole = []
            if outcome.ok:  # items without a result line count as failed
                self._commit([(task, outcome)])
            else:
                self._on_failed_attempt(task, outcome, self.batch_errors.get(task.batch.id) or Counter())
            reason = self.thresholds.exceeded(self.tally)
            if reason and not self.stops.stopping:
                self.begin_stop("Failed", 1, reason)
        self._commit(whole)
        rank = outcomes[-1].rank  # one worker's message: its clocks are set once
        self.speculation.mark(rank, self.outstanding.get(rank), time.monotonic())
        if settled:
            self.activity[rank]["last"] = time.time()

    def _attempt_over(self, outcome: Outcome) -> Optional[Task]:
        """The task an outcome ends, with the duration statistics updated; None when nothing is
        left to do (a late inline result, a speculative copy that lost)."""
        task = self.outstanding[outcome.rank].pop(outcome.batch_id, None)
        if task is None:
            return None
        if task.batch.id in self.speculation.copies and self._settle_copies(task, outcome):
            return None
        self._dirty = True
        seconds = outcome.seconds
        self.walltime.observe(seconds)
        self._mean_seconds = seconds if self._mean_seconds is None else 0.9 * self._mean_seconds + 0.1 * seconds
        return task

    def _commit(self, succeeded: list[tuple[Task, Outcome]]) -> None:
        """Append the results of one worker's succeeded attempts, journal them and make their
        mini-batches final."""
        if not succeeded:
            return
        commits, settled = [], []
        for task, outcome in succeeded:
            errors = self.batch_errors.get(task.batch.id) if self.batch_errors else None  # of earlier attempts
            ok = outcome.succeeded
            if outcome.extra_lines or outcome.n_returned > outcome.n_items:
                self.tally.extra_lines += outcome.extra_lines
                self.tally.extra_elements += outcome.extra_elements
            commits.append((outcome, task.attempt, dict(errors) if errors else {}))
            settled.append((task, ok, outcome.n_items - ok, outcome.seconds, errors, ""))
        self.store.commit_many(commits)
        if self.bisection.watching:
            for task, _ in succeeded:
                if is_half(task.batch.id):
                    self._half_final(task.batch.id, True)
        self._settle("succeeded", succeeded[0][1].rank, settled)

    def _half_final(self, half_id: BatchId, ok: bool, error: str = "") -> None:
        """Tell the bisection policy how a half ended; say it once if that stops bisection."""
        stopped = self.bisection.stopped
        self.bisection.half_final(half_id, ok, error)
        if self.bisection.stopped and not stopped:
            self.log.warning("bisection stopped: %s", self.bisection.stopped)

    def _on_failed_attempt(self, task: Task, outcome: Outcome, errors: Counter) -> None:
        cls = outcome.error_class or "exception"
        self.tally.errors[cls] += 1
        errors[cls] += 1
        self.batch_errors[task.batch.id] = errors
        self._append_error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {outcome.rank} ({cls}): "
                                f"{outcome.error}")
        if self.first_error is None:
            log = self.layout.error_log(outcome.rank) if outcome.traceback else self.layout.rank_log(outcome.rank)
            self.first_error = FirstError(task.batch.id, task.attempt, outcome.rank, cls, outcome.error,
                                          outcome.traceback, self.layout.relative(log))
        if self.retries.after_failure(task, outcome.rank, queue=not self.stops.stopping):
            return
        if is_half(task.batch.id):
            self._half_final(task.batch.id, False, outcome.error)
        verdict = self.bisection.after_last_try(task.batch, errors, outcome.n_items)
        if verdict == "split":
            self._split(task, outcome, errors)
            return
        if verdict == "isolate":
            self._isolate(task, outcome, errors, cls)
            return
        self.store.record_failed(task.batch.id, task.batch.size, task.attempt, dict(errors))
        self._final(task, "failed", 0, task.batch.size, outcome.seconds, outcome.rank, errors, outcome.error)

    def _split(self, task: Task, outcome: Outcome, errors: Counter) -> None:
        """Journal the split first (a resume re-creates the halves), then run both halves next."""
        self.store.record_split(task.batch.id, task.attempt, dict(errors))
        self.bisection.split(task.batch.id, outcome.error)
        first, second = halves(task.batch)
        self.log.warning("mini-batch %s failed its last try: split into %s (%d items) and %s (%d items) to isolate "
                         "the failing items", task.batch.id, first.id, first.size, second.id, second.size)
        if not self.stops.stopping:
            self.pending.extendleft([Task(second, 1), Task(first, 1)])
        self._final(task, "split", 0, 0, outcome.seconds, outcome.rank, errors, outcome.error)

    def _isolate(self, task: Task, outcome: Outcome, errors: Counter, error_class: str) -> None:
        """A single item that fails alone: a failed item (not a failed mini-batch), listed in failed_items.txt."""
        item = outcome.label or str(task.batch.items[0])
        self.store.record_isolated(task.batch.id, item, dict(errors), error_class, outcome.error)
        with open(self.layout.failed_items_txt, "a", encoding="utf-8") as fh:
            fh.write(failed_item_line(item, error_class, outcome.error))
        self._final(task, "isolated", 0, 1, outcome.seconds, outcome.rank, errors, outcome.error)

    def _final(self, task: Task, status: str, ok: int, failed: int, seconds: float, rank: int,
               errors: Optional[Counter], error: str = "") -> None:
        """A mini-batch that failed, was split or isolated is final: count it and write its CSV row."""
        self._settle(status, rank, [(task, ok, failed, seconds, errors, error)])

    def _settle(self, status: str, rank: int,
                done: list[tuple[Task, int, int, float, Optional[Counter], str]]) -> None:
        """Make mini-batches of one worker final, each (task, items ok, items failed, seconds, errors
        of its attempts, error): count them in the tallies and write their rows of mini_batches.csv."""
        tally, names, rows = self.tally, self.input_names, []
        items_ok = 0
        for task, ok, failed, seconds, errors, error in done:
            batch = task.batch
            size = batch.size
            if status != "split":  # a split's items are counted by its halves
                tally.items_total += ok + failed - size  # a tabular size was an estimate until read
            if not is_half(batch.id):
                tally.add_batch(status, task.attempt > 1)
            items_ok += ok
            tally.items_failed += failed
            if errors:
                self.batch_errors.pop(batch.id, None)
            rows.append([batch.id, names[batch.input_index], size, task.attempt, status, ok, failed, f"{seconds:.3f}",
                         rank, next(reversed(errors), "") if errors else "", error])
        tally.items_ok += items_ok
        tally.items_isolated += len(done) if status == "isolated" else 0
        activity = self.activity[rank]
        activity["mini_batches"] += len(done)
        activity["items"] += items_ok
        self.store.add_csv_rows(*rows)
        self.last_final = time.monotonic()

    def _append_error_line(self, line: str) -> None:
        with open(self.layout.error_txt, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    # ---- speculation: the loop's side of speculation.Speculation ------------------------------

    def _speculate(self) -> None:
        """With nothing left to hand out, start the copies the policy picks on idle workers."""
        if self.stops.stopping or self.pending or self.retries or not self.speculation.enabled:
            return
        idle = [r for r in self.live if not self.outstanding[r]]
        now = time.monotonic()
        for task, rank, helper, ran_s in self.speculation.copies_to_start(now, self.walltime.durations, idle,
                                                                          self.outstanding):
            self.outstanding[helper][task.batch.id] = task
            self.log.warning("speculation: mini-batch %s has run %.1f s on rank %d (limit %.1f s); starting a copy "
                             "on idle rank %d", task.batch.id, ran_s, rank,
                             self.speculation.limit(self.walltime.durations), helper)
            self.to_worker(helper, ("tasks", [task]))

    def _settle_copies(self, task: Task, outcome: Outcome) -> bool:
        """A copy's outcome. True when the caller must not go on (a failed copy while another copy
        still runs: no retry, no second commit); a success aborts the copies that lost."""
        losers = self.speculation.settle(task.batch.id, outcome.rank, outcome.ok)
        if losers is None:
            self.tally.errors[outcome.error_class or "exception"] += 1
            self._append_error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {outcome.rank} "
                                    f"({outcome.error_class}): {outcome.error} (a copy still runs elsewhere)")
            return True
        for other in losers:
            self.outstanding[other].pop(task.batch.id, None)
            self.speculation.mark(other, self.outstanding.get(other), time.monotonic())
            self.to_worker(other, ("abort", task.batch.id))
            self.log.info("speculation: mini-batch %s finished first on rank %d; its copy on rank %d is aborted",
                          task.batch.id, outcome.rank, other)
        return False

    def _next_tasks(self, rank: int, n: int) -> list[Task]:
        """Up to n tasks for a worker: retries that last failed elsewhere first, then new work."""
        tasks = self.retries.take(rank, n, len(self.live)) if self.retries.waiting else []
        if len(tasks) < n and self.pending:
            tasks += self.pending.take(n - len(tasks))
        return tasks

    def _credits(self) -> int:
        """Mini-batches outstanding per worker: 2 (one running, one queued), more when they are so
        short that a message round trip would leave the worker idle (credits_per_worker: auto)."""
        setting = self.config.credits_per_worker
        if setting != "auto":
            return int(setting)
        if self._mean_seconds is None:
            return MIN_CREDITS
        return max(MIN_CREDITS, min(MAX_CREDITS, int(LATENCY_TO_HIDE_S / max(self._mean_seconds, 1e-6)) + 1))

    def _dispatch(self) -> None:
        """Top up every worker's queue to its credits (runs after each message: workers whose queue
        is full cost a lookup each)."""
        if not (self.pending or self.retries):
            return
        remote_credits = self._credits()
        for rank in self.live:
            # rank 0's own worker shares the coordinator's process: a long queue of tiny tasks would
            # let it keep the coordinator from answering the other workers
            credits = min(remote_credits, LOCAL_MAX_CREDITS) if rank == 0 and len(self.live) > 1 else remote_credits
            queue = self.outstanding[rank]
            room = credits - len(queue)
            if room > 0 and self.walltime.limited:  # only as many as would finish in time, each behind the others
                room = next((i for i in range(room) if not self.walltime.fits(len(queue) + i)), room)
            if room <= 0:
                continue
            tasks = self._next_tasks(rank, room)
            if tasks:
                if self.first_dispatch is None:
                    self.first_dispatch = time.monotonic()
                if not queue:
                    self.speculation.running_since[rank] = time.monotonic()
                queue.update((task.batch.id, task) for task in tasks)
                self.to_worker(rank, ("tasks", tasks))
                if not (self.pending or self.retries):
                    return

    def begin_stop(self, status: str, exit_code: int, reason: str) -> None:
        """Stop handing out work; running attempts get stop_grace seconds to finish and commit."""
        self.log.warning("stopping (%s): %s", status, reason)
        self.stops.begin(time.monotonic())
        self.status, self.exit_code, self.reason = status, exit_code, reason
        self.pending.clear()
        self.retries.clear()
        for rank in self.live:
            self.to_worker(rank, ("cancel", None))
        self._record_stop()

    def _record_stop(self) -> None:
        """Write the stop into job_result and state.json at once, before any grace: a launcher may kill
        the ranks a moment after it forwards the signal (Open MPI's prterun: 0.2-0.5 s), and the job's
        files must not say Running then. _finish() rewrites both if the job ends by itself."""
        result = self.result()
        result["reason"] = f"{self.reason}; {STOPPED_NOTE}"
        self._guarded(self.store.flush, False)
        self._guarded(write_job_result, self.layout, result, self.first_error)
        self._guarded(self.store.write_status, self.status)

    def _check_walltime(self) -> None:
        """Stop before the job's time limit once no mini-batch would finish in time."""
        reason = self.stops.time_limit(bool(self.pending or self.retries))
        if reason:
            self.begin_stop("Interrupted", EXIT_TIME_LIMIT, reason)
            self.stops.drain_until_time_limit(time.monotonic())

    def _work_left(self) -> bool:
        return bool(self.pending or self.retries or any(self.outstanding.values()))

    def _finished(self) -> bool:
        if self.stops.stopping:
            return self.stops.drained(any(self.outstanding.values()), time.monotonic())
        if self.retries.deferred and not (self.pending or self.retries):
            self.retries.release_deferred()
            self._dirty = True
        if not self.live and self.stalled and self._work_left():
            return self._every_worker_stalled()
        if not self.live and self._work_left():
            error = self.init_error.summary if self.init_error else "no worker could start"
            self.first_error = self.init_error or self.first_error
            self.status, self.exit_code, self.reason = "Failed", 1, f"init() failed on every worker: {error}"
            return True
        if self._work_left():
            return False
        if self.thresholds.nothing_succeeded(self.tally):
            self.status, self.exit_code, self.reason = "Failed", 1, "no item succeeded"
        return True

    def _every_worker_stalled(self) -> bool:
        """No worker can run anything: each is held by a hung inline call (or failed init()). The last
        one to stall gets one more run_invocation_timeout to return; then the job ends Failed."""
        timeout = self.config.run_invocation_timeout
        if time.monotonic() < self.last_stall + timeout:
            return False
        self.first_error = self.stall_error or self.first_error
        self.status, self.exit_code = "Failed", 1
        self.reason = (f"no worker can run: each is held by a run() call that did not return within "
                       f"run_invocation_timeout={timeout:g}s, and the inline executor cannot kill a call; "
                       "use executor: process, which kills hung calls")
        return True

    # ---- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """The job, from the first task to the last result; its exit status."""
        shares_gil = isinstance(getattr(self.local, "executor", None), InlineExecutor) and self.worker_count > 1
        with switch_interval(SHARED_GIL_SWITCH_S if shares_gil else None):
            return self._run()

    def _run(self) -> int:
        self.log.info("coordinating %d mini-batches (%d already committed) on %d workers",
                      self.tally.batches_total, self.tally.batches_final, self.worker_count)
        # only coordinating, rank 0 may sleep up to half the latency that credits hide: a worker's queue
        # covers the wait, and an idle coordinator wakes half as often (a third less CPU, A/B)
        backoff = idle_policy(self.local) if self.local is not None else Backoff(max_sleep=QUIET_MAX_SLEEP_S)
        next_housekeeping = 0.0
        while True:
            try:
                busy = self._receive()
            except OSError as exc:
                busy = True
                self.on_output_error(exc)
            if self.local is not None:
                busy = self.local.step() or busy
            if self.signals.received and (stop := self.stops.signalled()):
                self.begin_stop("Interrupted", *stop)
            if self._dirty and not self.stops.stopping:
                self._dirty = False
                self._dispatch()
            if self._finished():
                break
            now = time.monotonic()
            if now >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_EVERY_S
                self._guarded(self._housekeeping, now)
            if busy:
                backoff.busy()
            else:
                backoff.idle()
        return self._finish()

    def _housekeeping(self, now: float) -> None:
        """What the loop does every HOUSEKEEPING_EVERY_S: flushes, progress, stops, speculation."""
        self.store.maybe_flush()
        if self.remote is not None and self.remote.push_due():
            self.store.flush()
            self.remote.push(self.store.committed_files)
        self.progress.update(self.tally.batches_final, self.tally.items_ok, self.tally.items_failed)
        self._check_walltime()
        self._speculate()
        if now >= self._next_snapshot:
            self._next_snapshot = now + OVERVIEW_EVERY_S
            write_json_atomic(self.layout.progress_json, self.snapshot())
        self.requests = [r for r in self.requests if not r.Test()]

    def _guarded(self, step: Any, *args: Any) -> None:
        """A step that writes into the output; a failed write stops the job (on_output_error)."""
        try:
            step(*args)
        except OSError as exc:
            self.on_output_error(exc)

    def on_output_error(self, exc: OSError) -> None:
        """A write into the output failed (a full disk, the folder removed): nothing more can be
        committed, so the job stops at once, Interrupted and resumable where the journal's folder is
        still there, else Failed. The first such error is the one line the launcher prints."""
        if self.output_error is not None:
            return
        message, resumable = describe_write_error(exc, None, self.layout.output)
        if self.store_closed:  # the results and the journal are whole: only a log could not be written
            self.output_error = f"{message}; the job's logs are incomplete"
            return
        self.output_error = message + ("; resume with --resume once it can be written" if resumable else "")
        self.log.error("%s", message)
        status = "Interrupted" if resumable and self.status != "Failed" else "Failed"
        if self.stops.stopping:
            self.status, self.exit_code, self.reason = status, 1, message
        else:
            self.begin_stop(status, 1, message)
        self.stops.end_grace()  # attempts still running could not be committed: no grace

    def _check_result_file(self) -> None:
        """The result file must be the bytes this run committed before the job may say Completed."""
        problem = self.store.verify_written()
        if problem and self.output_error is None:
            self.log.error("%s", problem)
            self.status, self.exit_code, self.reason = "Failed", 1, problem
            self.output_error = f"{problem}; resume with --resume to run the lost mini-batches again"

    def _count_preempted(self) -> None:
        """Attempts still running when the drain ended are killed: count them as `preempted` (no try
        used, not journaled: a resume runs them again)."""
        for rank, task in self.stops.cut_short(self.outstanding):
            self.tally.errors["preempted"] += 1
            self._append_error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {rank} (preempted): "
                                    f"cut short by the stop ({self.reason})")

    def _finish(self) -> int:
        """Stop the workers, then write the job's end; a write that fails (a full disk) changes the
        status and is said once, but never keeps the other ranks waiting."""
        was_stopping, self.stops.stopping = self.stops.stopping, True  # a write error from here on only sets the status
        if was_stopping:
            self._guarded(self._count_preempted)
        for rank in range(1, self.n_ranks):
            self.to_worker(rank, ("stop", self.exit_code))
        if self.local is not None:
            self.local.close(self.config.stop_grace)
        self._guarded(self._check_result_file)
        self._guarded(self.store.close, self.status)
        self.store_closed = True
        self._guarded(self.progress.close, self.tally.batches_final, self.tally.items_ok, self.tally.items_failed)
        self._guarded(write_job_result, self.layout, self.result(), self.first_error)
        if self.remote is not None:
            self.remote.push_all(first=self.store.committed_files[:2])
        self._finished_at = time.time()
        self._guarded(write_json_atomic, self.layout.progress_json, self.snapshot())
        self.log.info("job %s (exit %d)%s", self.status, self.exit_code, f": {self.reason}" if self.reason else "")
        for request in self.requests:
            request.wait()
        return self.exit_code

    def snapshot(self) -> dict[str, Any]:
        """What `mpibatch status` reads while the job runs: logs/job_progress.json."""
        data = self.result()
        if self._finished_at is None:
            data["status"] = "Stopping" if self.stops.stopping else "Running"
            data["finished"] = None
        rate, eta = self.progress.rate(self.tally.batches_final)
        data.update({
            "updated": time.time(),
            "rate": round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            "end_time": self.walltime.end,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
            "per_rank": {str(r): {**a, "running": len(self.outstanding.get(r, ()))} for r, a in self.activity.items()},
            "hosts": ranks_by_host(self.hosts),
        })
        return data

    def timing(self) -> dict[str, Optional[float]]:
        """When work started and how long dispatching took: what a benchmark compares with a peer.

        first_dispatch_s counts from the start of rank 0's process (imports, listing and planning
        included); dispatch_s from the moment work was handed out and a worker had finished
        init() (so a slow init() is not counted as dispatch) to the last mini-batch made final.
        """
        if self.first_dispatch is None:
            return {"first_dispatch_s": None, "dispatch_s": None}
        began = max(self.first_dispatch, self.first_ready)
        return {"first_dispatch_s": round(self.first_dispatch - PROCESS_STARTED, 3),
                "dispatch_s": round(max(self.last_final - began, 0.0), 4)}

    def result(self) -> dict[str, Any]:
        tally = self.tally
        return {
            "status": self.status,
            "mpibatch_version": installed_version(),
            "reason": self.reason or None,
            "exit_code": self.exit_code,
            "started": self.started_wall,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "timing": self.timing(),
            "ranks": self.n_ranks,
            "workers": self.worker_count,
            "mini_batches": {"total": tally.batches_total, "succeeded": tally.batches_ok,
                             "failed": tally.batches_failed, "retried": tally.retried},
            "bisection": {"mini_batches_split": tally.batches_split, "items_isolated": tally.items_isolated,
                          "stopped": self.bisection.stopped},
            "speculation": {"copies_started": self.speculation.started, "copies_won": self.speculation.won},
            "items": {"total": tally.items_total, "succeeded": tally.items_ok, "failed": tally.items_failed},
            "result_lines": {"extra_lines_in_elements": tally.extra_lines, "extra_elements": tally.extra_elements},
            "errors_by_class": {cls: tally.errors.get(cls, 0) for cls in ERROR_CLASSES},
            "output_file": (self.layout.shown(self.layout.result_file)
                            if self.config.output_action == "append_row" else None),
            "error": self.first_error.summary if self.first_error else None,
            "warnings": self.thresholds.warnings(tally, self.status == "Completed"),
            "first_error": self.first_error.to_json() if self.first_error else None,
        }
