"""The listing floor: read a filelist or walk a folder into a Python list of paths, nothing else.

    python listing.py filelist PATH      # the lines of a text file
    python listing.py walk FOLDER        # every file under a folder, recursively (os.scandir)

Prints one JSON line: {"items": N, "seconds": S, "peak_bytes": this process's peak RSS (VmHWM)}.
"""
from __future__ import annotations

import os
import sys
import time

from baseline_io import print_result


def walk(folder: str) -> list[str]:
    found, stack = [], [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    found.append(entry.path)
    return found


def high_water_mark() -> int:
    """VmHWM in bytes: unlike ru_maxrss it starts afresh at exec, so the forking parent does not count."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    if mode == "filelist":
        with open(path) as fh:
            paths = [line.rstrip("\n") for line in fh if line.strip()]
    else:
        paths = walk(path)
    seconds = time.perf_counter() - started
    peak = high_water_mark()
    print_result(items=len(paths), seconds=seconds, peak_bytes=peak)


if __name__ == "__main__":
    main()
