"""`mpibatch demo`: make the digits and the model once (cached), run the job in this MPI world,
then score the result file against the known labels."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from ..config import ConfigError, build_config

IMAGE_SEED = 1
MODEL_NAME = "mnist-cnn-v1.keras"
DEFAULT_OUTPUT = "mpibatch-demo-output"
ACCURACY_TARGET = 0.97


def cache_dir() -> Path:
    return Path(os.environ.get("MPIBATCH_CACHE", Path.home() / ".cache" / "mpibatch")) / "demo"


def missing_requirements() -> Optional[str]:
    """The one-line install hint when Keras, its backend (KERAS_BACKEND, TensorFlow unless set)
    or Pillow is not there."""
    backend = os.environ.get("KERAS_BACKEND") or "tensorflow"  # its name is its module's: torch, jax
    needed = (("keras", "keras"), (backend, backend), ("Pillow", "PIL"))
    absent = [name for name, module in needed if importlib.util.find_spec(module) is None]
    if not absent:
        return None
    how = ("pip install 'mpibatch[tensorflow]' (or scripts/setup.sh tensorflow)" if backend == "tensorflow" else
           f"pip install keras {backend} Pillow, or unset KERAS_BACKEND for TensorFlow")
    return f"the demo needs {' and '.join(absent)} (KERAS_BACKEND={backend}): {how}"


def prepare(images: int) -> tuple[Path, Path, Path]:
    """The image folder, its labels file and the trained model, made once and reused."""
    from .digits import write_images

    cache = cache_dir()
    folder = cache / f"images-{images}-seed{IMAGE_SEED}"
    labels = folder.parent / f"{folder.name}.labels.csv"
    if not labels.exists():
        print(f"mpibatch demo: rendering {images} digit images into {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        write_images(folder, images, IMAGE_SEED)
    model = cache / MODEL_NAME
    if not model.exists():
        print("mpibatch demo: training the digit model (once, under a minute)", flush=True)
        subprocess.run([sys.executable, "-m", "mpibatch.demo.model", str(model)], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return folder, labels, model


def demo_flags(folder: Path, model: Path, output: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The demo job: the seed's settings, any run flag given on the command line winning."""
    job = {
        "entry_script": str(Path(__file__).with_name("score.py")),
        "inputs": [str(folder)],
        "output": output,
        "mini_batch_size": 5,
        "error_threshold": 10,
        "run_invocation_timeout": 60,
        "models": {"mnist": str(model)},
        "compat": "azureml",
        "environment_variables": {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"},
    }
    job.update(flags)
    return job


def accuracy(result_file: Path, labels_file: Path) -> tuple[float, int]:
    """Share of result lines whose digit matches the label, and the number of lines."""
    with open(labels_file) as fh:
        truth = {row["file"]: int(row["label"]) for row in csv.DictReader(fh)}
    correct = lines = 0
    for line in result_file.read_text().splitlines():
        match = re.fullmatch(r"(\S+): (\d)", line.strip())
        lines += 1
        correct += bool(match and truth.get(match[1]) == int(match[2]))
    return (correct / len(truth) if truth else 0.0), lines


def report(output: Path, labels_file: Path) -> None:
    result = json.loads((output / "logs" / "job_result.json").read_text())
    score, lines = accuracy(output / "parallel_run_step.txt", labels_file)
    rate = result["items"]["succeeded"] / max(result["elapsed_s"], 1e-9)
    verdict = "meets" if score >= ACCURACY_TARGET else "is BELOW"
    print(f"\nmpibatch demo: {result['status']}\n"
          f"  accuracy:     {score:.4f} on {result['items']['total']} images ({verdict} the {ACCURACY_TARGET} target)\n"
          f"  result lines: {lines}\n"
          f"  throughput:   {rate:.1f} images/s on {result['ranks']} ranks ({result['workers']} workers)\n"
          f"  result file:  {output / 'parallel_run_step.txt'}\n"
          f"  job result:   {output / 'logs' / 'job_result.txt'}", flush=True)


def run_demo(images: int, flags: dict[str, Any], script_args: list[str]) -> int:
    """Every rank runs this; rank 0 prepares the data and reports."""
    problem = missing_requirements()
    if problem:
        print(f"mpibatch: error: {problem}", file=sys.stderr)
        return 2
    from mpi4py import MPI

    from ..engine.job import run_job, wait_politely

    comm = MPI.COMM_WORLD
    output = str(Path(flags.pop("output", DEFAULT_OUTPUT)).resolve())
    paths = None
    if comm.rank == 0:
        paths = prepare(images)
        default = output == str(Path(DEFAULT_OUTPUT).resolve())
        if default and (Path(output) / ".mpibatch").is_dir() and not flags.get("resume"):
            shutil.rmtree(output)  # the demo's own folder from an earlier demo
    wait_politely(comm)
    folder, labels, model = comm.bcast(paths, root=0)
    try:
        config = build_config(None, demo_flags(folder, model, output, flags))
    except ConfigError as exc:
        if comm.rank == 0:
            print(f"mpibatch: error: {exc}", file=sys.stderr)
        return 2
    code = run_job(config, script_args, {})
    if comm.rank == 0 and code in (0, 1) and (Path(output) / "logs" / "job_result.json").exists():
        report(Path(output), labels)
    return code
