"""The entry script's own environment, end to end under mpiexec -n 2: a real venv that pins older
packages (pandas 1.5.3, numpy 1.26.4) runs an Azure-style iris scorer that pandas 3 refuses, with
nothing of the runner's leaking in; real prefix commands (nice, env, bubblewrap) change the process
as seen from run(); a timed-out prefixed child dies with its whole tree; bad settings exit 2."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, SCRIPTS, Job, require, run_cli

PINNED = ("pandas==1.5.3", "numpy==1.26.4")
IRIS_HEADER = "sepal_length,sepal_width,petal_length,petal_width,variety"
IRIS_ROWS = ["5.1,3.5,1.4,0.2,Setosa", "4.9,3.0,1.4,0.2,Setosa", "7.0,3.2,4.7,1.4,Versicolor",
             "6.4,3.2,4.5,1.5,Versicolor", "4.7,3.2,1.3,0.2,Setosa", "5.5,2.3,4.0,1.3,Versicolor"]


@pytest.fixture(scope="session")
def old_pandas_env() -> Path:
    """A venv of the system's python3 with the pinned packages, built once and kept under .cache/
    (gitignored): a second session reuses it. Returns its bin/python."""
    base = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    require(base is not None, "a system python3 to build the script's venv with")
    version = subprocess.run([base, "-c", "import sys; print(sys.version)"], capture_output=True, text=True).stdout
    key = hashlib.sha256((version + " ".join(PINNED)).encode()).hexdigest()[:12]
    env_dir = ROOT / ".cache" / f"script-env-{key}"
    python = env_dir / "bin" / "python"
    if not (env_dir / ".complete").exists():
        building = env_dir.with_name(env_dir.name + f".building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        steps = [[base, "-m", "venv", str(building)],
                 [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", *PINNED]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                shutil.rmtree(building, ignore_errors=True)
                require(False, f"the pinned venv ({' '.join(step[-3:])}: {done.stderr.strip()[-300:]})")
        (building / ".complete").write_text(" ".join(PINNED) + "\n")
        shutil.rmtree(env_dir, ignore_errors=True)
        building.rename(env_dir)  # a venv's scripts name its folder: make sure they are not used (python -m)
    return python


@pytest.fixture(scope="session")
def bwrap() -> str:
    """Debian's bubblewrap, installed with apt-get when missing (the test setup needs nothing else)."""
    found = shutil.which("bwrap")
    if not found and shutil.which("apt-get"):
        for step in (["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "bubblewrap"],
                     ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "bubblewrap"]):
            subprocess.run(step, capture_output=True, timeout=900)
            found = shutil.which("bwrap")
            if found:
                break
    require(bool(found), "bubblewrap (apt-get install bubblewrap)")
    works = subprocess.run([found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
                           capture_output=True, text=True)
    require(works.returncode == 0, f"a working bwrap ({works.stderr.strip()})")
    return str(found)


def iris_job(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    """The sample's layout: a code folder with the script and a model folder, a CSV input."""
    code = tmp_path / "code"
    (code / "iris-model").mkdir(parents=True)
    shutil.copy(SCRIPTS / "iris_style_score.py", code / "score.py")
    (code / "iris-model" / "model.pkl").write_bytes(pickle.dumps({"petal_length_above": 2.5}))
    data = tmp_path / "data"
    data.mkdir()
    (data / "iris.csv").write_text("\n".join([IRIS_HEADER, *IRIS_ROWS]) + "\n")
    job = tmp_path / "job.yml"
    job.write_text("entry_script: score.py\nsource_directory: code\ninputs: {path: data, type: tabular}\n"
                   "mini_batch_size: 2rows\noutput: out\narguments: [--model, iris-model]\n"
                   "error_threshold: 0\nbisect_failures: false\nprogress: none\n" + extra)
    return job, tmp_path / "out"


def expected_iris() -> list[str]:
    return sorted(" ".join(row.split(",")) for row in IRIS_ROWS)


def test_iris_sample_runs_in_its_own_older_pandas(tmp_path: Path, old_pandas_env: Path) -> None:
    job, out = iris_job(tmp_path, f"python: {old_pandas_env}\nenvironment_variables: {{IRIS_EXPECT_PANDAS: 1.5.3}}\n")
    done = run_cli(["run", str(job)], out)
    assert done.rc == 0, done.stderr + done.log("logs/job_result.txt")
    assert sorted(done.lines) == expected_iris()
    assert "items: 6 total, 6 succeeded, 0 failed" in done.result_txt


def test_iris_sample_fails_under_the_runners_pandas(tmp_path: Path) -> None:
    """The same job without python: runs under the runner's pandas 3, which refuses the 2-D column."""
    job, out = iris_job(tmp_path)
    done = run_cli(["run", str(job)], out)
    assert done.rc == 1
    assert done.lines == []
    first = done.result_txt.split("first error", 1)[1].splitlines()[1].strip()
    assert first == "ArrowInvalid: only handle 1-dimensional arrays", done.result_txt


def probe_job(tmp_path: Path, names: list[str], extra: str = "") -> tuple[Path, Path]:
    code = tmp_path / "code"
    code.mkdir(parents=True)
    shutil.copy(SCRIPTS / "iris_style_probe.py", code / "probe.py")
    data = tmp_path / "data"
    data.mkdir()
    for name in names:
        (data / name).write_text(name + "\n")
    job = tmp_path / "job.yml"
    job.write_text(f"entry_script: code/probe.py\ninputs: data\noutput: out\nmini_batch_size: 1\nprogress: none\n{extra}")
    return job, tmp_path / "out"


def _expected(names: list[str], nice: int, var: str, python: str, own: bool) -> list[str]:
    return sorted(f"{n} nice={nice} var={var} cwd=code python={python} own_pid_namespace={own}" for n in names)


def test_exec_prefixes_change_the_process(tmp_path: Path, old_pandas_env: Path) -> None:
    """`nice -n 7 env PREFIX_VAR=set` (both exec the next word) before the venv's interpreter."""
    names = ["a", "b", "c"]
    job, out = probe_job(tmp_path, names, f"python: {old_pandas_env}\ncommand_prefix: [nice, -n, '7', env, PREFIX_VAR=set]\n")
    done = run_cli(["run", str(job)], out)
    assert done.rc == 0, done.stderr
    assert sorted(done.lines) == _expected(names, 7 + os.nice(0), "set", old_pandas_env.parent.parent.name, False)


def test_a_forking_container_prefix(tmp_path: Path, bwrap: str) -> None:
    """bubblewrap, as a container launcher would: the root read-only, a pid namespace of its own; the
    runner's interpreter (no python:) under it, given as a flag."""
    names = ["a", "b"]
    job, out = probe_job(tmp_path, names)
    prefix = f"{bwrap} --ro-bind / / --dev /dev --proc /proc --bind /tmp /tmp --bind {tmp_path} {tmp_path} " \
             "--unshare-pid --die-with-parent --setenv PREFIX_VAR inside"
    done = run_cli(["run", str(job), "--command-prefix", prefix], out)
    assert done.rc == 0, done.stderr
    assert sorted(done.lines) == _expected(names, os.nice(0), "inside", Path(sys.prefix).name, True)


def _carrying(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SCRIPT_ENV_MARK") == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("kind", ["exec", "fork"])
def test_a_timed_out_prefixed_child_dies_with_its_tree(tmp_path: Path, old_pandas_env: Path, kind: str,
                                                       request) -> None:
    """A run() past its timeout: the prefix process, the interpreter under it and the script's own
    child all end (an exec'ing prefix: nice; a forking one: bwrap with a pid namespace)."""
    if kind == "fork":
        bwrap = request.getfixturevalue("bwrap")
        prefix = f"[{bwrap}, --ro-bind, /, /, --dev, /dev, --proc, /proc, --bind, /tmp, /tmp, --unshare-pid]"
    else:
        prefix = "nice -n 3"
    mark = uuid.uuid4().hex
    job, out = probe_job(tmp_path, ["hang", "ok"], f"python: {old_pandas_env}\ncommand_prefix: {prefix}\n"
                         f"run_invocation_timeout: 3\nrun_max_try: 1\nenvironment_variables: "
                         f"{{PROBE_PIDS: {tmp_path / 'pids.txt'}}}\n")
    started = time.monotonic()
    done = run_cli(["run", str(job)], out, env={"SCRIPT_ENV_MARK": mark})
    assert time.monotonic() - started < 120
    assert done.rc == 0, done.stderr  # error_threshold -1: the hung item fails, the job completes
    assert [line.split()[0] for line in done.lines] == ["ok"]
    assert "errors by class: exception 0, timeout 1, crash 0, oom 0, init 0" in done.result_txt
    assert "  run() did not finish within run_invocation_timeout=3s and was killed\n" in done.result_txt
    assert (tmp_path / "pids.txt").exists()  # the hung run() had started its child
    deadline = time.monotonic() + 10
    while _carrying(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _carrying(mark) == []


def test_relative_model_path_resolves_from_the_code_folder_without_python_key(tmp_path: Path) -> None:
    """cwd = the code folder for the runner's own interpreter too (process and inline executors)."""
    for executor in ("process", "inline"):
        job, out = probe_job(tmp_path / executor, ["x"], f"executor: {executor}\n")
        done = run_cli(["run", str(job)], out)
        assert done.rc == 0, done.stderr
        assert done.lines == [f"x nice={os.nice(0)} var=None cwd=code python={Path(sys.prefix).name} "
                              "own_pid_namespace=False"]


def _fake(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_bad_environments_exit_2_with_one_line(tmp_path: Path) -> None:
    job, out = probe_job(tmp_path, ["a"])
    plain = tmp_path / "plain"
    plain.write_text("")
    old = _fake(tmp_path / "python3.6", "echo 3.6.15\n")
    cases = [
        (["--python", "nowhere/bin/python"], f"python: '{tmp_path / 'nowhere/bin/python'}' does not exist"),
        (["--python", str(plain)], f"python: '{plain}' is not executable"),
        (["--python", str(old)], f"python: '{old}' is Python 3.6.15; the entry-script process needs Python 3.8 or newer"),
        (["--python", sys.executable, "--executor", "inline"],
         "python: needs executor: process (the inline executor runs the entry script in the rank's own interpreter)"),
        (["--command-prefix", "no-such-launcher exec img"],
         "command_prefix: 'no-such-launcher' is not a command found on PATH"),
    ]
    for flags, line in cases:
        done = run_cli(["run", str(job), *flags], out, cwd=tmp_path)
        assert done.rc == 2, (flags, done.stderr)
        assert done.stderr.splitlines() == [f"mpibatch: error: {line}"], flags
        assert not (out / "parallel_run_step.txt").exists()


def test_environments_are_checked_for_what_tables_known_only_after_listing_need(tmp_path: Path,
                                                                                old_pandas_env: Path) -> None:
    """A table known from its MLTable needs pandas; a parquet one known from its suffix pyarrow too."""
    import pandas

    bare = _fake(tmp_path / "bare-python", f'exec {sys.base_prefix}/bin/python3 -S "$@"\n')
    table = tmp_path / "table"
    table.mkdir()
    (table / "rows.csv").write_text("x,y\n1,2\n")
    (table / "MLTable").write_text("paths:\n  - file: ./rows.csv\ntransformations:\n  - read_delimited:\n"
                                   "      delimiter: ','\n")
    pandas.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / "rows.parquet")
    script = tmp_path / "score.py"
    script.write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return [len(mini_batch)]\n")
    cases = [("mltable", str(table), bare, "pandas"),
             ("parquet", json.dumps({"path": str(tmp_path / "rows.parquet"), "type": "tabular"}), old_pandas_env,
              "pyarrow")]
    for name, inputs, python, missing in cases:
        out = tmp_path / f"out-{name}"
        done = run_cli(["run", "--entry-script", str(script), "--inputs", inputs, "--python", str(python),
                        "--output", str(out)], out, cwd=tmp_path)
        assert done.rc == 2, (name, done.stderr)
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"mpibatch: error: python: '{python}' (Python "), done.stderr
        assert f"cannot import {missing}, which the job's tabular inputs need in the entry-script process" \
            in done.stderr, done.stderr
        assert not out.exists(), name
