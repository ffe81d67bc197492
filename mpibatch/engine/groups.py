"""Rank 0's side of worker groups (`mpibatch join`): which group holds which worker ranks, where a message
to such a rank goes, when a group must leave (its own time limit), and what the job says about each.

A group's workers get global rank numbers after the main world's (n_ranks, n_ranks + 1, ...), never
reused, so every record that names a rank (outcomes, logs, mini_batches.csv) stays unambiguous. The
transport (groups.hub) is non-blocking; this class decides nothing about mini-batches: the coordinator
gives back a gone group's work and settles its late results (coordinator.Coordinator._on_group_gone).
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import JobConfig
from ..groups.hub import GroupGone, GroupMessage, Hub, JoinRequest
from ..groups.wire import create_key, remove_address, write_address
from ..output.logs import Layout
from ..records import InputInfo

POLL_IDLE_S = 0.02  # with no group joined, the hub is looked at this often (a join waits that long at most)
# with groups at work, at most this often: a busy dispatch loop turns ~10^5 times a second, and a receive on the
# hub each turn cost rank 0 ~2 points of a core with 3 groups (docs/benchmarks.md, groups); credits hide 1 ms
POLL_ACTIVE_S = 0.001
ACTIVE, LEAVING, LEFT, LOST = "active", "leaving", "left", "lost"


@dataclass
class Group:
    """One joined group, as job_result.json and `mpibatch status` show it."""

    id: int
    ranks: list[int]
    hosts: list[str]
    joined_at: float  # unix time
    end: Optional[float]  # unix time its allocation ends
    slurm_job_id: Optional[str]
    state: str = ACTIVE
    why: str = ""
    last_heard: float = field(default_factory=time.time)
    ended_at: Optional[float] = None
    leave_by: float = 0.0  # monotonic: a leaving group still running then is released anyway

    def to_json(self, activity: dict[int, dict[str, Any]]) -> dict[str, Any]:
        done = [activity[r] for r in self.ranks if r in activity]
        return {"group": self.id, "ranks": self.ranks, "hosts": sorted(set(self.hosts)), "state": self.state,
                "why": self.why or None, "joined_at": round(self.joined_at, 3),
                "ended_at": round(self.ended_at, 3) if self.ended_at else None, "end_time": self.end,
                "slurm_job_id": self.slurm_job_id, "last_heartbeat": round(self.last_heard, 3),
                "mini_batches": sum(a["mini_batches"] for a in done), "items": sum(a["items"] for a in done)}


class Groups:
    """The groups of one run. `poll` hands the coordinator what came in; `welcome` is answered at once."""

    def __init__(self, hub: Hub, first_rank: int, payload: Any, log: logging.Logger, accepting: Callable[[], str]) -> None:
        self.hub = hub
        self.payload = payload  # what every group needs to build its workers (engine/join.py)
        self.log = log
        self.accepting = accepting  # "" while the job takes groups, else why not
        self.next_rank = first_rank
        self.groups: dict[int, Group] = {}
        self.group_of: dict[int, int] = {}  # global rank -> group id
        self._next_poll = 0.0
        self.state_dir: Optional[Path] = None  # where the address file is, removed at close

    def __bool__(self) -> bool:
        return bool(self.groups)

    def active(self) -> list[Group]:
        return [g for g in self.groups.values() if g.state in (ACTIVE, LEAVING)]

    def end_of(self, rank: int) -> Optional[float]:
        """The end of the allocation a group rank runs in (None: a main rank, or unknown)."""
        group = self.group_of.get(rank)
        return self.groups[group].end if group is not None else None

    def send(self, rank: int, message: tuple) -> None:
        group = self.groups[self.group_of[rank]]
        if group.state in (ACTIVE, LEAVING):
            self.hub.send(group.id, rank, message)

    def poll(self, now: float, on_message: Callable[[Group, tuple], None],
             on_gone: Callable[[Group, bool, str], None]) -> bool:
        """Hand every waiting message on; admit or refuse joins. True if anything came."""
        if now < self._next_poll:
            return False
        self._next_poll = now + (POLL_ACTIVE_S if self.active() else POLL_IDLE_S)
        got = False
        for event in self.hub.receive(now):
            got = True
            if isinstance(event, JoinRequest):
                self._admit(event)
            elif isinstance(event, GroupMessage):
                group = self.groups.get(event.group)
                if group is not None:
                    group.last_heard = time.time()
                    on_message(group, event.message)
            elif isinstance(event, GroupGone):
                self._gone(event, on_gone)
        return got

    def housekeeping(self, now: float, on_gone: Callable[[Group, bool, str], None]) -> None:
        for event in self.hub.housekeeping(now):
            self._gone(event, on_gone)

    def _gone(self, event: GroupGone, on_gone: Callable[[Group, bool, str], None]) -> None:
        group = self.groups.get(event.group)
        if group is not None and group.state in (ACTIVE, LEAVING):
            on_gone(group, event.lost, event.reason)

    def _admit(self, request: JoinRequest) -> None:
        refusal = self.accepting()
        if refusal:
            self.log.warning("refused a group of %d ranks on %s: %s", request.n_ranks, ",".join(request.hosts), refusal)
            self.hub.refuse(request, refusal)
            return
        group_id = len(self.groups) + 1
        ranks = list(range(self.next_rank, self.next_rank + request.n_ranks))
        self.next_rank += request.n_ranks
        group = Group(group_id, ranks, list(request.hosts), time.time(), request.end_time, request.slurm_job_id)
        self.groups[group_id] = group
        self.group_of.update((r, group_id) for r in ranks)
        self.hub.welcome(request, group_id, ranks, self.payload)
        self.log.info("group %d joined: %d ranks (%d-%d) on %s%s", group_id, len(ranks), ranks[0], ranks[-1],
                      ",".join(sorted(set(request.hosts))),
                      f", Slurm job {request.slurm_job_id}" if request.slurm_job_id else "")

    def mark(self, group: Group, state: str, why: str) -> None:
        group.state, group.why = state, why
        if state in (LEFT, LOST):
            group.ended_at = time.time()

    def release(self, group: Group, code: int, why: str) -> None:
        """Tell a group to stop its workers and go (nothing of the job is left for it, or its time is up)."""
        self.hub.release(group.id, code, why)
        self.mark(group, LEFT, why)
        self.log.info("group %d released: %s", group.id, why)

    def close(self, code: int) -> None:
        """The job ends: no more joins (the address goes first), every group told."""
        if self.state_dir is not None:
            remove_address(self.state_dir)
        for group in self.active():
            self.mark(group, LEFT, "the job ended")
        self.hub.close(code)

    def to_json(self, activity: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        return [g.to_json(activity) for g in self.groups.values()]


def open_groups(config: JobConfig, layout: Layout, inputs: list[InputInfo], extra_args: list[str],
                where: Optional[tuple[str, int]], first_rank: int, log: logging.Logger) -> Optional[Groups]:
    """Listen for groups at `where` (cluster/listen.py; None: nowhere) with a new join key, and say where
    in the state folder. A remote output takes no groups: their workers write their logs into the output
    folder, which must be one both allocations see."""
    if where is None:
        return None
    if layout.remote_url:
        log.info("groups: none can join (the output is remote: groups need a shared output folder)")
        return None
    key = create_key(layout.state_dir)
    try:
        hub = Hub(where[0], where[1], key, log)
    except OSError as exc:
        log.warning("groups: none can join: %s", exc)
        print(f"mpibatch: warning: no worker group can join this job: {exc}", flush=True)
        return None
    write_address(layout.state_dir, {"address": hub.address, "host": socket.gethostname(), "pid": os.getpid(),
                                     "run_id": secrets.token_hex(8), "started": time.time()})
    log.info("groups: listening at %s for `mpibatch join %s`", hub.address, layout.output)
    payload = {"config": config, "output": str(layout.output), "inputs": inputs, "extra_args": list(extra_args)}
    groups = Groups(hub, first_rank, payload, log, accepting=lambda: "")
    groups.state_dir = layout.state_dir
    return groups
