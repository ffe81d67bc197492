"""File inputs: paths, recursive directories, globs, filelists and fsspec URLs, listed deterministically.

Local files are listed once each, keyed by (st_dev, st_ino) from the stat the digest needs anyway: a
file that a symlink, a hard link or an overlapping input reaches again keeps the first path that
reached it (inputs in order, each input's paths sorted), and the job warns once with a count.
Folders, and globs' `**`, enter each folder once, so a symlink loop ends. Broken symbolic links and
entries that are not files (FIFOs, sockets, devices) inside a folder or glob are skipped with one
warning; given as an input themselves, they are refused and named. A filelist's lines are taken as
written (a million-line filelist is never stat'ed): they are not deduplicated.
A name that is not UTF-8 is an item like any other: a str with surrogates (os.fsdecode), hashed as its bytes.
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from ..config import ConfigError, InputSpec, is_url
from ..text import escape

GLOB_CHARS = set("*?[")

log = logging.getLogger("mpibatch.plan")  # job.prepare() keeps its records for rank 0's log and shows warnings


@dataclass(frozen=True)
class InputListing:
    """Every item of one input, in a stable order, with a digest that changes when they do."""

    index: int
    name: str
    items: list[str]
    digest: str
    remote: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)
    url: Optional[str] = None  # a remote input's fsspec URL; its items are paths inside that filesystem


class _Digest:
    """A running sha256 over (path, size, mtime) records."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, path: str, size: Any = "", mtime: Any = "") -> None:
        self._hash.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass
class ListedFiles:
    """The local files a job has listed so far, by device and inode, and what listing left out."""

    first_path: dict[int, str] = field(default_factory=dict)  # (st_dev << 64 | st_ino) -> the path that listed it
    duplicates: int = 0
    duplicate_example: tuple[str, str] = ("", "")
    skipped: dict[str, dict[tuple[int, int], str]] = field(default_factory=dict)  # "FIFO"... -> (dev, ino) -> path

    def add_new(self, found: Iterable[tuple[str, os.stat_result]], digest: _Digest) -> list[str]:
        """The paths of `found` whose file no earlier path of this job reached, added to the digest;
        the others are counted (one dict look-up per file: the stat is the one the digest needs)."""
        items: list[str] = []
        first_path, add = self.first_path, digest.add
        for path, st in found:
            key = st.st_dev << 64 | st.st_ino
            first = first_path.get(key)
            if first is None:
                first_path[key] = path
                add(path, st.st_size, st.st_mtime_ns)
                items.append(path)
            else:
                if not self.duplicates:
                    self.duplicate_example = (path, first)
                self.duplicates += 1
        return items

    def skip(self, path: str) -> None:
        """Count an entry that is not a file (once, however many paths reach it)."""
        try:
            st = os.lstat(path)
        except OSError:  # gone since the scan
            return
        self.skipped.setdefault(what_is(path), {}).setdefault((st.st_dev, st.st_ino), path)

    def warn(self) -> None:
        """One warning line for the dropped duplicates, one for the skipped entries."""
        if self.duplicates:
            path, first = self.duplicate_example
            log.warning("inputs: %d path%s reach a file listed already (a symbolic or hard link, or overlapping "
                        "inputs): each file is processed once, under the first path that reached it "
                        "(e.g. '%s' is '%s')", self.duplicates, "s" * (self.duplicates != 1), escape(path),
                        escape(first))
        if self.skipped:
            kinds = ", ".join(f"{len(paths)} {kind}{'s' * (len(paths) != 1)} (e.g. '{escape(next(iter(paths.values())))}')"
                              for kind, paths in sorted(self.skipped.items()))
            log.warning("inputs: skipped what is not a file: %s", kinds)


_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFDIR: "folder", stat.S_IFREG: "file"}


def what_is(path: str) -> str:
    """What a path is, in words, without opening it (a FIFO would block): "file", "folder", "FIFO",
    "symlink loop", "broken symbolic link", "missing"..."""
    try:
        return _KINDS.get(stat.S_IFMT(os.stat(path).st_mode), "special file")
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return f"unreadable path ({exc.strerror})"


