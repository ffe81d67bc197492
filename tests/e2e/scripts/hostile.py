"""Test entry script that misbehaves on purpose: each input file holds a word that says how.

ok -> one line; print -> prints, then one line; close_stdio -> one line, then closes fds 1 and 2;
escape -> starts `sleep 1000` in a session of its own (pid in $HOSTILE_PID_DIR/<name>), one line;
escape_hang -> the same, then hangs; multiline -> one element that spans two lines; extra -> two
elements for one item; array -> a 2-D numpy array as the element (its str() spans lines).
"""
import os
import subprocess
import time


def _escape(name: str) -> None:
    child = subprocess.Popen(["sleep", "1000"], start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    with open(os.path.join(os.environ["HOSTILE_PID_DIR"], name), "w") as fh:
        fh.write(str(child.pid))


def run(mini_batch):
    out = []
    for path in mini_batch:
        name = os.path.basename(path)
        word = open(path).read().strip()
        print(f"working on {name}", flush=True)
        if word in ("escape", "escape_hang"):
            _escape(name)
        if word == "escape_hang":
            time.sleep(3600)
        if word == "multiline":
            out.append(f"{name} first\n{name} second")
        elif word == "extra":
            out += [f"{name} extra", f"{name} extra again"]
        elif word == "array":
            import numpy

            out.append(numpy.zeros((2, 2)))
        else:
            out.append(f"{name} {word}")
        if word == "close_stdio":
            os.close(1)
            os.close(2)
    return out
