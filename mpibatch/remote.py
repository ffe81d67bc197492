"""Temporary alias (issue 20): engine/ imports this name until it follows the move to output/."""
import sys

from .output import remote as _moved

sys.modules[__name__] = _moved
