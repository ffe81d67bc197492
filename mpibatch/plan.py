"""Temporary alias (issue 20): engine/ imports this name until it follows the move to inputs/."""
import sys

from .inputs import plan as _moved

sys.modules[__name__] = _moved
