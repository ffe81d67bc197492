"""az:// inputs through Microsoft's Azurite Blob Storage emulator, under the real mpiexec: remote
files fetched to scratch and removed, globs, tabular slices read remotely, both ways of giving
credentials, and clear exit-2 errors for a missing path or a wrong key."""
from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e

FILES_SCRIPT = '''
import os
from mpibatch import EntryScript

previous = []

def run(mini_batch):
    gone = not any(os.path.exists(p) for p in previous)  # the last mini-batch's scratch copies are removed
    previous[:] = mini_batch
    out = []
    for path in mini_batch:
        assert os.path.isfile(path) and path.startswith(EntryScript().working_dir), path
        with open(path) as fh:
            out.append(f"{os.path.basename(path)} {fh.read().strip()} prev-gone={gone} {path}")
    return out
'''

TABLE_SCRIPT = '''
def run(mini_batch, mini_batch_context):
    rows = len(mini_batch)
    return [f"{mini_batch_context.input_name} {mini_batch_context.mini_batch_id} {rows} {i} {n} {x!r}"
            for i, n, x in zip(mini_batch["id"], mini_batch["name"], mini_batch["x"])]
'''


@pytest.fixture
def blob(azurite):
    """A fresh container and an adlfs filesystem on the emulator; yields (container, fs)."""
    adlfs = pytest.importorskip("adlfs")
    fs = adlfs.AzureBlobFileSystem(connection_string=azurite.connection_string)
    container = f"test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(container)
    yield container, fs
    fs.rm(container, recursive=True)


def upload_images(fs, container: str, n: int = 20) -> dict[str, str]:
    """n small files under nested prefixes (and one outside them); returns name -> content."""
    files = {f"images/set{i % 3}/part{i % 2}/img{i:02d}.txt": f"content{i}" for i in range(n)}
    files["other/skip.txt"] = "not listed"
    fs.pipe({f"{container}/{name}": f"{text}\n".encode() for name, text in files.items()})
    return {name.rsplit("/", 1)[1]: text for name, text in files.items() if name.startswith("images/")}


def run_job(tmp_path: Path, script: str, inputs: list, *extra: str, env=None, ranks=2):
    (tmp_path / "score.py").write_text(script)
    out = tmp_path / "out"
    args = ["run", "--entry-script", str(tmp_path / "score.py"), "--output", str(out), "--progress", "none", "--inputs"]
    args += [json.dumps(i) if isinstance(i, dict) else i for i in inputs]
    return run_cli([*args, *extra], out, ranks=ranks, env=env)


def why(job) -> str:
    """What to show when a job failed: its stderr and, if it got that far, job_result.txt."""
    path = job.output / "logs" / "job_result.txt"
    return job.stderr + (path.read_text() if path.exists() else "")


def check_fetched(job, expected: dict[str, str]) -> None:
    assert job.rc == 0, why(job)
    rows = sorted(line.split() for line in job.lines)
    assert [(r[0], r[1]) for r in rows] == sorted(expected.items())
    assert {r[2] for r in rows} == {"prev-gone=True"}
    assert not any(Path(r[3]).exists() for r in rows), "scratch copies must be removed after the job"
    assert all(r[3].endswith(f"/images/set{int(r[0][3:5]) % 3}/part{int(r[0][3:5]) % 2}/{r[0]}") for r in rows)
    n = len(expected)
    assert job.result["items"] == {"total": n, "succeeded": n, "failed": 0}
    assert job.result["status"] == "Completed"


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_files_with_storage_options(tmp_path, azurite, blob, executor):
    container, fs = blob
    expected = upload_images(fs, container)
    spec = {"path": f"az://{container}/images", "storage_options": {"connection_string": azurite.connection_string}}
    job = run_job(tmp_path, FILES_SCRIPT, [spec], "--mini-batch-size", "3", "--executor", executor)
    check_fetched(job, expected)
    assert job.result["mini_batches"] == {"total": 7, "succeeded": 7, "failed": 0, "retried": 0}


