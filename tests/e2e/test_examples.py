"""Every example runs as its README line says, in a copy of its folder."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, cli_env, run_cli

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_text_stats(tmp_path):
    folder = shutil.copytree(EXAMPLES / "text_stats", tmp_path / "text_stats")
    subprocess.run([sys.executable, str(folder / "make_data.py")], check=True, capture_output=True)
    job = run_cli(["run", str(folder / "job.yaml"), "--progress", "none"], folder / "out", ranks=4)
    assert job.rc == 0, job.stderr
    assert len(job.lines) == 400 and len({l.split()[0] for l in job.lines}) == 400
    assert all(re.fullmatch(r"shelf\d/page\d{3}\.txt words=\d+ top=\w+:\d+", line) for line in job.lines)


def test_digits(tmp_path, demo_cache):
    folder = shutil.copytree(EXAMPLES / "digits", tmp_path / "digits")
    env = cli_env({"MPIBATCH_VENV": str(BIN.parent), "IMAGES": "300", "RANKS": "2", "MPIBATCH_CACHE": str(demo_cache)})
    proc = subprocess.run([str(folder / "run.sh"), "--progress", "none"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = dict(line.split(",") for line in (folder / "data/labels.csv").read_text().splitlines()[1:])
    lines = (folder / "out/parallel_run_step.txt").read_text().splitlines()
    answers = dict(line.split(": ") for line in lines)
    assert len(lines) == 300 and sorted(answers) == sorted(labels)
    assert sum(answers[f] == labels[f] for f in labels) / len(labels) >= 0.97
