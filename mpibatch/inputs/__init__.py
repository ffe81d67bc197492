"""Listing a job's inputs into items, and planning them into mini-batches (plan.py: deterministic ids,
descriptors, never data); reading a mini-batch's slices back (read.py) in the worker or its child.

The entry-script process imports read.py from here and nothing else: listing (files.py, tabular.py)
needs the runner's packages (pydantic, numpy), which a script's own environment may lack
(script/script_env.py). These modules import the standard library, the shared vocabulary (records, text)
and config; never output, script, cluster, engine, api or cli.
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
    """List every input of a job: file inputs to paths, tabular inputs to table files, MLTables as they say
    (mltable.py); a local file that several paths or inputs reach is listed once (files.py), with one warning."""
    from .files import ListedFiles, list_file_input
    from .mltable import list_mltable_input, mltable_file
    from .tabular import list_tabular_input

    listed = ListedFiles()
    listings = []
    for i, spec in enumerate(specs):
        source = mltable_file(i, spec) if spec.type in ("files", "mltable") else None
        if source is not None:  # a folder holding an MLTable file is read as Azure reads it, never as files
            listings.append(list_mltable_input(i, spec, source, listed))
        elif spec.type == "tabular" or spec.format:
            listings.append(list_tabular_input(i, spec, listed))
        else:
            listings.append(list_file_input(i, spec, listed))
    listed.warn()
    return listings
