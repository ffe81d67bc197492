"""The happy path under the real mpiexec: every element written once, counts, logs, entry-script contract."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest
from conftest import RANK_VARIABLES, SCRIPTS, cli_env, command, faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("executor", ["process", "inline"])
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_every_line_exactly_once(tmp_path, ok_files, ranks, executor):
    data, expected = ok_files
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--mini-batch-size", "4", "--executor", executor), out,
                  ranks=None if ranks == 1 else ranks)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(expected)
    result = job.result
    assert result["status"] == "Completed"
    assert result["ranks"] == ranks and result["workers"] == ranks
    assert result["mini_batches"] == {"total": 8, "succeeded": 8, "failed": 0, "retried": 0}
    assert result["items"] == {"total": 30, "succeeded": 30, "failed": 0}
    assert result["error"] is None
    rows = list(csv.DictReader(open(out / "logs/sys/mini_batches.csv")))
    assert sorted(int(r["id"]) for r in rows) == list(range(8))
    assert {r["status"] for r in rows} == {"succeeded"}
    assert sum(int(r["succeeded"]) for r in rows) == 30
    for rank in range(ranks):
        assert (out / f"logs/sys/rank-{rank:04d}.txt").exists()
    # a rank that got no mini-batch (8 of them, 3 credits each) may be stopped before its init() printed
    for rank in {int(r["rank"]) for r in rows}:
        assert f"init on rank {rank}" in job.log(f"logs/user/stdout/rank-{rank:04d}.txt")
    assert "status: Completed" in job.result_txt


def test_coordinator_that_does_not_work(tmp_path, ok_files):
    data, expected = ok_files
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--no-coordinator-works"), out, ranks=3)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(expected)
    assert job.result["workers"] == 2
    ranks = {r["rank"] for r in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))}
    assert ranks == {"1", "2"}


@pytest.mark.parametrize("ranks", [1, 2])
def test_rank0_inline_script_lets_the_coordinator_take_the_gil_back_quickly(tmp_path, ranks):
    """Rank 0's inline worker shares the coordinator's GIL: with other workers to answer, the switch
    interval is short there (a CPU-bound run() would hold the GIL 5 ms at a time), default elsewhere."""
    script = tmp_path / "interval.py"
    script.write_text("import os, sys, time\n\n"
                      "def run(mini_batch):\n"
                      "    time.sleep(0.05)\n"
                      f"    rank = next((os.environ[v] for v in {RANK_VARIABLES!r} if v in os.environ), '0')\n"
                      "    return [f'{rank} {sys.getswitchinterval():g}' for _ in mini_batch]\n")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"/d/{i}\n" for i in range(8)))
    out = tmp_path / "out"
    inputs = json.dumps({"path": str(listing), "type": "filelist"})
    job = run_cli(["run", "--entry-script", str(script), "--inputs", inputs, "--output", str(out),
                   "--mini-batch-size", "1", "--executor", "inline", "--progress", "none"],
                  out, ranks=None if ranks == 1 else ranks)
    assert job.rc == 0, job.stderr
    seen = {tuple(line.split()) for line in job.lines}
    default = f"{sys.getswitchinterval():g}"
    assert seen == ({("0", default)} if ranks == 1 else {("0", "0.0002"), ("1", default)})


def test_yaml_job_with_python_m_and_flags_that_win(tmp_path):
    job_dir = tmp_path / "job"
    make_files(job_dir / "data" / "nested", {"b": "ok", "a": "ok"})
    make_files(job_dir / "data", {"c": "ok"})
    (job_dir / "script.py").write_text((SCRIPTS / "faulty.py").read_text())
    (job_dir / "job.yaml").write_text(
        "entry_script: script.py\ninputs: [data]\noutput: yaml_out\nmini_batch_size: 2\n")
    out = tmp_path / "flag_out"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "mpibatch", "run", str(job_dir / "job.yaml"), "--output", "flag_out",
                           "--progress", "none"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted((out / "parallel_run_step.txt").read_text().splitlines()) == ["a ok", "b ok", "c ok"]
    assert not (job_dir / "yaml_out").exists()
    assert json.loads((out / "logs/job_result.json").read_text())["mini_batches"]["total"] == 2


CONTRACT_SCRIPT = '''
import os, sys
import helper
from mpibatch import EntryScript

def init():
    EntryScript().logger.info("init from %s", EntryScript().agent_name)
    print("to stdout")
    print("to stderr", file=sys.stderr)

def run(mini_batch, mini_batch_context):
    e = EntryScript()
    assert os.path.isdir(e.working_dir) and os.path.isdir(e.log_dir)
    return [f"{os.path.basename(p)}|{helper.VALUE}|{' '.join(sys.argv[1:])}|{os.environ['GREETING']}|"
            f"{os.environ['AZUREML_BI_OUTPUT_PATH'] == e.output_dir}|{e.rank}|{e.node_rank}|{e.local_worker_index}|"
            f"{e.gpu}|{mini_batch_context.mini_batch_id}|{mini_batch_context.attempt}|{mini_batch_context.input_name}|"
            f"{mini_batch_context.partition_key_value}"
            for p in mini_batch]
'''


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_entry_script_contract(tmp_path, executor):
    src = tmp_path / "src"
    src.mkdir()
    (src / "contract.py").write_text(CONTRACT_SCRIPT)
    (src / "helper.py").write_text("VALUE = 'from-helper'\n")
    data = make_files(tmp_path / "pictures", {"p1": "x", "p2": "x", "p3": "x"})
    out = tmp_path / "out"
    (tmp_path / "job.yaml").write_text(
        f"entry_script: contract.py\nsource_directory: {src}\ninputs: [{data}]\noutput: {out}\n"
        "arguments: [--alpha, '1']\nenvironment_variables: {GREETING: hi}\nmini_batch_size: 1\n"
        f"executor: {executor}\nprogress: none\n")
    job = run_cli(["run", str(tmp_path / "job.yaml"), "--", "--beta", "2"], out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    rows = sorted(line.split("|") for line in job.lines)
    assert [r[0] for r in rows] == ["p1", "p2", "p3"]
    for row in rows:
        name, value, argv, greeting, output_ok, rank, node, local, gpu, batch_id, attempt, input_name, pkv = row
        assert (value, argv, greeting, output_ok) == ("from-helper", "--alpha 1 --beta 2", "hi", "True")
        assert rank in ("0", "1") and node == "0" and local == rank and gpu == "None"
        assert batch_id == str(int(name[1]) - 1) and attempt == "1" and input_name == "pictures" and pkv == "{}"
    assert "init from rank0000@" in job.log("logs/user/entry_script_log/rank-0000.txt")
    assert "to stdout" in job.log("logs/user/stdout/rank-0001.txt")
    assert "to stderr" in job.log("logs/user/stderr/rank-0001.txt")


DATAFRAME_SCRIPT = '''
import os
import pandas as pd

def run(mini_batch):
    return pd.DataFrame({"file": [os.path.basename(p) for p in mini_batch], "size": [os.path.getsize(p) for p in mini_batch]})
'''


def test_dataframe_results_with_settings_json_header_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "frame.py").write_text(DATAFRAME_SCRIPT)
    (src / "parallel_run_step.settings.json").write_text(
        json.dumps({"append_row": {"pandas.DataFrame.to_csv": {"sep": ",", "header": True}}}))
    data = make_files(tmp_path / "data", {f"f{i}": "x" * i for i in range(7)})
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(src / "frame.py"), "--inputs", str(data), "--output", str(out),
                   "--mini-batch-size", "2", "--append-row-file-name", "scores.csv", "--progress", "none"], out, ranks=2)
    assert job.rc == 0, job.stderr
    lines = (out / "scores.csv").read_text().splitlines()
    assert lines[0] == "file,size"
    assert sorted(lines[1:]) == sorted(f"f{i},{i + 1}" for i in range(7))
    assert not (out / "parallel_run_step.txt").exists()


def test_summary_only_writes_no_result_file(tmp_path, ok_files):
    data, _ = ok_files
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--output-action", "summary_only"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert not (out / "parallel_run_step.txt").exists()
    assert job.result["items"]["succeeded"] == 30 and job.result["output_file"] is None


def test_progress_lines_and_overview(tmp_path):
    data = make_files(tmp_path / "data", {f"s{i}": "sleep0.1" for i in range(12)})
    out = tmp_path / "out"
    args = faulty_args(data, out)
    args[args.index("--progress") + 1] = "lines"
    job = run_cli(args, out, ranks=2, env={"MPIBATCH_PROGRESS_INTERVAL": "0.2"})
    assert job.rc == 0
    progress = [l for l in job.stderr.splitlines() if "mini-batches (" in l]
    assert len(progress) >= 2 and progress[-1].startswith("mpibatch: 12/12 mini-batches (100.0%)")
    overview = job.log("logs/job_progress_overview.txt").splitlines()
    assert overview and "12/12 mini-batches" in overview[-1] and "ETA" in overview[-1]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux for a pty")
def test_progress_bar_when_the_launching_terminal_is_interactive(tmp_path, ok_files):
    """mpiexec pipes rank output, so the bar must be chosen from the launcher's terminal."""
    data, _ = ok_files
    out = tmp_path / "out"
    cmd = " ".join(command(faulty_args(data, out, "--progress", "auto"), ranks=2))
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120, env=cli_env())
    screen = proc.stdout.decode()
    assert proc.returncode == 0, screen
    assert "\r" in screen and "| 30/30 [" in screen and "mini-batch/s]" in screen
    assert "mini-batches (" not in screen  # no plain progress lines beside the bar


