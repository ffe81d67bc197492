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
                   "--partition-keys", *keys, "--output", str(out), "--run-max-try", "2", "--progress", "none"],
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
