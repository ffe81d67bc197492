"""Run.get_context() gives an offline run whose metrics go to the entry-script log."""
from __future__ import annotations

import os
from typing import Any


class _OfflineRun:
    """What Azure ML returns outside a workspace: metrics are logged, not uploaded."""

    def __init__(self) -> None:
        self.id = f"OfflineRun_{os.getpid()}"
        self.tags: dict[str, Any] = {}

    @property
    def _logger(self):  # type: ignore[no-untyped-def]
        from mpibatch import EntryScript

        return EntryScript().logger

    def log(self, name: str, value: Any, description: str = "", step: Any = None) -> None:
        self._logger.info("metric %s = %r", name, value)

    def log_row(self, name: str, description: str = "", **kwargs: Any) -> None:
        self._logger.info("metric %s row %r", name, kwargs)

    def log_list(self, name: str, value: list, description: str = "") -> None:
        self._logger.info("metric %s list %r", name, value)

    def log_table(self, name: str, value: dict, description: str = "") -> None:
        self._logger.info("metric %s table %r", name, value)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update(tags)

    def tag(self, key: str, value: Any = None) -> None:
        self.tags[key] = value

    def get_context(self) -> "_OfflineRun":
        return self


class Run:
    """`Run.get_context()` is all an entry script needs from Run."""

    @staticmethod
    def get_context(allow_offline: bool = True, **_: Any) -> _OfflineRun:
        return _OfflineRun()