def describe(path: str, wanted: str) -> str:
    """A path that is not what was `wanted`, said as a user knows it: "'X' does not exist",
    "'X' is a FIFO, not a Python file", "'X' is a symlink loop"."""
    kind = what_is(path)
    shown = f"'{escape(path)}'"
    if kind == "missing":
        return f"{shown} does not exist"
    if kind == "broken symbolic link":
        return f"{shown} is a broken symbolic link (to '{escape(os.readlink(path))}')"
    if kind == "symlink loop" or kind.startswith("unreadable"):
        return f"{shown} is a {kind}"
    return f"{shown} is a {kind}, not {wanted}"


def _local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop
        return False


def _walk(root: str, listed: ListedFiles, seen: Optional[set[tuple[int, int]]] = None
          ) -> Iterator[tuple[str, os.stat_result]]:
    """Every file under root with its stat, recursively, in sorted order; a folder reached twice (a
    symlink loop) once; what is not a file or folder is counted in `listed`."""
    seen = set() if seen is None else seen
    st = os.stat(root)
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except PermissionError as exc:
        raise ConfigError(f"inputs: cannot read directory '{escape(root)}': {exc.strerror}") from None
    for entry in entries:
        try:
            if entry.is_file():
                yield entry.path, entry.stat()
                continue
            if entry.is_dir():
                yield from _walk(entry.path, listed, seen)
                continue
        except OSError:  # a symlink loop, or gone since the scan
            pass
        listed.skip(entry.path)


def _join(base: str, name: str) -> str:
    return os.path.join(base, name) if base else name


def _folders(base: str, seen: set[tuple[int, int]]) -> Iterator[str]:
    """`**`: base and every folder under it that is not hidden, depth first in name order, each once."""
    try:
        st = os.stat(base or ".")
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        entries = sorted(os.scandir(base or "."), key=lambda e: e.name)
    except OSError:
        return
    yield base
    for entry in entries:
        if entry.name[0] != "." and _is_dir(entry):
            yield from _folders(_join(base, entry.name), seen)


def _matches(base: str, parts: list[str]) -> Iterator[str]:
    """The paths under base that match the pattern's remaining parts, as glob.glob(recursive=True)
    finds them (`*` and `**` skip hidden names), except that one `**` enters each folder once."""
    if not parts:
        yield base
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        seen: set[tuple[int, int]] = set()
        for folder in _folders(base, seen):
            yield from _matches(folder, rest or ["*"])
        return
    if not GLOB_CHARS & set(part):
        yield from _matches(_join(base, part), rest)
        return
    try:
        entries = sorted(os.scandir(base or "."), key=lambda e: e.name)
    except OSError:
        return
    names = [e.name for e in entries if part[0] == "." or e.name[0] != "."]
    wanted = set(fnmatch.filter(names, part))
    for entry in entries:
        if entry.name in wanted and (not rest or _is_dir(entry)):
            yield from _matches(_join(base, entry.name), rest)


def glob_files(pattern: str) -> list[str]:
    """Every path a local glob pattern matches, sorted (files and what is not: the caller stats them)."""
    absolute = pattern.startswith("/")
    return sorted(_matches("/" if absolute else "", [p for p in pattern.split("/") if p]))


def _list_local(spec: InputSpec, where: str, digest: _Digest, listed: ListedFiles) -> list[str]:
    path = _local_path(spec.path)
    duplicates_before = listed.duplicates
    if GLOB_CHARS & set(path):
        items = listed.add_new(_glob_stats(path, listed), digest)
        if not items and listed.duplicates == duplicates_before:
            raise ConfigError(f"{where}: pattern '{escape(path)}' matches no files")
        return items
    try:
        st = os.stat(path)
    except OSError:
        raise ConfigError(f"{where}: {describe(path, 'a file or folder')}") from None
    if stat.S_ISDIR(st.st_mode):
        items = listed.add_new(_walk(path, listed), digest)
        if not items and listed.duplicates == duplicates_before:
            raise ConfigError(f"{where}: directory '{escape(path)}' holds no files")
        return items
    if stat.S_ISREG(st.st_mode):
        return listed.add_new([(path, st)], digest)
    raise ConfigError(f"{where}: {describe(path, 'a file or folder')}")


