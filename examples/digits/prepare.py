"""Make the digits example's input and model beside this file: data/images/*.png and data/mnist.keras.

The images and the trained model come from the demo's cache (made once; training takes under a minute).
Usage: python examples/digits/prepare.py [IMAGES]
"""
import shutil
import sys
from pathlib import Path

from mpibatch.demo.runner import prepare

here = Path(__file__).resolve().parent / "data"
images, labels, model = prepare(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
shutil.rmtree(here, ignore_errors=True)
shutil.copytree(images, here / "images")
shutil.copy(labels, here / "labels.csv")
shutil.copy(model, here / "mnist.keras")
print(f"input: {here / 'images'}, model: {here / 'mnist.keras'}")
