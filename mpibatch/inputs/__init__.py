"""Listing a job's inputs into items that the planner splits into mini-batches."""
from .files import InputListing, ListedFiles, list_file_input
from .tabular import TableListing, list_tabular_input

__all__ = ["InputListing", "TableListing", "list_inputs"]


def list_inputs(specs: list) -> list[InputListing]:
    """List every input of a job: file inputs to paths, tabular inputs to table files; a local file
    that several paths or inputs reach is listed once (files.py), with one warning for all."""
    listed = ListedFiles()
    listings = [list_tabular_input(i, spec, listed) if spec.type == "tabular" or spec.format
                else list_file_input(i, spec, listed) for i, spec in enumerate(specs)]
    listed.warn()
    return listings
