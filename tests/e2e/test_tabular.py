"""Tabular inputs end to end: every row reaches run() exactly once, no mini-batch is too big,
partitions group rows, bad files fail only their mini-batch."""
from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SCRIPTS, launcher_stop_status, run_cli, start_cli

pytestmark = pytest.mark.e2e
ROWS = 3000


def frame(n: int = ROWS, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame({"id": ids, "name": [f"name-{i % 97}" for i in ids], "x": ids * 0.5})


def write(fmt: str, folder: Path, df: pd.DataFrame, name: str = "data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path = folder / f"{name}.csv"
        df.to_csv(path, index=False)
    elif fmt == "json":
        path = folder / f"{name}.jsonl"
        df.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        path = folder / f"{name}.parquet"
        df.to_parquet(path, row_group_size=250)
    elif fmt == "hdf5":
        import h5py

        path = folder / f"{name}.h5"
        table = np.zeros(len(df), dtype=[("id", "i8"), ("x", "f8")])
        table["id"], table["x"] = df["id"], df["x"]
        with h5py.File(path, "w") as f:
            f["rows"] = table
    else:  # pandas-written hdf5 table
        path = folder / f"{name}.h5"
        df.to_hdf(path, key="frame", format="table")
    return path


def run_table(tmp_path: Path, spec: dict, *extra: str, script: str = "table_rows.py", ranks=2, env=None):
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(SCRIPTS / script), "--inputs", json.dumps(spec), "--output", str(out),
                   "--progress", "none", *extra], out, ranks=ranks, env=env)
    return job


def batches_of(job) -> dict[int, list[tuple]]:
    """mini-batch id -> [(rows, csv bytes, partition, row id)] from the result lines."""
    found: dict[int, list[tuple]] = defaultdict(list)
    for line in job.lines:
        batch, rows, size, part, row = line.split()
        found[int(batch)].append((int(rows), int(size), part, int(row)))
    return found


def assert_every_row_once(job, expected_ids) -> None:
    seen = sorted(int(line.split()[-1]) for line in job.lines)
    assert seen == sorted(expected_ids), "every input row must reach run() exactly once"


