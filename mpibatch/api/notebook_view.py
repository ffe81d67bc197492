"""A Run in Jupyter: an HTML view of its status (done/total, rate, ETA, errors by class, per-rank activity)
that a background thread re-renders from the output's files while the job runs, through IPython's
display ids. It holds no state of its own, so after a reconnect or a kernel restart `Run(output)` shows
the same truth. ipywidgets is not needed."""
from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from ..output.progress import format_seconds

if TYPE_CHECKING:
    from .run import Run

REFRESH_S = 1.0
MAX_RANK_ROWS = 16
_COLOURS = {"Completed": "#2e7d32", "Failed": "#c62828", "Interrupted": "#ef6c00"}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _bar(done: int, total: int, colour: str) -> str:
    percent = 100.0 * done / total if total else 100.0
    return (f'<div style="background:#eee;width:24em;height:0.9em;border-radius:3px">'
            f'<div style="background:{colour};width:{percent:.1f}%;height:100%;border-radius:3px"></div></div>')


def _rank_rows(per_rank: dict[str, dict[str, Any]], now: float) -> str:
    ranks = sorted(per_rank, key=int)
    if len(ranks) > MAX_RANK_ROWS:  # the quiet ones are the ones to look at
        ranks = sorted(ranks, key=lambda r: per_rank[r].get("last") or 0)[:MAX_RANK_ROWS]
    rows = []
    for rank in ranks:
        activity = per_rank[rank]
        last = activity.get("last")
        ago = f"{format_seconds(max(0.0, now - last))} ago" if last else "never"
        rows.append(f"<tr><td>{_e(rank)}</td><td>{_e(activity.get('mini_batches', 0))}</td>"
                    f"<td>{_e(activity.get('items', 0))}</td><td>{_e(activity.get('running', 0))}</td>"
                    f"<td>{_e(ago)}</td><td>{_e(activity.get('host', ''))}</td></tr>")
    return ("<table><tr><th>rank</th><th>mini-batches</th><th>items</th><th>running</th><th>last result</th>"
            "<th>host</th></tr>" + "".join(rows) + "</table>")


def render_html(data: dict[str, Any], now: Optional[float] = None) -> str:
    """The status (read_status's dict) as an HTML block."""
    now = time.time() if now is None else now
    status = data.get("status", "?")
    colour = _COLOURS.get(status, "#1565c0")
    parts = [f'<div class="mpibatch-run" style="font-family:monospace">',
             f'<b>mpibatch</b> {_e(data.get("output", ""))}: <b style="color:{colour}">{_e(status)}</b>']
    if data.get("reason"):
        parts.append(f"<br>reason: {_e(data['reason'])}")
    mb, items = data.get("mini_batches") or {}, data.get("items") or {}
    if mb.get("total"):
        done = mb.get("succeeded", 0) + mb.get("failed", 0) + (data.get("bisection") or {}).get(
            "mini_batches_split", 0)
        timing = [f"elapsed {format_seconds(data.get('elapsed_s') or 0)}"]
        if data.get("rate") is not None:
            timing.insert(0, f"{data['rate']:.1f} mini-batches/s")
        if data.get("eta_s") is not None and status in ("Running", "Stopping"):
            timing.append(f"ETA {format_seconds(data['eta_s'])}")
        parts += [_bar(done, mb["total"], colour),
                  f"{done}/{mb['total']} mini-batches ({100.0 * done / mb['total']:.1f}%); items "
                  f"{_e(items.get('succeeded', 0))} succeeded, {_e(items.get('failed', 0))} failed "
                  f"of {_e(items.get('total', '?'))}<br>{_e(', '.join(timing))}"]
    errors = {k: v for k, v in (data.get("errors_by_class") or {}).items() if v}
    if errors:
        parts.append("<br>errors by class: " + _e(", ".join(f"{k} {v}" for k, v in errors.items())))
    first = data.get("first_error")
    if first:
        parts.append(f"<br>first error ({_e(first['class'])}, rank {_e(first['rank'])}): {_e(first['summary'])}"
                     f" &mdash; {_e(first.get('log_file', ''))}")
    if data.get("per_rank"):
        parts.append(_rank_rows(data["per_rank"], now))
    parts.append("</div>")
    return "\n".join(parts)


class LiveView:
    """One displayed view of a Run, re-rendered every REFRESH_S by a daemon thread until the job ends."""

    def __init__(self, run: "Run") -> None:
        self.run = run
        self.handle: Any = None
        self._thread: Optional[threading.Thread] = None

    def show(self) -> "LiveView":
        from IPython.display import HTML, display

        self.handle = display(HTML(self._html()), display_id=True)
        self._start()
        return self

    def _html(self) -> str:
        try:
            return render_html(self.run.status().data)
        except Exception as exc:  # noqa: BLE001 - a view must never raise into the notebook's thread
            return f"<div>mpibatch: {_e(type(exc).__name__)}: {_e(exc)}</div>"

    def refresh(self) -> None:
        """Re-render now (wait() and resume() call this from the cell that runs them); restart the
        updates if the job runs again."""
        if self.handle is not None:
            from IPython.display import HTML

            self.handle.update(HTML(self._html()))
            self._start()

    def _start(self) -> None:
        if (self._thread is None or not self._thread.is_alive()) and self.run.running():
            self._thread = threading.Thread(target=self._follow, name="mpibatch-view", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        from IPython.display import HTML

        while True:
            time.sleep(REFRESH_S)
            going = self.run.running()
            self.handle.update(HTML(self._html()))
            if not going:
                return
