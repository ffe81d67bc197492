"""Train the demo's small Keras CNN on rendered digits: `python -m mpibatch.demo.model PATH`.

Run in its own process, so the coordinator never imports TensorFlow. Written against Keras 3 alone,
so `KERAS_BACKEND=torch` (or jax) trains and scores it on whatever that framework finds, a GPU too.
"""
from __future__ import annotations

import os
import sys
import time

TRAIN_IMAGES = 12000
TRAIN_SEED = 20261124  # not the seed of the images the demo scores


def train(path: str, count: int = TRAIN_IMAGES, epochs: int = 5) -> float:
    """Fit and save the model; returns its accuracy on held-out rendered digits."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import numpy as np
    import keras

    from .digits import make_arrays

    keras.utils.set_random_seed(TRAIN_SEED)
    images, labels = make_arrays(count, TRAIN_SEED)
    x = images[..., None].astype(np.float32) / 255.0
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:-1000], labels[:-1000], epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x[-1000:], labels[-1000:], verbose=0)[1])
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)
    return accuracy


if __name__ == "__main__":
    started = time.time()
    acc = train(sys.argv[1])
    print(f"trained the digit model in {time.time() - started:.1f} s (held-out accuracy {acc:.3f})")
