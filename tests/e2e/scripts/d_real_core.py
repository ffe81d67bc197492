"""A ParallelRunStep-style script that loads its models with the REAL azureml-core's Model.get_model_path
(no workspace: its offline cache, which mpibatch lays out from `models:`), a file model and a folder model
(as the notebook's mnist-prs, a folder of checkpoint files)."""
import os

import azureml.core
from azureml.core.model import Model
from azureml_user.parallel_run import EntryScript


def init():
    global g_weights, g_checkpoints
    log = EntryScript().logger
    weights, folder = Model.get_model_path("weights"), Model.get_model_path(model_name="mnist-prs")
    log.info("azureml.core from %s", azureml.core.__file__)
    log.info("weights at %s, mnist-prs at %s, AZUREML_MODEL_DIR %s", weights, folder, os.environ["AZUREML_MODEL_DIR"])
    g_weights = open(weights).read().strip()
    g_checkpoints = ",".join(sorted(os.listdir(folder)))


def run(mini_batch):
    return [f"{os.path.basename(path)} {g_weights} {g_checkpoints}" for path in mini_batch]
