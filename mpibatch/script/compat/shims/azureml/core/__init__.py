"""`from azureml.core import Model, Run` for entry scripts under mpibatch."""
from .model import Model
from .run import Run

__all__ = ["Model", "Run"]
