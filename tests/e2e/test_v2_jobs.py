"""Azure ML v2 job files run as they are under mpiexec: a parallel job, a parallel component with --set, a
pipeline's parallel node with --node and --set; errors are one line at any rank count."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, cli_env, run_cli

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "v2"
DIGITS = range(7)


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "v2")
    return tmp_path / "v2"


def lines(path: Path) -> set[str]:
    return set(path.read_text().splitlines())


def test_parallel_job_as_it_is(v2: Path) -> None:
    output = v2 / "out" / "job"
    job = run_cli(["run", "parallel_job.yml", "--progress", "none"], output, ranks=2, cwd=v2)
    assert job.rc == 0, job.stderr
    # strict argparse in init(): a ParallelRunStep flag passed on to the script would have failed every mini-batch
    assert lines(output / "aggregated_returns.csv") == {f"img_{i}.txt {i} scale=3 blue" for i in DIGITS}
    assert job.result["items"]["succeeded"] == 7
    ignored = ("Azure ML v2 parallel job 'score_files'; ignored here (Azure service settings): name, display_name, "
               "description, compute, tags, inputs.job_data_path.mode, inputs.score_model.mode, "
               "outputs.job_output_file.mode")
    assert job.stderr.count(ignored) == 1, job.stderr
    assert f"mpibatch: {ignored}\n" in job.stderr
    assert job.log("logs/sys/rank-0000.txt").count(ignored) == 1
    assert ignored not in job.log("logs/sys/rank-0001.txt")
    assert "--task_overhead_timeout 1200, --progress_update_timeout 600" in job.log("logs/sys/rank-0000.txt")
    assert "warning" not in job.stderr.lower()  # instance_count 1 and max_concurrency_per_instance 2: this world


def test_component_with_set(v2: Path) -> None:
    output = v2 / "scores"
    job = run_cli(["run", "component/parallel_component.yml", "--progress", "none",
                   "--set", "inputs.job_data_path=data", "--set", "inputs.score_model=model",
                   "--set", "outputs.job_output_file=scores", "--set", "outputs.copies=copies"], output, ranks=2, cwd=v2)
    assert job.rc == 0, job.stderr
    assert lines(output / "parallel_run_step.txt") == {f"img_{i}.txt {i} scale=3 green" for i in DIGITS}
    assert sorted(p.name for p in (v2 / "copies").iterdir()) == [f"img_{i}.txt" for i in DIGITS]  # made before run()
    assert job.stderr.count("mpibatch: warning: resources.instance_count: the v2 job asks for 2 but runs with 1; "
                            "mpibatch takes its size from the launcher (srun -N)\n") == 1
    assert job.stderr.count("mpibatch: warning: max_concurrency_per_instance: the v2 job asks for 1 but runs with 2; "
                            "mpibatch takes its size from the launcher (mpiexec -n / srun --ntasks-per-node)\n") == 1
    assert job.stderr.count("warning:") == 2


def test_pipeline_node_with_node_and_set(v2: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    job = run_cli(["run", str(v2 / "pipeline.yml"), "--node", "predict_inline", "--progress", "none",
                   "--set", f"inputs.job_data_path={v2 / 'data'}", "--set", f"outputs.job_output_file={output}/x.txt"],
                  output, ranks=2)
    assert job.rc == 0, job.stderr
    assert lines(output / "x.txt") == {f"img_{i}.txt {i} scale=3 none" for i in DIGITS}
    assert job.result["items"]["total"] == 7
    assert "jobs.prepare_data, jobs.predict_component" in job.log("logs/sys/rank-0000.txt")


def test_pipeline_errors_once_at_three_ranks(v2: Path) -> None:
    job = run_cli(["run", "pipeline.yml"], v2 / "out", ranks=3, cwd=v2)
    assert job.rc == 2
    assert job.stderr == ("mpibatch: error: --node: the pipeline in pipeline.yml holds 2 parallel nodes "
                          "(predict_inline, predict_component); name one with --node NAME\n")
    job = run_cli(["run", "pipeline.yml", "--node", "predict_inline"], v2 / "out", ranks=3, cwd=v2)
    assert job.rc == 2
    assert job.stderr == ("mpibatch: error: inputs.job_data_path: binds ${{parent.jobs.prepare_data.outputs.images}}, "
                          "the output of pipeline step 'prepare_data', which mpibatch does not run; pass --set "
                          "inputs.job_data_path=PATH\n")
    assert not (v2 / "out").exists()


def test_plain_job_file_with_azure_name_hint(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yml"
    job_file.write_text("entry_script: s.py\ninputs: [d]\noutput: o\nmini_batch_error_threshold: 5\n")
    job = run_cli(["run", str(job_file)], tmp_path / "o", ranks=3)
    assert job.rc == 2
    assert job.stderr == (f"mpibatch: error: unknown key 'mini_batch_error_threshold' in {job_file} (Azure ML v2 "
                          "name: use 'allowed_failed_count')\n")


def test_submit_dry_run_forwards_node_and_set(v2: Path) -> None:
    proc = subprocess.run([str(BIN / "mpibatch"), "submit", "pipeline.yml", "--nodes", "1", "--dry-run",
                           "--node", "predict_inline", "--set", "inputs.job_data_path=data",
                           "--set", "outputs.job_output_file=out/s.txt"],
                          cwd=v2, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (f"--node predict_inline --set inputs.job_data_path={v2 / 'data'} "
            f"--set outputs.job_output_file={v2 / 'out' / 's.txt'}") in proc.stdout
