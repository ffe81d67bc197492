"""A remote output folder (az://, s3://, ...) mirrored by a local staging folder.

Everything is written locally as for a local output; the staging folder is pushed to the URL
at commit groups (throttled) and at the end, the result file always before the journal, so
the remote journal never covers bytes the remote result file lacks. Resume pulls it back.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import ConfigError

PUSH_EVERY_S = float(os.environ.get("MPIBATCH_REMOTE_PUSH_S", "30"))


def staging_folder(url: str) -> Path:
    """Where a remote output is staged on this node; the same path on every node."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mpibatch-output-{digest}"


@dataclass
class RemoteOutput:
    """Pushes and pulls files between a staging folder and the output URL."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    _fs: Any = None
    _root: str = ""
    _last_push: float = 0.0

    @property
    def staging(self) -> Path:
        return staging_folder(self.url)

    def _connect(self) -> tuple[Any, str]:
        if self._fs is None:
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            self._root = self._root.rstrip("/")
        return self._fs, self._root

    def pull(self) -> None:
        """Make the staging folder a copy of what the URL holds (nothing, for a new output)."""
        try:
            fs, root = self._connect()
            exists = fs.exists(root)
        except Exception as exc:  # noqa: BLE001 - any connection or credential error
            raise ConfigError(f"output: cannot reach '{self.url}': {type(exc).__name__}: {exc}") from None
        self._refuse_if_running()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        if not exists:
            return
        for remote in fs.find(root):
            local = self.staging / os.path.relpath(remote, root)
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))

    def _refuse_if_running(self) -> None:
        """A job on this node still writing into the staging folder must not lose it."""
        lock = self.staging / ".mpibatch" / "lock"
        if not lock.exists():
            return
        with open(lock, "rb+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fh.read().decode(errors="replace").strip()
                raise ConfigError(f"output '{self.url}' is in use by another running job ({holder})") from None
            fcntl.flock(fh, fcntl.LOCK_UN)

    def push(self, paths: Iterable[Path]) -> None:
        """Upload these staged files, in this order."""
        fs, root = self._connect()
        for path in paths:
            if path.exists():
                target = f"{root}/{path.relative_to(self.staging).as_posix()}"
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(path), target)
        self._last_push = time.monotonic()

    def push_due(self) -> bool:
        return time.monotonic() - self._last_push >= PUSH_EVERY_S

    def push_all(self, first: Iterable[Path] = ()) -> None:
        """Upload the whole staging folder, the given files first (the result before the journal)."""
        first = list(first)
        rest = sorted(p for p in self.staging.rglob("*") if p.is_file() and p not in first and p.name != "lock")
        self.push([*first, *rest])
