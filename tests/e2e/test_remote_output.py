"""A remote output (an fsspec URL; here fsspec's `local://`, which goes through the same staging and
upload path as az:// or s3://): results and logs land there, and resume works against it alone."""
from __future__ import annotations

import shutil
import signal
import time

import pytest
from conftest import faulty_args, kill_tree, launcher_stop_status, make_files, run_cli, start_cli

from mpibatch.output.remote import staging_folder

pytestmark = pytest.mark.e2e
FILES = {f"f{i:03d}": "sleep0.1" for i in range(40)}
EXPECTED = sorted(f"{n} {w}" for n, w in FILES.items())


@pytest.fixture
def remote_job(tmp_path):
    data = make_files(tmp_path / "data", FILES)
    remote = tmp_path / "bucket" / "run1"
    url = f"local://{remote}"
    yield faulty_args(data, remote, "--mini-batch-size", "2"), url, remote
    shutil.rmtree(staging_folder(url), ignore_errors=True)


def with_output(args: list[str], url: str) -> list[str]:
    args = list(args)
    args[args.index("--output") + 1] = url
    return args


def lines(remote) -> list[str]:
    return sorted((remote / "parallel_run_step.txt").read_text().splitlines())


def wait_until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition never met")


def test_results_and_logs_land_at_the_url(remote_job):
    args, url, remote = remote_job
    job = run_cli(with_output(args, url), remote, ranks=2)
    assert job.rc == 0, job.stderr
    assert lines(remote) == EXPECTED
    assert job.result["output_file"] == f"{url}/parallel_run_step.txt"
    for rank in (0, 1):
        assert (remote / f"logs/sys/rank-{rank:04d}.txt").exists()
        assert (remote / f"logs/user/stdout/rank-{rank:04d}.txt").read_text().startswith("init on rank")
    assert f"see {url}/logs/job_result.txt" in job.stderr


def test_interrupted_then_resumed_from_the_url_alone(remote_job):
    args, url, remote = remote_job
    proc = start_cli(with_output(args, url), ranks=2)
    wait_until(lambda: (staging_folder(url) / "parallel_run_step.txt").exists()
               and (staging_folder(url) / "parallel_run_step.txt").read_text().count("\n") >= 8)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == launcher_stop_status(signal.SIGTERM)
    first = lines(remote)
    assert 8 <= len(first) < 40
    shutil.rmtree(staging_folder(url))  # as if resumed on another node: only the URL remains
    job = run_cli([*with_output(args, url), "--resume"], remote, ranks=2)
    assert job.rc == 0, job.stderr
    assert lines(remote) == EXPECTED


def test_sigkill_with_periodic_pushes_then_resume(remote_job):
    args, url, remote = remote_job
    proc = start_cli(with_output(args, url), ranks=2, env={"MPIBATCH_REMOTE_PUSH_S": "0.3"})
    wait_until(lambda: (remote / ".mpibatch" / "journal.jsonl").exists()
               and (remote / ".mpibatch" / "journal.jsonl").read_text().count("\n") >= 3)
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    pushed = (remote / "parallel_run_step.txt").read_text().splitlines()
    assert len(set(pushed)) == len(pushed) and set(pushed) <= set(EXPECTED)
    job = run_cli([*with_output(args, url), "--resume"], remote, ranks=2)
    assert job.rc == 0, job.stderr
    assert lines(remote) == EXPECTED


def test_unreachable_output_is_exit_2(tmp_path, ok_files):
    data, _ = ok_files
    job = run_cli(faulty_args(data, tmp_path / "x", "--output", "nosuchprotocol://bucket/out"), tmp_path / "x",
                  ranks=None)
    assert job.rc == 2 and "output: cannot reach 'nosuchprotocol://bucket/out'" in job.stderr
