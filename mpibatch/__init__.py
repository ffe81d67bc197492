"""mpibatch: run an entry script over a huge dataset on MPI ranks (ParallelRunStep for HPC).

Importing mpibatch is cheap and never imports mpi4py, pandas, pydantic or TensorFlow: the entry-script
process imports it for EntryScript. Job, Run and ConfigError (driving jobs from Python) load when first used.
"""
from __future__ import annotations

from functools import lru_cache

from .script.entry import EntryScript

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it from here
__all__ = ["ConfigError", "EntryScript", "Job", "JobFailed", "Run", "__version__", "installed_version"]
_LAZY = {"Job": "api.job", "Run": "api.run", "JobFailed": "api.run", "ConfigError": "config"}  # driving jobs from Python: imported when used


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mpibatch' has no attribute {name!r}")


@lru_cache(maxsize=None)  # (functools.cache: Python 3.9+; the entry-script side supports 3.8)
def installed_version() -> str:
    """The version of the installed distribution (what pip reports), else __version__ (a bare checkout).
    Looked up once (0.24 ms): rank 0 writes it into every progress snapshot."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mpibatch")
    except PackageNotFoundError:
        return __version__
