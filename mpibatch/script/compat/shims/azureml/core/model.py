"""Model.get_model_path(name) reads the job's `models:` mapping instead of a workspace."""
from __future__ import annotations

import json
import os
from typing import Optional

from azureml.exceptions import ModelNotFoundException


class Model:
    """The registered-model lookup of Azure ML, answered from `models:` in job.yaml."""

    def __init__(self, workspace: object = None, name: Optional[str] = None, **_: object) -> None:
        self.name = name
        self.path = Model.get_model_path(name) if name else None

    @staticmethod
    def get_model_path(model_name: str, version: Optional[int] = None, _workspace: object = None) -> str:
        models = json.loads(os.environ.get("MPIBATCH_MODELS", "{}"))
        if model_name not in models:
            known = ", ".join(sorted(models)) or "none (add them under models: in the job)"
            raise ModelNotFoundException(
                f"ModelNotFoundException: Model with name {model_name} not found in provided workspace; "
                f"known models: {known}")
        return models[model_name]
