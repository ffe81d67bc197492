"""`mpibatch report`: what it reads from a real job's output (finished, running, partial, older) and the
page it writes (its sections, embedded images, no outside resource)."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import BIN, cli_env, faulty_args, make_files, run_cli, start_cli, wait_for_job

from mpibatch.config import ConfigError
from mpibatch.report import write_report
from mpibatch.report.data import load

pytestmark = pytest.mark.e2e

# mini-batch ids follow the sorted names: a00..a07 ok (0-7), b_flaky 8, c_raise 9, d_segv 10, e_sleep 11
FILES = {**{f"a{i:02d}": "ok" for i in range(8)}, "b_flaky": "flaky", "c_raise": "raise", "d_segv": "segv",
         "e_sleep": "sleep2.5"}
SECTIONS = ("status", "counts", "timeline", "throughput", "errors", "slowest", "phases", "config")


@pytest.fixture(scope="module")
def job_output(tmp_path_factory) -> Path:
    """A finished 3-rank job with a retried success, a failure, a crash and a speculation copy."""
    base = tmp_path_factory.mktemp("report_job")
    data, out = make_files(base / "data", FILES), base / "out"
    job = run_cli(faulty_args(data, out, "--run-max-try", "2", "--error-threshold", "-1", "--speculative"), out,
                  ranks=3, env={"MPIBATCH_PERF_INTERVAL": "0.5"})
    assert job.rc == 0, job.stderr
    return out


def copy_of(output: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(output, target)
    return target


def images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_attempts_from_the_rank_logs(job_output: Path) -> None:
    data = load(job_output)
    result = json.loads((job_output / "logs/job_result.json").read_text())
    assert data.status["status"] == "Completed" and data.missing == []
    assert data.ranks == [0, 1, 2]
    by_batch: dict[str, list] = {}
    for attempt in data.attempts:
        by_batch.setdefault(attempt.batch_id, []).append(attempt)
    failed = Counter(a.outcome for a in data.attempts if a.outcome not in ("succeeded", "aborted"))
    assert failed == {k: v for k, v in result["errors_by_class"].items() if v} == {"exception": 3, "crash": 2}
    assert [(a.attempt, a.outcome) for a in by_batch["8"]] == [(1, "exception"), (2, "succeeded")]
    assert [(a.attempt, a.outcome) for a in by_batch["9"]] == [(1, "exception"), (2, "exception")]
    assert "ValueError: bad item c_raise" in by_batch["9"][0].error
    assert [(a.attempt, a.outcome) for a in by_batch["10"]] == [(1, "crash"), (2, "crash")]
    for batch in map(str, range(8)):
        assert [(a.attempt, a.outcome, a.items) for a in by_batch[batch]] == [(1, "succeeded", 1)]
    # the straggler ran 2.5 s; a copy started on an idle rank after 1 s lost and was aborted
    assert result["speculation"]["copies_started"] == 1
    sleep = {a.outcome: a for a in by_batch["11"]}
    assert set(sleep) == {"succeeded", "aborted"} and all(a.speculated for a in by_batch["11"])
    assert 2.4 <= sleep["succeeded"].seconds <= 3.0
    assert sleep["aborted"].rank != sleep["succeeded"].rank
    assert sleep["succeeded"].start < sleep["aborted"].start < sleep["aborted"].end <= sleep["succeeded"].end + 0.5
    # one attempt at a time per rank: the bars of a rank do not overlap
    for rank in data.ranks:
        mine = sorted((a for a in data.attempts if a.rank == rank), key=lambda a: a.start)
        for before, after in zip(mine, mine[1:]):
            assert after.start >= before.end - 0.25, (before, after)
    assert {i.rank for i in data.inits} >= {0, 1, 2}
    assert data.config["run_max_try"] == 2 and data.config["mini_batch_size"] == 1
    assert set(data.perf) == {0, 1, 2} and all(rss > 0 for samples in data.perf.values() for _, _, rss, _ in samples)
    assert len(data.batches) == 12 and len(data.errors_txt) == 5


def test_page_holds_every_section_and_its_images(job_output: Path, tmp_path: Path) -> None:
    from PIL import Image

    path = write_report(job_output, tmp_path / "r.html")
    html = path.read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    pngs = images(html)
    assert len(pngs) == 5  # timeline, throughput, errors over time, phases, resources
    for data in pngs:
        width, height = Image.open(io.BytesIO(data)).size
        assert width >= 600 and height >= 150
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []  # no outside resource
    assert "<script" not in html
    assert '<span class="badge Completed" id="status">Completed</span>' in html
    assert "ValueError: bad item c_raise" in html and "SIGSEGV" in html
    assert "<td>run_max_try</td>" in html.replace("<th>", "<td>").replace("</th>", "</td>")
    assert "Not in this output" not in html


def test_default_path_and_cli(job_output: Path, tmp_path: Path) -> None:
    output = copy_of(job_output, tmp_path)
    proc = subprocess.run([str(BIN / "mpibatch"), "report", str(output)], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{output / 'logs' / 'report.html'}\n"
    assert (output / "logs/report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("where", ["missing", "not_a_job"])
def test_cli_no_job_is_exit_2_one_line(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "nothing"
    if where == "not_a_job":
        folder.mkdir()
    proc = subprocess.run([str(BIN / "mpibatch"), "report", str(folder)], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    reason = "is not a folder" if where == "missing" else "holds no mpibatch job (no .mpibatch/ or logs/)"
    assert proc.stderr == f"mpibatch: error: output: '{folder}' {reason}\n"
    with pytest.raises(ConfigError):
        write_report(folder)


def test_partial_output_says_what_is_missing(job_output: Path, tmp_path: Path) -> None:
    output = copy_of(job_output, tmp_path)
    (output / "logs/job_result.json").unlink()
    (output / "logs/sys/mini_batches.csv").unlink()
    log = output / "logs/sys/rank-0001.txt"
    text = log.read_text()
    earlier = "2020-01-02 03:04:05,678 INFO mini-batch 3 attempt 1: 1 items, 1 returned in 0.100 s\n"
    log.write_text(earlier + text[: len(text) // 2 + 7])  # a line of an earlier run; a torn last line
    data = load(output)
    assert any(line.startswith("logs/job_result.json") for line in data.missing)
    assert any(line.startswith("logs/sys/mini_batches.csv: not written yet") for line in data.missing)
    assert data.attempts  # rank 0 and 2 whole, rank 1 up to its torn line
    assert data.earlier_lines == 1 and min(a.start for a in data.attempts) > 1.6e9
    html = write_report(output).read_text()
    assert 'id="missing"' in html and "logs/sys/mini_batches.csv: not written yet" in html
    assert len(images(html)) == 5


def test_older_output_lacking_columns_and_logs(job_output: Path, tmp_path: Path) -> None:
    output = copy_of(job_output, tmp_path)
    path = output / "logs/sys/mini_batches.csv"
    rows = list(csv.reader(path.open()))
    state = json.loads((output / ".mpibatch/state.json").read_text())
    state.pop("fingerprint")
    (output / ".mpibatch/state.json").write_text(json.dumps(state))
    shutil.rmtree(output / "logs/sys", ignore_errors=True)
    (output / "logs/sys").mkdir()  # no rank logs
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(row[:8] for row in rows)  # no rank, error_class, error
    data = load(output)
    assert "logs/sys/mini_batches.csv lacks the columns rank, error_class, error (written by an older mpibatch)" \
        in data.missing
    assert ".mpibatch/state.json holds no configuration (an older mpibatch)" in data.missing
    assert "logs/sys/rank-NNNN.txt: no rank log yet (the timeline is empty)" in data.missing
    html = write_report(output).read_text()
    assert "No attempt is recorded in the rank logs yet." in html
    assert "The configuration is not recorded in this output." in html
    assert '<span class="badge Completed" id="status">Completed</span>' in html


def test_running_job(tmp_path: Path) -> None:
    """A report written while the job runs shows what is there and says it is partial."""
    data = make_files(tmp_path / "data", {f"s{i:02d}": "sleep0.5" for i in range(12)})
    out = tmp_path / "out"
    proc = start_cli(faulty_args(data, out))
    try:
        deadline = time.monotonic() + 60
        log = out / "logs/sys/rank-0001.txt"
        while time.monotonic() < deadline:
            progress = out / "logs/job_progress.json"
            if log.exists() and "returned in" in log.read_text() and progress.exists() and \
                    json.loads(progress.read_text()).get("status") == "Running":
                break
            time.sleep(0.1)
        html = write_report(out).read_text()
    finally:
        job = wait_for_job(proc, out, 120, "the running job")
    assert job.rc == 0, job.stderr
    assert '<span class="badge Running" id="status">Running</span>' in html
    assert "The job is still running" in html
    assert len(images(html)) >= 2  # the timeline and throughput so far
    done = write_report(out).read_text()
    assert '<span class="badge Completed" id="status">Completed</span>' in done
    assert "The job is still running" not in done
    assert len(load(out).attempts) == 12


def test_importing_mpibatch_leaves_matplotlib_out() -> None:
    proc = subprocess.run([str(BIN / "python"), "-c", "import sys, mpibatch, mpibatch.cli, mpibatch.engine.job; "
                           "print('matplotlib' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "False\n", proc.stderr



def test_failed_job_whose_init_failed(tmp_path: Path) -> None:
    data, out = make_files(tmp_path / "data", {f"a{i}": "ok" for i in range(4)}), tmp_path / "out"
    job = run_cli(faulty_args(data, out), out, env={"FAULT_INIT": "raise_all"})
    assert job.rc == 1, job.stderr
    facts = load(out)
    assert sorted((a.rank, a.outcome, a.error) for a in facts.attempts) == [
        (0, "init", "RuntimeError: model file missing"), (1, "init", "RuntimeError: model file missing")]
    html = write_report(out).read_text()
    assert '<span class="badge Failed" id="status">Failed</span>' in html
    assert "<b>reason:</b> init() failed on every worker: RuntimeError: model file missing" in html
    assert "<b>First error</b> (init, init(), rank " in html
    assert "No mini-batch finished." in html and "<td>init</td><td class=\"n\">2</td>" in html
