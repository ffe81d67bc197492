"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot: a notebook's own
backend and figures are left alone) and embedded as base64 PNG."""
from __future__ import annotations

import base64
import io
import math
import statistics
from collections import Counter, defaultdict
from typing import Optional

from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .data import MAX_RANK_ROWS, Attempt, ReportData

LABEL_BARS_UP_TO = 160
SEPARATE_BARS_UP_TO = 300  # mini-batch ids are written on the bars of a small job
STRAGGLER_FACTOR = 3.0  # a succeeded attempt this many times the median is outlined as a straggler
WIDTH_IN = 11.0
CLASS_COLORS = {"exception": "#d32f2f", "timeout": "#f57c00", "crash": "#7b1fa2", "oom": "#6d4c41",
                "preempted": "#757575", "init": "#212121"}
OK_COLOR, RETRY_OK_COLOR, ABORTED_COLOR, INIT_COLOR = "#43a047", "#1e88e5", "#cfd8dc", "#eceff1"
IDLE_COLOR = "#fafafa"


def png(fig: Figure) -> str:
    """The figure as a base64 PNG, ready for a data: URL."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height))
    fig.set_layout_engine("constrained")
    return fig


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)


def _bin_width(span: float, bins: int = 50) -> float:
    """A round bin width (1, 2, 5 x 10^k seconds) giving about `bins` bins."""
    raw = max(span / bins, 0.05)
    power = 10 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= raw)


def _span(data: ReportData) -> tuple[float, float]:
    t0 = data.t0
    ends = [a.end for a in data.attempts] + [i.end for i in data.inits] + [t for t, _, _ in data.progress]
    return t0, max([t0 + 1.0, *ends])


def _style_of(attempt: Attempt) -> tuple[str, str, str]:
    """(group label, face colour, hatch) of a bar."""
    if attempt.outcome == "aborted":
        return "speculation copy, aborted", ABORTED_COLOR, "////"
    if attempt.outcome == "succeeded":
        if attempt.speculated:
            return "succeeded (a copy was started)", OK_COLOR if attempt.attempt == 1 else RETRY_OK_COLOR, "////"
        if attempt.attempt > 1:
            return "succeeded on a retry", RETRY_OK_COLOR, ""
        return "succeeded", OK_COLOR, ""
    return f"failed: {attempt.outcome}", CLASS_COLORS.get(attempt.outcome, "#d32f2f"), ""


def _layer(group: tuple[str, str, str, bool]) -> int:
    """Drawing order: failures and stragglers over the merged runs of successes of a dense timeline."""
    label, _, _, straggler = group
    return 2 if straggler else 0 if label.startswith(("succeeded", "init")) else 1


def _merged(bars: list[tuple[int, float, float]], gap: float) -> list[tuple[int, float, float]]:
    """Bars of one row closer than `gap` (under a pixel) drawn as one: a timeline of many thousand
    attempts looks the same and draws in a fraction of the time."""
    out: list[tuple[int, float, float]] = []
    for y, x, w in sorted(bars):
        if out and out[-1][0] == y and x - (out[-1][1] + out[-1][2]) < gap:
            last = out[-1]
            out[-1] = (y, last[1], max(last[2], x + w - last[1]))
        else:
            out.append((y, x, w))
    return out


