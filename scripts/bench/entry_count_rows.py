"""Benchmark entry script for tables: run() only counts the rows of its DataFrame (one result per row)."""


def run(mini_batch):
    return range(len(mini_batch))
