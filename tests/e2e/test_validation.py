"""Bad input gets exit 2, exactly one line on stderr naming what is wrong, and nothing in the output."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import BIN, MPI, RANK_VARIABLES, SCRIPTS, cli_env, mpiexec, run_cli, without_launcher_banner

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
    "nan grace": (["--stop-grace", "nan"], "stop_grace: must be a number of seconds above 0 and at most 86400 (1 day)"),
    "inf timeout": (["--run-invocation-timeout", "inf"], "run_invocation_timeout: must be a number of seconds above 0 "
                                                         "and at most 2592000 (30 days)"),
    "huge init timeout": (["--init-timeout", "1e306"], "init_timeout: must be a number of seconds above 0"),
    "huge factor": (["--speculation-factor", "1e306"], "speculation_factor: must be from 1 to 1000"),
    "bad json input": (["--inputs", "{bad json"], "inputs: not valid JSON: "),
    "bad json mapping": (["--append-row-options", "{bad"], "append_row_options: not valid JSON: "),
    "result named logs": (["--append-row-file-name", "logs"], "append_row_file_name: 'logs' is a name mpibatch itself uses"),
    "result named .mpibatch": (["--append-row-file-name", ".mpibatch"], "append_row_file_name: '.mpibatch' is a name"),
    "result in a folder": (["--append-row-file-name", "../x.txt"], "append_row_file_name: must be a plain file name"),
    "empty result name": (["--append-row-file-name", ""], "append_row_file_name: must name a file"),
    "fractional size": (["--mini-batch-size", "1.5"], "mini_batch_size: must be a whole count"),
    "credits past the bound": (["--credits-per-worker", "1000000"], "credits_per_worker: must be 'auto' or 1 to 256"),
    "empty entry script": (["--entry-script", ""], "entry_script: must name a path, not an empty text"),
    "empty input": (["--inputs", ""], "inputs[1].path: must name a path, not an empty text"),
    "empty source directory": (["--source-directory", ""], "source_directory: must name a path"),
    "unknown to_csv key": (["--append-row-options", '{"sepp": ","}'],
                           "append_row_options: 'sepp' is not a pandas.DataFrame.to_csv keyword (did you mean 'sep'?)"),
    "to_csv refuses": (["--append-row-options", "sep=;;"], "append_row_options: pandas.DataFrame.to_csv refuses them"),
    "join address form": (["--join-address", "tcp://x"], "join_address: must be auto, none, or an interface"),
    "join address not here": (["--join-address", "nosuchif0"], "join_address: 'nosuchif0' is neither an interface of"),
    "join address elsewhere": (["--join-address", "8.8.8.8"], "join_address: 8.8.8.8 (8.8.8.8) is not an address of"),
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
    fix = {"mpich": "srun --mpi=pmi2", "openmpi": "srun --mpi=pmix"}.get(MPI, "srun --mpi=")  # the fix for this MPI
    assert len(lines) == 1 and "did not join one MPI world" in lines[0] and fix in lines[0], lines
    assert not (job_dir / "out").exists()


def test_an_unexpected_error_while_planning_ends_every_rank(job_dir):
    """A bug or storage error on rank 0 during planning must not leave the other ranks waiting."""
    (job_dir / "sitecustomize.py").write_text(
        "import mpibatch.inputs.plan as plan\n"
        "def boom(*args, **kwargs):\n"
        "    raise RuntimeError('disk on fire')\n"
        "plan.plan_batches = boom\n"
        "import mpibatch.engine.job as job\n"
        "job.plan_batches = boom\n")
    job = run_cli(["run", *BASE], job_dir / "out", ranks=2, cwd=job_dir, timeout=60,
                  env={"PYTHONPATH": str(job_dir)})
    assert job.rc == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "mpibatch: error: cannot plan the job: RuntimeError: disk on fire"



def run_ranked(args: list[str], ranks: int, cwd: Path, env: "dict | None" = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """`mpiexec -prepend-rank -n R mpibatch ARGS` (Open MPI: `--tag-output`): every stderr line says
    which rank wrote it, as `[0] ` (Hydra) or `[1,0]<stderr>: ` (Open MPI)."""
    tag = "--tag-output" if MPI == "openmpi" else "-prepend-rank"
    job = subprocess.run([*mpiexec(ranks, tag), str(BIN / "mpibatch"), *args],
                         capture_output=True, text=True, cwd=cwd, env=cli_env(env), timeout=timeout)
    job.stderr = without_launcher_banner(job.stderr)
    return job


RANK0 = "[1,0]<stderr>: " if MPI == "openmpi" else "[0] "  # how run_ranked's launcher tags rank 0's lines


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


USAGE_ERRORS = {
    "argparse: unknown flag": (["run", *BASE, "--mini-batch-sise", "3"], "unknown option '--mini-batch-sise'"),
    "argparse: missing value": (["run", *BASE, "--run-max-try"], "argument --run-max-try: expected one argument"),
    "flag JSON": (["run", *BASE, "--inputs", "{bad json"], "inputs: not valid JSON"),
    "config: nan": (["run", *BASE, "--stop-grace", "nan"], "stop_grace: must be"),
    "config: unknown key": (["run", "dup.yaml"], "key 'mini_batch_size' is given twice (again at line 5)"),
    "planning: missing input": (["run", *BASE, "--inputs", "nowhere"], "inputs[1]: "),
    "planning: bad script": (["run", *BASE, "--entry-script", "norun.py"], "defines no run() function"),
    "demo: bad flag": (["demo", "--images", "many"], "argument --images: invalid int value: 'many'"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_every_usage_error_is_one_line_from_rank_0_at_4_ranks(job_dir, case):
    """Bug 6: 4 ranks used to print 4 lines (or 4 tracebacks); rank 0 alone reads, validates and says why."""
    (job_dir / "dup.yaml").write_text("entry_script: score.py\ninputs: [data]\noutput: out\n"
                                      "mini_batch_size: 2\nmini_batch_size: 3\n")
    args, needle = USAGE_ERRORS[case]
    before = files_under(job_dir)
    job = run_ranked(args, 4, job_dir)
    assert job.returncode == 2, job.stderr
    lines = job.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(RANK0 + "mpibatch: error: ") and needle in lines[0], job.stderr
    assert files_under(job_dir) == before, "nothing may be written"


def test_the_job_file_is_read_once_by_rank_0(job_dir):
    """Weak spot: a job file was parsed by every rank (and twice by each); now once, on rank 0."""
    job_file = job_dir / "job.yaml"
    job_file.write_text("entry_script: score.py\ninputs: [data]\noutput: out\nprogress: none\n")
    opens = job_dir / "opens.txt"
    (job_dir / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"_JOB, _LOG = {str(job_file)!r}, {str(opens)!r}\n"
        "def _hook(event, args):\n"
        "    if event == 'open' and args and str(args[0]) == _JOB:\n"
        "        with open(_LOG, 'a') as fh:\n"
        f"            fh.write(next((os.environ[v] for v in {RANK_VARIABLES!r} if v in os.environ), '?') + '\\n')\n"
        "sys.addaudithook(_hook)\n")
    job = run_ranked(["run", str(job_file)], 4, job_dir, env={"PYTHONPATH": str(job_dir)})
    assert job.returncode == 0, job.stderr
    assert opens.read_text().split() == ["0"]
    assert (job_dir / "out" / "parallel_run_step.txt").read_text() == "a.txt ok\n"


@pytest.mark.parametrize("output", ["data", "data/out", "data/deep/er", "link/out", "globbed"])
def test_output_inside_an_input_is_refused_before_any_work(job_dir, output):
    """Bug 2: an output inside an input folder (the same folder, a glob's root, through a symlink)."""
    (job_dir / "link").symlink_to(job_dir / "data")
    inputs = [str(job_dir / "data" / "*.txt")] if output == "globbed" else ["data"]
    output = "data/results" if output == "globbed" else output
    before = files_under(job_dir)
    job = run_ranked(["run", "--entry-script", "score.py", "--inputs", *inputs, "--output", output], 2, job_dir)
    assert job.returncode == 2, job.stderr
    lines = job.stderr.splitlines()
    assert len(lines) == 1 and "would read its own output" in lines[0] and lines[0].startswith(RANK0), job.stderr
    assert files_under(job_dir) == before


def test_empty_output_writes_nothing_into_the_current_folder(job_dir):
    """`--output ''` used to write logs/ and .mpibatch/ into the current folder."""
    before = files_under(job_dir)
    job = run_ranked(["run", "--entry-script", "score.py", "--inputs", "data", "--output", ""], 2, job_dir)
    [line] = job.stderr.splitlines()
    assert job.returncode == 2 and line.startswith(RANK0 + "mpibatch: error: output: must name a path, not an empty text")
    assert files_under(job_dir) == before


def test_reserved_result_file_name_from_yaml_leaves_the_output_usable(job_dir):
    """Bug 5: `append_row_file_name: logs` broke the output folder for good; now it is refused up front."""
    (job_dir / "job.yaml").write_text("entry_script: score.py\ninputs: [data]\noutput: out\nprogress: none\n"
                                      "append_row_file_name: logs\n")
    job = run_ranked(["run", "job.yaml"], 2, job_dir)
    assert job.returncode == 2 and len(job.stderr.splitlines()) == 1 and "'logs' is a name" in job.stderr
    assert not (job_dir / "out").exists()
    fixed = run_ranked(["run", "job.yaml", "--append-row-file-name", "scores.txt"], 2, job_dir)
    assert fixed.returncode == 0, fixed.stderr
    assert (job_dir / "out" / "scores.txt").read_text() == "a.txt ok\n"


@pytest.mark.parametrize("where", ["flag", "settings.json"])
def test_unknown_append_row_option_is_refused_before_any_run_call(job_dir, where):
    """Bug 11: `{"sepp": ","}` failed every mini-batch and bisection blamed every item; now exit 2 first."""
    (job_dir / "frame.py").write_text("import pandas\n"
                                      "def run(mini_batch):\n"
                                      "    open('ran', 'a').write('x')\n"
                                      "    return pandas.DataFrame({'item': mini_batch})\n")
    extra = ["--append-row-options", '{"sepp": ","}'] if where == "flag" else []
    if where == "settings.json":
        (job_dir / "parallel_run_step.settings.json").write_text(
            '{"append_row": {"pandas.DataFrame.to_csv": {"sepp": ","}}}')
    job = run_ranked(["run", "--entry-script", "frame.py", "--inputs", "data", "--output", "out", *extra], 2, job_dir)
    assert job.returncode == 2
    [line] = job.stderr.splitlines()
    assert "'sepp' is not a pandas.DataFrame.to_csv keyword (did you mean 'sep'?)" in line, line
    assert not (job_dir / "out").exists() and not (job_dir / "ran").exists()


BOMB = ("entry_script: score.py\ninputs: [data]\noutput: out\nappend_row_options:\n"
        "  a: &a [x, x, x, x, x, x, x, x, x]\n" +
        "".join(f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)))


