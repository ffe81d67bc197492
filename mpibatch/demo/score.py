"""The demo's entry script, written as the Azure ML digit-identification sample is (compat: azureml)."""
import os

import keras
import numpy as np
from PIL import Image
from azureml.core import Model


def init():
    global model
    # mpibatch sets OMP_NUM_THREADS to threads_per_worker (PyTorch and JAX honour it);
    # TensorFlow's own pools need telling
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    if threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.models.load_model(Model.get_model_path("mnist"))


def run(mini_batch):
    images = np.stack([np.asarray(Image.open(path), dtype=np.float32) / 255.0 for path in mini_batch])
    probabilities = keras.ops.convert_to_numpy(model(images[..., None], training=False))
    return [f"{os.path.basename(path)}: {int(np.argmax(p))}" for path, p in zip(mini_batch, probabilities)]
