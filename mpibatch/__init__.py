"""mpibatch: run an entry script over a huge dataset on MPI ranks (ParallelRunStep for HPC).

Importing mpibatch is cheap and never imports mpi4py, pandas or TensorFlow: the entry-script
process imports it for EntryScript.
"""
from .entry import EntryScript

__version__ = "0.1.0"
__all__ = ["EntryScript", "__version__"]
