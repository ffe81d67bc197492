"""The output folder under damage: a result file cut or changed, the journal and state files damaged
or removed between a kill and a resume, a full disk, the folder removed while the job runs. A resume
completes with every line exactly once or refuses in one line; never NUL bytes, never silence."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, Job, faulty_args, kill_tree, make_files, run_cli, start_cli, wait_for_job

pytestmark = pytest.mark.e2e

WORDS = {f"f{i:03d}": "sleep0.05" for i in range(48)}
EXPECTED = sorted(f"{name} {word}" for name, word in WORDS.items())
QUIET_SLEEPER = ("import os, time\n\ndef run(mini_batch):\n    time.sleep(0.05 * len(mini_batch))\n"
                 "    return [os.path.basename(p) + ' ' + 'x' * 500 for p in mini_batch]\n")  # new pages: a full disk shows


def wait_for_lines(result_file: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result_file.exists() and result_file.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"{result_file} never reached {at_least} lines")


def finish(proc: subprocess.Popen, output: Path, timeout: float = 90) -> Job:
    """The started job to its end, its stderr up to the launcher's banner; a rank left waiting fails the test."""
    return wait_for_job(proc, output, timeout, "the job (a rank was left waiting)")


def status_of(output: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mpibatch"), "status", str(output), *flags], capture_output=True, text=True,
                          timeout=30)


def assert_exactly_once(job: Job, expected: list[str]) -> None:
    data = (job.output / "parallel_run_step.txt").read_bytes()
    assert b"\0" not in data, "the result file was padded"
    assert sorted(data.decode().splitlines()) == expected
    assert "Traceback" not in job.stderr


def assert_one_line(job: Job, pattern: str) -> None:
    import re

    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), job.stderr
    assert "Traceback" not in job.stderr


@pytest.fixture
def words(tmp_path):
    data = make_files(tmp_path / "data", WORDS)
    out = tmp_path / "out"
    return out, faulty_args(data, out, "--mini-batch-size", "2")


# ---- bug 1: the result file shorter than its journal ----------------------------------------------

def test_a_finished_result_file_cut_by_hand_is_noticed_refused_for_reuse_and_repaired_by_resume(words):
    out, args = words
    assert run_cli(args, out).rc == 0
    result_file = out / "parallel_run_step.txt"
    os.truncate(result_file, result_file.stat().st_size - 100)
    status = status_of(out)
    assert "warning: parallel_run_step.txt is shorter than its journal" in status.stdout, status.stdout
    assert json.loads(status_of(out, "--json").stdout)["output_problem"].startswith("parallel_run_step.txt is shorter")
    reuse = run_cli([*args, "--allow-reuse"], out)
    assert reuse.rc == 2
    assert_one_line(reuse, r"holds this completed job but parallel_run_step.txt is shorter than its journal .*"
                           r"not reused; pass --resume")
    resumed = run_cli([*args, "--resume"], out)
    assert resumed.rc == 0, resumed.stderr
    assert_exactly_once(resumed, EXPECTED)
    assert "mpibatch: warning:" in resumed.stderr and "run again" in resumed.stderr
    assert resumed.result["status"] == "Completed" and resumed.result["items"]["succeeded"] == 48
    assert "warning" not in status_of(out).stdout


def test_a_result_file_cut_while_the_job_runs_is_not_called_completed(tmp_path):
    data = make_files(tmp_path / "data", {f"f{i:03d}": "sleep0.1" for i in range(40)})
    out = tmp_path / "out"
    args = faulty_args(data, out, "--mini-batch-size", "2")
    proc = start_cli(args)
    wait_for_lines(out / "parallel_run_step.txt", 8)
    os.truncate(out / "parallel_run_step.txt", 0)
    job = finish(proc, out)
    assert job.rc == 1, job.stderr
    assert_one_line(job, r"parallel_run_step.txt' holds \d+ bytes, not the \d+ this job committed: it was truncated "
                         r"or written to while the job ran; resume with --resume")
    assert job.result["status"] == "Failed" and "truncated" in job.result["reason"]
    resumed = run_cli([*args, "--resume"], out)
    assert resumed.rc == 0, resumed.stderr
    assert_exactly_once(resumed, sorted(f"f{i:03d} sleep0.1" for i in range(40)))