def timeline(data: ReportData) -> Optional[str]:
    """The Gantt view: a row per rank, a bar per attempt coloured by its outcome; init in grey,
    stragglers outlined, speculation copies hatched, idle gaps left blank."""
    if not data.attempts and not data.inits:
        return None
    ranks = sorted({a.rank for a in data.attempts} | {i.rank for i in data.inits} | set(data.ranks))[:MAX_RANK_ROWS]
    row = {rank: index for index, rank in enumerate(ranks)}
    t0, t1 = _span(data)
    span = t1 - t0
    durations = [a.seconds for a in data.attempts if a.outcome == "succeeded"]
    median = statistics.median(durations) if durations else 0.0
    groups: dict[tuple[str, str, str, bool], list] = defaultdict(list)
    for init in data.inits:
        if init.rank in row and init.ok:
            groups[("init()", INIT_COLOR, "", False)].append((row[init.rank], init.start - t0, init.end - init.start))
    shown = [a for a in data.attempts if a.rank in row]
    for attempt in shown:
        label, color, hatch = _style_of(attempt)
        straggler = attempt.outcome == "succeeded" and median > 0 and attempt.seconds > STRAGGLER_FACTOR * median \
            and attempt.seconds > 0.5
        groups[(label, color, hatch, straggler)].append((row[attempt.rank], attempt.start - t0, attempt.seconds))
    sparse = len(shown) <= SEPARATE_BARS_UP_TO * len(ranks)  # few bars a row: a white edge between neighbours
    min_width = span / (400 if sparse else 1000)  # an instant attempt still shows (a pixel of a dense row)
    fig = _figure(min(1.6 + 0.42 * len(ranks), 24))
    ax = fig.add_subplot()
    handles, seen = [], set()
    for (label, color, hatch, straggler), bars in sorted(groups.items(), key=lambda kv: _layer(kv[0])):
        if not sparse:
            bars = _merged(bars, span / 1500)
        verts = [[(x, y - 0.36), (x, y + 0.36), (x + max(w, min_width), y + 0.36), (x + max(w, min_width), y - 0.36)]
                 for y, x, w in bars]
        edge = "#111111" if straggler else ("#90a4ae" if hatch else ("white" if sparse else "none"))
        ax.add_collection(PolyCollection(verts, facecolors=color, edgecolors=edge, linewidths=1.6 if straggler
                                         else 0.5, hatch=hatch or None))
        if label not in seen:
            seen.add(label)
            handles.append(Patch(facecolor=color, edgecolor="#90a4ae" if hatch else "none", hatch=hatch or None,
                                 label=label))
    if any(key[3] for key in groups):
        handles.append(Patch(facecolor="white", edgecolor="#111111", linewidth=1.6,
                             label=f"straggler (> {STRAGGLER_FACTOR:g}x median {median:.2f} s)"))
    if len(shown) <= LABEL_BARS_UP_TO:
        pixels_per_s = WIDTH_IN * 80 / span  # about: the axes take most of the figure's width
        for attempt in shown:
            text = attempt.batch_id + (f"#{attempt.attempt}" if attempt.attempt > 1 else "")
            if attempt.seconds * pixels_per_s >= 7 * len(text) + 6:  # the label fits in its bar
                x = attempt.start - t0 + attempt.seconds / 2
                ax.text(x, row[attempt.rank], text, ha="center", va="center", fontsize=7, color="#102027",
                        clip_on=True)
    ax.set_xlim(0, span * 1.01)
    ax.set_ylim(len(ranks) - 0.5, -0.8)
    ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.set_xlabel("seconds since the run started")
    _style(ax)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False, fontsize=8)
    return png(fig)


def throughput(data: ReportData) -> Optional[str]:
    """Finished attempts per second over time (bars), and the committed mini-batches (a line)."""
    finals = [a for a in data.attempts if a.outcome not in ("aborted", "init")]
    if not finals and len(data.progress) < 2:
        return None
    t0, t1 = _span(data)
    width = _bin_width(t1 - t0)
    bins = int((t1 - t0) / width) + 1
    ok, failed = [0] * bins, [0] * bins
    for attempt in finals:
        index = min(int((attempt.end - t0) / width), bins - 1)
        (ok if attempt.outcome == "succeeded" else failed)[index] += 1
    fig = _figure(3.2)
    ax = fig.add_subplot()
    lefts = [i * width for i in range(bins)]
    ax.bar(lefts, [n / width for n in ok], width=width, align="edge", color=OK_COLOR, label="succeeded attempts/s")
    ax.bar(lefts, [n / width for n in failed], width=width, align="edge", bottom=[n / width for n in ok],
           color=CLASS_COLORS["exception"], label="failed attempts/s")
    ax.set_xlabel(f"seconds since the run started (bins of {width:g} s)")
    ax.set_ylabel("attempts per second")
    _style(ax)
    handles, labels = ax.get_legend_handles_labels()
    if data.progress:
        right = ax.twinx()
        right.plot([t - t0 for t, _, _ in data.progress], [done for _, done, _ in data.progress], color="#37474f",
                   marker="o", markersize=3, linewidth=1.5, label="mini-batches done (progress file)")
        total = data.progress[-1][2]
        right.set_ylim(0, max(total, 1) * 1.05)
        right.set_ylabel("mini-batches done")
        right.spines["top"].set_visible(False)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.set_xlim(0, (t1 - t0) * 1.01)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    return png(fig)


