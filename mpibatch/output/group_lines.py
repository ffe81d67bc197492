"""The joined worker groups (`mpibatch join`) as `mpibatch status` and logs/job_result.txt show them:
one summary line, then one line per group (its ranks, hosts, Slurm job, when it joined, what it did,
its state and why)."""
from __future__ import annotations

import time
from typing import Any, Optional

from .progress import format_seconds


def _when(unix: Optional[float]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix)) if unix else "?"


def group_lines(groups: list[dict[str, Any]], now: Optional[float] = None) -> list[str]:
    """No lines for a job no group joined."""
    if not groups:
        return []
    now = time.time() if now is None else now
    states: dict[str, int] = {}
    for group in groups:
        states[group["state"]] = states.get(group["state"], 0) + 1
    lines = [f"groups: {len(groups)} joined (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")"]
    for g in groups:
        ranks = g["ranks"]
        where = f"ranks {ranks[0]}-{ranks[-1]}" if len(ranks) > 1 else f"rank {ranks[0]}"
        slurm = f", Slurm job {g['slurm_job_id']}" if g.get("slurm_job_id") else ""
        state = g["state"] + (f": {g['why']}" if g.get("why") else "")
        if g["state"] in ("active", "leaving"):
            state += f", heartbeat {format_seconds(max(0.0, now - g['last_heartbeat']))} ago"
        elif g.get("ended_at"):
            state += f" at {_when(g['ended_at'])}"
        lines.append(f"  group {g['group']}: {where} on {','.join(g['hosts'])}{slurm}, joined {_when(g['joined_at'])}, "
                     f"{g['mini_batches']} mini-batches ({g['items']} items), {state}")
    return lines