def _glob_stats(pattern: str, listed: ListedFiles) -> Iterator[tuple[str, os.stat_result]]:
    """The files a glob matches with their stat; what is neither file nor folder is counted in `listed`."""
    for item in glob_files(pattern):
        try:
            st = os.stat(item)
        except OSError:
            listed.skip(item)
            continue
        if stat.S_ISREG(st.st_mode):
            yield item, st
        elif not stat.S_ISDIR(st.st_mode):
            listed.skip(item)


def _list_filelist(spec: InputSpec, where: str, digest: _Digest) -> list[str]:
    """A text file of paths, one per line; relative ones are relative to the filelist's folder."""
    source = _local_path(spec.path)
    if is_url(source):
        import fsspec

        try:
            with fsspec.open(source, "rt", encoding="utf-8", errors="surrogateescape", **spec.storage_options) as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ConfigError(f"{where}: filelist '{source}' does not exist") from None
        except Exception as exc:  # noqa: BLE001 - storage SDKs raise their own errors (a wrong key, no access)
            raise ConfigError(f"{where}: cannot read filelist '{source}': {_one_line(exc)}") from None
        base = source.rsplit("/", 1)[0]
    else:
        if not os.path.isfile(source):
            raise ConfigError(f"{where}: filelist {describe(source, 'a text file of paths')}")
        text = Path(source).read_text(encoding="utf-8", errors="surrogateescape")  # a listed name need not be UTF-8
        base = os.path.dirname(source)
    digest.add(base, text)  # the same text from the same place lists the same files
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] == "#":
            continue
        if line[0] != "/":  # (a fast test first: a million-line filelist is mostly absolute paths)
            if line.startswith("file://"):
                line = line[len("file://"):]
            elif not is_url(line):
                line = f"{base}/{line}" if is_url(base) else os.path.normpath(os.path.join(base, line))
        items.append(line)
    if not items:
        raise ConfigError(f"{where}: filelist '{source}' lists no files")
    return items


def _one_line(exc: BaseException) -> str:
    """The first line of an error (Azure's carry the whole HTTP response after it)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _list_remote(spec: InputSpec, where: str, digest: _Digest) -> list[str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(spec.path, **spec.storage_options)
    except Exception as exc:  # noqa: BLE001 - a missing backend, a malformed connection string...
        raise ConfigError(f"{where}: cannot open '{spec.path}': {_one_line(exc)}") from None
    try:
        if GLOB_CHARS & set(path):
            found = fs.glob(path, detail=True)
        elif fs.isdir(path):
            found = fs.find(path, detail=True)
        elif fs.isfile(path):
            found = {path: fs.info(path)}
        else:
            raise ConfigError(f"{where}: path '{spec.path}' does not exist")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - storage SDKs raise their own errors (a wrong key, no access)
        raise ConfigError(f"{where}: cannot list '{spec.path}': {_one_line(exc)}") from None
    items = []
    for name in sorted(found):
        info = found[name]
        if info.get("type", "file") != "file":
            continue
        digest.add(name, info.get("size", ""), info.get("mtime", info.get("last_modified", info.get("etag", ""))))
        items.append(name)
    if not items:
        raise ConfigError(f"{where}: '{spec.path}' holds no files")
    return items


def list_file_input(index: int, spec: InputSpec, listed: Optional[ListedFiles] = None) -> InputListing:
    """List one file or filelist input; `listed` holds the files that earlier inputs of the job listed."""
    where = f"inputs[{index}]"
    listed = ListedFiles() if listed is None else listed
    digest = _Digest()
    remote = is_url(_local_path(spec.path)) and spec.type != "filelist"
    if spec.type == "filelist":
        items = _list_filelist(spec, where, digest)
        remote = any(is_url(i) for i in items)
    elif remote:
        items = _list_remote(spec, where, digest)
    else:
        items = _list_local(spec, where, digest, listed)
    name = escape(spec.name or Path(_local_path(spec.path).split("::")[0].rstrip("/")).name or f"input{index}")
    url = spec.path if remote and spec.type != "filelist" else None
    return InputListing(index, name, items, digest.hexdigest(), remote, dict(spec.storage_options), url)
