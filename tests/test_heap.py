"""Unit tests for mpibatch.script.heap: the entry script's process keeps freed memory for the next mini-batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mpibatch.script.entry
from tests.test_entry import make_runtime

REPO = str(Path(__file__).resolve().parents[1])
# Frees what a mini-batch allocated (200 blocks of 100 KB from the heap, below malloc's mmap
# threshold) and prints how much heap the process still holds afterwards (mallinfo2, glibc >= 2.33).
CHURN = """
import ctypes, json, sys
from mpibatch.script.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
blocks = [libc.malloc(100_000) for _ in range(200)]
for block in reversed(blocks):
    libc.free(block)
print(json.dumps({"kept": kept, "heap_mb": libc.mallinfo2().arena / 2**20}))
"""


def churn(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", CHURN, mode], env={**environ, "PYTHONPATH": REPO, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def glibc() -> bool:
    try:
        return subprocess.run([sys.executable, "-c", CHURN, "plain"], env={**os.environ, "PYTHONPATH": REPO},
                              capture_output=True).returncode == 0
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(not glibc(), reason="needs glibc >= 2.33 (mallopt, mallinfo2)")


@needs_glibc
def test_freed_memory_stays_in_the_heap_for_the_next_mini_batch() -> None:
    plain, kept = churn("plain"), churn("keep")

    assert kept["kept"] is True
    assert plain["heap_mb"] < 5, plain  # handed back to the kernel at the frees
    assert kept["heap_mb"] > 15, kept  # the 20 MB stay for the next allocations


@needs_glibc
def test_a_top_pad_of_the_users_own_is_left_alone() -> None:
    assert churn("keep", MALLOC_TOP_PAD_="0")["kept"] is False
    assert churn("keep", GLIBC_TUNABLES="glibc.malloc.top_pad=0")["kept"] is False


def test_the_entry_scripts_process_keeps_freed_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(mpibatch.script.entry, "keep_freed_memory", lambda: calls.append(True))
    make_runtime(tmp_path, "def run(mini_batch):\n    return mini_batch\n").prepare()
    assert calls == [True]
