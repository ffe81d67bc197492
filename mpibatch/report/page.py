"""The report's one HTML page: the facts of ReportData and the figures, put in report.html.j2."""
from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from ..output.progress import format_seconds
from .data import MAX_RANK_ROWS, ReportData

SLOWEST_ROWS = 15
ERROR_LINES = 50
LIVE = ("Queued", "Starting", "Running", "Stopping", "Submitted")


def _cards(status: dict[str, Any], data: ReportData) -> list[dict[str, str]]:
    mb, items = status.get("mini_batches") or {}, status.get("items") or {}
    cards = []
    if mb:
        cards.append({"k": "mini-batches", "v": f"{mb.get('succeeded', 0)} / {mb.get('total', '?')}",
                      "d": f"{mb.get('failed', 0)} failed, {mb.get('retried', 0)} retried"})
    elif data.batches:
        done = Counter(row.get("status") for row in data.batches)
        cards.append({"k": "mini-batches", "v": str(len(data.batches)),
                      "d": ", ".join(f"{n} {s}" for s, n in done.items())})
    if items:
        cards.append({"k": "items", "v": f"{items.get('succeeded', 0)} / {items.get('total', '?')}",
                      "d": f"{items.get('failed', 0)} failed"})
    if isinstance(status.get("elapsed_s"), (int, float)):
        started = str(status.get("started")).replace("T", " ")
        cards.append({"k": "elapsed", "v": format_seconds(status["elapsed_s"]), "d": f"started {started}"})
    if isinstance(status.get("rate"), (int, float)):
        eta = status.get("eta_s")
        cards.append({"k": "rate", "v": f"{status['rate']:.1f}/s", "d": "mini-batches" + (
            f", ETA {format_seconds(eta)}" if isinstance(eta, (int, float)) and status.get("status") in LIVE else "")})
    if status.get("ranks"):
        cards.append({"k": "ranks", "v": str(status["ranks"]), "d": f"{status.get('workers', '?')} workers"})
    errors = sum((status.get("errors_by_class") or {}).values()) or sum(data.errors_by_class().values())
    cards.append({"k": "errors", "v": str(errors), "d": "attempts that failed"})
    speculation = status.get("speculation") or {}
    if speculation.get("copies_started"):
        cards.append({"k": "speculation", "v": str(speculation["copies_started"]),
                      "d": f"copies started, {speculation.get('copies_won', 0)} won"})
    return cards


def _timing(status: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    timing = status.get("timing") or {}
    names = {"first_dispatch_s": "start to first mini-batch sent", "dispatch_s": "dispatching (first sent to last "
             "settled)"}
    for key, value in timing.items():
        if isinstance(value, (int, float)):
            rows.append((names.get(key, key), f"{value:.2f}"))
    if isinstance(status.get("elapsed_s"), (int, float)):
        rows.append(("elapsed (the whole run)", f"{status['elapsed_s']:.2f}"))
    phases = status.get("phases") or {}
    for key, name in (("data_s", "data made ready (all entry scripts)"), ("run_s", "in run() (all entry scripts)"),
                      ("overlap_s", "data made ready while another run() ran")):
        if isinstance(phases.get(key), (int, float)):
            rows.append((name, f"{phases[key]:.2f}"))
    return rows


def _rank_rows(data: ReportData, status: dict[str, Any]) -> list[dict[str, Any]]:
    per_rank = status.get("per_rank") or {}
    t0 = data.t0
    t1 = max([t0 + 1e-9, *(a.end for a in data.attempts), *(i.end for i in data.inits)])
    attempts, failed, busy, init = Counter(), Counter(), Counter(), Counter()
    for a in data.attempts:
        if a.outcome != "init":
            attempts[a.rank] += 1
            failed[a.rank] += a.outcome not in ("succeeded", "aborted")
            busy[a.rank] += a.seconds
    for i in data.inits:
        init[i.rank] += i.end - i.start
    return [{"rank": rank, "host": (per_rank.get(str(rank)) or {}).get("host", ""), "attempts": attempts[rank],
             "failed": failed[rank], "init": f"{init[rank]:.2f}", "busy": f"{100 * busy[rank] / (t1 - t0):.0f}%"}
            for rank in sorted(set(attempts) | set(init) | set(data.ranks))]


def _config(data: ReportData, status: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in sorted(data.config.items()):
        rows.append((key, value if isinstance(value, str) else json.dumps(value)))
    for key in ("ranks", "workers", "output_file", "slurm_job_id"):
        if status.get(key) is not None:
            rows.append((key, str(status[key])))
    return rows


def render(data: ReportData, plots: dict[str, Any]) -> str:
    status = data.status
    durations = [a.seconds for a in data.attempts if a.outcome == "succeeded"]
    slowest = sorted((a for a in data.attempts if a.outcome != "init"), key=lambda a: -a.seconds)[:SLOWEST_ROWS]
    by_class = status.get("errors_by_class") or dict(data.errors_by_class())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    name = str(status.get("status") or "unknown")
    return env.get_template("report.html.j2").render(
        title=data.output.name or str(data.output), output=str(data.output), status=name,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"), version=status.get("mpibatch_version"),
        live=name in LIVE, reason=status.get("reason"), warnings=status.get("warnings") or [],
        cards=_cards(status, data), missing=data.missing, plots=plots, attempts=len(data.attempts),
        earlier=data.earlier_lines, error_classes=[(k, v) for k, v in by_class.items() if v],
        first_error=status.get("first_error"), error_lines=data.errors_txt[-ERROR_LINES:],
        error_total=len(data.errors_txt), slowest=slowest,
        median=statistics.median(durations) if durations else None, timing=_timing(status),
        rank_rows=_rank_rows(data, status), shown_ranks=MAX_RANK_ROWS,
        all_ranks=len({a.rank for a in data.attempts} | {i.rank for i in data.inits} | set(data.ranks)),
        config=_config(data, status), job_keys=bool(data.config))
