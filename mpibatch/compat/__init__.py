"""`compat: azureml`: shims that let Azure ML entry scripts run unchanged.

They are put on sys.path only inside the entry-script process, only in compat mode, and only
where no real package of the same name is importable, so an installed azureml always wins.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
MODELS_VARIABLE = "MPIBATCH_MODELS"
_SHIMS = {"azureml": HERE / "shims", "azureml_user": HERE / "shims_user"}


def activate(mode: str, models: dict[str, str]) -> None:
    """Make `azureml.core` and `azureml_user.parallel_run` importable for the entry script."""
    if mode != "azureml":
        raise ValueError(f"unknown compat mode {mode!r}")
    os.environ[MODELS_VARIABLE] = json.dumps(models)
    for package, folder in _SHIMS.items():
        if importlib.util.find_spec(package) is None and str(folder) not in sys.path:
            sys.path.append(str(folder))
