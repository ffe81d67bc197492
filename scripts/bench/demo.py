"""Section `demo`: `mpibatch demo` (digit images scored by a Keras CNN) images per second at 1, 2
and 4 ranks, against the same model scoring the same images in one plain process (demo_plain.py).
KERAS_BACKEND picks the framework of both (TensorFlow unless set; `torch` puts the model on a GPU).

A first, uncounted run at one rank renders the images and trains the model if they are not cached
yet (~/.cache/mpibatch, or $MPIBATCH_CACHE).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from harness import (
    BIN,
    Context,
    Timed,
    contest,
    log,
    mini_batch_rows,
    oversubscribed,
    python_command,
    time_baseline,
    time_mpibatch,
)
from machine import gpus
from report import Section, Target, median, pyplot, save_plot, spread, table, targets_block

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
    def scored(output, result, done) -> dict:
        if result["items"]["succeeded"] != images:
            raise RuntimeError(f"the demo scored {result['items']['succeeded']} of {images} images")
        accuracy = ACCURACY.search(done.stdout)
        run_s = sum(float(row["seconds"]) for row in mini_batch_rows(output))
        return {"elapsed_s": float(result["elapsed_s"]), "workers": result["workers"],
                "scoring_s": run_s / result["workers"],
                "accuracy": float(accuracy[1]) if accuracy else float("nan")}

    output = ctx.scratch / "demo-out"
    batches = -(-images // 5)  # the demo's mini_batch_size is 5
    return time_mpibatch(demo_command(ranks, images, output), output, batches, timeout, inspect=scored)


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rank_counts = tuple(ctx.ranks or sizes.ranks)
    rounds = ctx.rounds_or(sizes.rounds)
    images = ctx.items or sizes.images  # --items: a GPU scores 2,000 images in about a second
    log(f"[{NAME}] warm-up run (renders the images and trains the model if not cached; not counted)")
    run_demo(ctx, 1, images, max(sizes.timeout_s, 900))

    def run(key: int | str) -> Timed:
        if key == BASELINE:
            return time_baseline(python_command("demo_plain.py", images), images, sizes.timeout_s)
        return run_demo(ctx, key, images, sizes.timeout_s)

    def say(key: int | str, run: Timed) -> str:
        return f"{key!s:6} {images / run.seconds:8.1f} images/s ({run.seconds:.2f} s timed, {run.wall_s:.2f} s command)"

    runs = contest(NAME, [*rank_counts, BASELINE], rounds, run, say)
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
    rows = []
    for k in rank_counts:
        wall = median([r.wall_s for r in runs[k]])
        rows.append(f"| mpibatch demo | {k} | {runs[k][0].extra['workers']} | "
                    f"{spread([images / r.seconds for r in runs[k]], '{:,.1f}')} | "
                    f"{median([images / r.extra['elapsed_s'] for r in runs[k]]):,.1f} | "
                    f"{median([images / r.extra['scoring_s'] for r in runs[k]]):,.1f} | {wall:.2f} | "
                    f"{images / wall:,.1f} | {min(r.extra['accuracy'] for r in runs[k]):.4f} |")
    plain = runs[BASELINE]
    rates = [images / r.seconds for r in plain]
    wall = median([r.wall_s for r in plain])
    rows.append(f"| plain Keras on {backend()}, one process, batches of 5 | | 1 | {spread(rates, '{:,.1f}')} | | "
                f"{median(rates):,.1f} | {wall:.2f} | {images / wall:,.1f} | |")
    over = [k for k in rank_counts if oversubscribed(k)]
    found = gpus()
    where = (f"{backend()} (`KERAS_BACKEND`), with {len(found)} GPU(s) on the machine ({'; '.join(found)}): every "
             "worker and the plain process use them where the framework does (one GPU: all of them share it)."
             if found else f"{backend()} (`KERAS_BACKEND`) on the CPU: the machine has no GPU.")
    return "\n".join([
        *targets_block(goals),
        f"### {images:,} images, {rounds} round(s), medians", "",
        plot(ctx, images, rank_counts, runs), "",
        *table(["contender", "ranks", "workers", "images/s (timing.dispatch_s)", "min", "max", "images/s (elapsed_s)",
                "images/s in run() only", "command wall s", "images / command wall", "accuracy"], "lrrrrrrrrrr", rows),
        "",
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