def test_glob_in_job_yaml_with_the_environment_variable(tmp_path, azurite, blob):
    container, fs = blob
    expected = upload_images(fs, container)
    fs.pipe(f"{container}/images/set0/notes.md", b"not a txt\n")
    (tmp_path / "score.py").write_text(FILES_SCRIPT)
    out = tmp_path / "out"
    (tmp_path / "job.yaml").write_text(
        f"entry_script: score.py\ninputs:\n  - path: az://{container}/images/**/*.txt\n"
        f"output: {out}\nmini_batch_size: 4\nprogress: none\n")
    job = run_cli(["run", str(tmp_path / "job.yaml")], out, ranks=2,
                  env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    check_fetched(job, expected)
    assert job.result["mini_batches"]["total"] == 5


def table(n: int, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame({"id": ids, "name": [f"name-{i % 97}" for i in ids], "x": ids * 0.25 + 0.1})


@pytest.fixture
def tables(blob):
    """events.parquet (9,000 rows in 6 row groups) and events.csv (7,000 rows) in the container."""
    container, fs = blob
    parquet, csv = table(9000), table(7000, start=100_000)
    buf = io.BytesIO()
    parquet.to_parquet(buf, row_group_size=1500)
    fs.pipe(f"{container}/tables/events.parquet", buf.getvalue())
    fs.pipe(f"{container}/tables/csv/events.csv", csv.to_csv(index=False).encode())
    return container, parquet, csv


def expected_lines(df: pd.DataFrame) -> list[str]:
    return sorted(f"{i} {n} {x!r}" for i, n, x in zip(df["id"], df["name"], df["x"]))


def check_tables(job, parquet: pd.DataFrame, csv: pd.DataFrame, max_rows: int | None = None) -> dict:
    """Every row of both inputs reached run() once, with its values; returns input -> batch -> rows."""
    assert job.rc == 0, why(job)
    seen: dict[str, list[str]] = {"parquet": [], "csv": []}
    batches: dict[str, dict[int, int]] = {"parquet": {}, "csv": {}}
    for line in job.lines:
        name, batch, rows, rest = line.split(" ", 3)
        seen[name].append(rest)
        batches[name][int(batch)] = int(rows)
    assert sorted(seen["parquet"]) == expected_lines(parquet)
    assert sorted(seen["csv"]) == expected_lines(csv)
    for name in batches:
        assert sum(batches[name].values()) == len(seen[name])
        if max_rows:
            assert max(batches[name].values()) <= max_rows
    n = len(parquet) + len(csv)
    assert job.result["items"] == {"total": n, "succeeded": n, "failed": 0}
    assert job.result["mini_batches"]["total"] == job.result["mini_batches"]["succeeded"] == sum(
        len(b) for b in batches.values())
    return batches


def test_tabular_by_rows_with_storage_options(tmp_path, azurite, tables):
    container, parquet, csv = tables
    options = {"connection_string": azurite.connection_string}
    inputs = [{"path": f"az://{container}/tables/events.parquet", "name": "parquet", "type": "tabular",
               "storage_options": options},
              {"path": f"az://{container}/tables/csv", "name": "csv", "type": "tabular", "format": "csv",
               "storage_options": options}]
    job = run_job(tmp_path, TABLE_SCRIPT, inputs, "--mini-batch-size", "2000rows")
    batches = check_tables(job, parquet, csv, max_rows=2000)
    assert sorted(batches["parquet"].values()) == [1000, 2000, 2000, 2000, 2000]
    assert sorted(batches["csv"].values()) == [1000, 2000, 2000, 2000]


def test_tabular_by_bytes_with_the_environment_variable(tmp_path, azurite, tables):
    container, parquet, csv = tables
    inputs = [{"path": f"az://{container}/tables/*.parquet", "name": "parquet", "type": "tabular"},
              {"path": f"az://{container}/tables/csv/events.csv", "name": "csv", "type": "tabular"}]
    job = run_job(tmp_path, TABLE_SCRIPT, inputs, "--mini-batch-size", "32KB", "--executor", "inline",
                  env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    batches = check_tables(job, parquet, csv)
    assert len(batches["csv"]) >= 5 and len(batches["parquet"]) >= 2


def test_missing_path_is_one_line_and_exit_2(tmp_path, azurite, blob):
    container, fs = blob
    upload_images(fs, container, n=2)
    options = {"connection_string": azurite.connection_string}
    for path in (f"az://{container}/nothing-here", "az://no-such-container/images", f"az://{container}/images/*.png"):
        job = run_job(tmp_path, FILES_SCRIPT, [{"path": path, "storage_options": options}])
        lines = job.stderr.strip().splitlines()
        assert job.rc == 2 and len(lines) == 1, job.stderr
        assert lines[0].startswith("mpibatch: error: inputs[0]: ") and path in lines[0], lines[0]
        assert not (tmp_path / "out").exists()


def test_wrong_key_is_one_line_and_exit_2(tmp_path, azurite, blob):
    container, fs = blob
    upload_images(fs, container, n=2)
    wrong = azurite.connection_string.replace(azurite.account_key, "A" * 86 + "==")
    for spec in ({"path": f"az://{container}/images", "storage_options": {"connection_string": wrong}},
                 {"path": f"az://{container}/tables/x.parquet", "type": "tabular", "storage_options":
                     {"connection_string": wrong}}):
        job = run_job(tmp_path, FILES_SCRIPT, [spec])
        lines = job.stderr.strip().splitlines()
        assert job.rc == 2 and len(lines) == 1, job.stderr
        assert lines[0].startswith(f"mpibatch: error: inputs[0]: cannot list '{spec['path']}'"), lines[0]
        assert "authenticate" in lines[0] and "Traceback" not in job.stderr
        assert not (tmp_path / "out").exists()


def test_output_to_blob_storage(tmp_path, azurite, blob):
    """az:// in and az:// out: result lines and logs land in the container, credentials given per side."""
    container, fs = blob
    expected = upload_images(fs, container, n=8)
    options = {"connection_string": azurite.connection_string}
    url = f"az://{container}/results/run1"
    job = run_job(tmp_path, FILES_SCRIPT, [{"path": f"az://{container}/images", "storage_options": options}],
                  "--mini-batch-size", "3", "--output", url, "--output-storage-options", json.dumps(options))
    assert job.rc == 0, job.stderr
    fs.invalidate_cache()
    lines = sorted(fs.cat(f"{container}/results/run1/parallel_run_step.txt").decode().splitlines())
    assert [tuple(line.split()[:2]) for line in lines] == sorted(expected.items())
    result = json.loads(fs.cat(f"{container}/results/run1/logs/job_result.json"))
    assert result["status"] == "Completed" and result["items"] == {"total": 8, "succeeded": 8, "failed": 0}
    assert result["output_file"] == f"{url}/parallel_run_step.txt"
    assert fs.exists(f"{container}/results/run1/logs/sys/rank-0001.txt")
