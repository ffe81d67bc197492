"""One benchmark section of docs/benchmarks.md: each section rewrites its own text between its
`<!-- NAME:start -->` and `<!-- NAME:end -->` markers, never the others'."""
from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(doc: Path, section: str, start: str, end: str, after: Sequence[str] = ()) -> None:
    """Replace the text between the markers; a new section goes after the last of the `after` markers
    (end markers of the sections that come before it) found in the document, else after the title."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        found = [text.index(m) + len(m) for m in after if m in text]
        if found:
            at = max(found)
            text = f"{text[:at]}\n\n{section.rstrip(chr(10))}{text[at:]}"
        else:
            title, _, body = text.partition("\n")
            text = f"{title}\n\n{section}\n{body.lstrip(chr(10))}" if title.startswith("# ") else f"{section}\n{text}"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def compose(name: str, title: str, body: str, command: str, started: datetime.datetime, took_s: float) -> str:
    """A whole section: its markers, its title and the line that says how and when it was made."""
    start, end = markers(name)
    return "\n".join([start, f'<a id="{name}"></a>', "", f"## {title}", "",
                      f"Measured by `{command}` on {started:%Y-%m-%d %H:%M} ({took_s:.0f} s).", "",
                      body.rstrip("\n"), end]) + "\n"


def command_line(script: str) -> str:
    """The command that produced a section, as a user would type it from the repository."""
    python = Path(sys.executable)
    shown = os.path.relpath(python, REPO) if python.is_relative_to(REPO) else str(python)
    return " ".join([shown, script, *sys.argv[1:]])
