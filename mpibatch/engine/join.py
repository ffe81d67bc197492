"""`mpibatch join OUTPUT`: a worker group from another allocation joins the job running in OUTPUT.

The group is its own MPI world. Its rank 0 joins the coordinator over one signed TCP connection
(groups.link) and relays: the coordinator's messages to the group's ranks over MPI, theirs back over the
link. Every rank, the relay's included, runs a worker exactly as a rank of the main job does, under the
global rank number the coordinator gave it. The group ends when the coordinator releases it (no work for
it, its allocation's end), when the job ends, or when the coordinator stops answering (then it exits
within seconds and the job's --resume, once run, takes new groups).
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..cluster.walltime import job_end_time
from ..config import error_line
from ..config.paths import STATE_DIR
from ..groups.link import Link
from ..groups.wire import JoinError, read_address, read_key
from ..output.logs import Layout, rank_logger
from .job import _make_worker, _mislaunched, _placements, wait_politely
from .mail import Mail
from .signals import StopSignals
from .worker import Worker, idle_policy, serve

JOIN_TIMEOUT_S = 30.0  # for the coordinator's answer once its address is known
POLL_ADDRESS_S = 1.0


def join_job(output: str, wait_s: float) -> int:
    """Run this MPI world as a worker group of the job in `output`; every rank returns the exit status."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if _mislaunched(comm.size):
        return 2
    signals = StopSignals().install()
    hosts = comm.gather(socket.gethostname(), root=0)
    link: Optional[Link] = None
    shared: Any = None
    if comm.rank == 0:
        try:
            link, group, ranks, payload = _join(Path(output), hosts, wait_s, signals)
            shared = (None, 0, group, ranks, payload)
        except JoinError as exc:
            line = str(exc)
            print(line if line.startswith("mpibatch:") else error_line(line), file=sys.stderr)
            shared = (line, exc.code, None, None, None)
    wait_politely(comm)
    error, code, group, ranks, payload = comm.bcast(shared, root=0)
    if error is not None:
        return code
    config, inputs, extra_args = payload["config"], payload["inputs"], payload["extra_args"]
    layout = Layout(Path(payload["output"]), Path(payload["output"]) / config.append_row_file_name)
    rank = ranks[comm.rank]
    log = rank_logger(layout, rank, config.logging_level)
    log.info("group %d, rank %d of %d on %s: joined the job in %s as rank %d", group, comm.rank, comm.size,
             socket.gethostname(), layout.output, rank)
    placements, _, _, cpu_note = _placements(comm, config, every_rank_works=True)
    if cpu_note:
        log.info(cpu_note)
    worker, working_dir = _make_worker(comm, config, layout, inputs, placements[comm.rank], extra_args, log, rank)
    try:
        if comm.rank != 0:
            return serve(comm, worker, signals)
        assert link is not None
        return Relay(comm, link, worker, group, ranks, signals, log, config.stop_grace, output).run()
    finally:
        shutil.rmtree(working_dir, ignore_errors=True)


def _join(output: Path, hosts: list[str], wait_s: float, signals: StopSignals) -> tuple[Link, int, list[int], Any]:
    """Wait (at most wait_s) for the job's coordinator to be up, then join it."""
    state = output / STATE_DIR
    deadline = time.monotonic() + wait_s
    while (address := read_address(state)) is None:
        ended = _ended(output)
        if ended:
            raise JoinError(f"mpibatch: the job in {output} has ended ({ended}): nothing to join", 0)
        if signals.received:
            raise JoinError(f"stopped by signal {signals.received} while waiting for a job in {output} to start")
        if time.monotonic() >= deadline:
            raise JoinError(f"no job is running in {output} (waited {wait_s:g} s for its coordinator): "
                            "start the job first, or give --wait more seconds")
        time.sleep(POLL_ADDRESS_S)
    key = read_key(state)
    request = {"n_ranks": len(hosts), "hosts": hosts, "end_time": job_end_time(),
               "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid(), "user": getpass.getuser()}
    return Link.join(address["address"], key, request, JOIN_TIMEOUT_S)


def _ended(output: Path) -> Optional[str]:
    """The status of a job in `output` that is over (no coordinator address and a final job_result), else None."""
    try:
        result = json.loads((output / "logs" / "job_result.json").read_text())
    except (OSError, ValueError):
        return None
    status = result.get("status") if isinstance(result, dict) else None
    return status if status in ("Completed", "Failed", "Interrupted") else None


class Relay:
    """The group's rank 0: its own worker, the group's other ranks over MPI, the coordinator over the link."""

    def __init__(self, comm: Any, link: Link, local: Worker, group: int, ranks: list[int], signals: StopSignals,
                 log: Any, grace: float, output: str) -> None:
        self.link = link
        self.local = local
        self.group = group
        self.signals = signals
        self.log = log
        self.grace = grace
        self.output = output
        self.size = comm.size
        self.mail = Mail(comm, local, comm.size)  # local numbering: 0 is this rank's own worker
        self.index = {rank: i for i, rank in enumerate(ranks)}  # global rank -> the group's MPI rank
        self.leaving = False

    def run(self) -> int:
        self.local.send = self.mail.inbox.append
        self.local.start()
        backoff = idle_policy(self.local)
        forward = self._forward
        while True:
            busy = False
            for item in self.link.receive():
                busy = True
                if item[0] == "to":
                    self.mail.send(self.index[item[1]], item[2])
                else:
                    return self._end(*item)
            busy = self.mail.receive(forward) or busy
            busy = self.local.step() or busy
            if self.signals.received and not self.leaving:
                self._leave(f"signal {self.signals.received} on the group's rank 0")
            now = time.monotonic()
            self.link.beat(now)
            if self.link.coordinator_lost(now):
                return self._end("lost", f"the coordinator stopped answering for {self.link.lost_after_s:g} s")
            self.mail.reap()
            if busy:
                backoff.busy()
            else:
                backoff.idle()

    def _forward(self, message: tuple) -> None:
        if message[0] == "signal":  # a signal on a group's rank ends the group, not the job
            self._leave(f"signal {message[2]} on rank {message[1]}")
        else:
            self.link.send(message)

    def _leave(self, why: str) -> None:
        if self.leaving:  # each rank of the group says its signal once: the group leaves once
            return
        self.leaving = True
        self.log.warning("group %d leaving: %s", self.group, why)
        self.link.send(("leaving", why))

    def _end(self, kind: str, *body: Any) -> int:
        """Stop every worker of the group and go: released (0), the job ended (0), written off or lost (1)."""
        if kind == "release":
            code, why = 0, f"released by the coordinator: {body[1]}"
        elif kind == "ended":
            code, why = 0, f"the job ended (exit {body[0]})"
        else:
            code, why = 1, f"written off by the coordinator: {body[0]}" if kind == "written_off" else body[0]
        close_s = self.grace if code == 0 else min(self.grace, 2.0)
        for rank in range(1, self.size):
            self.mail.send(rank, ("stop", (code, close_s)))
        self.local.close(close_s)
        self.mail.receive(self.link.send)  # what the workers said while stopping
        self.mail.wait()
        self.log.info("group %d ends: %s", self.group, why)
        if kind in ("release", "ended"):
            self.link.leave(why)
        self.link.close()
        line = f"mpibatch: group {self.group} left the job in {self.output}: {why}"
        advice = "join again to help" if kind == "written_off" else "join again once the job runs again"
        print(line if code == 0 else error_line(f"group {self.group}: {why}; it exits ({advice})"), file=sys.stderr)
        return code
