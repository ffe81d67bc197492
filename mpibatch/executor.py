"""Temporary: the import engine/coordinator.py makes until engine/ follows the move to script/ (issue 20)."""
from .script.inline import InlineExecutor  # noqa: F401
