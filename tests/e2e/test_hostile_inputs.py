"""Odd names and odd trees under the real mpiexec: a file name that is not UTF-8 or holds a newline is an
item like any other and every log keeps one record per line; a symlink loop or overlapping inputs
never process a file twice; a path that is not what it should be is named for what it is."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from conftest import SCRIPTS, faulty_args, run_cli

from mpibatch.text import unescape

pytestmark = pytest.mark.e2e

BAD_OK = b"caf\xe9 ok.txt"  # Latin-1, not UTF-8
BAD_RAISE = b"raise\xfe\tname\nsecond line"  # not UTF-8, with a tab and a newline


def write(folder: Path, name: bytes, word: str) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as fh:
        fh.write(word.encode() + b"\n")
    return path


def test_names_that_are_not_utf8_or_hold_a_newline_are_items_and_every_log_stays_one_line_each(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    for i in range(3):
        write(data, f"item{i}".encode(), "ok")
    write(data, BAD_OK, "ok")
    bad_raise = write(data, BAD_RAISE, "raise")
    script = tmp_path / "logging_faulty.py"  # faulty.py that also logs each item with EntryScript().logger
    script.write_text(f"import sys\nsys.path.insert(0, {str(SCRIPTS)!r})\nfrom faulty import init, run as faulty_run\n"
                      "from mpibatch import EntryScript\n\n\ndef run(mini_batch, mini_batch_context=None):\n"
                      "    for path in mini_batch:\n        EntryScript().logger.warning('item %s', path)\n"
                      "    return faulty_run(mini_batch, mini_batch_context)\n")
    args = faulty_args(data, out, "--mini-batch-size", "10", "--run-max-try", "1")
    args[args.index("--entry-script") + 1] = str(script)
    job = run_cli(args, out, ranks=2)
    assert job.rc == 0, job.stderr
    assert len(job.stderr.strip().splitlines()) == 1, job.stderr  # the summary line only

    result = (out / "parallel_run_step.txt").read_bytes()  # run()'s str() lines, the name's own bytes
    assert sorted(result.splitlines()) == sorted([BAD_OK + b" ok", b"item0 ok", b"item1 ok", b"item2 ok"])
    assert job.result["items"] == {"total": 5, "succeeded": 4, "failed": 1}

    [line] = (out / "logs/user/failed_items.txt").read_bytes().decode("utf-8").splitlines()
    item, error_class, error = line.split("\t")
    assert os.fsencode(unescape(item)) == bad_raise
    assert error_class == "exception" and error == "ValueError: bad item raise\\xfe\\tname"

    for log in ["logs/user/error.txt", "logs/sys/rank-0000.txt", "logs/sys/rank-0001.txt",
                "logs/user/error/rank-0000.txt", "logs/user/error/rank-0001.txt", "logs/job_result.txt"]:
        if (out / log).exists():
            (out / log).read_bytes().decode("utf-8")  # strict: every log is valid UTF-8
    entry_logs = b"".join(p.read_bytes() for p in (out / "logs/user/entry_script_log").iterdir())
    assert b"item " + os.fsencode(data) + b"/" + BAD_OK + b"\n" in entry_logs  # the user's own text: the bytes
    assert b"Logging error" not in b"".join(p.read_bytes() for p in (out / "logs/user/stderr").iterdir())
    errors = (out / "logs/user/error.txt").read_text().splitlines()
    assert errors and all(e.startswith("mini-batch ") for e in errors)  # one attempt, one line
    rows = list(csv.DictReader(open(out / "logs/sys/mini_batches.csv", encoding="utf-8")))
    assert [r["status"] for r in rows].count("isolated") == 1


def test_a_glob_over_a_symlink_loop_and_overlapping_inputs_process_each_file_once(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("ok\n")
    os.symlink(data, data / "sub" / "loop")  # ** used to follow it 40 levels deep
    os.symlink(data / "sub" / "loop", data / "sub" / "deeper" / "again")
    os.symlink(data / "a.txt", data / "sub" / "z_link.txt")  # the same file under a second name
    os.symlink(data / "gone.txt", data / "dangling.txt")
    args = faulty_args(data / "**" / "*.txt", out, "--inputs", str(data), "--inputs", str(data / "sub"))
    job = run_cli(args, out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == ["a.txt ok", "b.txt ok", "c.txt ok"]
    warnings = [line for line in job.stderr.splitlines() if line.startswith("mpibatch: warning: ")]
    assert len(warnings) == 2, job.stderr
    assert "paths reach a file listed already" in warnings[0] and "processed once" in warnings[0]
    assert "1 broken symbolic link (e.g. " in warnings[1] and "dangling.txt" in warnings[1]
    rank0 = job.log("logs/sys/rank-0000.txt")
    assert "paths reach a file listed already" in rank0 and "broken symbolic link" in rank0


def script_kinds(tmp_path: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "folder.py").mkdir()
    os.mkfifo(tmp_path / "fifo.py")  # opened, it would block the check forever
    os.symlink(tmp_path / "loop_b.py", tmp_path / "loop_a.py")
    os.symlink(tmp_path / "loop_a.py", tmp_path / "loop_b.py")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    return {
        "script is a folder": ("--entry-script", "folder.py", "entry_script: '{}/folder.py' is a folder, not a Python file"),
        "script is a FIFO": ("--entry-script", "fifo.py", "entry_script: '{}/fifo.py' is a FIFO, not a Python file"),
        "script is a symlink loop": ("--entry-script", "loop_a.py", "entry_script: '{}/loop_a.py' is a symlink loop"),
        "input is a symlink loop": ("--inputs", "loop_a.py", "inputs[0]: '{}/loop_a.py' is a symlink loop"),
        "input is a FIFO": ("--inputs", "fifo.py", "inputs[0]: '{}/fifo.py' is a FIFO, not a file or folder"),
        "input is a broken link": ("--inputs", "dangling",
                                   "inputs[0]: '{}/dangling' is a broken symbolic link (to '{}/nowhere')"),
    }


@pytest.mark.parametrize("case", ["script is a folder", "script is a FIFO", "script is a symlink loop",
                                  "input is a symlink loop", "input is a FIFO", "input is a broken link"])
def test_a_path_that_is_not_a_file_is_named_for_what_it_is(tmp_path, case):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("ok\n")
    key, value, expected = script_kinds(tmp_path)[case]
    given = {"--entry-script": str(SCRIPTS / "faulty.py"), "--inputs": "data", key: value}
    args = ["run", "--entry-script", given["--entry-script"], "--inputs", given["--inputs"], "--output", "out",
            "--progress", "none"]
    job = run_cli(args, tmp_path / "out", ranks=2, cwd=tmp_path, timeout=60)
    assert job.rc == 2, job.stderr
    assert job.stderr.strip().splitlines() == ["mpibatch: error: " + expected.replace("{}", str(tmp_path))]
    assert not (tmp_path / "out").exists()
