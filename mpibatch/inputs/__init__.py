"""Listing a job's inputs into items that the planner splits into mini-batches."""
from .files import InputListing, list_file_input
from .tabular import TableListing, list_tabular_input

__all__ = ["InputListing", "TableListing", "list_inputs"]


def list_inputs(specs: list) -> list[InputListing]:
    """List every input of a job: file inputs to paths, tabular inputs to table files."""
    return [list_tabular_input(i, spec) if spec.type == "tabular" or spec.format else list_file_input(i, spec)
            for i, spec in enumerate(specs)]
