"""The entry-script process and everything it started, found and killed together.

A script's own children may leave its process group (setsid, start_new_session=True, a double
fork), so a kill of the group misses them and they outlive the timeout and the job. Two marks
find them: the entry-script process is a child subreaper (Linux), so orphans of its tree reparent
to it and stay its descendants while it lives; and each process of the tree inherits a token in its
environment (as Jenkins' ProcessTreeKiller does), which finds them after the entry-script process
itself died (a crash) or ended (the end of the job).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Optional

TOKEN_VARIABLE = "MPIBATCH_PROCESS_TREE"
_PR_SET_CHILD_SUBREAPER = 36
_MAX_ROUNDS = 20  # of stop-and-look: a tree forking faster than this is stopped round by round


def become_subreaper() -> bool:
    """Make orphans of this process's descendants reparent to it instead of init (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int) -> set[int]:
    """Every live process below pid (none if pid is gone)."""
    try:
        import psutil
    except ImportError:  # the entry-script process under the script's own interpreter (script_env.py)
        return _descendants_from_proc(pid)
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _descendants_from_proc(pid: int) -> set[int]:
    """descendants() from /proc/PID/stat's parent ids, with the standard library alone (Linux)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return set()
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after the command name, which may hold spaces
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found.add(child)
            todo += children.get(child, [])
    return found


def carrying(token: str) -> set[int]:
    """Processes of this user whose environment holds TOKEN_VARIABLE=token (Linux /proc; elsewhere none).

    Reads /proc/PID/environ directly: about 3 us a process, so a node with a thousand processes is
    searched in a few milliseconds, and only when a tree is killed."""
    if not token or not os.path.isdir("/proc"):
        return set()
    needle = f"\0{TOKEN_VARIABLE}={token}\0".encode()
    found, me = set(), os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in b"\0" + fh.read() + b"\0":
                    found.add(int(name))
        except OSError:
            continue  # gone, another user's, or a kernel thread
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(root: Optional[int], token: str = "", group: Optional[int] = None) -> set[int]:
    """SIGKILL root, its descendants, the processes carrying token and the process group `group`.

    Each process found is stopped first, so none can fork a child past the search; the search
    repeats until it finds nothing new, then all are killed. Returns the pids killed (root
    included). The caller reaps its own child; the others are reaped by their new parent."""
    me = os.getpid()
    stopped: set[int] = set()
    for _ in range(_MAX_ROUNDS):
        found = set(descendants(root)) if root is not None else set()
        if root is not None:
            found.add(root)
        for pid in list(stopped):
            found |= descendants(pid)
        found |= carrying(token)
        found -= stopped | {me}
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        stopped |= found
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    return stopped
