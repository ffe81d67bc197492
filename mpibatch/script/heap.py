"""The heap of the process that runs the entry script: memory freed after one mini-batch is kept
for the next instead of going back to the kernel."""
from __future__ import annotations

import ctypes
import os

M_TOP_PAD = -2  # glibc's mallopt() parameter: bytes kept at the top of the heap when it grows or shrinks
TOP_PAD_BYTES = 64 << 20


def keep_freed_memory(pad: int = TOP_PAD_BYTES) -> bool:
    """Have glibc's malloc keep up to `pad` freed bytes at the top of the heap; True if it took.

    Without it, a reader that allocates and frees a few MB per mini-batch (pandas' csv parser at
    the default 1MB) hands them back at every free() and faults every page in again for the next:
    29M csv rows took 6.3 s instead of 4.9 s, and peak RSS differed by 5 MB. A top pad of the
    user's own (MALLOC_TOP_PAD_, GLIBC_TUNABLES) is left alone, and so is a C library without mallopt().
    """
    if "MALLOC_TOP_PAD_" in os.environ or "top_pad" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_TOP_PAD, pad) == 1
