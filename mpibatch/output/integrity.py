"""Is the output folder still what the journal says, and what to say when it cannot be written.

A journal line ends with a CRC-32 over its own text and the result bytes it commits (commit.seal),
so the result file can be checked against the journal: by resume (every entry, before any work),
by allow_reuse (every entry, and not a byte more) and by `mpibatch status` (the length and the
last entry, cheaply).
"""
from __future__ import annotations

import errno
import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

CRC_FIELD = b',"crc":'
REMOVED = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)
MIN_FREE_BYTES = 64 << 10  # less free space than this, and a job would stop at its first commits


@dataclass(frozen=True)
class Check:
    """How many entries, from the first, the result file bears out, and why the next one is not."""

    kept: int
    size: int  # of the result file (0 when missing)
    problem: Optional[str] = None


def check_entries(result_file: Path, entries: Sequence[Any], lines: Sequence[bytes], tail_only: bool = False) -> Check:
    """Check each entry's offset and seal against the result file; `tail_only` checks the offsets
    of all but the seal of the last entry with bytes only (what `status` can afford)."""
    try:
        size = result_file.stat().st_size
        short = f"{result_file.name} is shorter than its journal ({size} bytes, {{}} committed)"
    except FileNotFoundError:
        size = 0
        short = f"{result_file.name} is missing ({{}} bytes committed)"
    name = result_file.name
    if not entries:
        return Check(0, size)
    last = entries[-1].end
    with _mapped(result_file, size) as data:
        start = 0
        sealed_from = _last_with_bytes(entries) if tail_only else 0
        for i, (entry, line) in enumerate(zip(entries, lines)):
            if entry.end < start:
                return Check(i, size, f"its journal is damaged at mini-batch {entry.id} (offset {entry.end} "
                                      f"before {start})")
            if entry.end > size:
                return Check(i, size, short.format(last))
            if entry.crc is not None and i >= sealed_from and _seal_of(line, data[start:entry.end]) != entry.crc:
                return Check(i, size, f"{name} or its journal changed: mini-batch {entry.id}'s bytes "
                                      f"{start}-{entry.end} do not match the journal")
            start = entry.end
    return Check(len(entries), size)


def _last_with_bytes(entries: Sequence[Any]) -> int:
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].end > (entries[i - 1].end if i else 0):
            return i
    return len(entries)


def _seal_of(line: bytes, payload: Any) -> int:
    head = line[:line.rindex(CRC_FIELD)] if CRC_FIELD in line else line
    return zlib.crc32(payload, zlib.crc32(head))


class _mapped:
    """The result file's bytes without reading them all into memory (b"" when empty or missing)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.map: Optional[mmap.mmap] = None
        self.view: Any = memoryview(b"")

    def __enter__(self) -> Any:
        if self.size:
            with open(self.path, "rb") as fh:
                self.map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.view = memoryview(self.map)
        return self.view

    def __exit__(self, *exc: object) -> None:
        self.view.release()
        if self.map is not None:
            self.map.close()


def removed_folder(path: Path, output: Path) -> Optional[Path]:
    """The highest folder from the output (included) down to `path`'s that no longer exists."""
    relative = Path(os.path.relpath(path.parent, output))
    inside = relative.parts[:1] != ("..",)
    chain = [output, *(output.joinpath(*relative.parts[:i + 1]) for i in range(len(relative.parts)) if inside
                       and relative != Path("."))]
    return next((folder for folder in chain if not folder.is_dir()), None)


def with_path(exc: OSError, path: Path) -> OSError:
    """The error with the path it happened on (a failed write() or flush() names none)."""
    return exc if exc.filename else OSError(exc.errno, exc.strerror, str(path))


def is_output_error(exc: OSError, output: Path) -> bool:
    """Whether an error is the output's own: a full disk or quota, or a folder of it removed."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return exc.errno in REMOVED and removed_folder(Path(exc.filename or output / "x"), output) is not None


def describe_write_error(exc: OSError, path: Optional[Path], output: Path) -> tuple[str, bool]:
    """One line for a failed write into the output, and whether a resume can go on from it (False
    when the output folder or its journal's folder is gone)."""
    path = Path(exc.filename) if exc.filename else (path or output)
    if exc.errno in REMOVED:
        gone = removed_folder(path, output)
        if gone is not None:
            fatal = gone == output or gone == output / ".mpibatch"
            what = "output folder" if gone == output else "folder"
            return (f"the {what} '{gone}' was removed while the job ran; nothing more can be committed"
                    + ("" if fatal else " (resume with --resume to continue)")), not fatal
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        mount = _mount_point(path)
        try:
            stats = os.statvfs(mount)
            free = f", {stats.f_bavail * stats.f_frsize} bytes free"
        except OSError:
            free = ""
        reason = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{reason} writing {path} (file system {mount}{free})", True
    return f"cannot write {path}: {exc.strerror or exc}", True


def no_room(output: Path) -> Optional[str]:
    """Why a job cannot start writing into `output` (its file system is as good as full), or None."""
    mount = _mount_point(output)
    try:
        stats = os.statvfs(output)
    except OSError:
        return None
    free = stats.f_bavail * stats.f_frsize
    if free >= MIN_FREE_BYTES:
        return None
    return f"no space left on device for the output '{output}' (file system {mount}, {free} bytes free)"


def _mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Rewrite a small file within the blocks it already holds: what still works on a full disk,
    where a new file (the usual write-then-rename) cannot be made."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
