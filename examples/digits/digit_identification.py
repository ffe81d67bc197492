"""Digit identification, written as Azure ML's ParallelRunStep sample is; runs unchanged with compat: azureml."""
import os

import numpy as np
from azureml.core import Model
from PIL import Image


def init():
    global g_model
    import tensorflow as tf

    model_path = Model.get_model_path("mnist")
    g_model = tf.keras.models.load_model(model_path)


def run(mini_batch):
    print(f"run method start: {__file__}, run({mini_batch})")
    resultList = []
    for image in mini_batch:
        data = np.asarray(Image.open(image), dtype=np.float32).reshape((1, 28, 28, 1)) / 255.0
        inference_result = g_model(data, training=False).numpy()
        best_result = np.argmax(inference_result)
        resultList.append("{}: {}".format(os.path.basename(image), best_result))
    return resultList
