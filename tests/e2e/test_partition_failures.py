"""A partition (partition_keys) is the unit the script computes over: it is never split by bisection,
whatever the input kind, so a failing partition fails as a whole and keeps its planned id."""
from __future__ import annotations

import csv
import json

import pytest
from conftest import SCRIPTS, run_cli

pytestmark = pytest.mark.e2e


def file_input(root):
    for user in ("u1", "u2", "u3"):
        for genre in ("jazz", "rock"):
            (root / user / genre).mkdir(parents=True)
            for k in range(3):
                (root / user / genre / f"{k}.wav").write_text("x")
    return {"path": str(root), "partition_format": "{user}/{genre}/*.wav"}, ["user", "genre"], "user=u2", 6


def table_input(root):
    root.mkdir()
    rows = [f"{user},{genre},{k}" for user in ("u1", "u2", "u3") for genre in ("jazz", "rock") for k in range(3)]
    (root / "plays.csv").write_text("user,genre,k\n" + "\n".join(rows) + "\n")
    return {"path": str(root / "plays.csv"), "type": "tabular"}, ["user", "genre"], "user=u2", 6


@pytest.mark.parametrize("make_input", [file_input, table_input], ids=["files", "table"])
def test_a_failing_partition_fails_whole_and_is_never_split(tmp_path, make_input):
    spec, keys, bad, bad_items = make_input(tmp_path / "data")
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(SCRIPTS / "d_partition_fail.py"), "--inputs", json.dumps(spec),
                   "--partition-keys", *keys, "--output", str(out), "--run-max-try", "2", "--progress", "none",
                   "--no-speculative"],  # a copy of a failing attempt would add its own error line
                  out, ranks=2, env={"FAIL_PARTITION": bad})
    assert job.rc == 0, job.stderr + job.result_txt
    r = job.result
    assert r["items"] == {"total": 18, "succeeded": 12, "failed": bad_items}
    assert r["mini_batches"] == {"total": 6, "succeeded": 4, "failed": 2, "retried": 2}
    assert r["bisection"] == {"mini_batches_split": 0, "items_isolated": 0, "stopped": None}
    assert sorted(set(job.lines)) == [f"genre={g},user={u} size=3" for g in ("jazz", "rock") for u in ("u1", "u3")]
    rows = list(csv.DictReader(open(out / "logs/sys/mini_batches.csv")))
    assert all("." not in row["id"] for row in rows), [row["id"] for row in rows]
    failed = [row for row in rows if row["status"] == "failed"]
    assert [(row["items"], row["succeeded"], row["failed"], row["attempts"]) for row in failed] == [("3", "0", "3", "2")] * 2
    assert all(row["error"] == f"ValueError: partition {bad} cannot be computed" for row in failed)
    assert not (out / "logs/user/failed_items.txt").exists()
    assert job.log("logs/user/error.txt").count(f"ValueError: partition {bad} cannot be computed") == 4


@pytest.mark.parametrize("output_action", ["summary_only", "append_row"])
def test_many_models_training_that_returns_nothing_completes_with_error_threshold_minus_one(tmp_path, output_action):
    """azureml-examples' 1a_oj_sales_prediction parallel_train.py writes one model per partition and returns
    [] by design, with error_threshold -1 (and no append_row_to: summary_only). Azure completes it."""
    (tmp_path / "sales.csv").write_text("Store,Week,Sales\n" + "".join(
        f"{store},{week},{store * 10 + week}\n" for store in (2, 5, 8) for week in range(4)))
    (tmp_path / "job.yaml").write_text(
        f"entry_script: {SCRIPTS / 'd_many_models.py'}\ninputs: [{{path: sales.csv, type: tabular}}]\n"
        f"partition_keys: [Store]\nerror_threshold: -1\nallowed_failed_count: 5\noutput_action: {output_action}\n"
        "output: out\nprogress: none\n")
    out = tmp_path / "out"
    job = run_cli(["run", str(tmp_path / "job.yaml")], out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    r = job.result
    assert r["status"] == "Completed" and r["reason"] is None and r["error"] is None
    assert r["items"] == {"total": 12, "succeeded": 0, "failed": 12}
    assert r["mini_batches"] == {"total": 3, "succeeded": 3, "failed": 0, "retried": 0}
    assert r["warnings"] == ["MOST ITEMS FAILED: 12 of 12 items failed (100%); the job completed because "
                             "error_threshold -1 tolerates any number"]
    assert "WARNING: MOST ITEMS FAILED" in job.stderr
    models = sorted(p.name for p in (out / "models").iterdir())
    assert models == ["store_2.txt", "store_5.txt", "store_8.txt"]
    assert (out / "models/store_5.txt").read_text() == "4 rows, mean sales 51.50\n"
    if output_action == "summary_only":
        assert r["output_file"] is None and not (out / "parallel_run_step.txt").exists()
        assert "output: (summary_only: no result file)" in job.result_txt
    else:
        assert job.lines == []
