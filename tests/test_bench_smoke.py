"""The benchmark suite runs end to end on tiny sizes (--quick) and writes every section, contender and
plot; behaviour only, never a timing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import UNDER_CI, require

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench"
RUN_ALL = BENCH / "run_all.py"
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None

# section -> rows (or fragments) its report must hold, one per contender
CONTENDERS = {
    "dispatch": ["| 2 | mpibatch, inline executor | 2 |", "| 2 | mpibatch, process executor | 2 |",
                 "| 2 | mpi4py.futures map, chunksize=1 (the peer) | 1 |", "| 2 | mpi4py.futures map, chunksize=64 | 1 |",
                 "| 2 | bare mpi4py send/recv farm (the limit) | 1 |", "| 4 | mpibatch, inline executor | 4 |",
                 "| 4 | bare mpi4py send/recv farm (the limit) | 3 |"],
    "efficiency": ["| mpibatch, inline, `mpiexec -n ", "| mpibatch, process, `mpiexec -n ",
                   "`--no-coordinator-works` |", "| multiprocessing.Pool(", "| mpi4py.futures map, chunksize=1, "],
    "coordinator": ["| inline | ", "| process | ", "| mpibatch job, inline executor, `mpiexec -n 4` |",
                    "| mpibatch job, process executor, `mpiexec -n 4` |", "| ResultStore.commit + maybe_flush, close() |",
                    "| plain f.write(), fsync at the end (the baseline) |"],
    "planning": ["| 20,000 paths in a filelist | mpibatch, 1 rank, mini_batch_size 1 |",
                 "| 20,000 paths in a filelist | `wc -l` |", "| a folder of 2,000 small files | mpibatch, 1 rank,",
                 "| a folder of 2,000 small files | `find -type f` into `wc -l` |",
                 "| a folder of 2,000 small files | Python: os.scandir walk"],
    "demo": ["| mpibatch demo | 1 | 1 |", "| mpibatch demo | 2 | 2 |", "| plain Keras on TensorFlow, one process, batches of 5 |"],
    "tabular": ["| parquet | pyarrow | 40,000 |", "| parquet | mpibatch (default 1MB) | 40,000 |",
                "| csv | pyarrow | 40,000 |", "| csv | mpibatch (default 1MB) | 40,000 |", "| 100 | 10 | 100 |"],
    "datapath": ["| mpibatch, process executor, `mpiexec -n ", "| Ray Data, map_batches concurrency=",
                 "| multiprocessing.Pool(", "largest entry-script process ", "driver ", "object store in use ",
                 "| parquet | numpy | 1 | 1 |", "`mpiexec -n 2 --no-coordinator-works`, prefetch: 2 |",
                 "| remote files (Azurite) | sleep | ", "| remote files (Azurite) +20 ms | sleep | "],
    "before_after": ["| no-op, inline executor, 4 ranks: mini-batches per command second |",
                     "| no-op, process executor, 4 ranks: mini-batches per command second |",
                     "| 5,000-path filelist, one rank: seconds from launch to the dispatch loop |",
                     "| 5,000-path filelist, one rank: rank 0's peak memory |"],
    "groups": ["| `mpiexec -n 3` | 3 | ", "| `mpiexec -n 1` + `mpiexec -n 2 mpibatch join` | 3 | ",
               "| `mpiexec -n 4` | 4 | ", "| `mpiexec -n 1` + 3 x `mpiexec -n 1 mpibatch join` | 4 | ",
               "| no-op runs | 1 | ", "| all | 2 | "],
    "gpu": ["--only dispatch,efficiency,demo --ranks 8,16"],
}
PLOTS = ["dispatch", "efficiency", "coordinator", "planning", "demo", "datapath", "groups"]


def run_all(*args: str, timeout: float = 280, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env)


def section(doc: str, name: str) -> str:
    assert doc.count(f"<!-- {name}:start -->") == 1 and doc.count(f"<!-- {name}:end -->") == 1, name
    return doc.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


@pytest.mark.e2e
@pytest.mark.timeout(420)  # every section once; datapath starts Ray (~15 s)
def test_quick_suite_writes_every_section_contender_and_plot(tmp_path, request):
    require(importlib.util.find_spec("matplotlib") is not None, "matplotlib (the bench extra draws the plots)")
    env = dict(os.environ)
    if HAS_TENSORFLOW:  # the e2e demo tests' cache: the demo's model is trained once per test session
        env["MPIBATCH_CACHE"] = str(request.getfixturevalue("demo_cache"))
    elif UNDER_CI:
        require(False, "TensorFlow (the tensorflow extra), for the demo section")
    names = [n for n in CONTENDERS if HAS_TENSORFLOW or n != "demo"]
    repo_plots = {p: p.stat().st_mtime for p in (REPO / "docs" / "bench").glob("*.png")}
    doc = tmp_path / "benchmarks.md"
    started = time.time()
    proc = run_all("--quick", "--doc", str(doc), *([] if HAS_TENSORFLOW else ["--only", ",".join(names)]), env=env,
                   timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n")
    suite = section(text, "suite")
    assert ".venv/bin/python scripts/bench/run_all.py" in suite  # the one command
    assert "| mpi4py |" in suite and "| MPI | MPICH" in suite and "| GPUs |" in suite  # machine and versions
    assert f"{time.strftime('%Y-%m-%d', time.localtime(started))}" in suite  # the date
    positions = [text.index(f"<!-- {n}:start -->") for n in ["suite", *names]]
    assert positions == sorted(positions), "sections out of order"
    for name in names:
        body = section(text, name)
        assert "--quick: sizes far too small" in body, name
        if name == "before_after" and "Not measured: this clone lacks the baseline revision" in body:
            continue  # a shallow clone: said so, with what to do
        for row in CONTENDERS[name]:
            assert row in body, f"{name}: {row}"
        assert "| target | result | verdict |" in body, name
        assert f"| [{name}](#{name}) |" in suite, f"{name}'s targets are not in the summary"
    for name in PLOTS:
        if name in names:
            assert (tmp_path / "bench" / f"{name}.png").stat().st_size > 1000, name
            assert f"](bench/{name}.png)" in section(text, name), name
    assert "not measured:" not in section(text, "coordinator")  # commit_micro.py still fits ResultStore's API
    assert {p: p.stat().st_mtime for p in (REPO / "docs" / "bench").glob("*.png")} == repo_plots  # docs/bench untouched


@pytest.mark.e2e
def test_only_rewrites_the_named_sections_and_keeps_the_rest(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- tabular:start -->\nold tabular numbers\n<!-- tabular:end -->\n\ntrailing notes\n")
    proc = run_all("--quick", "--only", "gpu", "--doc", str(doc), timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = doc.read_text()
    assert "<!-- tabular:start -->\nold tabular numbers\n<!-- tabular:end -->" in text
    assert "trailing notes" in text
    assert text.index("<!-- suite:start -->") < text.index("<!-- tabular:start -->") < text.index("<!-- gpu:start -->")
    assert "ran: gpu." in section(text, "suite")
    proc = run_all("--quick", "--only", "gpu", "--doc", str(doc), timeout=120)  # a rerun replaces, never repeats
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert doc.read_text().count("<!-- gpu:start -->") == 1


def test_bad_flags_are_refused_before_anything_runs(tmp_path):
    proc = run_all("--quick", "--only", "dispatch,nosuch", "--doc", str(tmp_path / "b.md"), timeout=60)
    assert proc.returncode == 2 and "nosuch" in proc.stderr
    proc = run_all("--quick", "--ranks", "8,x", timeout=60)
    assert proc.returncode == 2 and "--ranks" in proc.stderr
    proc = run_all("--quick", "--doc", str(REPO / "docs" / "benchmarks.md"), timeout=60)
    assert proc.returncode != 0 and "--quick never writes docs/benchmarks.md" in proc.stderr
    assert not (tmp_path / "b.md").exists()


@pytest.mark.e2e
def test_tabular_benchmark_runs_alone_too():
    proc = subprocess.run([sys.executable, str(BENCH / "tabular.py"), "--quick", "--no-write"], check=False,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = proc.stdout
    assert report.startswith("<!-- tabular:start -->") and report.rstrip().endswith("<!-- tabular:end -->")
    assert "| data | contender | rows | MB on disk | seconds | wall s | rows/s | MB/s | ratio to pyarrow |" in report
    assert "| parquet | mpibatch (default 1MB) | 40,000 |" in report and "| 100 | 100 | 100 |" in report