REMOTE_SCRIPT = '''
import os
from mpibatch import EntryScript

def run(mini_batch):
    out = []
    for path in mini_batch:
        assert path.startswith(EntryScript().working_dir), path
        rel = os.path.relpath(path, EntryScript().working_dir)
        out.append(f"{rel.split(os.sep, 1)[1]} {open(path).read().strip()} {os.path.exists(path)}")
    return out
'''


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_remote_files_are_fetched_to_scratch_and_removed(tmp_path, executor):
    """A zip archive through fsspec's URL chaining is a real non-local filesystem that every rank can open."""
    import zipfile

    archive = tmp_path / "remote.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(7):
            zf.writestr(f"images/set{i % 2}/img{i}.txt", f"content{i}\n")
        zf.writestr("other/skip.txt", "not listed\n")
    (tmp_path / "remote.py").write_text(REMOTE_SCRIPT)
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(tmp_path / "remote.py"), "--inputs", f"zip://images::file://{archive}",
                   "--output", str(out), "--mini-batch-size", "3", "--executor", executor, "--progress", "none"],
                  out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == sorted(f"images/set{i % 2}/img{i}.txt content{i} True" for i in range(7))
    assert not list(Path(tempfile.gettempdir()).glob("mpibatch-rank*/mini-batch-*/images/set0/img0.txt"))


