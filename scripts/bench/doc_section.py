"""One benchmark's section of docs/benchmarks.md: each script rewrites its own, never the others'."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_section(doc: Path, section: str, start: str, end: str) -> None:
    """Replace the text between the markers, or add the section after the title; the rest stays."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{section}\n{body.lstrip(chr(10))}" if title.startswith("# ") else f"{section}\n{text}"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def command_line(script: str) -> str:
    """The command that produced a section, as a user would type it from the repository."""
    python = Path(sys.executable)
    shown = os.path.relpath(python, REPO) if python.is_relative_to(REPO) else str(python)
    return " ".join([shown, script, *sys.argv[1:]])
