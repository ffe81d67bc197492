"""Benchmark entry script: run() returns one ~1 KB line per item, so a mini-batch of 1,000 items
gives rank 0 about 1 MB of result bytes to commit."""
PAD = "x" * 1000


def init() -> None:
    pass


def run(mini_batch: list[str]) -> list[str]:
    return [f"{item} {PAD}" for item in mini_batch]
