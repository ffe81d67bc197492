"""Bad input gets exit 2, exactly one line on stderr naming what is wrong, and nothing in the output."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SCRIPTS, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("ok\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "score.py").write_text((SCRIPTS / "faulty.py").read_text())
    (tmp_path / "broken.py").write_text("def run(mini_batch):\n    return [\n")
    (tmp_path / "norun.py").write_text("def init():\n    pass\n")
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    return tmp_path


BASE = ["--entry-script", "score.py", "--inputs", "data", "--output", "out"]

CASES = {
    "unknown flag": (["--mini-batch-sise", "3"], "unknown option '--mini-batch-sise' (did you mean '--mini-batch-size'?)"),
    "bad count": (["--run-max-try", "0"], "run_max_try: must be 1 or more"),
    "bad size": (["--mini-batch-size", "lots"], "mini_batch_size: must be a count"),
    "byte size for files": (["--mini-batch-size", "10MB"], "mini_batch_size: file inputs take a count of files"),
    "bad choice": (["--executor", "thread"], "executor: must be 'process' or 'inline'"),
    "bad level": (["--logging-level", "LOUD"], "logging_level: must be one of WARNING, INFO, DEBUG"),
    "bad percent": (["--allowed-failed-percent", "150"], "allowed_failed_percent: must be a percentage"),
    "bad threshold": (["--error-threshold", "-5"], "error_threshold: must be -1 (no limit)"),
    "not a number": (["--run-invocation-timeout", "soon"], "run_invocation_timeout:"),
    "bad mapping": (["--environment-variables", "NOEQUALS"], "environment_variables: 'NOEQUALS' is not key=value"),
    "missing input": (["--inputs", "nowhere"], "inputs[1]: "),
    "empty folder": (["--inputs", "empty"], "inputs[1]: directory"),
    "glob without match": (["--inputs", "data/*.png"], "inputs[1]: pattern"),
    "empty filelist": (["--inputs", '{"path": "list.txt", "type": "filelist"}'], "filelist"),
    "missing script": (["--entry-script", "nope.py"], "entry_script: '"),
    "syntax error": (["--entry-script", "broken.py"], "has a syntax error at line 2: '[' was never closed"),
    "no run()": (["--entry-script", "norun.py"], "defines no run() function"),
    "aliased size": (["--node-count", "2"], "node_count: the job asks for 2 but runs with 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(job_dir, case):
    extra, needle = CASES[case]
    job = run_cli(["run", *BASE, *extra], job_dir / "out", ranks=None, cwd=job_dir)
    assert job.rc == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1, job.stderr
    assert lines[0].startswith("mpibatch: error: ") and needle in lines[0], lines[0]
    assert not (job_dir / "out").exists(), "nothing may be written to output"


def test_missing_required_keys_and_yaml_errors(job_dir):
    (job_dir / "typo.yaml").write_text("entry_script: score.py\ninputs: [data]\noutput: out\nmini_batch_sise: 3\n")
    (job_dir / "bad.yaml").write_text("entry_script: [unclosed\n")
    (job_dir / "partial.yaml").write_text("entry_script: score.py\ninputs: [data]\n")
    for args, needle in [
        (["typo.yaml"], "unknown key 'mini_batch_sise' in typo.yaml (did you mean 'mini_batch_size'?)"),
        (["bad.yaml"], "job file 'bad.yaml' is not valid YAML"),
        (["partial.yaml"], "output: required key is missing"),
        (["missing.yaml"], "job file 'missing.yaml' does not exist"),
        ([], "entry_script: required key is missing"),
    ]:
        job = run_cli(["run", *args], job_dir / "out", ranks=None, cwd=job_dir)
        lines = job.stderr.strip().splitlines()
        assert job.rc == 2 and len(lines) == 1 and needle in lines[0], (args, job.stderr)


def test_validation_under_mpiexec_prints_once(job_dir):
    job = run_cli(["run", *BASE, "--inputs", "nowhere"], job_dir / "out", ranks=3, cwd=job_dir)
    assert job.rc == 2
    assert len(job.stderr.strip().splitlines()) == 1, job.stderr
    assert not (job_dir / "out").exists()


def test_mislaunch_is_detected(job_dir):
    """srun --mpi=none gives every process rank 0 of 1 while Slurm says there are more."""
    job = run_cli(["run", *BASE], job_dir / "out", ranks=None, cwd=job_dir,
                  env={"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0"})
    assert job.rc == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not join one MPI world" in lines[0] and "srun --mpi=pmi2" in lines[0]
    assert not (job_dir / "out").exists()


def test_an_unexpected_error_while_planning_ends_every_rank(job_dir):
    """A bug or storage error on rank 0 during planning must not leave the other ranks waiting."""
    (job_dir / "sitecustomize.py").write_text(
        "import mpibatch.plan as plan\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('disk on fire')\n"
        "plan.plan_batches = boom\n"
        "import mpibatch.job as job\n"
        "job.plan_batches = boom\n")
    job = run_cli(["run", *BASE], job_dir / "out", ranks=2, cwd=job_dir, timeout=60,
                  env={"PYTHONPATH": str(job_dir)})
    assert job.rc == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "mpibatch: error: cannot plan the job: RuntimeError: disk on fire"
