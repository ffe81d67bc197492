"""The demo section's baseline: the demo's model scoring the demo's images in one plain process.

    python demo_plain.py IMAGES [--batch 5]

The same images, model and per-mini-batch code as mpibatch's demo entry script (mpibatch/demo/
score.py), in a loop, with the Keras backend's default threads (all cores; KERAS_BACKEND picks it). Timed from the first batch to
the last, after the model is loaded. Prints one JSON line: {"items": N, "seconds": S}.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", type=int)
    parser.add_argument("--batch", type=int, default=5)
    args = parser.parse_args()
    from mpibatch.demo.runner import prepare

    folder, _labels, model_path = prepare(args.images)
    import numpy as np
    import keras
    from PIL import Image

    model = keras.models.load_model(model_path)
    paths = sorted(str(p) for p in folder.iterdir())
    started = time.perf_counter()
    lines = []
    for i in range(0, len(paths), args.batch):
        batch = paths[i:i + args.batch]
        images = np.stack([np.asarray(Image.open(path), dtype=np.float32) / 255.0 for path in batch])
        probabilities = keras.ops.convert_to_numpy(model(images[..., None], training=False))
        lines += [f"{os.path.basename(path)}: {int(np.argmax(p))}" for path, p in zip(batch, probabilities)]
    seconds = time.perf_counter() - started
    print(json.dumps({"items": len(lines), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
