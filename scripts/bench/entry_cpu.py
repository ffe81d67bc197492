"""Benchmark entry script: run() burns CPU in pure Python, `--loops L` iterations per item (the
efficiency section calibrates L so that one item takes about 20 ms on the machine at hand);
`--rank0-loops L0` gives rank 0 (PMI_RANK, set by MPICH's mpiexec) calls of another length."""
import os
import sys

LOOPS = 0


def spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i & 7
    return total


def spin_item(item: str, loops: int) -> str:
    spin(loops)
    return item


def init() -> None:
    global LOOPS
    option = "--rank0-loops" if "--rank0-loops" in sys.argv and os.environ.get("PMI_RANK") == "0" else "--loops"
    LOOPS = int(sys.argv[sys.argv.index(option) + 1])


def run(mini_batch: list[str]) -> list[str]:
    return [spin_item(item, LOOPS) for item in mini_batch]