def errors_over_time(data: ReportData) -> Optional[str]:
    """Failed attempts per class per time bin, stacked."""
    failed = [a for a in data.attempts if a.outcome not in ("succeeded", "aborted")]
    if not failed:
        return None
    t0, t1 = _span(data)
    width = _bin_width(t1 - t0, 40)
    bins = int((t1 - t0) / width) + 1
    counts: dict[str, list[int]] = {}
    for attempt in failed:
        counts.setdefault(attempt.outcome, [0] * bins)[min(int((attempt.end - t0) / width), bins - 1)] += 1
    fig = _figure(2.4)
    ax = fig.add_subplot()
    bottom = [0] * bins
    lefts = [i * width for i in range(bins)]
    for cls, values in sorted(counts.items(), key=lambda kv: -sum(kv[1])):
        ax.bar(lefts, values, width=width, align="edge", bottom=bottom, color=CLASS_COLORS.get(cls, "#d32f2f"),
               label=f"{cls} ({sum(values)})")
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xlim(0, (t1 - t0) * 1.01)
    ax.set_xlabel(f"seconds since the run started (bins of {width:g} s)")
    ax.set_ylabel("failed attempts")
    ax.yaxis.get_major_locator().set_params(integer=True)
    _style(ax)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=6, fontsize=8, frameon=False)
    return png(fig)


def phases(data: ReportData) -> Optional[str]:
    """Where each rank's time went: init(), run() that succeeded or failed, aborted copies, idle."""
    if not data.attempts and not data.inits:
        return None
    t0, t1 = _span(data)
    ranks = sorted({a.rank for a in data.attempts} | {i.rank for i in data.inits})[:MAX_RANK_ROWS]
    parts: dict[int, Counter] = {rank: Counter() for rank in ranks}
    for init in data.inits:
        if init.rank in parts:
            parts[init.rank]["init()"] += init.end - init.start
    for attempt in data.attempts:
        if attempt.rank in parts:
            key = {"succeeded": "run() succeeded", "aborted": "aborted copies"}.get(attempt.outcome, "run() failed")
            parts[attempt.rank][key] += attempt.seconds
    colors = {"init()": "#b0bec5", "run() succeeded": OK_COLOR, "run() failed": CLASS_COLORS["exception"],
              "aborted copies": ABORTED_COLOR, "idle / waiting": IDLE_COLOR}
    for counter in parts.values():
        counter["idle / waiting"] = max((t1 - t0) - sum(counter.values()), 0.0)
    fig = _figure(min(1.2 + 0.34 * len(ranks), 16))
    ax = fig.add_subplot()
    left = [0.0] * len(ranks)
    for phase, color in colors.items():
        values = [parts[rank][phase] for rank in ranks]
        if not any(values):
            continue
        ax.barh(range(len(ranks)), values, left=left, color=color, edgecolor="#b0bec5" if phase.startswith("idle")
                else "none", linewidth=0.5, height=0.6, label=phase)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.invert_yaxis()
    ax.set_xlabel("seconds (a busy rank's row is all colour; idle time is white)")
    _style(ax)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(ranks) < 6 else -0.08), ncol=5, fontsize=8,
              frameon=False)
    return png(fig)


def resources(data: ReportData) -> Optional[str]:
    """CPU %, memory and (where sampled) GPU % of each rank's entry-script process over time."""
    ranks = sorted(data.perf)[:MAX_RANK_ROWS]
    if not ranks:
        return None
    t0 = data.t0
    gpu = any(g is not None for r in ranks for *_, g in data.perf[r])
    fig = _figure(2.8)
    axes = fig.subplots(1, 3 if gpu else 2)
    names = ("CPU % (100 = one core)", "memory (RSS, MB)", "GPU utilisation %")
    for index, ax in enumerate(axes):
        for rank in ranks:
            samples = data.perf[rank]
            values = [sample[index + 1] for sample in samples]
            ax.plot([sample[0] - t0 for sample in samples], [v if v is not None else float("nan") for v in values],
                    linewidth=1.2, marker="o" if len(samples) < 30 else None, markersize=2.5, label=f"rank {rank}")
        ax.set_title(names[index], fontsize=10)
        ax.set_xlabel("seconds since the run started")
        ax.set_ylim(bottom=0)
        _style(ax)
    if len(ranks) <= 12:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=min(len(ranks), 8),
                   frameon=False, fontsize=8)
    return png(fig)
