"""`from azureml_user.parallel_run import EntryScript` gives mpibatch's EntryScript."""
from mpibatch import EntryScript

__all__ = ["EntryScript"]
