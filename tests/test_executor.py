"""Unit tests for mpibatch.script (process.py, inline.py): a real child process (no MPI) and the inline executor."""
from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import psutil
import pytest

import mpibatch
from mpibatch.script import entry
from mpibatch.script.entry import RuntimeSpec, WorkerInfo
from mpibatch.script.executor import InitDone, InitFailed
from mpibatch.script.inline import InlineExecutor
from mpibatch.script.process import ProcessExecutor, describe_exit
from mpibatch.records import InputInfo, MiniBatch, Outcome, Task

REPO = str(Path(mpibatch.__file__).resolve().parent.parent)

SCRIPT = """
    import ctypes, os, subprocess, sys, time

    def init():
        mode = os.environ.get("INIT_MODE", "")
        if mode == "raise":
            raise RuntimeError("model file is missing")
        if mode == "sleep":
            time.sleep(30)
        if mode == "exit":
            os._exit(5)
        if mode == "slow-ok":
            time.sleep(float(os.environ["INIT_SLEEP"]))

    def run(mini_batch):
        out = []
        for item in mini_batch:
            item = os.path.basename(item)  # remote items arrive as local scratch paths
            if item == "sleep":
                time.sleep(30)
            elif item.startswith("sleep:"):
                time.sleep(float(item.split(":")[1]))
            elif item == "spawn-and-sleep":
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                with open(os.environ["GRANDCHILD_PID_FILE"], "w") as fh:
                    fh.write(str(child.pid))
                time.sleep(30)
            elif item.startswith("escape"):  # escape[-scrub][-segfault|-sleep]: a grandchild that leaves the group
                hand_off = ("import subprocess as s; print(s.Popen(['sleep', '1000'], start_new_session=True, "
                            "stdout=s.DEVNULL, stderr=s.DEVNULL).pid)")
                env = {"PATH": os.environ["PATH"]} if "scrub" in item else None  # scrubbed: no token either
                pid = subprocess.run([sys.executable, "-c", hand_off], env=env, capture_output=True, text=True).stdout
                with open(os.environ["GRANDCHILD_PID_FILE"], "w") as fh:
                    fh.write(pid)  # its parent has exited: an orphan in a session of its own
                if item.endswith("segfault"):
                    ctypes.string_at(0)
                if item.endswith("sleep"):
                    time.sleep(30)
            elif item == "child-ignores":
                status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
                out.append(next(line for line in status.splitlines() if line.startswith("SigIgn")))
                continue
            elif item == "close-stdio":
                os.close(1)
                os.close(2)
            elif item == "write-into-the-pipe":
                import fcntl
                for fd in map(int, os.listdir("/proc/self/fd")):
                    try:
                        writes = fd > 2 and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
                    except OSError:
                        continue
                    if writes and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                        os.write(fd, b"\\x00\\x00\\x00\\x08garbage!")
            elif item == "close-low-fds":
                os.closerange(3, 100)
            elif item == "segfault":
                ctypes.string_at(0)
            elif item == "exit7":
                os._exit(7)
            elif item == "env":
                out += [f"{k}={os.environ.get(k)}" for k in ("MY_VAR", "PMI_RANK", "OMPI_COMM_WORLD_RANK")]
                continue
            elif item == "cwd":
                out.append(os.getcwd())
                continue
            elif item == "startup-flag":
                out.append(f"no_user_site={sys.flags.no_user_site}")
                continue
            elif item == "affinity":
                out.append(",".join(map(str, sorted(os.sched_getaffinity(0)))))
                continue
            elif item == "print":
                print("printed by the script")
            out.append(item + " ok")
        return out

    def shutdown():
        with open(os.environ["SHUTDOWN_MARKER"], "w") as fh:
            fh.write("shutdown called")
        time.sleep(float(os.environ.get("SHUTDOWN_SLEEP", "0")))
"""


