"""The datapath section's work, shared by every contender: run() gets a DataFrame (one ~1 MB parquet or csv
slice) or a list of staged files, and holds it for X ms with the GIL released: time.sleep, as a model call
waiting on a GPU does, or matrix products on this core (datapath_kernel.py).

As an mpibatch entry script: `-- --sleep-ms X` or `-- --matmul-loops L`; Ray Data and multiprocessing.Pool call
`work` itself."""
import sys
import time

SLEEP_S = 0.0
LOOPS = 0


def work(frame, sleep_s: float) -> int:
    """X seconds with the GIL released; the rows seen, so every contender can be checked."""
    time.sleep(sleep_s)
    return len(frame)


def init() -> None:
    global SLEEP_S, LOOPS
    import pandas  # noqa: F401 - a real script imports its libraries at start, not during the first mini-batch
    import pyarrow.parquet  # noqa: F401

    if "--matmul-loops" in sys.argv:
        from datapath_kernel import matrices

        LOOPS = int(sys.argv[sys.argv.index("--matmul-loops") + 1])
        matrices()
    else:
        SLEEP_S = float(sys.argv[sys.argv.index("--sleep-ms") + 1]) / 1e3


def run(mini_batch):
    if LOOPS:
        from datapath_kernel import kernel

        kernel(LOOPS)
        return range(len(mini_batch))
    return range(work(mini_batch, SLEEP_S))
