"""Entry scripts that misbehave on purpose, under the real mpiexec: hangs the inline executor cannot kill,
a run() that closes its own stdio, grandchildren that leave the process group, results that are not one
line per element. The job must end, count truthfully and leave nothing running."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import SCRIPTS, faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("hangs", [("a_hang",), ("a_hang", "b_hang")])
def test_inline_hangs_end_the_job_failed_with_advice(tmp_path: Path, hangs: tuple[str, ...]) -> None:
    """Bug 9: each retry of a hung inline call stalled another worker and, once none could run anything,
    the job waited forever. Now it ends Failed, says why, points to executor: process, and a hung call's
    retry waits until the fine items ran (one hang on 2 ranks: every fine item is written)."""
    files = {**{h: "hang" for h in hangs}, **{f"ok{i:02d}": "ok" for i in range(30)}}
    out = tmp_path / "out"
    began = time.monotonic()
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--executor", "inline",
                              "--run-invocation-timeout", "2"), out, ranks=2, timeout=90)
    assert time.monotonic() - began < 60
    assert job.rc == 1, job.stderr
    r = job.result
    assert r["status"] == "Failed"
    assert "executor: process" in r["reason"] and "run_invocation_timeout=2s" in r["reason"]
    assert "first error (timeout, mini-batch" in job.result_txt
    assert "run_invocation_timeout=2s" in r["error"] and "executor: process" in r["error"]
    assert len(job.lines) == len(set(job.lines)) == r["items"]["succeeded"]
    fine = {f"{n} ok" for n, w in files.items() if w == "ok"}
    assert set(job.lines) <= fine
    if len(hangs) == 1:
        assert set(job.lines) == fine
    assert r["errors_by_class"]["timeout"] >= 2
