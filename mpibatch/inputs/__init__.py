"""Listing a job's inputs into items that the planner splits into mini-batches."""
from .files import InputListing, list_inputs

__all__ = ["InputListing", "list_inputs"]
