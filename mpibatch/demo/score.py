"""The demo's entry script, written as the Azure ML digit-identification sample is (compat: azureml)."""
import os

import numpy as np
from PIL import Image
from azureml.core import Model


def init():
    global model
    import tensorflow as tf

    # mpibatch sets OMP_NUM_THREADS to threads_per_worker; TensorFlow's own pools need telling
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    model = tf.keras.models.load_model(Model.get_model_path("mnist"))


def run(mini_batch):
    images = np.stack([np.asarray(Image.open(path), dtype=np.float32) / 255.0 for path in mini_batch])
    probabilities = model(images[..., None], training=False).numpy()
    return [f"{os.path.basename(path)}: {int(np.argmax(p))}" for path, p in zip(mini_batch, probabilities)]
