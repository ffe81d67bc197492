"""ProcessExecutor: the entry script in a child process started fresh (never forked after MPI_Init),
killable at its exact deadline and restarted after a crash; the launcher's variables kept from it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import IO, Any, Callable, Optional, Sequence

from ..config.sizes import format_bytes
from ..records import Outcome, Task
from .child import EXIT_PIPE_LOST
from .entry import RuntimeSpec, has_data_phase
from .executor import PIPELINE_DEPTH, Event, InitDone, InitFailed, Restarting
from .outbox import Outbox, readable_now
from .proctree import TOKEN_VARIABLE, kill_tree
from .script_env import child_command, child_environment

DATA_TIMEOUT_S = 600.0  # the longest a mini-batch's data may take to get ready, when run_invocation_timeout is shorter
MEMORY_SAMPLE_EVERY_S = 0.2  # reading a process tree's RSS costs ~0.1 ms per process: not every poll

# Variables of the MPI launcher that must not reach the entry-script process: a script that
# imports mpi4py there would otherwise try to join the job's world (PMI_*, PMIX_*, OMPI_COMM_WORLD_*)
# or take the rank's pinning (Intel's I_MPI_PIN_MAPPING, I_MPI_INFO_*). Hydra (MPICH, Intel MPI),
# Open MPI's prterun (PRTE_*, OPAL_*) and PMIx launchers (srun --mpi=pmix) each write their own.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "PRTE_", "HYDRA_", "MPIR_", "OMPI_", "OPAL_", "I_MPI_", "MPI_LOCAL")
# What a user sets under those prefixes for any MPI program, kept for a script that runs its own
# (`mpirun` of a simulation): MCA tuning, where the MPI is installed, Open MPI's consent to run as root.
_USER_SETTINGS = ("OMPI_MCA_", "PRTE_MCA_", "PMIX_MCA_", "OPAL_PREFIX", "I_MPI_ROOT", "OMPI_ALLOW_RUN_AS_ROOT")
# ...less the MCA names Open MPI's launchers (prterun 5, orterun 4) set for each rank of the job.
_LAUNCHER_MCA = tuple(f"OMPI_MCA_{name}" for name in (
    "PREFIXES", "num_procs", "initial_wdir", "cpu_type", "orte_", "ess", "pmix", "shmem_RUNTIME_QUERY_hint"))


def _from_launcher(name: str) -> bool:
    """Whether an environment variable is the launcher's wiring of this rank, not a user's setting."""
    if not name.startswith(_LAUNCHER_PREFIXES):
        return False
    return not name.startswith(_USER_SETTINGS) or name.startswith(_LAUNCHER_MCA)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 if it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass  # ended between listing and reading
    return total


def describe_exit(returncode: int) -> str:
    """Why a child ended, in words: 'killed by SIGSEGV' or 'exited with status 3'."""
    if returncode < 0:
        name = _signal_name(-returncode)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    if returncode == EXIT_PIPE_LOST:
        return f"exited with status {returncode} (its pipe to the worker broke: did the script close file descriptors?)"
    return f"exited with status {returncode}"


class ProcessExecutor:
    """The entry script in a child process started fresh, killable at its exact deadline.

    Tasks are pipelined: up to PIPELINE_DEPTH wait in the child's pipe behind the running one, so
    a short run() never waits for a round trip. The head of `inflight` is the running task; its
    clock starts when the outcome before it arrives, and run_invocation_timeout's when the child says run()
    was called (its data, read ahead or not, is ready).
    """

    def __init__(self, spec: RuntimeSpec, stdout: IO[bytes], stderr: IO[bytes], env: dict[str, str],
                 init_timeout: float, run_timeout: float, cpus: Optional[list[int]] = None,
                 memory_limit: Optional[int] = None, memory_text: str = "", python: Optional[str] = None,
                 prefix: Sequence[str] = ()) -> None:
        self.spec = spec
        self.command = child_command(python, prefix)  # python: the script's own environment (script_env.py)
        self.memory_limit = memory_limit
        self.memory_text = memory_text or (format_bytes(memory_limit) if memory_limit else "")
        self._next_sample = 0.0
        self.stdout, self.stderr = stdout, stderr
        self.env = child_environment({k: v for k, v in env.items() if not _from_launcher(k)}, python)
        self.init_timeout, self.run_timeout = init_timeout, run_timeout
        self.cpus = cpus
        self.state = "new"  # new, starting, ready, failed, closed
        self.inflight: deque[Task] = deque()  # sent to the child (or to be re-sent after a restart), in order
        self._dropped: set[Any] = set()  # ids taken back while maybe already read by the child
        self.deadline = 0.0
        self.started = 0.0
        self._in_run = True  # the head task's run() was called (its data phase is over)
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._token = ""  # in the environment of every process the current child starts (proctree)
        self._inbox: Optional[Connection] = None
        self._outbox: Optional[Outbox] = None
        self._inbox_ready: Callable[..., bool] = lambda timeout=0.0: False

    @property
    def ready(self) -> bool:
        """Initialised and idle."""
        return self.state == "ready" and not self.inflight

    @property
    def room(self) -> int:
        """How many more tasks submit() takes now."""
        return PIPELINE_DEPTH - len(self.inflight) if self.state == "ready" else 0

    @property
    def pid(self) -> Optional[int]:
        """The entry-script process now alive, for the resource log; None between a death and its restart."""
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None and self.state != "closed" else None

    def start(self) -> None:
        """Start a child and its init(); poll() reports InitDone or InitFailed."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._token = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.proc = subprocess.Popen(
            [*self.command, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=self.stdout,
            stderr=self.stderr, env={**self.env, **self.spec.environment, TOKEN_VARIABLE: self._token}, start_new_session=True,
            cwd=self.spec.script_home,  # as Azure ML: relative paths resolve from the code folder
        )
        os.close(to_child_r)
        os.close(from_child_w)
        if self.cpus:
            try:
                os.sched_setaffinity(self.proc.pid, self.cpus)
            except OSError:
                pass
        self._outbox = Outbox(to_child_w)
        self._inbox = Connection(from_child_r, readable=True, writable=False)
        self._inbox_ready = readable_now(from_child_r)
        self._outbox.send(self.spec)
        self._dropped.clear()
        self.state, self.started = "starting", time.monotonic()
        self.deadline = self.started + self.init_timeout

    def submit(self, *tasks: Task) -> None:
        assert self.state == "ready" and self._outbox is not None and len(tasks) <= self.room
        idle = not self.inflight
        self.inflight.extend(tasks)
        self._outbox.send(("run", tasks))
        if idle:
            self._start_clock()

    def _start_clock(self) -> None:
        """The head of the pipeline starts now (its predecessor just ended)."""
        if not self.inflight:
            return
        self.started = time.monotonic()
        # while remote files are staged or table slices read (or a prefetch of them ends), the run() clock has
        # not started: the child says ("started", id) when it calls run(); meanwhile this bounds a read that hangs
        info = self.spec.inputs[self.inflight[0].batch.input_index]
        self._in_run = not has_data_phase(info)
        self.deadline = self.started + (self.run_timeout if self._in_run else max(self.run_timeout, DATA_TIMEOUT_S))

    def poll(self) -> Optional[Event]:
        """One event if something happened, else None; never blocks."""
        if self.state not in ("starting", "ready"):
            return None
        assert self._inbox is not None and self._outbox is not None and self.proc is not None
        self._outbox.flush()
        try:
            while self._inbox_ready():
                try:
                    message = self._inbox.recv()
                except (EOFError, OSError):
                    raise
                except Exception as exc:  # noqa: BLE001 - bytes that are no message: the script wrote into the pipe
                    return self._on_garbage(exc)
                event = self._on_message(message)
                if event is not None:
                    return event
        except (EOFError, OSError):
            return self._on_death()
        if self.state == "ready" and not self.inflight:
            return None
        if self.proc.poll() is not None:
            return self._on_death()
        now = time.monotonic()
        if now > self.deadline:
            return self._on_timeout()
        if self.memory_limit and now >= self._next_sample:
            self._next_sample = now + MEMORY_SAMPLE_EVERY_S
            used = tree_rss(self.proc.pid)
            if used > self.memory_limit:
                return self._on_memory(used)
        return None

    def _on_memory(self, used: int) -> Event:
        """The memory guard: kill the whole group like the kernel's OOM killer would, then restart."""
        self._kill()
        what = f"used {format_bytes(used)}, above max_worker_memory={self.memory_text}"
        return self._lost("oom", f"the entry-script process {what} during init() and was killed",
                          f"the entry-script process {what}, and was killed")

    def _on_message(self, message: tuple) -> Optional[Event]:
        kind = message[0]
        if kind == "init_ok":
            self.state = "ready"
            if self.inflight:  # tasks that waited behind a task that crashed the previous child
                assert self._outbox is not None
                self._outbox.send(("run", tuple(self.inflight)))
                self._start_clock()
            return InitDone(message[1])
        if kind == "init_failed":
            self._kill()
            self.state = "failed"
            return InitFailed(message[1], message[2])
        if kind == "started":
            if self.inflight and self.inflight[0].batch.id == message[1]:
                self.deadline, self._in_run = time.monotonic() + self.run_timeout, True
            return None
        if kind == "restart":
            return self._restart(message[1])
        if kind == "outcome":
            outcome: Outcome = message[1]
            if self.inflight and self.inflight[0].batch.id == outcome.batch_id:
                self.inflight.popleft()
                self._start_clock()
                return outcome
            if outcome.batch_id in self._dropped:  # taken back, but the child had already begun it
                self._dropped.discard(outcome.batch_id)
                self._start_clock()
        return None

    def _lost(self, error_class: str, during_init: str, during_run: str) -> Event:
        """The child is gone: during init() the worker has failed; during run() the attempt has,
        and a fresh child starts (the tasks queued behind it go to the new child)."""
        if self.state == "starting":
            self.state = "failed"
            return InitFailed(during_init, "")
        task = self.inflight.popleft()
        outcome = Outcome(task.batch.id, task.attempt, self.spec.worker.rank, task.batch.size, False,
                          error_class=error_class, error=during_run, seconds=time.monotonic() - self.started)
        self.start()
        return outcome

    def _restart(self, reason: str) -> Event:
        """The child asked to be replaced after a finished run() (it lost its stdio): the tasks queued
        behind go to the fresh child."""
        self._kill()
        self.stderr.write(f"mpibatch: {reason}: the entry-script process is restarted\n".encode())
        self.stderr.flush()
        self.start()
        return Restarting(reason)

    def _on_garbage(self, exc: Exception) -> Event:
        """What came through the pipe is no message: the child cannot be trusted to talk any more."""
        self._kill()
        what = f"the pipe from the entry-script process carried something that is no message ({type(exc).__name__})"
        return self._lost("crash", f"{what} during init()", f"{what} during run()")

    def _on_death(self) -> Event:
        assert self.proc is not None
        returncode = self.proc.wait()
        self._kill()  # what it started may outlive it
        how = describe_exit(returncode)
        return self._lost("crash", f"the entry-script process {how} during init()",
                          f"the entry-script process {how} during run()")

    def _on_timeout(self) -> Event:
        self._kill()
        late = (f"run() did not finish within run_invocation_timeout={self.run_timeout:g}s and was killed" if self._in_run
                else f"its data was not ready (staged or read) within {max(self.run_timeout, DATA_TIMEOUT_S):g}s: "
                     "the entry-script process was killed")
        return self._lost("timeout", f"init() did not finish within init_timeout={self.init_timeout:g}s", late)

    def _kill(self) -> None:
        """The entry-script process and everything it started (proctree), then the pipes."""
        proc = self.proc
        if proc is not None:
            alive = proc.poll() is None  # once reaped, its pid is no longer ours to signal
            kill_tree(proc.pid if alive else None, self._token, group=proc.pid if alive else None)
            proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for conn in (self._inbox, self._outbox):
            if conn is not None:
                conn.close()
        self._inbox = self._outbox = None

    def wait(self, timeout: float) -> None:
        """Idle time of the worker loop: from a millisecond up (poll()'s unit) it blocks on the child's
        pipe, so the child's next message (or its death) ends the wait; shorter waits sleep."""
        if timeout >= 1e-3 and self._inbox is not None and self._outbox is not None and self._outbox.flush():
            self._inbox_ready(timeout)
        else:
            time.sleep(timeout)

    def take_back(self, most: Optional[int] = None) -> list[Task]:
        """The submitted tasks that have not started (a stop), or the last `most` of them: the child will
        skip them. (One the child began just now runs on; its outcome is dropped: rank 0 gets it back.)"""
        if self.state != "ready":  # no child runs any of them: all come back on a stop, none to share
            if most is not None:
                return []
            tasks, self.inflight = list(self.inflight), deque()
            return tasks
        tasks = list(self.inflight)[1:]
        if most is not None:
            tasks = tasks[len(tasks) - min(most, len(tasks)):]
        self._drop(tasks)
        return tasks

    def _drop(self, tasks: list[Task]) -> None:
        ids = {t.batch.id for t in tasks}
        if not ids:
            return
        self.inflight = deque(t for t in self.inflight if t.batch.id not in ids)
        self._dropped |= ids
        assert self._outbox is not None
        self._outbox.send(("drop", ids))

    def abort(self, batch_id: object) -> None:
        """A copy of this mini-batch won elsewhere: kill its running attempt (the tasks behind it go
        to a fresh child) or make the child skip it."""
        if self.state != "ready" or not self.inflight:
            self.inflight = deque(t for t in self.inflight if t.batch.id != batch_id)
            return
        if self.inflight[0].batch.id == batch_id:
            self._kill()
            self.inflight.popleft()
            self.start()
        else:
            self._drop([t for t in self.inflight if t.batch.id == batch_id])

    def close(self, timeout: float) -> str:
        """Call shutdown() in the child, all of it within `timeout` seconds (a time-limit stop leaves
        only so much before the allocation ends), then make sure the child is gone; how it went."""
        deadline = time.monotonic() + timeout
        how = "killed"
        if self.ready and self._outbox is not None and self._inbox is not None:
            try:
                self._outbox.send(("shutdown",))
                if self._outbox.drain(timeout):
                    while self._inbox.poll(max(0.0, deadline - time.monotonic())):
                        if self._inbox.recv()[0] == "bye":  # an outcome of the running call may come first
                            assert self.proc is not None
                            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                            how = "shutdown() returned"
                            break
                if how == "killed":
                    how = f"killed: shutdown() did not return within {timeout:g} s"
            except (EOFError, OSError):
                how = "killed: the process had gone"
            except subprocess.TimeoutExpired:
                how = f"killed: it did not exit within {timeout:g} s of shutdown()"
        self._kill()
        self.state = "closed"
        return how
