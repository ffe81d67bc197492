"""Unit tests for the Python API: mpibatch.Job validates as the CLI does (same error line), round-trips
through YAML, and mpibatch.azureml maps the seed notebook's ParallelRunConfig / ParallelRunStep."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import BIN

import mpibatch
from mpibatch.azureml import ParallelRunConfig, ParallelRunStep, PipelineParameter
from mpibatch.config import error_line
from mpibatch.api.run import Status, progress_line
from mpibatch.api.notebook_view import render_html


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A job folder: src/score.py, data/a.txt."""
    (tmp_path / "job" / "src").mkdir(parents=True)
    (tmp_path / "job" / "src" / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "job" / "data").mkdir()
    (tmp_path / "job" / "data" / "a.txt").write_text("a\n")
    return tmp_path / "job"


def keys(folder: Path, **extra: object) -> dict:
    return {"entry_script": str(folder / "src" / "score.py"), "inputs": [str(folder / "data")],
            "output": str(folder / "out"), **extra}


@pytest.mark.parametrize("key,value", [("mini_batch_size", 1.5), ("error_threshold", "ten"), ("run_max_try", 0),
                                       ("logging_level", "LOUD"), ("output_action", "append_rows"),
                                       ("append_row_options", {"sepp": ","}), ("inputs", [])])
