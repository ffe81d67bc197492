"""A ParallelRunStep digit-identification script written as the Azure ML samples are (compat fixture).

Its "model" is a file of ten mean digit images registered as `mnist`; it needs no TensorFlow.
"""
import os

import numpy as np
from azureml.core import Run
from azureml.core.model import Model
from azureml_user.parallel_run import EntryScript
from PIL import Image


def init():
    global g_templates, g_run
    model_path = Model.get_model_path("mnist")
    g_templates = np.load(model_path)
    g_run = Run.get_context()
    EntryScript().logger.info("loaded %s", model_path)


def run(mini_batch):
    print(f"run method start: {__file__}, run({mini_batch})")
    resultList = []
    for image in mini_batch:
        data = np.array(Image.open(image), dtype=np.float32).reshape((1, 784)) / 255.0
        best_result = np.argmin(((g_templates - data) ** 2).sum(axis=1))
        resultList.append("{}: {}".format(os.path.basename(image), best_result))
    g_run.log("scored", len(resultList))
    return resultList
