"""The coordinator's side of worker groups: one ROUTER socket that groups join, send through and leave.

Every call returns at once: the coordinator's loop also serves MPI ranks and must never wait on a group.
A send to a group whose queue is full (it stopped reading) or that is not connected is dropped, and the
group is written off at the next housekeeping: a group that missed a message may hold work the engine can
no longer account for, so it is lost rather than trusted. Replies are routed by the identity each link
chose (its session), so a group whose TCP connection breaks and comes back is still the same group.
"""
from __future__ import annotations

import errno
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Union

import zmq

from . import wire
from .wire import PROTOCOL, RECEIVE_AT_MOST, WRONG_KEY, BadMessage, direction_keys, pack, shut, unpack

WARN_EVERY_S = 10.0  # refused peers are logged at most this often (an attacker cannot flood the log)


@dataclass
class JoinRequest:
    """What a group says when it joins."""
    identity: bytes
    session: str
    n_ranks: int
    hosts: list[str]
    end_time: Optional[float]  # unix time its allocation ends (None: unknown)
    slurm_job_id: Optional[str]
    pid: int
    user: str
    peer: str = ""  # the address its connection came from, as the socket saw it


@dataclass
class GroupMessage:
    """A worker's message, exactly as a worker of that group sent it."""
    group: int
    message: tuple


@dataclass
class GroupGone:
    """A group left cleanly (lost=False, its reason) or was lost (no heartbeat for lost_after_s)."""
    group: int
    lost: bool
    reason: str


Event = Union[JoinRequest, GroupMessage, GroupGone]


@dataclass
class GroupInfo:
    """One welcomed group, as `mpibatch status` shows it."""
    request: JoinRequest
    ranks: list[int]
    joined_at: float  # unix time
    last_seen: float  # the caller's clock (time.monotonic()) at its last message or beat
    state: str = "active"  # "active" | "left" | "lost"
    why: str = ""
    dropped: int = 0  # messages to it dropped: its queue was full or it was gone
    sent_at: float = 0.0
    seq: int = 0

    @property
    def hosts(self) -> list[str]:
        return self.request.hosts


@dataclass
class _Warnings:
    """Rate-limited warnings about refused peers."""
    log: logging.Logger
    last: float = float("-inf")
    quiet: int = 0

    def warn(self, line: str) -> None:
        now = time.monotonic()
        if now - self.last < WARN_EVERY_S:
            self.quiet += 1
            return
        more = f" ({self.quiet} more refused since)" if self.quiet else ""
        self.log.warning("%s%s", line, more)
        self.last, self.quiet = now, 0


@dataclass
class _Session:
    last_seq: int
    identity: bytes
    group: Optional[int] = None


