"""`compat: azureml`: shims that let Azure ML entry scripts run unchanged.

Only modules that nothing installed provides are shimmed, one module at a time: a finder at the end
of sys.meta_path answers for `azureml.*` and `azureml_user.*` names that every other finder missed.
So a real `azureml` namespace package (azureml-telemetry, azureml-dataprep ...) and our `azureml.core`
live side by side, and a real azureml-core always wins. For a real azureml-core, `models:` is laid out
as its offline cache (`AML_APP_ROOT/azureml-models/NAME/1/FILE`), which its Model.get_model_path reads.
It is all set up inside the entry-script process only, in compat mode only.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

HERE = Path(__file__).parent
MODELS_VARIABLE = "MPIBATCH_MODELS"
MODEL_VERSION = "1"
_ROOTS = {"azureml": HERE / "shims", "azureml_user": HERE / "shims_user"}


class ShimFinder(importlib.abc.MetaPathFinder):
    """Finds a shim for an `azureml` / `azureml_user` module that no earlier finder found."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        parts = fullname.split(".")
        root = _ROOTS.get(parts[0])
        if root is None:
            return None
        where = root.joinpath(*parts)
        if (where / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(fullname, where / "__init__.py",
                                                          submodule_search_locations=[str(where)])
        if where.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(fullname, where.with_suffix(".py"))
        return None


def activate(mode: str, models: dict[str, str], models_root: str,
             user_environment: Optional[Mapping[str, str]] = None) -> None:
    """Make the Azure ML modules the entry script imports findable, and `models:` findable by them.

    `models_root` is a folder of this process (the rank's scratch folder) where the offline model cache
    is laid out; variables the job sets itself (environment_variables) are left as they are."""
    if mode != "azureml":
        raise ValueError(f"unknown compat mode {mode!r}")
    os.environ[MODELS_VARIABLE] = json.dumps(models)
    for name, value in lay_out_models(models, Path(models_root)).items():
        if name not in (user_environment or {}):
            os.environ[name] = value
    if not any(isinstance(finder, ShimFinder) for finder in sys.meta_path):
        sys.meta_path.append(ShimFinder())


def lay_out_models(models: dict[str, str], root: Path) -> dict[str, str]:
    """`root/azureml-models/NAME/1/BASENAME` -> the model's file or folder, as Azure ML's offline model
    cache holds it; returns the variables that point Azure's code there: AML_APP_ROOT (read by
    azureml.core.model when it is imported) and AZUREML_MODEL_DIR (the version folder of a single
    model, else the cache, as Azure ML sets it)."""
    cache = root / "azureml-models"
    for name, path in models.items():
        target = Path(os.path.abspath(path))
        version = cache / name / MODEL_VERSION
        version.mkdir(parents=True, exist_ok=True)
        link = version / (target.name or name)
        if not link.is_symlink():  # a restarted entry-script process finds it laid out already
            link.symlink_to(target, target_is_directory=target.is_dir())
    if not models:
        return {}
    single = cache / next(iter(models)) / MODEL_VERSION if len(models) == 1 else cache
    return {"AML_APP_ROOT": str(root), "AZUREML_MODEL_DIR": str(single)}
