"""The public Azure ML parallel samples, their entry scripts copied unchanged into tests/e2e/azure_samples,
each run under mpiexec -n 2 as the table "The public samples" in docs/migrating-from-parallelrunstep.md says
it runs today. The table is parsed: every row is one test here, declared with the same way of running."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from conftest import ROOT, Job, require, run_cli

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).parent / "azure_samples"
GUIDE = ROOT / "docs" / "migrating-from-parallelrunstep.md"
sys.path.insert(0, str(SAMPLES))
import standins  # noqa: E402

# The samples' own environment (their conda files pin scikit-learn, MLflow, mltable and pandas < 3), built
# once and kept under .cache/: the `python:` the jobs that need it are given.
SAMPLE_ENV = ROOT / ".cache" / "azure-samples-env"
SAMPLE_ENV_PACKAGES = ["pandas>=2,<3", "scikit-learn", "mlflow-skinny<3", "mltable"]  # MLflow 3 saves sklearn models with skops
HOW_WORDS = ("unchanged", "--set", "python:", "needs")


def sample_row(*ways: str) -> Callable:
    """How a sample runs today, as its table row says: 'unchanged', plus '--set' (a binding or an Azure
    URI given on the command line) and/or 'python:' (the sample's own environment), or 'needs'."""
    assert ways and all(w in HOW_WORDS for w in ways), ways

    def mark(test: Callable) -> Callable:
        test.sample_ways = frozenset(ways)
        return test
    return mark


def guide_table() -> dict[str, frozenset[str]]:
    """The table under '## The public samples': sample id (first column, in backticks) -> its ways."""
    text = GUIDE.read_text()
    section = text.split("## The public samples", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z0-9_]+)`", cells[0]) if len(cells) >= 4 else None
        if match:
            how = cells[3]
            ways = {w for w in HOW_WORDS if f"`{w}`" in how or how.startswith(w)}
            rows[match.group(1)] = frozenset(ways)
    return rows


def copy_sample(tmp_path: Path, name: str) -> Path:
    return shutil.copytree(SAMPLES / name, tmp_path / name)


def sample_job(folder: Path, job_file: str, *flags: str, timeout: float = 240) -> Job:
    """`mpiexec -n 2 mpibatch run FILE FLAGS` from the sample's folder, as a user would type it there."""
    output = folder / "out"
    return run_cli(["run", job_file, "--progress", "none", *flags], output, ranks=2, timeout=timeout, cwd=folder)


def lines_of(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


# ---- stand-ins ------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory) -> Path:
    """The notebooks' mnist-tf.model checkpoint folder, made by TensorFlow in a process of its own."""
    import importlib.util

    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow (the tensorflow extra)")
    folder = tmp_path_factory.mktemp("mnist_model")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(SAMPLES / "standins.py"), "mnist-checkpoint", str(folder)], check=True,
                   capture_output=True, env=env, timeout=300)
    return folder


def digit_images(folder: Path, count: int) -> dict[str, str]:
    """MNIST-style PNGs in `folder` and the exact line the stand-in model gives for each."""
    from mpibatch.demo.digits import write_images

    write_images(folder, count, seed=11).unlink()
    weights = standins.digit_weights()
    return {png.name: f"{png.name}: {standins.predict_digit(weights, png)}" for png in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="session")
def sample_env() -> Path:
    """The python of a venv with the samples' own packages (pandas < 3, scikit-learn, MLflow, mltable) and
    none of mpibatch's: built once (a minute or two from the package index), reused after."""
    python = SAMPLE_ENV / "bin" / "python"
    stamp = SAMPLE_ENV / ".installed"
    wanted = " ".join(SAMPLE_ENV_PACKAGES)
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    shutil.rmtree(SAMPLE_ENV, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(SAMPLE_ENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SAMPLE_ENV_PACKAGES], check=True,
                       capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(SAMPLE_ENV, ignore_errors=True)
        why = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()[-1:]
        require(False, f"the samples' environment ({'; '.join(why)})")
    stamp.write_text(wanted)
    return python


def iris_standins(env_python: Path, kind: str, data: Path, model: Path, rows: int, extra: int) -> list[str]:
    """Data and a model in the format the script loads, made under the samples' environment; the lines."""
    expected = data.parent / "expected.lines"
    subprocess.run([str(env_python), str(SAMPLES / "standins.py"), "iris", kind, str(data), str(model), str(expected),
                    str(rows), str(extra)], check=True, capture_output=True, timeout=300)
    lines = lines_of(expected)
    expected.unlink()
    return lines


# ---- MachineLearningNotebooks: ParallelRunStep -----------------------------------------------------------

@sample_row("unchanged")
def test_mln_mnist(tmp_path, mnist_model):
    folder = copy_sample(tmp_path, "mln_mnist")
    shutil.copytree(mnist_model, folder / "models")
    expected = digit_images(folder / "mnist", 20)
    # node_count: 2 is the notebook's; one machine is one node, and mpibatch says so before any work.
    refused = sample_job(folder, "job.yaml")
    assert refused.rc == 2 and not (folder / "out").exists()
    assert refused.stderr.strip().splitlines()[-1] == (
        "mpibatch: error: node_count: the job asks for 2 but runs with 1; mpibatch takes its size from the launcher "
        "(mpiexec -n / srun -N -n)")
    job = sample_job(folder, "job.yaml", "--node-count", "1")
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "mnist_outputs.txt") == sorted(expected.values())
    assert job.result["items"] == {"total": 20, "succeeded": 20, "failed": 0}
    assert job.result["mini_batches"]["total"] == 4  # mini_batch_size 5
    stdout = "".join(p.read_text() for p in (folder / "out/logs/user/stdout").iterdir())
    assert stdout.count("run method start: ") == 4


@sample_row("unchanged", "python:")
def test_mln_iris(tmp_path, sample_env):
    folder = copy_sample(tmp_path, "mln_iris")
    expected = iris_standins(sample_env, "pickle", folder / "iris" / "iris.csv", folder / "iris_model.pkl", 120, 0)
    job = sample_job(folder, "job.yaml", "--node-count", "1", "--python", str(sample_env))
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "iris_outputs.txt") == expected
    assert job.result["items"] == {"total": 120, "succeeded": 120, "failed": 0}
    assert job.result["mini_batches"]["total"] > 1  # mini_batch_size 1KB
    log = "".join(p.read_text() for p in (folder / "out/logs/user/entry_script_log").iterdir())
    assert "init() is called." in log and "run() is called with: " in log


@sample_row("unchanged")
def test_mln_partition_per_folder(tmp_path):
    folder = copy_sample(tmp_path, "mln_partition_per_folder")
    sizes = {"disco": 882, "orchestra": 864, "piano": 846, "spirituality": 793}  # bytes, a thousandth of the real
    files = ["user1/winter/disco", "user1/fall/orchestra", "user2/summer/piano", "user3/fall/spirituality",
             "user4/spring/piano", "user4/fall/piano"]  # the notebook's uploads
    for name in files:
        path = folder / "dataset_partition_test" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + bytes(sizes[path.stem] - 4))
    job = sample_job(folder, "job.yaml", "--node-count", "1")
    assert job.rc == 0, job.stderr + job.result_txt
    expected = []
    for user, genre, count in (("user1", "disco", 1), ("user1", "orchestra", 1), ("user2", "piano", 1),
                               ("user3", "spirituality", 1), ("user4", "piano", 2)):
        size = sizes[genre]
        expected += [f"{genre}.wav,{size},{size * 1.0 / (size * count)},{user},{genre},{size * count}"] * count
    assert lines_of(folder / "out" / "file_size_outputs.txt") == sorted(expected)
    assert job.result["mini_batches"]["total"] == 5  # one per (user, genres), never split
    stdout = "".join(p.read_text() for p in (folder / "out/logs/user/stdout").iterdir())
    assert "partition_key_value = {'user': 'user4', 'genres': 'piano'}" in stdout
    assert stdout.count("dataset = ") == 5


@sample_row("unchanged")
def test_mln_partition_per_column(tmp_path):
    import csv

    folder = copy_sample(tmp_path, "mln_partition_per_column")
    rows = standins.oj_sales_rows()
    (folder / "oj_sales_data").mkdir()
    with open(folder / "oj_sales_data" / "oj.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([standins.OJ_COLUMNS, *rows])
    job = sample_job(folder, "job.yaml", "--node-count", "1")
    assert job.rc == 0, job.stderr + job.result_txt
    totals: dict[tuple, int] = {}
    for row in rows:
        totals[(row[-2], row[-1])] = totals.get((row[-2], row[-1]), 0) + row[7]
    expected = [" ".join(map(str, row)) + f" {totals[(row[-2], row[-1])]}" for row in rows]
    assert lines_of(folder / "out" / "revenue_outputs.txt") == sorted(expected)
    assert job.result["mini_batches"]["total"] == len(totals) == 9


# ---- azureml-examples: v2 parallel jobs ------------------------------------------------------------------

@sample_row("unchanged", "--set", "python:")
def test_ex_1a_oj_sales(tmp_path, sample_env):
    """Many models: one model per (Store, Brand), written by the script, which returns []."""
    import csv
    from datetime import date, timedelta

    folder = copy_sample(tmp_path, "ex_1a_oj_sales")
    with open(folder / "oj_sales.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["WeekStarting", "Store", "Brand", "Quantity", "Advert", "Price", "Revenue"])
        for store in (1000, 1001):
            for brand in ("dominicks", "tropicana"):
                for week in range(40):
                    writer.writerow([date(1990, 6, 14) + timedelta(weeks=week), store, brand,
                                     10000 + 37 * week + store % 7, week % 2, 2.59, 31087.77])
    # The pipeline's first step (a command job) partitions the CSV into an MLTable: run it as Azure would.
    partitioned = folder / "partitioned"
    subprocess.run([str(sample_env), "partition_data.py", "--data_source", str(folder / "oj_sales.csv"),
                    "--partition_keys", "Store,Brand", "--tabular_output_data", str(partitioned)],
                   cwd=folder / "src" / "partition_data", check=True, capture_output=True, timeout=300)
    job = sample_job(folder, "pipeline.yml", "--set", f"inputs.data_source={partitioned}",
                     "--set", "outputs.model_folder=models", "--output", "out", "--python", str(sample_env),
                     timeout=400)
    assert job.rc == 0, job.stderr + job.result_txt
    for store in (1000, 1001):
        for brand in ("dominicks", "tropicana"):
            assert (folder / "models" / str(store) / brand / "MLmodel").exists(), (store, brand)
    assert job.result["mini_batches"]["total"] == 4  # one per (Store, Brand), never split
    assert job.result["errors_by_class"]["exception"] == 0
    assert job.result["output_file"] is None  # no append_row_to: summary_only


@sample_row("unchanged", "--set", "python:")
def test_ex_2a_iris(tmp_path, sample_env):
    folder = copy_sample(tmp_path, "ex_2a_iris")
    expected = iris_standins(sample_env, "mlflow", folder / "neural-iris-mltable" / "iris.csv",
                             folder / "iris-model", 300, 4)
    job = sample_job(folder, "pipeline.yml", "--set", "outputs.job_output_file=out/aggregated_returns.csv",
                     "--python", str(sample_env))
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "aggregated_returns.csv") == expected
    assert job.result["mini_batches"]["total"] > 1  # mini_batch_size 10kb
    stdout = "".join(p.read_text() for p in (folder / "out/logs/user/stdout").iterdir())
    assert "AZUREML_PARALLEL_EXAMPLE 2a_yaml" in stdout  # environment_variables


@sample_row("needs")
def test_ex_3a_mnist(tmp_path, mnist_model):
    """Its script calls TensorFlow 1's tf.reset_default_graph() (the sample pins tensorflow==1.15.2)."""
    folder = copy_sample(tmp_path, "ex_3a_mnist")
    shutil.copytree(mnist_model, folder / "mnist_models")
    digit_images(folder / "mnist", 10)
    job = sample_job(folder, "pipeline.yml", "--set", "inputs.job_data_path=mnist",
                     "--set", "outputs.job_output_file=out/aggregated_returns.csv")
    assert job.rc == 1
    assert job.result["error"] == "AttributeError: module 'tensorflow' has no attribute 'reset_default_graph'"


@sample_row("unchanged", "--set", "python:")
def test_ex_pipeline_iris(tmp_path, sample_env):
    folder = copy_sample(tmp_path, "ex_pipeline_iris")
    expected = iris_standins(sample_env, "mlflow", folder / "neural-iris-mltable" / "iris.csv",
                             folder / "iris-model", 300, 4)
    job = sample_job(folder, "pipeline.yml", "--set", "outputs.job_output_file=out/aggregated_returns.csv",
                     "--python", str(sample_env))
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "aggregated_returns.csv") == expected


@sample_row("unchanged", "--set")
def test_ex_pipeline_mnist(tmp_path, mnist_model):
    folder = copy_sample(tmp_path, "ex_pipeline_mnist")
    shutil.copytree(mnist_model, folder / "mnist_models")
    # Its prepare_data step: prepare_data.py downloads MNIST into OUT/mnist (stand-in images here), then
    # dump_mltable.py writes OUT/MLTable (paths: - folder: ./mnist), run as the step runs it.
    prepared = folder / "prepared"
    expected = digit_images(prepared / "mnist", 15)
    subprocess.run([sys.executable, "dump_mltable.py", "--output_folder", str(prepared)], cwd=folder / "script",
                   check=True, capture_output=True, timeout=60)
    job = sample_job(folder, "pipeline.yml", "--set", "inputs.job_data_path=prepared",
                     "--set", "outputs.job_output_file=out/aggregated_returns.csv")
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "aggregated_returns.csv") == sorted(expected.values())
    assert job.result["mini_batches"]["total"] == 3  # mini_batch_size "5"
    assert "ignored here (Azure service settings): compute" in job.stderr


@sample_row("unchanged", "--set")
def test_ex_1g_file(tmp_path):
    folder = copy_sample(tmp_path, "ex_1g_parallel_nodes")
    digit_images(folder / "dataset" / "mnist-data", 4)
    for i, png in enumerate(sorted((folder / "dataset" / "mnist-data").glob("digit-*.png"))):
        png.rename(png.with_name(f"{i}.png"))  # the names its MLTable lists
    job = sample_job(folder, "file_batch_score.yml", "--set", "inputs.job_data_path=dataset/mnist-data",
                     "--set", "outputs.job_output_path=scored", "--output", "out")
    assert job.rc == 0, job.stderr + job.result_txt
    written = {p.name: p.read_text() for p in (folder / "scored").iterdir()}
    assert sorted(written) == ["0.png", "1.png", "2.png", "3.png"]
    assert all(Path(text).name == name and Path(text).is_absolute() for name, text in written.items())
    assert job.result["items"] == {"total": 4, "succeeded": 4, "failed": 0}
    assert job.result["mini_batches"]["total"] == 4  # mini_batch_size "1"
    assert not (folder / "out" / "parallel_run_step.txt").exists()  # no append_row_to: summary_only


@sample_row("unchanged", "--set", "python:")
def test_ex_1g_tabular(tmp_path, sample_env):
    folder = copy_sample(tmp_path, "ex_1g_parallel_nodes")
    expected = iris_standins(sample_env, "mlflow", folder / "dataset" / "iris-mltable" / "iris.csv",
                             folder / "model" / "iris_model", 150, 4)
    job = sample_job(folder, "tabular_batch_score.yml", "--set", "inputs.job_data_path=dataset/iris-mltable",
                     "--set", "inputs.score_model=model", "--set", "outputs.job_output_path=out",
                     "--python", str(sample_env))
    assert job.rc == 0, job.stderr + job.result_txt
    assert lines_of(folder / "out" / "parallel_run_step.txt") == expected
    assert job.result["items"]["succeeded"] == 150
    assert job.result["mini_batches"]["total"] > 1  # mini_batch_size "100": bytes


# ---- the table is these tests -----------------------------------------------------------------------------

def test_the_guide_table_is_these_tests():
    table = guide_table()
    tests = {name[len("test_"):]: fn.sample_ways for name, fn in globals().items()
             if name.startswith("test_") and hasattr(fn, "sample_ways")}
    folders = {p.name for p in SAMPLES.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert sorted(table) == sorted(tests), "a table row without its test, or a test without its row"
    assert {name: table[name] for name in table} == tests
    assert {re.sub(r"_(file|tabular)$", "_parallel_nodes", name) for name in tests} == folders