class Hub:
    """The coordinator's end: joins in, messages both ways, heartbeats, lost groups out. Clock: time.monotonic()."""

    def __init__(self, host: str, port: int, key: bytes, log: logging.Logger, heartbeat_s: float = 1.0,
                 lost_after_s: float = 10.0) -> None:
        self.log = log
        self.heartbeat_s, self.lost_after_s = heartbeat_s, lost_after_s
        self.groups: dict[int, GroupInfo] = {}
        self._up, self._down = direction_keys(key)
        self._sessions: dict[str, _Session] = {}
        self._answered: set[bytes] = set()
        self._warnings = _Warnings(log)
        self._now = self._read_at = time.monotonic()
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.ROUTER)
        self._finalizer = weakref.finalize(self, shut, self._context, self.socket)
        for option, value in ((zmq.ROUTER_MANDATORY, 1), (zmq.ROUTER_HANDOVER, 1), (zmq.SNDHWM, wire.HWM),
                              (zmq.RCVHWM, wire.HWM), (zmq.LINGER, 0), (zmq.IPV6, int(":" in host))):
            self.socket.setsockopt(option, value)
        endpoint = f"tcp://[{host}]" if ":" in host else f"tcp://{host}"
        try:
            self.socket.bind(f"{endpoint}:{port or '*'}")
        except zmq.ZMQError as error:
            self._finalizer()
            raise OSError(f"cannot listen on {endpoint}:{port}: {error}") from None
        self.address: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    # ---- in ----------------------------------------------------------------------------------------------

    def receive(self, now: float) -> list[Event]:
        """What waits (RECEIVE_AT_MOST at a time), decoded only where signed with the job's key; never blocks."""
        if now - self._read_at > self.lost_after_s / 2:  # the coordinator did not read (stopped, blocked): not the
            for info in self.groups.values():  # groups' silence, and what they sent may not be in yet
                info.last_seen += now - self._read_at
        self._now = now
        events: list[Event] = []
        for _ in range(RECEIVE_AT_MOST):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            event = self._take(frames, now)
            if event is not None:
                events.append(event)
        self._read_at = max(now, time.monotonic())  # the gap to the next call, not this call's own work
        return events

    def _take(self, frames: list[zmq.Frame], now: float) -> Optional[Event]:
        identity = frames[0].bytes
        try:
            header, body = unpack(self._up, [frame.buffer for frame in frames[1:]])
        except BadMessage as error:
            self._warnings.warn(f"refused a peer at {_peer(frames)} (identity {identity[:16].hex()}): {error}")
            if identity not in self._answered:  # once per connection: a flood gets no flood back
                if len(self._answered) >= RECEIVE_AT_MOST:
                    self._answered.clear()
                self._answered.add(identity)
                self._answer(identity, [WRONG_KEY])
            return None
        kind, session, seq = header["kind"], header["session"], header["seq"]
        known = self._sessions.get(session)
        if kind == "join":
            if known is not None:
                self._warnings.warn(f"refused a replayed join from {_peer(frames)}")
                return None
            self._sessions[session] = _Session(seq, identity)
            return self._join_request(identity, session, body, _peer(frames))
        if known is None or seq <= known.last_seq or known.identity != identity or known.group is None:
            self._warnings.warn(f"refused a message from {_peer(frames)}: replayed or from no group")
            return None
        known.last_seq = seq
        info = self.groups[known.group]
        if info.state == "active":
            info.last_seen = now
        if kind == "msg" and isinstance(body, tuple):
            return GroupMessage(known.group, body)
        if kind == "bye" and info.state == "active":
            info.state, info.why = "left", str(body)
            return GroupGone(known.group, False, info.why)
        return None

    def _join_request(self, identity: bytes, session: str, body: Any, peer: str) -> Optional[JoinRequest]:
        fields = body if isinstance(body, dict) else {}
        if fields.get("protocol") != PROTOCOL:
            self._answer(identity, pack(self._down, {"kind": "refuse", "session": session, "seq": 1},
                                        f"its mpibatch speaks protocol {fields.get('protocol')}, "
                                        f"the coordinator's {PROTOCOL}: use the same mpibatch"))
            return None
        try:
            return JoinRequest(identity, session, int(fields["n_ranks"]), [str(h) for h in fields["hosts"]],
                               fields.get("end_time"), fields.get("slurm_job_id"), int(fields.get("pid", 0)),
                               str(fields.get("user", "")), peer)
        except (KeyError, TypeError, ValueError) as error:
            self._answer(identity, pack(self._down, {"kind": "refuse", "session": session, "seq": 1},
                                        f"a malformed join request ({type(error).__name__}: {error})"))
            return None

    # ---- out ---------------------------------------------------------------------------------------------

    def welcome(self, request: JoinRequest, group: int, ranks: list[int], payload: Any) -> None:
        """Admit a group: its id, its ranks' global ids and what it needs to run (pickled)."""
        info = GroupInfo(request, list(ranks), time.time(), self._now)
        self.groups[group] = info
        self._sessions[request.session].group = group
        self._send(info, "welcome", {"group": group, "ranks": list(ranks), "payload": payload,
                                     "heartbeat_s": self.heartbeat_s, "lost_after_s": self.lost_after_s})

    def refuse(self, request: JoinRequest, reason: str) -> None:
        """Turn a group away; it prints `reason` and exits."""
        self._answer(request.identity, pack(self._down, {"kind": "refuse", "session": request.session, "seq": 1},
                                            reason))

    def send(self, group: int, rank: int, message: tuple) -> None:
        """A message for one global rank of an active group; dropped (counted) if the group does not read."""
        info = self.groups.get(group)
        if info is not None and info.state == "active" and not info.dropped:
            self._send(info, "to", (rank, message))

    def release(self, group: int, code: int, reason: str) -> None:
        """Ask a group to stop: it finishes or hands back its work, says bye and leaves."""
        info = self.groups.get(group)
        if info is not None and info.state == "active":
            info.why = reason
            self._send(info, "release", (code, reason))

    def housekeeping(self, now: float) -> list[GroupGone]:
        """Beat to every active group; declare lost (once) a group silent for lost_after_s or that missed a
        message. Call right after receive(), which took in every beat that waited (whether input waits is no
        sign of life: a peer without the key could send it)."""
        self._now = now
        gone = []
        for group, info in self.groups.items():
            if info.state != "active":
                continue
            if info.dropped:
                why = f"it stopped reading: {info.dropped} message(s) to it dropped"
            elif now - info.last_seen > self.lost_after_s:
                why = f"no heartbeat for {now - info.last_seen:.1f} s"
            else:
                why = ""
            if why:
                info.state, info.why = "lost", why
                self._send(info, "written_off", why)
                gone.append(GroupGone(group, True, why))
            elif now - info.sent_at >= self.heartbeat_s:
                self._send(info, "beat", None)
        return gone

    def close(self, code: int) -> None:
        """Tell every active group the job ended (they exit at once), then close, waiting at most 0.5 s."""
        for info in self.groups.values():
            if info.state == "active":
                self._send(info, "ended", code)
        self.socket.close(linger=500)
        self._finalizer()

    def _send(self, info: GroupInfo, kind: str, body: Any) -> None:
        info.seq += 1
        frames = pack(self._down, {"kind": kind, "session": info.request.session, "seq": info.seq}, body)
        if self._answer(info.request.identity, frames):
            info.sent_at = self._now
        else:
            info.dropped += 1

    def _answer(self, identity: bytes, frames: list[bytes]) -> bool:
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as error:
            if error.errno == errno.EHOSTUNREACH:  # that peer is not connected (now)
                return False
            raise


def _peer(frames: list[zmq.Frame]) -> str:
    try:
        return frames[-1].get("Peer-Address")
    except zmq.ZMQError:
        return "an unknown address"
