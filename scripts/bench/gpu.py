"""Section `gpu`: the figures that need a GPU node (8 and 16 ranks, the demo on GPUs). It measures
nothing itself: it says which GPUs the machine has and how to measure them there."""
from __future__ import annotations

from common import Context, Section, Target, gpus, targets_table

NAME = "gpu"
TITLE = "GPU nodes: 8 and 16 ranks, the demo on GPUs"
GPU_COMMAND = (".venv/bin/python scripts/bench/run_all.py --only dispatch,efficiency,demo --ranks 8,16 "
               "--doc docs/benchmarks-gpu.md")


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
        "To measure them, run on a GPU node (a whole node: one rank per GPU plus the cores they share):", "",
        "    scripts/setup.sh bench tensorflow           # on the node; for TensorFlow on the GPU also:",
        "    .venv/bin/pip install 'tensorflow[and-cuda]' # (the tensorflow extra installs tensorflow-cpu)",
        f"    {GPU_COMMAND}", "",
        ("`--ranks 8,16` sets the rank counts of the `dispatch` and `demo` sections (the default is 2, 4, 8 and "
        "1, 2, 4); `efficiency` always uses every usable core of the node; `--doc` keeps these results apart from "
        "the workstation's. Under Slurm, run the same command inside an allocation (`salloc -N 1 --gres=gpu:8 "
        "--exclusive`, then the command). mpibatch finds the GPUs itself (`gpus_per_node: auto`: Slurm, "
        "`CUDA_VISIBLE_DEVICES` or `nvidia-smi`) and gives each worker one, so with 8 GPUs and `--ranks 8` every "
        "GPU works; the demo's table then shows images/s with the model on the GPUs, its plain-TensorFlow row one "
        "process on one GPU."),
        "",
    ])
    return Section(body, [goal])
