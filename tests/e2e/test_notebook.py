"""The seed's notebook flow as a real notebook: examples/notebooks/digits.ipynb executed by nbclient in a
real kernel (build the job with ParallelRunConfig/ParallelRunStep, run it on 2 ranks, wait with output,
read the results, write the report), and what its cells printed and displayed checked."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import require

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGES = 300


def text_of(cell: dict) -> str:
    """Everything a cell printed or displayed, as text (HTML included)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "".join(parts)


def cell_with(nb, source: str) -> dict:
    return next(c for c in nb.cells if c.cell_type == "code" and source in c.source)


def test_digits_notebook_runs_end_to_end(tmp_path, demo_cache, monkeypatch):
    import importlib.util

    require(all(importlib.util.find_spec(m) for m in ("nbclient", "nbformat", "ipykernel")),
            "nbclient, nbformat and ipykernel (the test extra)")
    import nbformat
    from nbclient import NotebookClient

    shutil.copytree(EXAMPLES / "digits", tmp_path / "digits", ignore=shutil.ignore_patterns("data", "out"))
    folder = Path(shutil.copytree(EXAMPLES / "notebooks", tmp_path / "notebooks"))
    for name, value in {"IMAGES": str(IMAGES), "MPIBATCH_CACHE": str(demo_cache),
                        "MPIBATCH_PROGRESS_INTERVAL": "0.5", "TF_CPP_MIN_LOG_LEVEL": "2"}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits them
    nb = nbformat.read(folder / "digits.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "the notebook is kept without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    shown = text_of(cell_with(nb, "run = parallelrun_step.run(ranks=2)"))
    assert "Completed" in shown and f"{IMAGES // 5}/{IMAGES // 5} mini-batches (100.0%)" in shown, shown
    waited = text_of(cell_with(nb, "run.wait(show_output=True)"))
    assert re.search(r"^status: Completed$", waited, re.M) and f"items: {IMAGES} succeeded, 0 failed" in waited
    assert f"Prediction has {IMAGES} rows" in text_of(cell_with(nb, "run.results("))
    found = re.search(r"accuracy: (\d\.\d+) on (\d+) of (\d+) images", text_of(cell_with(nb, "accuracy =")))
    assert found and float(found[1]) >= 0.97 and int(found[2]) == int(found[3]) == IMAGES
    report = folder / "digits-out" / "logs" / "report.html"
    assert f"report: {report}" in text_of(cell_with(nb, "run.report()")) and report.stat().st_size > 10_000
    lines = (folder / "digits-out" / "mnist_outputs.txt").read_text().splitlines()
    assert len(lines) == IMAGES and all(re.fullmatch(r"\S+\.png: \d", line) for line in lines)
