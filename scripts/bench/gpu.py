"""Section `gpu`: the figures that need a GPU node (8 and 16 ranks, the demo on GPUs). It measures
nothing itself: it says which GPUs the machine has and how to measure them there."""
from __future__ import annotations

import re

from harness import REPO, Context
from machine import gpus
from report import Section, Target, targets_table

NAME = "gpu"
TITLE = "GPU nodes: 8 and 16 ranks, the demo on GPUs"
GPU_COMMAND = (".venv/bin/python scripts/bench/run_all.py --only dispatch,efficiency,demo --ranks 8,16 "
               "--items 20000 --doc docs/benchmarks-gpu.md")
GPU_DOC = REPO / "docs" / "benchmarks-gpu.md"


def gpu_doc_note() -> list[str]:
    """Where the figures of a GPU node are, if one was measured: docs/benchmarks-gpu.md and its dates."""
    if not GPU_DOC.exists():
        return []
    dates = sorted(set(re.findall(r"Measured by .* on (\d{4}-\d\d-\d\d)", GPU_DOC.read_text())))
    return [f"**The figures of a GPU node are in [{GPU_DOC.name}]({GPU_DOC.name})** (measured {', '.join(dates)}).", ""]


def measure(ctx: Context) -> Section:
    found = gpus()
    where = (f"This machine has {len(found)} GPU(s): {'; '.join(found)}. The other sections of this run did "
             "not use them unless their own tables say so." if found else
             "This machine has no GPU (`nvidia-smi -L` lists none), so the GPU figures are **not measured here**.")
    goal = Target("gpu, dispatch and demo at 8 and 16 ranks on a GPU node",
                  f"{len(found)} GPUs here" if found else "no GPU here", None)
    body = "\n".join([
        *targets_table([goal]), "",
        where, "",
        *gpu_doc_note(),
        "To measure them, run on a GPU node (a whole node: one rank per GPU plus the cores they share):", "",
        "    scripts/setup.sh bench tensorflow           # on the node; for the demo's model on the GPU, either",
        "    .venv/bin/pip install 'tensorflow[and-cuda]' # (the tensorflow extra installs tensorflow-cpu)",
        "    export KERAS_BACKEND=torch                  # or PyTorch, where the node has it (pip install torch)",
        f"    {GPU_COMMAND}", "",
        ("`--ranks 8,16` sets the rank counts of the `dispatch` and `demo` sections (the default is 2, 4, 8 and "
        "1, 2, 4); `--items 20000` gives the demo 20,000 images (a GPU scores the default 2,000 in about a second) "
        "and keeps dispatch at its default; `efficiency` always uses every usable core of the node (500 mini-batches "
        "per core); `--doc` keeps these results apart from "
        "the workstation's. Under Slurm, run the same command inside an allocation (`salloc -N 1 --gres=gpu:8 "
        "--exclusive`, then the command). mpibatch finds the GPUs itself (`gpus_per_node: auto`: Slurm, "
        "`CUDA_VISIBLE_DEVICES` or `nvidia-smi`) and gives each worker one, so with 8 GPUs and `--ranks 8` every "
        "GPU works; the demo's table then shows images/s with the model on the GPUs, its plain-Keras row one "
        "process on one GPU."),
        "",
    ])
    return Section(body, [goal])
