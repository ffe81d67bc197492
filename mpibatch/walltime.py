"""Temporary alias (issue 20): engine/ imports this name until it follows the move to cluster/."""
import sys

from .cluster import walltime as _moved

sys.modules[__name__] = _moved
