"""The demo's entry script, written as the Azure ML digit-identification sample is (compat: azureml)."""
import os

import numpy as np
from PIL import Image
from azureml.core import Model


def init():
    global model
    import tensorflow as tf

    model = tf.keras.models.load_model(Model.get_model_path("mnist"))


def run(mini_batch):
    images = np.stack([np.asarray(Image.open(path), dtype=np.float32) / 255.0 for path in mini_batch])
    probabilities = model(images[..., None], training=False).numpy()
    return [f"{os.path.basename(path)}: {int(np.argmax(p))}" for path, p in zip(mini_batch, probabilities)]