def test_a_yaml_alias_bomb_is_refused_at_once(job_dir):
    """Weak spot: ~500 bytes of aliases hung every rank for minutes; now one line within seconds."""
    (job_dir / "bomb.yaml").write_text(BOMB)
    assert len(BOMB) < 600
    job = run_ranked(["run", "bomb.yaml"], 2, job_dir, timeout=60)
    assert job.returncode == 2
    [line] = job.stderr.splitlines()
    assert "aliases expand to more than 10000 values" in line
    assert not (job_dir / "out").exists()


def test_an_oversized_job_file_is_refused_unparsed(job_dir):
    """Weak spot: a 50 MB job file was parsed by every rank; now anything over 1 MB is refused."""
    with open(job_dir / "big.yaml", "w") as fh:
        fh.write("entry_script: score.py\ninputs: [data]\noutput: out\narguments:\n")
        fh.write("- xxxxxxxxxxxxxxxxxxxxxxxx\n" * 45_000)
    job = run_ranked(["run", "big.yaml"], 2, job_dir)
    assert job.returncode == 2
    [line] = job.stderr.splitlines()
    assert "a job file may hold at most 1048576 bytes (1 MB)" in line
    assert not (job_dir / "out").exists()


def test_a_mislaunch_is_said_once_by_the_launchers_rank_0(job_dir):
    """Every process of a mislaunched world is rank 0 of 1; only the launcher's rank 0 prints the fix."""
    env = {"SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"}
    procs = [subprocess.Popen([str(BIN / "mpibatch"), "run", *BASE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=job_dir, env=cli_env({**env, "SLURM_PROCID": str(rank)}))
             for rank in range(2)]
    errs = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [2, 2]
    assert len(errs[0].splitlines()) == 1 and "did not join one MPI world" in errs[0]
    assert errs[1] == ""
    assert not (job_dir / "out").exists()
