"""File inputs: paths, recursive directories, globs, filelists and fsspec URLs, listed deterministically."""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ..config import ConfigError, InputSpec, is_url

GLOB_CHARS = set("*?[")


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


def _local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _walk(root: str, seen: Optional[set[tuple[int, int]]] = None) -> Iterable[os.DirEntry]:
    """Every file under root, recursively, in sorted order; a folder reached twice (a symlink loop) once."""
    seen = set() if seen is None else seen
    st = os.stat(root)
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except PermissionError as exc:
        raise ConfigError(f"inputs: cannot read directory '{root}': {exc.strerror}") from None
    for entry in entries:
        if entry.is_dir():
            yield from _walk(entry.path, seen)
        elif entry.is_file():
            yield entry


class _Digest:
    """A running sha256 over (path, size, mtime) records."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, path: str, size: Any = "", mtime: Any = "") -> None:
        self._hash.update(f"{path}\0{size}\0{mtime}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _list_local(spec: InputSpec, where: str, digest: _Digest) -> list[str]:
    path = _local_path(spec.path)
    if GLOB_CHARS & set(path):
        items = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not items:
            raise ConfigError(f"{where}: pattern '{path}' matches no files")
        for item in items:
            st = os.stat(item)
            digest.add(item, st.st_size, st.st_mtime_ns)
        return items
    if os.path.isdir(path):
        items = []
        for entry in _walk(path):
            st = entry.stat()
            digest.add(entry.path, st.st_size, st.st_mtime_ns)
            items.append(entry.path)
        if not items:
            raise ConfigError(f"{where}: directory '{path}' holds no files")
        return items
    if os.path.isfile(path):
        st = os.stat(path)
        digest.add(path, st.st_size, st.st_mtime_ns)
        return [path]
    raise ConfigError(f"{where}: path '{path}' does not exist")


def _list_filelist(spec: InputSpec, where: str, digest: _Digest) -> list[str]:
    """A text file of paths, one per line; relative ones are relative to the filelist's folder."""
    source = _local_path(spec.path)
    if is_url(source):
        import fsspec

        try:
            with fsspec.open(source, "rt", **spec.storage_options) as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ConfigError(f"{where}: filelist '{source}' does not exist") from None
        except Exception as exc:  # noqa: BLE001 - storage SDKs raise their own errors (a wrong key, no access)
            raise ConfigError(f"{where}: cannot read filelist '{source}': {_one_line(exc)}") from None
        base = source.rsplit("/", 1)[0]
    else:
        if not os.path.isfile(source):
            raise ConfigError(f"{where}: filelist '{source}' does not exist")
        text = Path(source).read_text()
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


def list_file_input(index: int, spec: InputSpec) -> InputListing:
    """List one file or filelist input."""
    where = f"inputs[{index}]"
    digest = _Digest()
    remote = is_url(_local_path(spec.path)) and spec.type != "filelist"
    if spec.type == "filelist":
        items = _list_filelist(spec, where, digest)
        remote = any(is_url(i) for i in items)
    elif remote:
        items = _list_remote(spec, where, digest)
    else:
        items = _list_local(spec, where, digest)
    name = spec.name or Path(_local_path(spec.path).split("::")[0].rstrip("/")).name or f"input{index}"
    url = spec.path if remote and spec.type != "filelist" else None
    return InputListing(index, name, items, digest.hexdigest(), remote, dict(spec.storage_options), url)
