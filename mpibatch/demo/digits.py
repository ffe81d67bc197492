"""MNIST-style 28x28 grayscale digits rendered from Pillow's built-in TrueType font, jittered."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def render_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 uint8 image: random size, stroke, rotation, aspect, position and noise."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=int(rng.integers(20, 34)))
    canvas = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(canvas).text((32, 32), str(digit), fill=255, font=font, anchor="mm",
                                stroke_width=int(rng.choice([0, 0, 1, 2])), stroke_fill=255)
    canvas = canvas.rotate(float(rng.uniform(-18, 18)), resample=Image.BILINEAR)
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, float(rng.uniform(-0.3, 0.3)), -10, 0, 1, 0),
                              resample=Image.BILINEAR)  # slant
    box = canvas.getbbox() or (0, 0, 64, 64)
    glyph = canvas.crop(box)
    scale = 20.0 / max(glyph.size) * float(rng.uniform(0.75, 1.0))
    width = max(1, int(glyph.size[0] * scale * rng.uniform(0.8, 1.15)))
    height = max(1, int(glyph.size[1] * scale))
    glyph = glyph.resize((min(width, 26), min(height, 26)), Image.LANCZOS)
    image = Image.new("L", (28, 28), 0)
    x = (28 - glyph.size[0]) // 2 + int(rng.integers(-2, 3))
    y = (28 - glyph.size[1]) // 2 + int(rng.integers(-2, 3))
    image.paste(glyph, (min(max(x, 0), 28 - glyph.size[0]), min(max(y, 0), 28 - glyph.size[1])))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(0, 18), (28, 28))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels in memory, for training."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    return np.stack([render_digit(int(d), rng) for d in labels]), labels


def write_images(folder: Path, count: int, seed: int) -> Path:
    """PNG files digit-NNNNN.png and labels.csv beside them; returns the labels file."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images, labels = make_arrays(count, seed)
    rows = []
    for i, (pixels, label) in enumerate(zip(images, labels)):
        name = f"digit-{i:05d}.png"
        Image.fromarray(pixels).save(folder / name)
        rows.append((name, int(label)))
    labels_file = folder.parent / f"{folder.name}.labels.csv"
    with open(labels_file, "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label"), *rows])
    return labels_file
