"""Write the example's input beside this file: data/ with 400 small text files of random words."""
import random
from pathlib import Path

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
folder = Path(__file__).resolve().parent / "data"
if not folder.exists():
    rng = random.Random(7)
    for book in range(8):
        shelf = folder / f"shelf{book}"
        shelf.mkdir(parents=True)
        for page in range(50):
            lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(5, 40))]
            (shelf / f"page{page:03d}.txt").write_text("\n".join(lines) + "\n")
print(f"input: {folder} (400 files)")
