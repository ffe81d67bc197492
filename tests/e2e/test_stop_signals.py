"""One stop signal that reaches the launcher, the ranks and the entry-script processes together (a
process-tree kill, `timeout`, a batch system signalling every process) is one clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import Job, cli_env, command, faulty_args, make_files, run_cli

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
            if "mpibatch" in " ".join(proc.cmdline()) and "mpibatch.child" not in " ".join(proc.cmdline()):
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
    assert job.rc == code, job.stderr
    r = job.result
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
        rank0 = next((p for p in psutil.Process(proc.pid).children(recursive=True)
                      if "mpibatch run" in " ".join(p.cmdline()) and p.environ().get("PMI_RANK") == "0"), None)
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