def test_a_bad_value_raises_the_line_the_cli_exits_2_with(folder: Path, key: str, value: object) -> None:
    with pytest.raises(mpibatch.ConfigError) as raised:
        mpibatch.Job(**keys(folder, **{key: value}))
    job_file = folder / "job.yaml"
    job_file.write_text(yaml.safe_dump(keys(folder, **{key: value})))
    cli = subprocess.run([str(BIN / "mpibatch"), "run", str(job_file)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2
    assert cli.stderr == error_line(raised.value) + "\n"
    assert str(raised.value).startswith(key)


def test_unknown_and_missing_keys_are_named(folder: Path) -> None:
    with pytest.raises(mpibatch.ConfigError) as raised:
        mpibatch.Job(**keys(folder, mini_batch_sise=3))
    assert str(raised.value) == "unknown key 'mini_batch_sise' given to mpibatch.Job (did you mean 'mini_batch_size'?)"
    with pytest.raises(mpibatch.ConfigError, match=r"^entry_script: required key is missing$"):
        mpibatch.Job(inputs=[str(folder / "data")], output=str(folder / "out"))


def test_relative_paths_are_read_against_the_cwd_and_written_relative_to_the_yaml(folder: Path, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    monkeypatch.chdir(folder)
    job = mpibatch.Job(entry_script=Path("src/score.py"), inputs=["data", {"path": "data", "type": "files"}],
                       output="out", mini_batch_size="2", models={"m": "/opt/models/m.bin"}, node_count=1)
    assert job.config.entry_script == str(folder / "src" / "score.py")
    assert job.config.mini_batch_size == 2 and job.sizing == {"node_count": 1}
    written = job.to_yaml(folder / "job.yaml")
    assert yaml.safe_load(written.read_text()) == {
        "entry_script": "src/score.py", "inputs": ["data", {"path": "data", "type": "files"}], "output": "out",
        "mini_batch_size": "2", "models": {"m": "/opt/models/m.bin"}, "node_count": 1}
    monkeypatch.chdir(tmp_path)
    again = mpibatch.Job.from_yaml(written)
    assert again.config == job.config and again.sizing == job.sizing
    moved = shutil.move(str(folder), str(tmp_path / "moved"))  # the folder's paths travel with it
    elsewhere = mpibatch.Job.from_yaml(Path(moved) / "job.yaml")
    assert elsewhere.config.entry_script == str(tmp_path / "moved" / "src" / "score.py")
    assert elsewhere.config.models == {"m": "/opt/models/m.bin"}


def test_entry_script_relative_to_source_directory_round_trips(folder: Path) -> None:
    job = mpibatch.Job(source_directory=str(folder / "src"), entry_script="score.py", inputs=[str(folder / "data")],
                       output=str(folder / "out"))
    assert job.config.entry_script == str(folder / "src" / "score.py")
    written = yaml.safe_load(job.to_yaml(folder / "job.yaml").read_text())
    assert written["source_directory"] == "src" and written["entry_script"] == "score.py"
    assert mpibatch.Job.from_yaml(folder / "job.yaml").config == job.config


def test_replace_changes_keys_and_keeps_the_rest(folder: Path) -> None:
    job = mpibatch.Job(**keys(folder, mini_batch_size=3))
    assert job.replace(resume=True).config == job.config.model_copy(update={"resume": True})
    assert job.replace(mini_batch_size=None).config.mini_batch_size is None


def test_run_refuses_a_script_without_run_before_starting_anything(folder: Path) -> None:
    (folder / "src" / "score.py").write_text("def init():\n    pass\n")
    job = mpibatch.Job(**keys(folder))
    with pytest.raises(mpibatch.ConfigError, match=r"^entry_script: '.*score.py' defines no run\(\) function$"):
        job.run(ranks=2)
    assert not (folder / "out").exists()


def test_parallel_run_config_takes_the_seed_notebooks_arguments(folder: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = ParallelRunConfig(
            source_directory=str(folder / "src"), entry_script="score.py",
            mini_batch_size=PipelineParameter(name="batch_size_param", default_value="5"), error_threshold=10,
            output_action="append_row", append_row_file_name="mnist_outputs.txt", environment=object(),
            compute_target="cpu-cluster", process_count_per_node=PipelineParameter("process_count_param", 2),
            node_count=2, run_invocation_timeout=30, run_max_try=2, logging_level="DEBUG",
            description="digits", models={"mnist": str(folder / "m.keras")})
    assert [str(w.message).split(":")[1].strip() for w in caught] == ["environment is ignored",
                                                                      "compute_target is ignored"]
    assert all(w.category is UserWarning and w.filename == __file__ for w in caught)
    step = ParallelRunStep(name="predict-digits-mnist", parallel_run_config=config, inputs=[folder / "data"],
                           output=folder / "out", arguments=["--k", 3], allow_reuse=False)
    c = step.config
    assert (c.entry_script, c.mini_batch_size, c.error_threshold, c.append_row_file_name) == (
        str(folder / "src" / "score.py"), 5, 10, "mnist_outputs.txt")
    assert (c.run_invocation_timeout, c.run_max_try, c.logging_level, c.compat, c.allow_reuse, c.arguments) == (
        30, 2, "DEBUG", "azureml", False, ["--k", "3"])
    assert step.sizing == {"node_count": 2, "process_count_per_node": 2} and step.default_ranks() == 4
    assert step.name == "predict-digits-mnist" and config.append_row_file_name == "mnist_outputs.txt"
    assert ParallelRunStep("s", config, [str(folder / "data")], str(folder / "o2")).config.allow_reuse is True


def test_parallel_run_config_values_are_validated_as_job_keys(folder: Path) -> None:
    config = ParallelRunConfig(source_directory=str(folder / "src"), entry_script="score.py", mini_batch_size="5",
                               error_threshold="ten", node_count=0)
    with pytest.raises(mpibatch.ConfigError, match=r"^node_count: must be a count from 1 to 1000000 \(got 0\)$"):
        ParallelRunStep("s", config, [str(folder / "data")], str(folder / "out"))


def test_status_reads_as_attributes_and_lines() -> None:
    data = {"status": "Running", "output": "/o", "mini_batches": {"total": 40, "succeeded": 9, "failed": 1},
            "bisection": {"mini_batches_split": 2}, "items": {"succeeded": 90, "failed": 3, "total": 400},
            "rate": 2.5, "eta_s": 65, "errors_by_class": {"exception": 3, "timeout": 0},
            "per_rank": {"0": {"mini_batches": 5, "items": 50, "last": 100.0, "host": "n<1>", "running": 1}}}
    status = Status(data)
    assert (status.status, status.done, status.total, status.rate, status.reason) == ("Running", 12, 40, 2.5, None)
    assert status["items"]["failed"] == 3 and not status.finished
    assert progress_line(status) == ("Running: 12/40 mini-batches (30.0%), items 90 succeeded, 3 failed, "
                                     "2.5 mini-batches/s, ETA 1:05")
    page = render_html(data, now=130.0)
    assert "12/40 mini-batches (30.0%)" in page and "exception 3" in page and "timeout" not in page
    assert "n&lt;1&gt;" in page and "0:30 ago" in page and "ETA 1:05" in page
    with pytest.raises(AttributeError):
        status.no_such_fact


def test_import_mpibatch_stays_cheap_and_the_api_loads_when_used() -> None:
    heavy = ("pandas", "pydantic", "mpi4py", "tensorflow", "yaml", "jinja2", "IPython")
    code = ("import sys, mpibatch; print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))); "
            "mpibatch.Job; mpibatch.Run; print('pydantic' in sys.modules, mpibatch.ConfigError.__module__)")
    proc = subprocess.run([sys.executable, "-c", code, *heavy], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["[]", "True mpibatch.config"], proc.stderr
