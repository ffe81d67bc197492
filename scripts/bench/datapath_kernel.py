"""The datapath section's CPU-bound run(): a loop of float64 matrix products, which numpy hands to BLAS with the
GIL released, so the prefetch thread can parse the next slice meanwhile if a core is free. One product's time is
measured once at the start, single-threaded (OPENBLAS_NUM_THREADS=1, as every run of it is), and the loop count
sized so that run() takes X ms.

    OPENBLAS_NUM_THREADS=1 python datapath_kernel.py      # {"matmul_ms": median ms of one product}"""
from __future__ import annotations

import os
import statistics
import time

N = 192  # one product a fraction of a ms on one core: fine steps for an X of a few ms, the GIL released throughout
ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
_MATRICES: list = []


def matrices():
    import numpy as np

    if not _MATRICES:
        rng = np.random.default_rng(0)
        a = rng.random((N, N))
        _MATRICES.extend([a, np.empty_like(a)])
    return _MATRICES


def kernel(loops: int) -> None:
    import numpy as np

    a, out = matrices()
    for _ in range(loops):
        np.dot(a, a, out=out)


def matmul_ms(repeats: int = 15, loops: int = 20) -> float:
    kernel(loops)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        kernel(loops)
        times.append((time.perf_counter() - started) / loops)
    return statistics.median(times) * 1e3


if __name__ == "__main__":
    from baseline_io import print_result

    missing = [k for k, v in ONE_THREAD.items() if os.environ.get(k) != v]
    if missing:
        raise SystemExit(f"datapath_kernel.py: set {', '.join(missing)}=1: every run of the kernel is single-threaded")
    print_result(matmul_ms=matmul_ms())
