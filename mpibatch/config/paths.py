"""What a text must be to name a path, a URL or the result file; where a glob searches."""
from __future__ import annotations

import glob
import itertools
import os
from pathlib import Path
from typing import Optional


def is_url(path: str) -> bool:
    """True for fsspec URLs such as memory://x or az://c/p (file:// included)."""
    return "://" in path


MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096  # Linux NAME_MAX and PATH_MAX
LOGS_DIR, STATE_DIR = "logs", ".mpibatch"  # what mpibatch keeps in an output folder (output.logs.Layout)


def path_problem(value: str) -> Optional[str]:
    """Why a text cannot name a path (empty, or holding a NUL), or None."""
    if not value.strip():
        return "must name a path, not an empty text"
    if "\0" in value:
        return "must not hold a NUL character"
    encoded = value.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        return f"is longer than a path can be ({MAX_NAME_BYTES} bytes a name, {MAX_PATH_BYTES} in all)"
    return None



def _reserved_names() -> frozenset[str]:
    """What mpibatch itself keeps in an output folder, so no result file may take the name."""
    return frozenset({LOGS_DIR.casefold(), STATE_DIR.casefold()})


def result_name_problem(name: str) -> Optional[str]:
    """Why a text cannot be the result file's name in the output folder, or None."""
    if not name.strip():
        return "must name a file, not an empty text"
    if "/" in name or "\0" in name or name in (".", ".."):
        return "must be a plain file name (no '/' or NUL, not '.' or '..')"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_BYTES} bytes long"
    if name.casefold() in _reserved_names():
        return f"'{name}' is a name mpibatch itself uses in the output folder (logs, .mpibatch)"
    return None



def local_path(path: str) -> Optional[str]:
    """The local path of a plain path or a file:// URL; None for a remote URL."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if is_url(path) else path


def glob_root(path: str) -> str:
    """The folder a glob searches (its leading parts without wildcards); the path itself if no glob."""
    parts = list(itertools.takewhile(lambda part: not glob.has_magic(part), Path(path).parts))
    return str(Path(*parts)) if parts else os.sep