@pytest.fixture
def spec_factory(tmp_path: Path):
    def make(environment: Optional[dict[str, str]] = None) -> RuntimeSpec:
        home = tmp_path / "src"
        home.mkdir(exist_ok=True)
        script = home / f"exec_script_{uuid.uuid4().hex[:8]}.py"
        script.write_text(textwrap.dedent(SCRIPT))
        info = WorkerInfo(rank=2, node_rank=0, local_worker_index=1, gpu=None, agent_name="rank0002@test",
                          output_dir=str(tmp_path / "out"), working_dir=str(tmp_path / "work"),
                          log_dir=str(tmp_path / "out" / "logs"),
                          entry_log_path=str(tmp_path / "out" / "logs" / "entry.txt"))
        os.makedirs(info.working_dir, exist_ok=True)
        env = {"SHUTDOWN_MARKER": str(tmp_path / "shutdown.marker"),
               "GRANDCHILD_PID_FILE": str(tmp_path / "grandchild.pid"), **(environment or {})}
        return RuntimeSpec(str(script), str(home), [], env, info, [InputInfo("data", False)], "append_row",
                           {"sep": " ", "header": False, "index": False})
    return make


@pytest.fixture
def process_executor(tmp_path: Path, spec_factory):
    made: list[ProcessExecutor] = []

    def make(init_timeout: float = 20, run_timeout: float = 20, environment: Optional[dict[str, str]] = None,
             parent_env: Optional[dict[str, str]] = None, cpus: Optional[list[int]] = None) -> ProcessExecutor:
        env = {**os.environ, "PYTHONPATH": REPO, **(parent_env or {})}
        stdout = open(tmp_path / "stdout.txt", "ab")
        stderr = open(tmp_path / "stderr.txt", "ab")
        executor = ProcessExecutor(spec_factory(environment), stdout, stderr, env, init_timeout, run_timeout, cpus)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close(1.0)
        executor.stdout.close()
        executor.stderr.close()


