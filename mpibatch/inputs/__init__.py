"""Listing a job's inputs into items that the planner splits into mini-batches.

The entry-script process imports read.py from here and nothing else: listing (files.py, tabular.py)
needs the runner's packages (pydantic, numpy), which a script's own environment may lack (script_env.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .files import InputListing
    from .tabular import TableListing

__all__ = ["InputListing", "TableListing", "list_inputs"]


def __getattr__(name: str) -> Any:
    if name == "InputListing":
        from .files import InputListing

        return InputListing
    if name == "TableListing":
        from .tabular import TableListing

        return TableListing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_inputs(specs: list) -> list[InputListing]:
    """List every input of a job: file inputs to paths, tabular inputs to table files; a local file
    that several paths or inputs reach is listed once (files.py), with one warning for all."""
    from .files import ListedFiles, list_file_input
    from .tabular import list_tabular_input

    listed = ListedFiles()
    listings = [list_tabular_input(i, spec, listed) if spec.type == "tabular" or spec.format
                else list_file_input(i, spec, listed) for i, spec in enumerate(specs)]
    listed.warn()
    return listings
