"""Benchmark entry script: run() does nothing, so only mpibatch's per-mini-batch cost is timed."""


def init() -> None:
    pass


def run(mini_batch: list[str]) -> list[str]:
    return mini_batch