FORMATS = {"csv": {}, "json": {}, "parquet": {}, "hdf5": {"hdf5_key": "rows"}, "pandas-hdf": {"hdf5_key": "frame"}}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_split_by_rows(tmp_path, fmt):
    path = write(fmt, tmp_path / "in", frame())
    job = run_table(tmp_path, {"path": str(path), "type": "tabular", **FORMATS[fmt]}, "--mini-batch-size", "700rows")
    assert job.rc == 0, job.stderr + job.result_txt
    assert_every_row_once(job, range(ROWS))
    sizes = sorted(rows[0][0] for rows in batches_of(job).values())
    assert sizes == [200, 700, 700, 700, 700]
    assert job.result["items"] == {"total": ROWS, "succeeded": ROWS, "failed": 0}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_split_by_size(tmp_path, fmt):
    path = write(fmt, tmp_path / "in", frame())
    job = run_table(tmp_path, {"path": str(path), "type": "tabular", **FORMATS[fmt]}, "--mini-batch-size", "8KB")
    assert job.rc == 0, job.stderr + job.result_txt
    assert_every_row_once(job, range(ROWS))
    found = batches_of(job)
    assert len(found) >= 4
    if fmt == "csv":  # a byte range never exceeds the size and ends at a record end
        assert all(rows[0][1] <= 8192 for rows in found.values())
    if fmt == "parquet":  # whole row groups, never more than the size of their data
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        group_bytes = [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]
        for rows in found.values():
            groups = {r[3] // 250 for r in rows}
            assert len(rows) % 250 == 0 or max(groups) == len(group_bytes) - 1
            assert len(groups) == 1 or sum(group_bytes[g] for g in groups) <= 8192
    assert job.result["items"]["total"] == ROWS


def test_parquet_with_one_huge_row_group_is_split_by_rows(tmp_path):
    path = tmp_path / "one_group.parquet"
    frame(5000).to_parquet(path, row_group_size=5000)
    job = run_table(tmp_path, {"path": str(path), "type": "tabular"}, "--mini-batch-size", "16KB")
    assert job.rc == 0
    assert_every_row_once(job, range(5000))
    assert len(batches_of(job)) >= 4


def test_csv_with_quoted_newlines_is_split_at_record_ends(tmp_path):
    df = frame(2000)
    df["name"] = [f'line one "{i}"\nline two, still row {i}' if i % 3 == 0 else f"plain {i}" for i in df["id"]]
    path = tmp_path / "quoted.csv"
    df.to_csv(path, index=False)
    job = run_table(tmp_path, {"path": str(path), "type": "tabular"}, "--mini-batch-size", "4KB")
    assert job.rc == 0, job.result_txt
    assert_every_row_once(job, range(2000))
    assert len(batches_of(job)) >= 5
    assert "quoted fields seen" in (tmp_path / "out/logs/sys/rank-0000.txt").read_text()


def test_many_files_a_mini_batch_never_crosses_a_file(tmp_path):
    folder = tmp_path / "in"
    for n in range(3):
        write("csv", folder, frame(1000, start=n * 1000), name=f"part{n}")
    job = run_table(tmp_path, {"path": str(folder), "type": "tabular"}, "--mini-batch-size", "300rows")
    assert job.rc == 0
    assert_every_row_once(job, range(3000))
    for rows in batches_of(job).values():
        assert len({r[3] // 1000 for r in rows}) == 1


def test_dataframe_header_written_once_also_across_resume(tmp_path):
    path = write("parquet", tmp_path / "in", frame(2000))
    out = tmp_path / "out"
    args = ["run", "--entry-script", str(SCRIPTS / "table_frame.py"), "--inputs",
            json.dumps({"path": str(path), "type": "tabular"}), "--output", str(out), "--progress", "none",
            "--mini-batch-size", "100rows", "--append-row-options", '{"sep": ",", "header": true}']
    proc = start_cli(args, ranks=2, env={"SLEEP_PER_BATCH": "0.2"})
    result = out / "parallel_run_step.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not result.exists() or result.read_text().count("\n") < 300):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == launcher_stop_status(signal.SIGTERM)
    resumed = run_cli([*args, "--resume"], out, ranks=2)
    assert resumed.rc == 0, resumed.stderr
    lines = result.read_text().splitlines()
    assert lines[0] == "id,double" and lines.count("id,double") == 1
    assert sorted(lines[1:]) == sorted(f"{i},{2 * i}" for i in range(2000))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_partition_keys_on_columns(tmp_path, fmt):
    df = frame(1200)
    df["region"] = np.where(df["id"] % 3 == 0, "eu", "us")
    df["tier"] = df["id"] % 2
    path = write(fmt, tmp_path / "in", df)
    job = run_table(tmp_path, {"path": str(path), "type": "tabular"}, "--partition-keys", "region", "tier")
    assert job.rc == 0, job.result_txt
    assert_every_row_once(job, range(1200))
    found = batches_of(job)
    assert len(found) == 4
    for rows in found.values():
        part = dict(kv.split("=") for kv in rows[0][2].split(","))
        ids = [r[3] for r in rows]
        assert all(("eu" if i % 3 == 0 else "us") == part["region"] and str(i % 2) == part["tier"] for i in ids)


def test_partition_keys_from_hive_folders_without_reading_rows(tmp_path):
    root = tmp_path / "in"
    n = 0
    for year in (2024, 2025):
        for region in ("eu", "us"):
            folder = root / f"year={year}" / f"region={region}"
            for part in range(2):
                write("parquet", folder, frame(100, start=n), name=f"part{part}")
                n += 100
    job = run_table(tmp_path, {"path": str(root), "type": "tabular"}, "--partition-keys", "year", "region")
    assert job.rc == 0, job.result_txt
    assert_every_row_once(job, range(n))
    found = batches_of(job)
    assert len(found) == 4 and all(len(rows) == 200 for rows in found.values())
    assert {rows[0][2] for rows in found.values()} == {"region=eu,year=2024", "region=us,year=2024",
                                                       "region=eu,year=2025", "region=us,year=2025"}


def test_file_inputs_partitioned_by_partition_format(tmp_path):
    root = tmp_path / "audio"
    for user in ("ann", "bob"):
        for genre in ("jazz", "rock", "pop"):
            for k in range(3 if user == "ann" else 2):
                path = root / user / genre / f"song{k}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("x")
    script = tmp_path / "by_user.py"
    script.write_text("import os\ndef run(mini_batch, mini_batch_context):\n"
                      "    v = mini_batch_context.partition_key_value\n"
                      "    return [f\"{v['user']} {v['genre']} {len(mini_batch)} {os.path.basename(p)}\" for p in mini_batch]\n")
    out = tmp_path / "out"
    spec = {"path": str(root), "partition_format": "{user}/{genre}/*.wav"}
    job = run_cli(["run", "--entry-script", str(script), "--inputs", json.dumps(spec), "--output", str(out),
                   "--partition-keys", "user", "genre", "--progress", "none"], out, ranks=2)
    assert job.rc == 0, job.stderr
    assert job.result["mini_batches"]["total"] == 6
    assert sorted(job.lines) == sorted(f"{u} {g} {3 if u == 'ann' else 2} song{k}.wav" for u in ("ann", "bob")
                                       for g in ("jazz", "rock", "pop") for k in range(3 if u == "ann" else 2))


def test_corrupt_files_fail_only_their_mini_batch_with_the_path(tmp_path):
    folder = tmp_path / "in"
    write("csv", folder, frame(500), name="good")
    (folder / "ragged.csv").write_text("id,name,x\n1,a,0.5\n2,b,1.0,extra,fields\n")
    job = run_table(tmp_path, {"path": str(folder), "type": "tabular"}, "--mini-batch-size", "100rows",
                    "--run-max-try", "2")
    assert job.rc == 0
    assert_every_row_once(job, range(500))
    assert job.result["mini_batches"]["failed"] == 1
    assert "cannot read bytes 10-" in job.result["error"] and "ragged.csv" in job.result["error"]

    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "broken.parquet").write_bytes(b"not a parquet file at all")
    write("parquet", tmp_path / "pq", frame(300), name="fine")
    job = run_table(tmp_path / "second", {"path": str(tmp_path / "pq"), "type": "tabular"}, "--run-max-try", "1")
    assert job.rc == 0
    assert_every_row_once(job, range(300))
    assert "broken.parquet" in job.result["error"] and "Parquet magic bytes" in job.result["error"]


@pytest.mark.parametrize("spec,needle", [
    ({"type": "tabular", "path": "{tmp}/x.data"}, "cannot tell the table format"),
    ({"type": "tabular", "path": "{tmp}/missing.csv"}, "does not exist"),
    ({"type": "tabular", "path": "{tmp}/x.data", "format": "xml"}, "format"),
    ({"type": "tabular", "path": "{tmp}/x.h5"}, "hdf5 inputs need hdf5_key"),
])
def test_bad_tabular_inputs_are_exit_2(tmp_path, spec, needle):
    (tmp_path / "x.data").write_text("a,b\n1,2\n")
    (tmp_path / "x.h5").write_text("")
    spec = {k: v.replace("{tmp}", str(tmp_path)) for k, v in spec.items()}
    job = run_table(tmp_path, spec, ranks=None)
    lines = job.stderr.strip().splitlines()
    assert job.rc == 2 and len(lines) == 1 and needle in lines[0], job.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_bisection_isolates_poison_rows_of_a_tabular_mini_batch(tmp_path, fmt):
    path = write(fmt, tmp_path / "in", frame(40))
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(SCRIPTS / "table_poison.py"), "--inputs",
                   json.dumps({"path": str(path), "type": "tabular"}), "--output", str(out), "--progress", "none",
                   "--mini-batch-size", "40rows", "--run-max-try", "1"], out, ranks=2, env={"POISON": "7,23"})
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == sorted(f"row {i}" for i in range(40) if i not in (7, 23))
    isolated = (out / "logs/user/failed_items.txt").read_text().splitlines()
    assert len(isolated) == 2
    assert any(line.split("\t")[0].endswith(" row 7") for line in isolated), isolated
    assert any(line.split("\t")[0].endswith(" row 23") for line in isolated), isolated
    assert all("ValueError: poison row id" in line for line in isolated)
    assert job.result["items"] == {"total": 40, "succeeded": 38, "failed": 2}
    assert job.result["mini_batches"]["failed"] == 0
