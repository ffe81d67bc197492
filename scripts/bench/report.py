"""What a section hands back and how it reads in docs/benchmarks.md: targets and their verdicts,
markdown tables, plots, and the section's own text between its `<!-- NAME:start -->` and
`<!-- NAME:end -->` markers, never touching the others'."""
from __future__ import annotations

import datetime
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TARGETS_HEADER = "| target | result | verdict |"
QUICK_NOTE = ("**--quick: sizes far too small for these numbers to mean anything; this only checks that the benchmark "
              "runs.**\n\n")


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str) -> str:
    """'median | min | max' of the values, each through `fmt` (a format string such as '{:,.0f}')."""
    return " | ".join(fmt.format(x) for x in (median(values), min(values), max(values)))


def table(header: Sequence[str], align: str, rows: Iterable[str]) -> list[str]:
    """A markdown table: align holds one letter a column, 'l' (text) or 'r' (a number)."""
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule, *rows]


# ---- targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    """One goal of the issue and how this run did: ok None means it could not be measured here."""

    goal: str
    result: str
    ok: bool | None


@dataclass
class Section:
    """A section's markdown body (its title and provenance line are added by the writer) and targets."""

    body: str
    targets: list[Target] = field(default_factory=list)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "**pass**" if ok else "**miss**"


def targets_table(targets: list[Target]) -> list[str]:
    return [TARGETS_HEADER, "|---|---:|---|", *(f"| {t.goal} | {t.result} | {verdict(t.ok)} |" for t in targets)]


def targets_block(targets: list[Target]) -> list[str]:
    """The '### Targets' heading and table most sections open with."""
    return ["### Targets", "", *targets_table(targets), ""]


# ---- plots ------------------------------------------------------------------------------------


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig: Any, ctx: Any, name: str, alt: str) -> str:
    """Write the figure as PNG into ctx.plots; returns the markdown that shows it (linked via ctx.plot_link)."""
    ctx.plots.mkdir(parents=True, exist_ok=True)
    path = ctx.plots / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return f"![{alt}]({ctx.plot_link}/{name}.png)"


# ---- the document -----------------------------------------------------------------------------


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