def wait_event(executor: Any, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        event = executor.poll()
        if event is not None:
            return event
        time.sleep(0.002)
    raise AssertionError(f"no event within {within} s")


def task(batch_id: int, *items: str, attempt: int = 1) -> Task:
    return Task(MiniBatch(batch_id, 0, tuple(items)), attempt)


def started(executor: Any) -> Any:
    executor.start()
    event = wait_event(executor)
    assert isinstance(event, InitDone), event
    assert executor.ready
    return executor


def run_ok(executor: Any, t: Task) -> Outcome:
    executor.submit(t)
    assert not executor.ready
    outcome = wait_event(executor)
    assert isinstance(outcome, Outcome) and outcome.ok, outcome
    return outcome


# ---- ProcessExecutor -------------------------------------------------------------------------

def test_process_init_and_run(process_executor) -> None:
    executor = started(process_executor())
    outcome = run_ok(executor, task(3, "a", "b", attempt=2))
    assert outcome.payload == b"a ok\nb ok\n"
    assert (outcome.batch_id, outcome.attempt, outcome.rank, outcome.n_items) == (3, 2, 2, 2)
    assert executor.ready


def test_process_wait_ends_when_the_child_reports(process_executor) -> None:
    """The worker loop's idle wait blocks on the child's pipe: a result ends it, not the timeout."""
    executor = started(process_executor())
    executor.submit(task(0, "sleep:0.2"))
    began = time.monotonic()
    executor.wait(30.0)
    assert time.monotonic() - began < 10.0  # the result, after 0.2 s, not the 30 s timeout
    outcome = executor.poll()
    assert isinstance(outcome, Outcome) and outcome.ok and outcome.payload == b"sleep:0.2 ok\n"


def test_process_child_environment_cwd_and_launcher_variables(process_executor, tmp_path: Path) -> None:
    executor = started(process_executor(environment={"MY_VAR": "mine"},
                                        parent_env={"PMI_RANK": "3", "OMPI_COMM_WORLD_RANK": "3"}))
    lines = run_ok(executor, task(0, "env", "cwd")).payload.decode().splitlines()
    assert lines[:3] == ["MY_VAR=mine", "PMI_RANK=None", "OMPI_COMM_WORLD_RANK=None"]
    assert os.path.realpath(lines[3]) == os.path.realpath(tmp_path / "src")  # the code folder, as Azure ML


def test_process_environment_variables_are_there_when_the_interpreter_starts(process_executor) -> None:
    """LD_LIBRARY_PATH, PYTHONPATH and the like act only at start: os.environ later is too late."""
    executor = started(process_executor(environment={"PYTHONNOUSERSITE": "1"}))
    assert run_ok(executor, task(0, "startup-flag")).payload == b"no_user_site=1\n"


def test_process_cpu_affinity(process_executor) -> None:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    executor = started(process_executor(cpus=[cpu]))
    assert run_ok(executor, task(0, "affinity")).payload == f"{cpu}\n".encode()


def test_process_script_output_goes_to_stdout_file(process_executor, tmp_path: Path) -> None:
    executor = started(process_executor())
    run_ok(executor, task(0, "print"))
    assert "printed by the script" in (tmp_path / "stdout.txt").read_text()


def test_process_timeout_kills_and_restarts(process_executor) -> None:
    executor = started(process_executor(run_timeout=0.5))
    first_pid = executor.proc.pid
    executor.submit(task(1, "a", "sleep", attempt=2))
    began = time.monotonic()
    outcome = wait_event(executor)
    elapsed = time.monotonic() - began
    assert isinstance(outcome, Outcome)
    assert outcome.ok is False and outcome.error_class == "timeout"
    assert "run_invocation_timeout=0.5" in outcome.error
    assert (outcome.batch_id, outcome.attempt, outcome.n_items) == (1, 2, 2)
    assert 0.5 <= elapsed < 3.0
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
    assert isinstance(wait_event(executor), InitDone)  # a fresh child
    assert executor.proc.pid != first_pid
    assert run_ok(executor, task(2, "c")).payload == b"c ok\n"


def test_process_timeout_kills_the_scripts_own_children(process_executor, tmp_path: Path) -> None:
    executor = started(process_executor(run_timeout=1.0))
    executor.submit(task(0, "spawn-and-sleep"))
    outcome = wait_event(executor)
    assert outcome.error_class == "timeout"
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the script's own child survived the timeout kill")


def test_process_run_just_under_timeout_is_not_killed(process_executor) -> None:
    executor = started(process_executor(run_timeout=2.0))
    assert run_ok(executor, task(0, "sleep:0.3")).payload == b"sleep:0.3 ok\n"


def test_process_segfault_is_a_crash_then_restart(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(4, "segfault"))
    outcome = wait_event(executor)
    assert outcome.ok is False and outcome.error_class == "crash"
    assert "SIGSEGV" in outcome.error
    assert outcome.batch_id == 4
    assert isinstance(wait_event(executor), InitDone)
    assert run_ok(executor, task(5, "fine")).payload == b"fine ok\n"


def test_process_exit_status_is_a_crash(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(6, "exit7"))
    outcome = wait_event(executor)
    assert outcome.ok is False and outcome.error_class == "crash"
    assert "status 7" in outcome.error
    assert isinstance(wait_event(executor), InitDone)
    assert run_ok(executor, task(7, "x")).ok


def test_process_init_exception(process_executor) -> None:
    executor = process_executor(environment={"INIT_MODE": "raise"})
    executor.start()
    event = wait_event(executor)
    assert isinstance(event, InitFailed)
    assert event.error == "RuntimeError: model file is missing"
    assert "Traceback" in event.traceback and "raise RuntimeError" in event.traceback
    assert not executor.ready
    assert executor.poll() is None


def test_process_init_timeout(process_executor) -> None:
    executor = process_executor(init_timeout=0.5, environment={"INIT_MODE": "sleep"})
    executor.start()
    began = time.monotonic()
    event = wait_event(executor)
    assert isinstance(event, InitFailed)
    assert "init_timeout=0.5" in event.error
    assert time.monotonic() - began < 3.0
    assert executor.proc.poll() is not None  # the child was killed
    assert not executor.ready


def test_process_crash_in_init(process_executor) -> None:
    executor = process_executor(environment={"INIT_MODE": "exit"})
    executor.start()
    event = wait_event(executor)
    assert isinstance(event, InitFailed)
    assert "status 5" in event.error and "init()" in event.error


def test_process_close_calls_shutdown(process_executor, tmp_path: Path) -> None:
    executor = started(process_executor())
    run_ok(executor, task(0, "a"))
    assert executor.close(5.0) == "shutdown() returned"
    assert (tmp_path / "shutdown.marker").read_text() == "shutdown called"
    assert executor.proc.poll() is not None
    assert executor.poll() is None


def test_process_close_keeps_to_its_timeout_in_all_when_shutdown_hangs(process_executor, tmp_path: Path) -> None:
    """One deadline for the whole close (it was one per step: 3x the timeout, the time-limit stop's margin)."""
    executor = started(process_executor(environment={"SHUTDOWN_SLEEP": "60"}))
    run_ok(executor, task(0, "a"))  # idle: close() asks for shutdown() (a busy child is killed at once)
    began = time.monotonic()
    how = executor.close(2.0)
    assert time.monotonic() - began < 3.5, "killed once its 2 s were up"
    assert how == "killed: shutdown() did not return within 2 s"
    assert (tmp_path / "shutdown.marker").read_text() == "shutdown called"
    assert executor.proc.poll() is not None


def outcomes_until(executor: Any, count: int, within: float = 20.0) -> list[Any]:
    """The next `count` outcomes (InitDone events of restarts skipped)."""
    found: list[Any] = []
    deadline = time.monotonic() + within
    while len(found) < count:
        event = wait_event(executor, max(deadline - time.monotonic(), 0.1))
        if isinstance(event, Outcome):
            found.append(event)
    return found


def test_process_pipelined_tasks_run_in_order(process_executor) -> None:
    executor = started(process_executor())
    assert executor.room > 3
    executor.submit(task(0, "a"), task(1, "b"), task(2, "c"))
    assert not executor.ready and len(executor.inflight) == 3
    got = outcomes_until(executor, 3)
    assert [o.batch_id for o in got] == [0, 1, 2] and all(o.ok for o in got)
    assert executor.ready


def test_process_crash_fails_only_the_running_task_the_queued_ones_go_to_the_new_child(process_executor) -> None:
    executor = started(process_executor())
    first_pid = executor.proc.pid
    executor.submit(task(0, "a"), task(1, "segfault"), task(2, "b"), task(3, "c"))
    got = outcomes_until(executor, 4)
    assert [(o.batch_id, o.ok, o.error_class) for o in got] == [
        (0, True, None), (1, False, "crash"), (2, True, None), (3, True, None)]
    assert executor.proc.pid != first_pid and executor.ready


def test_process_timeout_clock_starts_when_the_task_before_ends(process_executor) -> None:
    """Two 0.6 s tasks behind each other under a 1 s limit: neither is a timeout."""
    executor = started(process_executor(run_timeout=1.0))
    executor.submit(task(0, "sleep:0.6"), task(1, "sleep:0.6"), task(2, "sleep"))
    got = outcomes_until(executor, 3)
    assert [(o.batch_id, o.ok) for o in got] == [(0, True), (1, True), (2, False)]
    assert got[2].error_class == "timeout"


def test_process_take_back_returns_the_queued_tasks_and_the_child_skips_them(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(0, "sleep:0.5"), task(1, "a"), task(2, "b"))
    time.sleep(0.1)
    assert [t.batch.id for t in executor.take_back()] == [1, 2]
    got = outcomes_until(executor, 1)
    assert got[0].batch_id == 0 and got[0].ok
    time.sleep(0.3)
    assert executor.poll() is None and executor.ready  # 1 and 2 never ran


def test_process_take_back_of_the_last_few_shares_a_queue_and_keeps_the_rest(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(0, "sleep:0.5"), task(1, "a"), task(2, "b"), task(3, "c"))
    time.sleep(0.1)
    assert [t.batch.id for t in executor.take_back(2)] == [2, 3], "the last ones: the next in line stay"
    got = outcomes_until(executor, 2)
    assert [o.batch_id for o in got] == [0, 1] and all(o.ok for o in got)
    time.sleep(0.3)
    assert executor.poll() is None and executor.ready  # 2 and 3 never ran


def test_process_abort_of_a_queued_task_skips_it(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(0, "sleep:0.3"), task(1, "a"), task(2, "b"))
    executor.abort(1)
    got = outcomes_until(executor, 2)
    assert [o.batch_id for o in got] == [0, 2]


def test_process_abort_of_the_running_task_restarts_and_keeps_the_queue(process_executor) -> None:
    executor = started(process_executor())
    executor.submit(task(0, "sleep"), task(1, "a"))
    time.sleep(0.2)
    executor.abort(0)
    got = outcomes_until(executor, 1)
    assert got[0].batch_id == 1 and got[0].ok


def test_describe_exit() -> None:
    assert describe_exit(-11) == "was killed by SIGSEGV"
    assert "out of memory" in describe_exit(-9)
    assert describe_exit(3) == "exited with status 3"


# ---- InlineExecutor --------------------------------------------------------------------------

@pytest.fixture
def inline_executor(tmp_path: Path, spec_factory, monkeypatch: pytest.MonkeyPatch):
    saved_env = dict(os.environ)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(entry, "_WORKER", None)
    logger = logging.getLogger("mpibatch.entry_script")
    handlers = list(logger.handlers)
    made: list[InlineExecutor] = []

    def make(init_timeout: float = 20, run_timeout: float = 20,
             environment: Optional[dict[str, str]] = None) -> InlineExecutor:
        stdout = open(tmp_path / "stdout.txt", "ab")
        stderr = open(tmp_path / "stderr.txt", "ab")
        executor = InlineExecutor(spec_factory(environment), stdout, stderr, init_timeout, run_timeout)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close(2.0)
        if executor._thread is not None and executor._thread.is_alive():
            executor._thread.join(2.0)  # a thread past a timeout ends once its call returns
        executor.stdout.close()
        executor.stderr.close()
    os.environ.clear()
    os.environ.update(saved_env)
    for handler in [h for h in logger.handlers if h not in handlers]:
        handler.close()
        logger.removeHandler(handler)


def test_inline_run_and_close(inline_executor, tmp_path: Path) -> None:
    executor = started(inline_executor())
    outcome = run_ok(executor, task(1, "a", "print"))
    assert outcome.payload == b"a ok\nprint ok\n"
    executor.close(5.0)
    assert (tmp_path / "shutdown.marker").read_text() == "shutdown called"
    assert "printed by the script" in (tmp_path / "stdout.txt").read_text()


def test_inline_soft_timeout_then_ready_again(inline_executor) -> None:
    executor = started(inline_executor(run_timeout=0.3))
    executor.submit(task(8, "sleep:1.5", attempt=1))
    began = time.monotonic()
    outcome = wait_event(executor)
    assert isinstance(outcome, Outcome)
    assert outcome.ok is False and outcome.error_class == "timeout" and outcome.batch_id == 8
    assert "run_invocation_timeout=0.3" in outcome.error
    assert 0.3 <= time.monotonic() - began < 1.4  # reported while the call keeps going
    assert executor.stalled and not executor.ready
    assert executor.poll() is None
    event = wait_event(executor)  # the late call returns: its result is dropped, the worker is free again
    assert isinstance(event, InitDone)
    assert time.monotonic() - began >= 1.4
    assert executor.ready and not executor.stalled
    assert run_ok(executor, task(9, "b")).payload == b"b ok\n"


def test_inline_exception_is_an_outcome(inline_executor) -> None:
    executor = started(inline_executor())
    executor.submit(task(0, "sleep:not-a-number"))
    outcome = wait_event(executor)
    assert outcome.ok is False and outcome.error_class == "exception" and "ValueError" in outcome.error


def test_inline_init_failure(inline_executor) -> None:
    executor = inline_executor(environment={"INIT_MODE": "raise"})
    executor.start()
    event = wait_event(executor)
    assert isinstance(event, InitFailed) and "model file is missing" in event.error
    assert not executor.ready


def test_inline_init_timeout(inline_executor) -> None:
    executor = inline_executor(init_timeout=0.2, environment={"INIT_MODE": "slow-ok", "INIT_SLEEP": "1.2"})
    executor.start()
    event = wait_event(executor)
    assert isinstance(event, InitFailed) and "init_timeout=0.2" in event.error
    assert not executor.ready


def test_inline_capture_leaves_the_ranks_own_stderr_alone(inline_executor, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    executor = started(inline_executor())
    executor.submit(task(0, "sleep:0.5"))
    time.sleep(0.2)  # the call is running in the executor's thread
    print("mpibatch: 3/10 mini-batches (coordinator progress)", file=sys.stderr, flush=True)
    assert isinstance(wait_event(executor), Outcome)
    assert "coordinator progress" not in (tmp_path / "stderr.txt").read_text()
    assert "coordinator progress" in capsys.readouterr().err


def test_process_remote_input_timeout_counts_from_after_the_download(process_executor, tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "sleep").write_text("x")
    executor = process_executor(run_timeout=0.5)
    executor.spec = RuntimeSpec(**{**executor.spec.__dict__,
                                   "inputs": [InputInfo("remote", True, {}, url=f"file://{tmp_path / 'remote'}")]})
    started(executor)
    executor.submit(task(0, str(tmp_path / "remote" / "sleep")))
    began = time.monotonic()
    outcome = wait_event(executor)
    assert outcome.error_class == "timeout", outcome
    assert time.monotonic() - began < 3.0


def test_memory_guard_kills_the_tree_as_oom_and_restarts(process_executor, tmp_path: Path) -> None:
    from mpibatch.script.process import tree_rss

    executor = started(process_executor())
    first_pid = executor.pid
    assert first_pid is not None and tree_rss(first_pid) > 0
    executor.memory_limit = tree_rss(first_pid) + 4 * 2**20  # the grandchild's interpreter pushes it over
    executor.memory_text = "the test limit"
    executor.submit(task(1, "spawn-and-sleep"))
    outcome = wait_event(executor)
    assert isinstance(outcome, Outcome) and outcome.error_class == "oom", outcome
    assert "MB, above max_worker_memory=the test limit, and was killed" in outcome.error and outcome.seconds < 10
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    executor.memory_limit = None  # the restarted child must not trip over the test's tight limit
    assert isinstance(wait_event(executor), InitDone) and executor.pid not in (None, first_pid)


def test_inline_pipelined_tasks_run_in_order(inline_executor) -> None:
    executor = started(inline_executor())
    executor.submit(task(0, "a"), task(1, "b"), task(2, "c"))
    got = outcomes_until(executor, 3)
    assert [o.payload for o in got] == [b"a ok\n", b"b ok\n", b"c ok\n"]
    assert executor.ready


def test_inline_timeout_stalls_and_gives_back_what_did_not_start(inline_executor) -> None:
    executor = started(inline_executor(run_timeout=0.5))
    executor.submit(task(0, "a"), task(1, "sleep:1.5"), task(2, "b"), task(3, "c"))
    got = outcomes_until(executor, 2)
    assert [(o.batch_id, o.ok, o.error_class) for o in got] == [(0, True, None), (1, False, "timeout")]
    assert executor.stalled and executor.room == 0
    assert [t.batch.id for t in executor.take_back()] == [2, 3]
    assert isinstance(wait_event(executor, 5.0), InitDone)  # the late call returned: ready again
    assert executor.ready
    assert run_ok(executor, task(4, "d")).payload == b"d ok\n"


def test_inline_take_back_of_the_last_few_keeps_the_rest(inline_executor) -> None:
    executor = started(inline_executor())
    executor.submit(task(0, "sleep:0.3"), task(1, "a"), task(2, "b"), task(3, "c"))
    time.sleep(0.1)
    assert [t.batch.id for t in executor.take_back(1)] == [3]
    got = outcomes_until(executor, 3)
    assert [o.batch_id for o in got] == [0, 1, 2]
    time.sleep(0.2)
    assert executor.poll() is None and executor.ready


def test_inline_abort_of_a_queued_task_skips_it(inline_executor) -> None:
    executor = started(inline_executor())
    executor.submit(task(0, "sleep:0.3"), task(1, "a"), task(2, "b"))
    executor.abort(1)
    got = outcomes_until(executor, 2)
    assert [o.batch_id for o in got] == [0, 2]


def test_process_big_tasks_and_big_outcomes_never_deadlock_the_pipes(process_executor) -> None:
    """Tasks of 200 KB each behind one another while the child writes 200 KB outcomes: neither side
    may block writing to a pipe the other is not reading (it did: a 1000-path mini-batch job hung)."""
    import threading

    executor = started(process_executor())
    big = [task(i, f"{i:03d}" + "x" * 200_000) for i in range(12)]
    executor.submit(big[0])
    time.sleep(0.5)  # the child now waits to write its 200 KB outcome: nobody reads it yet
    submitting = threading.Thread(target=executor.submit, args=tuple(big[1:]), daemon=True)
    submitting.start()
    submitting.join(10.0)
    assert not submitting.is_alive(), "submit() blocked on a full pipe"
    got = outcomes_until(executor, 12, within=30.0)
    assert [o.batch_id for o in got] == list(range(12)) and all(o.ok for o in got)
    assert all(len(o.payload) == 200_007 for o in got)


# ---- what the script may do to its process ---------------------------------------------------

def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def escapee(tmp_path: Path):
    """The pid of the grandchild the script started in a session of its own; killed if a test left it."""
    pids: list[int] = []

    def read() -> int:
        pids.append(int((tmp_path / "grandchild.pid").read_text()))
        return pids[-1]

    yield read
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.parametrize("item", ["escape-sleep", "escape-scrub-sleep"])
def test_process_timeout_kills_a_grandchild_that_left_the_process_group(process_executor, escapee, item) -> None:
    executor = started(process_executor(run_timeout=2.0))
    executor.submit(task(0, item))
    assert wait_event(executor).error_class == "timeout"
    assert gone(escapee()), "a setsid() grandchild outlived the timeout kill"


def test_process_crash_kills_what_the_dead_process_started(process_executor, escapee) -> None:
    executor = started(process_executor())
    executor.submit(task(0, "escape-segfault"))
    outcome = wait_event(executor)
    assert outcome.error_class == "crash" and "SIGSEGV" in outcome.error
    assert gone(escapee()), "a setsid() grandchild outlived its crashed parent"
    assert isinstance(wait_event(executor), InitDone)


def test_process_close_ends_what_the_script_started(process_executor, escapee) -> None:
    executor = started(process_executor())
    run_ok(executor, task(0, "escape"))
    pid = escapee()
    assert not gone(pid, within=0.3)  # alive while the job runs
    executor.close(5.0)
    assert gone(pid), "a setsid() grandchild outlived the end of the job"


def test_memory_guard_kills_a_grandchild_that_left_the_process_group(process_executor, escapee,
                                                                     tmp_path: Path) -> None:
    from mpibatch.script.process import tree_rss

    executor = started(process_executor())
    executor.submit(task(0, "escape-sleep"))
    deadline = time.monotonic() + 10
    while not (tmp_path / "grandchild.pid").exists() and time.monotonic() < deadline:
        assert executor.poll() is None
        time.sleep(0.02)
    executor.memory_limit = tree_rss(executor.pid) // 2  # the next sample is over it
    outcome = wait_event(executor)
    assert outcome.error_class == "oom", outcome
    assert gone(escapee())
    executor.memory_limit = None


def test_process_run_that_closes_its_stdio_gets_a_fresh_process(process_executor, tmp_path: Path) -> None:
    """Bug 12: fds 1 and 2 closed by run() left a crippled child that failed every later print."""
    from mpibatch.script.executor import Restarting

    executor = started(process_executor())
    first_pid = executor.pid
    executor.submit(task(0, "close-stdio"), task(1, "print"), task(2, "b"))
    events = [wait_event(executor) for _ in range(5)]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Outcome", "Restarting", "InitDone", "Outcome", "Outcome"], events
    assert [(e.batch_id, e.ok) for e in events if isinstance(e, Outcome)] == [(0, True), (1, True), (2, True)]
    assert "run() closed its fd 1 (stdout)" in events[1].reason
    assert executor.pid not in (None, first_pid)
    assert "printed by the script" in (tmp_path / "stdout.txt").read_text()
    assert "the entry-script process is restarted" in (tmp_path / "stderr.txt").read_text()


def test_process_pipe_is_out_of_the_scripts_way(process_executor) -> None:
    """A run() that closes its low descriptors (daemon-style) leaves the pipe to the worker alone."""
    executor = started(process_executor())
    assert run_ok(executor, task(0, "close-low-fds")).payload == b"close-low-fds ok\n"
    assert run_ok(executor, task(1, "b")).payload == b"b ok\n"
    assert executor.pid is not None and executor.ready


def test_process_scripts_children_still_stop_on_sigterm(process_executor) -> None:
    """The entry-script process ignores SIGINT and SIGTERM (the worker decides), but what it starts must not
    inherit that: a script's own children would otherwise ignore every polite stop."""
    executor = started(process_executor())
    line = run_ok(executor, task(0, "child-ignores")).payload.decode()
    ignored = int(line.split()[1], 16)
    assert not ignored & (1 << (15 - 1)) and not ignored & (1 << (2 - 1)), line


def test_process_pipe_written_by_the_script_is_a_crash_and_a_fresh_process(process_executor) -> None:
    executor = started(process_executor())
    first_pid = executor.pid
    executor.submit(task(0, "write-into-the-pipe"), task(1, "b"))
    outcome = wait_event(executor)
    assert (outcome.batch_id, outcome.ok, outcome.error_class) == (0, False, "crash"), outcome
    assert "carried something that is no message" in outcome.error
    assert isinstance(wait_event(executor), InitDone) and executor.pid != first_pid
    assert outcomes_until(executor, 1)[0].payload == b"b ok\n"
