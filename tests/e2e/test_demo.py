"""`mpibatch demo`: offline digits, a CNN trained once, accuracy over the target, one line per image."""
from __future__ import annotations

import importlib.util
import re

import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("ranks", [1, 4])
def test_demo_meets_the_accuracy_target(tmp_path, demo_cache, ranks):
    out = tmp_path / "demo"
    job = run_cli(["demo", "--images", "2000", "--output", str(out), "--progress", "none"], out,
                  ranks=None if ranks == 1 else ranks, env={"MPIBATCH_CACHE": str(demo_cache)}, timeout=600)
    assert job.rc == 0, job.stdout + job.stderr
    accuracy = float(re.search(r"accuracy:\s+([\d.]+) on 2000 images", job.stdout)[1])
    assert accuracy >= 0.97
    assert re.search(rf"throughput:\s+[\d.]+ images/s on {ranks} ranks", job.stdout)
    assert f"result file:  {out / 'parallel_run_step.txt'}" in job.stdout
    names = [line.split(": ")[0] for line in job.lines]
    assert len(names) == 2000 and len(set(names)) == 2000
    assert all(re.fullmatch(r"digit-\d{5}\.png: \d", line) for line in job.lines)
    assert job.result["ranks"] == ranks and job.result["status"] == "Completed"


def test_demo_without_tensorflow_says_how_to_install(monkeypatch, capsys):
    from mpibatch import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mpibatch[tensorflow]'" in err[0]


def test_importing_mpibatch_never_imports_tensorflow():
    import subprocess
    import sys

    code = "import sys, mpibatch, mpibatch.cli, mpibatch.engine.job, mpibatch.demo.runner; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
