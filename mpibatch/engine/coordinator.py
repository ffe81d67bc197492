"""Rank 0: hands out mini-batches with credits, retries failures elsewhere, enforces the error
thresholds, commits results exactly once, reports progress and stops cleanly on signals."""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

from ..cluster.walltime import EXIT_TIME_LIMIT, Walltime
from ..config import JobConfig
from ..inputs.plan import BatchPlan
from ..output.commit import JournalEntry, ResultStore
from ..output.logs import FirstError, Layout
from ..output.progress import Progress
from ..output.remote import RemoteOutput
from ..records import BatchId, Outcome, Task
from ..script.inline import InlineExecutor
from .bisection import Bisection, halves_to_redo, rewrite_failed_items
from .files import JobFiles
from .group_work import GroupWork
from .groups import Groups
from .idle_work import IdleWork
from .mail import SHARED_GIL_SWITCH_S, Mail, switch_interval
from .pending import Pending
from .polling import LATENCY_TO_HIDE_S, QUIET_MAX_SLEEP_S, Backoff
from .report import Report, Timing
from .retry import Retries
from .settle import Settle
from .signals import StopSignals
from .speculation import Speculation
from .stops import STOPPED_NOTE, Stops
from .tally import Tally
from .thresholds import Thresholds
from .worker import Worker, idle_policy
from .workers import Workers

HOUSEKEEPING_EVERY_S = 0.2
MIN_CREDITS, MAX_CREDITS = 2, 256
LOCAL_MAX_CREDITS = 8  # rank 0's own worker, when there are others (+6% no-op throughput at 2 ranks, A/B)


