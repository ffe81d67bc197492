"""Test entry script: each input file holds a word that says how to behave.

ok -> one line; raise -> exception; hang -> sleeps past any timeout; segv -> segfault;
exit -> os._exit(7); kill9 -> SIGKILL as the OOM killer sends; skip -> not returned (partial return); flaky -> fails on attempt 1 only;
sleepX -> sleeps X seconds then ok; busyX -> spins X seconds then ok; leak -> allocates 50 MB per 0.1 s (up to 2 GB, then hangs). FAULT_INIT: exit_rank1 | raise_all | sleep.
FAULT_FIXED=1: raise -> one line (the bug was fixed, for --retry-failed).
"""
import ctypes
import os
import sys
import time

from mpibatch import EntryScript


def init():
    mode = os.environ.get("FAULT_INIT", "")
    if mode == "exit_rank1" and EntryScript().rank == 1:
        sys.exit(3)
    if mode == "raise_all":
        raise RuntimeError("model file missing")
    if mode == "sleep":
        time.sleep(3600)
    print(f"init on rank {EntryScript().rank}")


def run(mini_batch, mini_batch_context=None):
    out = []
    for path in mini_batch:
        name = os.path.basename(path)
        word = open(path).read().strip()
        if word == "raise" and not os.environ.get("FAULT_FIXED"):
            raise ValueError(f"bad item {name}")
        if word == "hang":
            time.sleep(3600)
        if word == "segv":
            ctypes.string_at(0)
        if word == "exit":
            os._exit(7)
        if word == "kill9":
            os.kill(os.getpid(), 9)
        if word == "leak":
            hoard = []
            for _ in range(40):
                hoard.append(b"\x01" * (50 << 20))  # written, so resident
                time.sleep(0.1)
            time.sleep(3600)
        if word == "skip":
            continue
        if word == "flaky" and mini_batch_context.attempt == 1:
            raise RuntimeError(f"flaky {name} on attempt 1")
        if word.startswith("busy"):
            until = time.monotonic() + float(word[4:])
            while time.monotonic() < until:
                pass
        if word == "slow_on_rank1" and EntryScript().rank == 1:
            time.sleep(30)
        if word.startswith("sleep"):
            print(f"sleeping on {name}", flush=True)
            time.sleep(float(word[5:]))
        out.append(f"{name} {word}")
    return out
