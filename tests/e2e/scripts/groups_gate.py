"""Test entry script for worker groups (issue 22): each input file holds a word.

ok -> one line; gate -> waits for the file GATE_DIR/open, or GATE_DIR/open-RANK for its global rank alone
(at most 120 s), then one line; hold -> the same, for GATE_DIR/release; sleepX -> sleeps X seconds, then one
line. init() leaves GATE_DIR/init-TAG-RANK (TAG: env GROUP_TAG, "main" unset) and every item leaves
GATE_DIR/run-RANK-NAME as it starts, so a test knows which rank (and so which group) is up and holds what,
and can hold the job still at the gate while groups join, die or leave.
"""
import os
import time

from mpibatch import EntryScript

GATE = os.environ["GATE_DIR"]


def _mark(name: str) -> None:
    open(os.path.join(GATE, name), "w").close()


def init():
    _mark(f"init-{os.environ.get('GROUP_TAG', 'main')}-{EntryScript().rank}")


def run(mini_batch):
    out = []
    rank = EntryScript().rank
    for path in mini_batch:
        name = os.path.basename(path)
        word = open(path).read().strip()
        _mark(f"run-{rank}-{name}")
        if word in ("gate", "hold"):
            until = time.monotonic() + 120
            opens = ["open", f"open-{rank}"] if word == "gate" else ["release"]
            opens = [os.path.join(GATE, gate) for gate in opens]
            while not any(map(os.path.exists, opens)) and time.monotonic() < until:
                time.sleep(0.05)
        if word.startswith("sleep"):
            time.sleep(float(word[5:]))
        out.append(f"{name} {word}")
    return out
