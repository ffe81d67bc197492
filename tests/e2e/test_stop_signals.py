"""One stop signal that reaches the launcher, the ranks and the entry-script processes together (a
process-tree kill, `timeout`, a batch system signalling every process) is one clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import BIN, LAUNCHER_KILLS_ON_STOP, Job, cli_env, command, faulty_args, kill_tree, make_files, rank_processes, run_cli

pytestmark = pytest.mark.e2e

WORK = {f"f{i:03d}": "sleep2" for i in range(24)}
EXPECTED = sorted(f"{name} {word}" for name, word in WORK.items())


def signal_everyone(pid: int, sig: int) -> int:
    """One stop as it reaches a job from outside: SIGTERM to the launcher and every process under it, as
    `kill` over a process tree or a batch system does, then a second copy to each rank soon after, as the
    launcher forwards it (Hydra does so only at times); SIGINT to the launcher's process group, as Ctrl-C
    in a terminal does (Hydra forwards that one: "Sending Ctrl-C to processes as requested")."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    if sig == signal.SIGINT:
        os.killpg(pid, sig)
        return len(tree)
    for proc in tree:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    time.sleep(0.05)
    for proc in tree:
        try:
            if "mpibatch" in " ".join(proc.cmdline()) and "mpibatch.script.child" not in " ".join(proc.cmdline()):
                proc.send_signal(sig)
        except psutil.Error:
            pass
    return len(tree)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_one_signal_to_every_process_keeps_the_grace_and_the_exit_status(tmp_path, sig, code):
    data = make_files(tmp_path / "data", WORK)
    out = tmp_path / "out"
    args = faulty_args(data, out, "--stop-grace", "20")
    proc = subprocess.Popen(command(args, 3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), start_new_session=True)
    deadline = time.monotonic() + 60
    result = out / "parallel_run_step.txt"
    while not (result.exists() and result.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    time.sleep(1.0)  # every worker is inside a 2 s mini-batch now
    assert signal_everyone(proc.pid, sig) >= 7, "launcher, proxy, 3 ranks and their entry-script processes"
    stdout, stderr = proc.communicate(timeout=60)
    job = Job(proc.returncode, stdout, stderr, out)
    r = job.result
    if LAUNCHER_KILLS_ON_STOP:  # no grace under prterun: the files say Interrupted, with the counts at the stop
        assert job.rc == 1 and r["status"] == "Interrupted" and r["reason"].startswith("signal 15")
        assert r["items"]["succeeded"] <= len(job.lines) and len(set(job.lines)) == len(job.lines)
    else:
        assert job.rc == code, job.stderr
        assert r["status"] == "Interrupted" and r["reason"].startswith(f"signal {int(sig)}")
        assert r["errors_by_class"]["preempted"] == 0, "the grace held: running mini-batches finished and committed"
        assert r["errors_by_class"]["crash"] == 0
        assert len(job.lines) == r["items"]["succeeded"] >= 6 and len(set(job.lines)) == len(job.lines)
    resumed = run_cli([*args, "--resume"], out, ranks=3)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == EXPECTED


def test_a_second_stop_after_the_window_cuts_the_grace_short(tmp_path):
    data = make_files(tmp_path / "data", {f"f{i:02d}": "sleep30" for i in range(6)})
    out = tmp_path / "out"
    proc = subprocess.Popen(command(faulty_args(data, out, "--stop-grace", "120"), 2), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.monotonic() + 60
    rank0 = None
    while rank0 is None or sum(f.read_text().count("sleeping on") for f in (out / "logs/user/stdout").glob("*")) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
        rank0 = rank_processes(proc.pid).get(0)
        time.sleep(0.1)
    time.sleep(1.0)
    rank0.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the window: a user's second stop, not a copy of the first
    rank0.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    proc.communicate(timeout=60)
    assert time.monotonic() - stopped < 15, "the second stop did not wait for the 120 s grace"
    r = Job(proc.returncode, "", "", out).result
    assert proc.returncode == 143 and r["status"] == "Interrupted"
    assert r["errors_by_class"]["preempted"] == 2 and r["items"]["succeeded"] == 0


def status_command(output) -> list[str]:
    return [str(BIN / "mpibatch"), "status", str(output)]


def test_a_launcher_that_kills_right_after_the_stop_leaves_an_honest_interrupted_job(tmp_path):
    """Open MPI's prterun forwards SIGTERM to the ranks and SIGKILLs them 0.2-0.5 s later, so no grace
    is left: rank 0 writes job_result (Interrupted, the counts, what to do) and state.json as the stop
    begins. The same launcher is played here under every MPI: SIGTERM to each rank, SIGKILL 0.3 s on."""
    data = make_files(tmp_path / "data", {f"f{i:02d}": "sleep1" for i in range(16)})
    out = tmp_path / "out"
    args = faulty_args(data, out, "--stop-grace", "30")
    proc = subprocess.Popen(command(args, 3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())
    deadline = time.monotonic() + 60
    result = out / "parallel_run_step.txt"
    while not (result.exists() and result.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    ranks = rank_processes(proc.pid)
    assert sorted(ranks) == [0, 1, 2]
    for rank in ranks.values():
        rank.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    kill_tree(proc.pid)
    proc.communicate(timeout=30)
    r = Job(proc.returncode, "", "", out).result
    assert r["status"] == "Interrupted" and r["reason"].startswith("signal 15 on rank "), r["reason"]
    assert r["reason"].endswith("resume with --resume to run what is left")
    assert r["exit_code"] == 143 and r["items"]["succeeded"] >= 2
    assert "status: Interrupted" in (out / "logs" / "job_result.txt").read_text()
    shown = subprocess.run(status_command(out), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "status: Interrupted" in shown.stdout.splitlines()[1], shown.stdout
    assert "stopped unexpectedly" not in shown.stdout, "rank 0 said why itself"
    resumed = run_cli([*args, "--resume"], out, ranks=2)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == sorted(f"f{i:02d} sleep1" for i in range(16))
