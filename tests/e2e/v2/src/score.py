"""Scores text files as the v2 samples' entry scripts do: argparse in init(), a model folder, one line per file.

parse_args() is strict, so a ParallelRunStep flag leaking into sys.argv fails init()."""
import argparse
import os
from pathlib import Path

model_scale = None
tag = None
copies = None


def init():
    global model_scale, tag, copies
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--tag", default="none")
    parser.add_argument("--copies")
    args = parser.parse_args()
    model_scale = (Path(args.model) / "model.cfg").read_text().strip()
    tag, copies = args.tag, args.copies
    print(f"cwd={os.getcwd()} level={os.environ.get('AZUREML_PARALLEL_EXAMPLE', '-')}")


def run(mini_batch):
    results = []
    for path in mini_batch:
        word = Path(path).read_text().split()[-1]
        if copies:
            (Path(copies) / Path(path).name).write_text(word)
        results.append(f"{Path(path).name} {word} {model_scale} {tag}")
    return results
