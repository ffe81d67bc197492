"""Benchmark entry script: run() sleeps 50 ms per mini-batch, so workers are busy while rank 0
only coordinates; what rank 0 burns meanwhile is pure coordination overhead."""
import time

SLEEP_S = 0.05


def init() -> None:
    pass


def run(mini_batch: list[str]) -> list[str]:
    time.sleep(SLEEP_S)
    return mini_batch
