"""MLTable inputs end to end under mpiexec -n 2: the OJ-sales-style partitioned MLTable with partition_keys,
parquet and JSON Lines MLTables, a paths-only MLTable as a file input, take across mini-batches, refusals."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent / "mltable"
PROBE = HERE / "probe.py"


def run(tmp_path: Path, data: Path, *extra: str, env: dict | None = None):
    out = tmp_path / "out"
    return run_cli(["run", "--entry-script", str(PROBE), "--inputs", str(data), "--output", str(out),
                    "--progress", "none", *extra], out, ranks=2, env=env)


def table(folder: Path, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(yaml.safe_dump(doc))
    return folder


def test_oj_sales_partitions_by_store_and_brand(tmp_path):
    job = run(tmp_path, HERE / "oj_sales", "--partition-keys", "Store", "Brand", "--mini-batch-size", "1")
    assert job.rc == 0, job.stderr + job.result_txt
    columns = "Week,Quantity,Advert,Price,Store,Brand"
    assert sorted(job.lines) == [f"part 1000/dominicks rows=3 total=39730 columns={columns}",
                                 f"part 1000/tropicana rows=2 total=17880 columns={columns}",
                                 f"part 1001/dominicks rows=4 total=21350 columns={columns}",
                                 f"part 1001/minute_maid rows=1 total=3300 columns={columns}"]


def test_parquet_mltable_with_take_across_mini_batches(tmp_path):
    folder = tmp_path / "pq"
    for part, start in (("a", 0), ("b", 100)):
        (folder / f"part={part}").mkdir(parents=True)
        pd.DataFrame({"id": range(start, start + 100)}).to_parquet(folder / f"part={part}" / "d.parquet",
                                                                  row_group_size=10)
    table(folder, {"paths": [{"pattern": "./*/*.parquet"}], "transformations": [
        {"read_parquet": {"include_path_column": False}},
        {"extract_columns_from_partition_format": {"partition_format": "part={part}/{name}.parquet"}},
        {"drop_columns": ["name"]}, {"take": 137}]})
    job = run(tmp_path, folder, "--mini-batch-size", "20rows")
    assert job.rc == 0, job.stderr + job.result_txt
    rows = sorted((line.split() for line in job.lines), key=lambda r: int(r[2]))
    assert [int(r[2]) for r in rows] == list(range(137))
    assert [r[3] for r in rows] == ["a"] * 100 + ["b"] * 37
    assert len({r[1] for r in rows}) == 7  # 20 rows a mini-batch: 5 of part a, 2 of part b (20 + 17)


def test_json_lines_mltable_drops_invalid_lines_and_takes_exactly(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(f'{{"Quantity": {i}}}\n' for i in range(30)) + "oops\n")
    (folder / "b.jsonl").write_text("".join(f'{{"Quantity": {i}}}\n' for i in range(30, 60)))
    table(folder, {"paths": [{"pattern": "*.jsonl"}], "transformations": [
        {"read_json_lines": {"invalid_lines": "drop", "include_path_column": True}}, {"take": 45}]})
    job = run(tmp_path, folder, "--mini-batch-size", "64")
    assert job.rc == 0, job.stderr + job.result_txt
    rows = [line.split() for line in job.lines]
    assert sorted(int(r[3]) for r in rows) == list(range(44))  # 45 records: 31 of a (one invalid, dropped), 14 of b
    assert {Path(r[2]).name for r in rows} == {"a.jsonl", "b.jsonl"}
    assert len({r[1] for r in rows}) > 2


def test_paths_only_mltable_is_a_file_input_and_its_mltable_is_never_an_item(tmp_path):
    folder = tmp_path / "images"
    for name in ("cat/1.png", "cat/2.png", "dog/3.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\x89PNG")
    table(folder, {"paths": [{"folder": "./"}], "transformations": [
        {"extract_columns_from_partition_format": {"partition_format": "{label}/{file}.png"}}]})
    job = run(tmp_path, folder, "--mini-batch-size", "1", env={"MLTABLE_ROOT": str(folder)})
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == ["file cat/1.png", "file cat/2.png", "file dog/3.png"]
    shutil.rmtree(tmp_path / "out")
    job = run(tmp_path, folder, "--partition-keys", "label", env={"MLTABLE_ROOT": str(folder)})
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == ["file cat/1.png", "file cat/2.png", "file dog/3.png"]
    assert len(job.log("logs/sys/mini_batches.csv").splitlines()) == 1 + 2  # a header, one row per label


def test_unsupported_transformation_exits_2_with_one_line_and_writes_nothing(tmp_path):
    folder = table(tmp_path / "t", {"paths": [{"file": "a.csv"}], "transformations": [
        {"read_delimited": {}}, {"filter": "col('x') > 1"}]})
    (folder / "a.csv").write_text("x\n1\n2\n")
    job = run(tmp_path, folder)
    assert job.rc == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and "transformation 'filter' is not supported" in lines[0], job.stderr
    assert lines[0].startswith("mpibatch: inputs[0]: MLTable '") or "inputs[0]: MLTable '" in lines[0]
    assert not (tmp_path / "out").exists()