def test_the_entry_script_process_gets_the_users_mpi_settings_but_not_the_launchers_wiring(tmp_path):
    """An entry script that starts MPI itself must be a world of its own, under every launcher: the
    rank's wiring (PMI_*, PMIX_*, PRTE_*, OMPI_COMM_WORLD_*, Intel's I_MPI_PIN_MAPPING...) is dropped, while
    what a user sets for any MPI program (OMPI_MCA_* / PMIX_MCA_* tuning, Open MPI's consent to run as
    root) reaches it (it used to be dropped with the rest, and PRTE_*, OPAL_*, I_MPI_* used to pass).
    PRTE_MCA_* is kept too, but Open MPI's prterun keeps it for itself: it reaches no rank there."""
    script = tmp_path / "own_mpi.py"
    script.write_text(
        "import os\n\n"
        "def run(mini_batch):\n"
        "    from mpi4py import MPI\n"
        "    seen = sorted(k for k in os.environ if k.startswith(('PMI', 'OMPI', 'PRTE', 'OPAL', 'I_MPI', 'HYDRA',"
        " 'MPIR', 'MPI_LOCAL')))\n"
        "    return [f'{os.path.basename(p)} size={MPI.COMM_WORLD.Get_size()} ' + ' '.join(seen) for p in mini_batch]\n")
    data = make_files(tmp_path / "data", {"a": "ok", "b": "ok"})
    out = tmp_path / "out"
    user = {"OMPI_MCA_btl_base_verbose": "0", "PMIX_MCA_ptl_base_verbose": "0", "PRTE_MCA_prte_silence_shared_fs": "1",
            "I_MPI_DEBUG": "0"}
    job = run_cli(["run", "--entry-script", str(script), "--inputs", str(data), "--output", str(out),
                   "--mini-batch-size", "1", "--progress", "none"], out, ranks=2, env=user)
    assert job.rc == 0, job.stderr
    assert len(job.lines) == 2
    kept = {"OMPI_MCA_btl_base_verbose", "PMIX_MCA_ptl_base_verbose", "PRTE_MCA_prte_silence_shared_fs",
            "OPAL_PREFIX", "I_MPI_ROOT", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"}
    for line in job.lines:
        name, size, *seen = line.split()
        assert size == "size=1", line
        assert {"OMPI_MCA_btl_base_verbose", "PMIX_MCA_ptl_base_verbose"} <= set(seen), line
        assert set(seen) <= kept, line
