"""A ParallelRunStep-style script that imports every Azure ML module mpibatch shims, beside a real
`azureml` namespace package (azureml-telemetry), and reads every attribute of mini_batch_context."""
import os

import azureml.core
import azureml.telemetry
from azureml.core import Model, Run
from azureml.core.model import Model as ModelToo
from azureml.exceptions import ModelNotFoundException
from azureml_user.parallel_run import EntryScript


def init():
    global g_model
    log = EntryScript().logger
    log.info("azureml.telemetry from %s", azureml.telemetry.__file__)
    log.info("azureml.core from %s", azureml.core.__file__)
    g_model = open(ModelToo.get_model_path("sizes")).read().strip()
    try:
        Model.get_model_path("unknown")
    except ModelNotFoundException as exc:
        log.info("caught %s", type(exc).__name__)
    Run.get_context().log("namespace", "ok")


def run(mini_batch, mini_batch_context):
    ctx = mini_batch_context
    dataset = ctx.dataset
    print(f"dataset = {dataset}")
    assert dataset.to_path() == list(mini_batch)
    return [f"{g_model} {ctx.minibatch_index} {ctx.partition_key_value['user']} {len(dataset.to_path())} "
            f"{os.path.basename(path)}" for path in mini_batch]