# ---- weak spots: a full disk, the output removed ----------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its file system is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_job_in_one_line_and_a_resume_after_freeing_space_is_exact(tmp_path, small_disk):
    names = {f"f{i:03d}": "x" for i in range(80)}
    data = make_files(tmp_path / "data", names)
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_SLEEPER)
    out = small_disk / "out"
    args = ["run", "--entry-script", str(script), "--inputs", str(data), "--output", str(out),
            "--mini-batch-size", "1", "--progress", "none"]
    proc = start_cli(args)
    wait_for_lines(out / "parallel_run_step.txt", 10)
    filler = fill(small_disk)
    job = finish(proc, out)
    assert job.rc == 1, job.stderr
    assert_one_line(job, rf"^mpibatch: error: no space left on device writing {out}/\S+ \(file system {small_disk}, "
                         r"\d+ bytes free\); resume with --resume once it can be written \(Interrupted: ")
    state = json.loads((out / ".mpibatch" / "state.json").read_text())
    assert state["status"] == "Interrupted"
    if (out / "logs" / "job_result.json").exists():
        assert job.result["status"] == "Interrupted"
    assert "status: Interrupted" in status_of(out).stdout
    still_full = run_cli([*args, "--resume"], out)
    assert still_full.rc == 2
    assert_one_line(still_full, rf"no space left on device for the output '{out}' \(file system {small_disk}, "
                                r"\d+ bytes free\)")
    filler.unlink()
    resumed = run_cli([*args, "--resume"], out)
    assert resumed.rc == 0, resumed.stderr
    assert_exactly_once(resumed, sorted(f"{name} {'x' * 500}" for name in names))


def test_the_output_folder_removed_while_the_job_runs_ends_it_in_one_line(tmp_path):
    data = make_files(tmp_path / "data", {f"f{i:03d}": "sleep0.1" for i in range(60)})
    out = tmp_path / "out"
    proc = start_cli(faulty_args(data, out, "--mini-batch-size", "1"))
    wait_for_lines(out / "parallel_run_step.txt", 4)
    shutil.rmtree(out)
    job = finish(proc, out, timeout=60)
    assert job.rc == 1
    assert_one_line(job, rf"^mpibatch: error: the output folder '{out}' was removed while the job ran; nothing more "
                         r"can be committed \(Failed: ")


# ---- chaos: damage between a kill and a resume ------------------------------------------------------

def _cut(path: Path, rng: random.Random) -> None:
    if path.exists():
        os.truncate(path, rng.randrange(path.stat().st_size + 1))


def _flip(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes()) if path.exists() else bytearray()
    if data:
        i = rng.randrange(len(data))
        data[i] = (data[i] + rng.randrange(1, 256)) % 256
        path.write_bytes(bytes(data))


def _remove(path: Path, rng: random.Random) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _garbage(path: Path, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))


DAMAGE = {  # what a careless user or a broken file system does to the output between a kill and a resume
    "cut result": ("parallel_run_step.txt", _cut),
    "flip result": ("parallel_run_step.txt", _flip),
    "garbage after result": ("parallel_run_step.txt", _garbage),
    "remove result": ("parallel_run_step.txt", _remove),
    "cut journal": (".mpibatch/journal.jsonl", _cut),
    "flip journal": (".mpibatch/journal.jsonl", _flip),
    "remove journal": (".mpibatch/journal.jsonl", _remove),
    "cut state": (".mpibatch/state.json", _cut),
    "remove state": (".mpibatch/state.json", _remove),
    "remove lock": (".mpibatch/lock", _remove),
    "garbage progress": ("logs/job_progress.json", _garbage),
    "cut mini_batches.csv": ("logs/sys/mini_batches.csv", _cut),
    "remove logs": ("logs", _remove),
}
REFUSED = {"cut state", "remove state"}  # without its state a run cannot be checked: one line, exit 2


@pytest.mark.parametrize("seed", range(len(DAMAGE)))
def test_chaos_damage_between_a_kill_and_a_resume_never_corrupts_silently(words, seed):
    rng = random.Random(seed)
    names = sorted(DAMAGE)
    damage = [names[seed % len(names)], *rng.sample(names, rng.randrange(2))]
    out, args = words
    proc = start_cli(args)
    wait_for_lines(out / "parallel_run_step.txt", rng.randrange(2, 40))
    kill_tree(proc.pid)
    proc.communicate()
    assert not json.loads(status_of(out, "--json").stdout)["status"] == "Running"
    for what in damage:
        relative, act = DAMAGE[what]
        act(out / relative, rng)
    before = (out / "parallel_run_step.txt").read_bytes() if (out / "parallel_run_step.txt").exists() else None
    resumed = run_cli([*args, "--resume"], out, timeout=120)
    if resumed.rc == 2:
        assert REFUSED & set(damage), f"{damage}: refused: {resumed.stderr}"
        assert_one_line(resumed, r"^mpibatch: error: ")
        after = (out / "parallel_run_step.txt").read_bytes() if (out / "parallel_run_step.txt").exists() else None
        assert after == before, "a refused resume changed the result file"
        return
    assert resumed.rc == 0, f"{damage}: {resumed.stderr}"
    assert_exactly_once(resumed, EXPECTED)
    assert resumed.result["items"]["succeeded"] == 48
