"""allowed_failed_count counts a mini-batch as failed once it has used up its tries, whatever bisection
does with it afterwards: a job where every item fails stops at the threshold, after a bounded number of
run() calls, instead of bisecting every mini-batch down to single items."""
from __future__ import annotations

import csv

import pytest
from conftest import faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("flag,value,reason", [
    ("--allowed-failed-count", "2", "allowed_failed_count=2 exceeded: 3 mini-batches failed"),
    ("--allowed-failed-percent", "10", "allowed_failed_percent=10 exceeded: 3 of 25 mini-batches failed"),
])
def test_every_item_failing_stops_at_the_threshold_despite_bisection(tmp_path, flag, value, reason):
    data = make_files(tmp_path / "d", {f"f{i:03d}": "raise" for i in range(200)})
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--mini-batch-size", "8", "--run-max-try", "2", flag, value,
                              "--bisect-failures", "--credits-per-worker", "2"), out, ranks=2)
    assert job.rc == 1, job.stderr + job.result_txt
    r = job.result
    assert r["status"] == "Failed"
    assert r["reason"].startswith(reason)
    rows = list(csv.DictReader(open(out / "logs/sys/mini_batches.csv")))
    out_of_tries = [row for row in rows if "." not in row["id"] and row["status"] in ("failed", "split")]
    assert 3 <= len(out_of_tries) <= 3 + 4, rows  # + the attempts in flight when the job stopped (2 x 2 credits)
    calls = job.log("logs/user/error.txt").splitlines()  # one line per failed run() call; none succeeded
    assert r["items"]["succeeded"] == 0 and r["errors_by_class"]["exception"] == len(calls)
    # At least 3 mini-batches x 2 tries. At most: first tries of planned mini-batches dispatched while the first
    # retries wait for another worker (their order depends on timing: a loaded machine gave 45), every planned
    # mini-batch's 2 tries (25 x 2) and the halves in flight (2 workers x 2 credits x 2 tries). Bisecting all 25
    # mini-batches down to single items would take ~1,000 (the bug: 2,964 calls in 600 s).
    assert 6 <= len(calls) <= 25 * 2 + 8, len(calls)
    first = calls[0].split(": ", 1)[1]
    assert r["error"] == first == "ValueError: bad item " + first.rsplit(" ", 1)[1]
    assert f"reason: {r['reason']}\n" in job.result_txt
    assert f"first error (exception, mini-batch {calls[0].split()[1]}, attempt 1, " in job.result_txt
    assert f"\n  {r['error']}\n" in job.result_txt
