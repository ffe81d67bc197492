"""Benchmark entry script: run() burns CPU in pure Python, `--loops L` iterations per item (the
efficiency section calibrates L so that one item takes about 20 ms on the machine at hand)."""
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
    LOOPS = int(sys.argv[sys.argv.index("--loops") + 1])


def run(mini_batch: list[str]) -> list[str]:
    return [spin_item(item, LOOPS) for item in mini_batch]
