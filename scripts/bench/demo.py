"""Section `demo`: `mpibatch demo` (digit images scored by a Keras CNN) images per second at 1, 2
and 4 ranks, against the same model scoring the same images in one plain process (demo_plain.py).
KERAS_BACKEND picks the framework of both (TensorFlow unless set; `torch` puts the model on a GPU).

A first, uncounted run at one rank renders the images and trains the model if they are not cached
yet (~/.cache/mpibatch, or $MPIBATCH_CACHE).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
from dataclasses import dataclass

from common import (
    BENCH,
    BIN,
    Context,
    Section,
    Target,
    Timed,
    completed,
    dispatch_seconds,
    gpus,
    log,
    median,
    oversubscribed,
    printed_json,
    pyplot,
    rotated,
    run_command,
    save_plot,
    targets_table,
)

NAME = "demo"
TITLE = "Demo: digit images per second"
BASELINE = "plain"
ACCURACY = re.compile(r"accuracy:\s+([0-9.]+)")


def backend() -> str:
    """The Keras backend the demo and its baseline use, as its users name it."""
    name = os.environ.get("KERAS_BACKEND") or "tensorflow"
    return {"tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX"}.get(name, name)


@dataclass(frozen=True)
class Sizes:
    images: int
    ranks: tuple[int, ...]
    rounds: int
    timeout_s: float


FULL = Sizes(images=2000, ranks=(1, 2, 4), rounds=3, timeout_s=600)
QUICK = Sizes(images=40, ranks=(1, 2), rounds=1, timeout_s=300)


def demo_command(ranks: int, images: int, output) -> list[str]:
    return [str(BIN / "mpiexec"), "-n", str(ranks), str(BIN / "mpibatch"), "demo", "--images", str(images),
            "--output", str(output), "--progress", "none"]


def run_demo(ctx: Context, ranks: int, images: int, timeout: float) -> Timed:
    output = ctx.scratch / "demo-out"
    shutil.rmtree(output, ignore_errors=True)
    done, noise = run_command(demo_command(ranks, images, output), timeout)
    result = completed(output, done, -(-images // 5))  # the demo's mini_batch_size is 5
    if result["items"]["succeeded"] != images:
        raise RuntimeError(f"the demo scored {result['items']['succeeded']} of {images} images")
    accuracy = ACCURACY.search(done.stdout)
    with open(output / "logs" / "sys" / "mini_batches.csv", newline="") as fh:
        run_s = sum(float(row["seconds"]) for row in csv.DictReader(fh))
    shutil.rmtree(output, ignore_errors=True)
    return Timed(dispatch_seconds(result), noise.wall_s, noise.others_percent,
                 {"elapsed_s": float(result["elapsed_s"]), "workers": result["workers"],
                  "scoring_s": run_s / result["workers"],
                  "accuracy": float(accuracy[1]) if accuracy else float("nan")})


def run_plain(images: int, timeout: float) -> Timed:
    done, noise = run_command([str(BIN / "python"), str(BENCH / "demo_plain.py"), str(images)], timeout)
    printed = printed_json(done)
    if printed["items"] != images:
        raise RuntimeError(f"demo_plain.py scored {printed['items']} of {images} images")
    return Timed(float(printed["seconds"]), noise.wall_s, noise.others_percent)


def measure(ctx: Context) -> Section:
    sizes = QUICK if ctx.quick else FULL
    rank_counts = tuple(ctx.ranks or sizes.ranks)
    rounds = ctx.rounds_or(sizes.rounds)
    images = ctx.items or sizes.images  # --items: a GPU scores 2,000 images in about a second
    log(f"[{NAME}] warm-up run (renders the images and trains the model if not cached; not counted)")
    run_demo(ctx, 1, images, max(sizes.timeout_s, 900))
    keys: list = [*rank_counts, BASELINE]
    runs: dict = {k: [] for k in keys}
    for round_no, key in rotated(keys, rounds):
        run = run_plain(images, sizes.timeout_s) if key == BASELINE else run_demo(ctx, key, images, sizes.timeout_s)
        runs[key].append(run)
        log(f"[{NAME}] round {round_no + 1}/{rounds} {key!s:6} {images / run.seconds:8.1f} images/s "
            f"({run.seconds:.2f} s timed, {run.wall_s:.2f} s command)")
    accuracy = min(r.extra["accuracy"] for k in rank_counts for r in runs[k])
    goals = [Target("demo, accuracy ≥ 0.97 (every run)", f"{accuracy:.4f}", accuracy >= 0.97)]
    return Section(render(ctx, images, rounds, rank_counts, runs, goals), goals)


def plot(ctx: Context, images: int, rank_counts: tuple[int, ...], runs: dict) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    own = [median([images / r.seconds for r in runs[k]]) for k in rank_counts]
    elapsed = [median([images / r.extra["elapsed_s"] for r in runs[k]]) for k in rank_counts]
    wall = [median([images / r.wall_s for r in runs[k]]) for k in rank_counts]
    ax.plot(rank_counts, own, marker="o", label="mpibatch demo: images / timing.dispatch_s")
    ax.plot(rank_counts, elapsed, marker="s", label="mpibatch demo: images / elapsed_s (what it prints)")
    ax.plot(rank_counts, wall, marker="^", label="mpibatch demo: images / whole command")
    scoring = [median([images / r.extra["scoring_s"] for r in runs[k]]) for k in rank_counts]
    ax.plot(rank_counts, scoring, marker="v", label="mpibatch demo: images / (run() seconds / workers)")
    plain = median([images / r.seconds for r in runs[BASELINE]])
    ax.axhline(plain, color="gray", linestyle="--", label=f"plain Keras on {backend()}, one process (its loop)")
    ax.set_xticks(rank_counts)
    ax.set_xlabel("MPI ranks (mpiexec -n)")
    ax.set_ylabel("images / s (median)")
    ax.set_title(f"mpibatch demo, {images:,} images")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(fig, ctx, NAME, "demo images per second vs ranks")


def render(ctx: Context, images: int, rounds: int, rank_counts: tuple[int, ...], runs: dict,
           goals: list[Target]) -> str:
    table = [("| contender | ranks | workers | images/s (timing.dispatch_s) | min | max | images/s (elapsed_s) "
              "| images/s in run() only | command wall s | images / command wall | accuracy |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in rank_counts:
        rates = [images / r.seconds for r in runs[k]]
        wall = median([r.wall_s for r in runs[k]])
        table.append(f"| mpibatch demo | {k} | {runs[k][0].extra['workers']} | {median(rates):,.1f} | "
                     f"{min(rates):,.1f} | {max(rates):,.1f} | "
                     f"{median([images / r.extra['elapsed_s'] for r in runs[k]]):,.1f} | "
                     f"{median([images / r.extra['scoring_s'] for r in runs[k]]):,.1f} | {wall:.2f} | "
                     f"{images / wall:,.1f} | {min(r.extra['accuracy'] for r in runs[k]):.4f} |")
    plain = runs[BASELINE]
    rates = [images / r.seconds for r in plain]
    wall = median([r.wall_s for r in plain])
    table.append(f"| plain Keras on {backend()}, one process, batches of 5 | | 1 | {median(rates):,.1f} | "
                 f"{min(rates):,.1f} | {max(rates):,.1f} | | {median(rates):,.1f} | {wall:.2f} | {images / wall:,.1f} | |")
    over = [k for k in rank_counts if oversubscribed(k)]
    found = gpus()
    where = (f"{backend()} (`KERAS_BACKEND`), with {len(found)} GPU(s) on the machine ({'; '.join(found)}): every "
             "worker and the plain process use them where the framework does (one GPU: all of them share it)."
             if found else f"{backend()} (`KERAS_BACKEND`) on the CPU: the machine has no GPU.")
    return "\n".join([
        "### Targets", "", *targets_table(goals), "",
        f"### {images:,} images, {rounds} round(s), medians", "",
        plot(ctx, images, rank_counts, runs), "",
        *table, "",
        "### Method", "",
        f"- **Framework**: Keras 3 on {where}",
        (f"- **mpibatch demo**: `mpiexec -n R mpibatch demo --images {images} --output OUT --progress none`, the "
        "demo's own job (mini_batch_size 5, process executor, thread caps per worker, compat azureml), into a new "
        "output folder each time; checked: Completed, every image scored. Images/s from `timing.dispatch_s` (first "
        "mini-batch dispatched to the last final), from `elapsed_s` (the coordinator's whole loop, which the demo "
        "prints as its throughput) and from the whole command. `timing.dispatch_s` starts when the first mini-batch "
        "is handed out, before the workers' children have imported the framework and loaded the model, so it "
        "includes init(); \"run() only\" divides the images by the run() seconds of `logs/sys/mini_batches.csv`, summed over "
        "the mini-batches and divided by the workers: the scoring rate once every worker is up. Accuracy as the demo "
        "prints it."),
        ("- **Plain Keras** (`scripts/bench/demo_plain.py`): the same images and model, the entry script's "
        "per-mini-batch code in a loop over batches of 5 in one process with the framework's default threads; timed "
        "after the model is loaded."),
        ("- A first run at one rank (not counted) makes the images and the model if they are not cached. "
        "Contenders run once per round in an order that rotates round by round."),
        *([f"- **Oversubscribed.** {', '.join(map(str, over))} ranks share the machine's cores."] if over else []),
        "",
    ])