class Coordinator:
    """The dispatch loop of rank 0; run() returns the job's exit status."""

    def __init__(self, comm: Any, config: JobConfig, layout: Layout, batches: BatchPlan,
                 store: ResultStore, earlier: list[JournalEntry], worker_ranks: list[int],
                 local: Optional[Worker], signals: StopSignals, log: logging.Logger, n_ranks: int,
                 input_names: list[str], walltime: Optional[Walltime] = None,
                 hosts: Optional[dict[int, str]] = None, groups: Optional[Groups] = None) -> None:
        self.config = config
        self.layout = layout
        self.local = local
        self.signals = signals
        self.log = log
        self.n_ranks = n_ranks
        self.group_work = GroupWork(self, groups) if groups is not None else None
        self.mail = Mail(comm, local, n_ranks, groups.send if groups is not None else None)
        self.to_worker = self.mail.send
        self.inbox = self.mail.inbox  # rank 0's own worker sends here
        self.workers = Workers(worker_ranks, config.run_invocation_timeout)
        self.live = self.workers.live  # the same list: the workers that can take work
        self.worker_count = len(worker_ranks)
        self.outstanding: dict[int, dict[BatchId, Task]] = {r: {} for r in worker_ranks}
        redo = halves_to_redo(batches.get, earlier)  # halves of splits a killed run did not finish
        self.pending = Pending(batches.after({e.id for e in earlier}), [Task(b, 1) for b in redo])
        rewrite_failed_items(layout.failed_items_txt, earlier)  # a resume keeps exactly the journaled isolations
        self.retries = Retries(config.run_max_try)
        self.thresholds = Thresholds.of(config)
        self.bisection = Bisection(config.bisect_failures)
        self.tally = Tally.resumed(batches, earlier, redo)
        self.status = "Completed"
        self.reason = ""
        self.exit_code = 0
        self.progress = Progress(config.progress, len(batches), self.tally.batches_final,
                                 layout.progress_overview)
        self._dirty = True
        self._mean_seconds: Optional[float] = None  # of run() calls, for the credits
        # auto credits: 2 (one running, one queued) and the prefetch depth more, so that right after a run()
        # ends the next ones are already in the entry-script process for their data to be read meanwhile
        self.least_credits = MIN_CREDITS + config.prefetch_depth
        self.sharing = False  # a busy worker's queue is being shared out: credits stay at the least
        self.idle = IdleWork(self)
        self.speculation = Speculation(config.speculative and config.executor == "process",
                                       config.speculation_factor, config.run_invocation_timeout)
        self.walltime = walltime or Walltime(None)
        self.stops = Stops(signals, self.walltime, config.stop_grace)
        hosts = hosts or {}  # rank -> host, so a job that vanished says where it ran
        activity = {r: {"mini_batches": 0, "items": 0, "last": None, "host": hosts.get(r)} for r in worker_ranks}
        self.timing = Timing()
        self.settle = Settle(store, self.tally, self.bisection, layout, input_names, activity, self.timing, log)
        self.report = Report(config, layout, n_ranks, self.worker_count, self.tally, self.bisection, self.speculation,
                             self.thresholds, self.progress, self.walltime, hosts, activity, self.timing)
        remote = RemoteOutput(layout.remote_url, dict(config.output_storage_options)) if layout.remote_url else None
        self.files = JobFiles(store, layout, remote, self.progress, self.tally, self.on_output_error)
        self._ended = False
        self.groups_closed = False
        if groups is not None:
            groups.accepting = self.group_work.accepting
            self.report.groups = self.group_work.to_json

    # ---- messages ----------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        self._dirty = True

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "outcomes":
            self.on_outcomes(message[1])
        elif kind == "ready":
            self.timing.first_ready = self.timing.first_ready or time.monotonic()
            self.log.info("worker on rank %d ready (init %.3f s)", message[1], message[2])
            if self.workers.ready(message[1]):
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
        self.workers.stall(rank, time.monotonic(), FirstError(
            batch_id, attempt, rank, "timeout", error, "", self.layout.relative(self.layout.rank_log(rank))))
        self.retries.defer(batch_id)

    def _on_returned(self, rank: int, ids: list[BatchId]) -> None:
        tasks = [self.outstanding[rank].pop(i) for i in ids if i in self.outstanding[rank]]
        self.speculation.mark(rank, self.outstanding[rank], time.monotonic())
        tasks = [t for t in tasks if not self.speculation.handed_back(t.batch.id, rank)]
        if not self.stops.stopping:
            self.pending.extendleft(reversed(tasks))
        self._dirty = True

    def _on_init_failed(self, rank: int, error: str, traceback: str) -> None:
        self.log.error("init() failed on rank %d: %s", rank, error)
        self.workers.init_failed(rank, self.settle.init_failed(rank, error, traceback))
        self._on_returned(rank, list(self.outstanding[rank]))

    def on_outcomes(self, outcomes: list[Outcome]) -> None:
        """A worker's outcomes, in order. Attempts that returned every item are committed together
        (one write, one group of journal lines and CSV rows); any other outcome commits those
        before it first, so the result file keeps the order of the worker's events."""
        if not outcomes:
            return
        whole: list[tuple[Task, Outcome]] = []
        settled = False
        settle = self.settle
        for outcome in outcomes:
            task = self._attempt_over(outcome)
            if task is None:
                continue
            settled = True
            if outcome.ok and outcome.n_returned >= outcome.n_items:
                whole.append((task, outcome))
                continue
            settle.succeeded(whole)
            whole = []
            if outcome.ok:  # items without a result line count as failed
                settle.succeeded([(task, outcome)])
            else:
                self._on_failed_attempt(task, outcome)
            reason = self.thresholds.exceeded(self.tally)
            if reason and not self.stops.stopping:
                self.begin_stop("Failed", 1, reason)
        settle.succeeded(whole)
        rank = outcomes[-1].rank  # one worker's message: its clocks are set once
        self.speculation.mark(rank, self.outstanding.get(rank), time.monotonic())
        if settled:
            settle.activity[rank]["last"] = time.time()

    def _attempt_over(self, outcome: Outcome) -> Optional[Task]:
        """The task an outcome ends, with the duration statistics updated; None when nothing is
        left to do (a late inline result, a speculative copy that lost)."""
        task = self.outstanding[outcome.rank].pop(outcome.batch_id, None)
        if task is None:
            return None
        if task.batch.id in self.speculation.copies and self.idle.settle_copies(task, outcome):
            return None
        self._dirty = True
        seconds = outcome.seconds
        self.walltime.observe(seconds)
        self._mean_seconds = seconds if self._mean_seconds is None else 0.9 * self._mean_seconds + 0.1 * seconds
        return task

    def _on_failed_attempt(self, task: Task, outcome: Outcome) -> None:
        """Counted and said; it runs again while it has tries left, else it is final (failed, split, isolated)."""
        errors = self.settle.attempt_failed(task, outcome)
        if self.retries.after_failure(task, outcome.rank, queue=not self.stops.stopping):
            return
        halves = self.settle.out_of_tries(task, outcome, errors)
        if halves and not self.stops.stopping:
            self.pending.extendleft(reversed(halves))

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
        if self._mean_seconds is None or self.sharing:
            return self.least_credits
        return max(self.least_credits, min(MAX_CREDITS, int(LATENCY_TO_HIDE_S / max(self._mean_seconds, 1e-6)) + 1))

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
            if room <= 0:  # most workers, most of the time: nothing more to work out for them
                continue
            # only as many as would finish in time (a group's: in its own allocation), each behind the others
            end = self.walltime.end if rank < self.n_ranks or self.group_work is None else self.group_work.end_of(rank)
            if end is not None:
                room = next((i for i in range(room) if not self.walltime.fits(len(queue) + i, end=end)), room)
                if room <= 0:
                    continue
            tasks = self._next_tasks(rank, room)
            if tasks:
                if self.timing.first_dispatch is None:
                    self.timing.first_dispatch = time.monotonic()
                if not queue:
                    self.speculation.running_since[rank] = time.monotonic()
                queue.update((task.batch.id, task) for task in tasks)
                self.to_worker(rank, ("tasks", tasks))
                if not (self.pending or self.retries):
                    self.sharing = False
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
        self.files.stopped(result, self.settle.first_error, self.status)

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
        if not self.live and self._work_left():
            if self.worker_count == 0 and self.group_work is not None:
                return False  # a coordinator-only job waits for groups to join
            failed = self.workers.none_left(time.monotonic())
            if failed is None:
                return False
            self.status, self.exit_code, self.reason = "Failed", 1, failed[0]
            self.settle.first_error = failed[1] or self.settle.first_error
            return True
        if self._work_left():
            return False
        if self.thresholds.nothing_succeeded(self.tally):
            self.status, self.exit_code, self.reason = "Failed", 1, "no item succeeded"
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
        receive, handle, group_work = self.mail.receive, self.handle, self.group_work
        while True:
            try:
                busy = receive(handle)
                if group_work is not None:
                    busy = group_work.poll(time.monotonic()) or busy
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
                self.files.guarded(self._housekeeping, now)
            if busy:
                backoff.busy()
            else:
                backoff.idle()
        return self._finish()

    def _housekeeping(self, now: float) -> None:
        """What the loop does every HOUSEKEEPING_EVERY_S: flushes, progress, stops, speculation."""
        self.files.flush()
        self._check_walltime()
        if self.group_work is not None:
            self.group_work.housekeeping(now)
        self.idle.share_out()
        self.idle.speculate()
        self.files.snapshot(now, self.snapshot)
        self.mail.reap()

    @property
    def output_error(self) -> Optional[str]:
        return self.files.error

    def on_output_error(self, exc: OSError) -> None:
        """A write into the output failed (a full disk, the folder removed): nothing more can be
        committed, so the job stops at once, Interrupted and resumable where the journal's folder is
        still there, else Failed. The first such error is the one line the launcher prints."""
        said = self.files.write_failed(exc)
        if said is None:
            return
        message, resumable = said
        self.log.error("%s", message)
        status = "Interrupted" if resumable and self.status != "Failed" else "Failed"
        if self.stops.stopping:
            self.status, self.exit_code, self.reason = status, 1, message
        else:
            self.begin_stop(status, 1, message)
        self.stops.end_grace()  # attempts still running could not be committed: no grace

    def _check_result_file(self) -> None:
        """The result file must be the bytes this run committed before the job may say Completed."""
        problem = self.files.lost_results()
        if problem:
            self.log.error("%s", problem)
            self.status, self.exit_code, self.reason = "Failed", 1, problem

    def _finish(self) -> int:
        """Stop the workers, then write the job's end; a write that fails (a full disk) changes the
        status and is said once, but never keeps the other ranks waiting."""
        was_stopping, self.stops.stopping = self.stops.stopping, True  # a write error from here on only sets the status
        if was_stopping:
            self.files.guarded(self.settle.preempted, self.stops.cut_short(self.outstanding), self.reason)
        # each worker ends its script within stop_grace, and before the allocation's end on a time-limit stop
        close_s = self.walltime.close_deadline(self.config.stop_grace)
        for rank in range(1, self.n_ranks):
            self.to_worker(rank, ("stop", (self.exit_code, close_s)))
        if self.local is not None:
            self.local.close(close_s)
        if self.group_work is not None:
            self.group_work.close(self.exit_code)
            self.groups_closed = True
        self.files.guarded(self._check_result_file)
        self.files.close(self.status)
        self._ended = True
        self.files.write_end(self.result(), self.settle.first_error, self.snapshot)
        self.log.info("job %s (exit %d)%s", self.status, self.exit_code, f": {self.reason}" if self.reason else "")
        self.mail.wait()
        return self.exit_code

    def snapshot(self) -> dict[str, Any]:
        """What `mpibatch status` reads while the job runs: logs/job_progress.json."""
        running = None if self._ended else "Stopping" if self.stops.stopping else "Running"
        return self.report.snapshot(self.result(), running, self.outstanding)

    def result(self) -> dict[str, Any]:
        """job_result.json."""
        return self.report.result(self.status, self.exit_code, self.reason, self.settle.first_error)
