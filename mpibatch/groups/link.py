"""A worker group's side of the connection, on the group's rank 0 (its relay): one DEALER socket to the hub.

The link chooses a random session that is also its socket identity, so the hub keeps routing to it across a
reconnect. It trusts only messages signed with the job's key for its session, in order; an unsigned
`refused: wrong key` frame is the one thing it reads unsigned, and it reads it only as a refusal.
"""
from __future__ import annotations

import secrets
import time
import weakref
from typing import Any

import zmq

from . import wire
from .wire import PROTOCOL, RECEIVE_AT_MOST, WRONG_KEY, BadMessage, JoinError, direction_keys, pack, shut, unpack

LINGER_MS = 500  # a bye or the last results still get out when the link closes


class Link:
    """The group's end: join, then messages both ways and heartbeats. Clock: time.monotonic()."""

    def __init__(self, context: zmq.Context, socket: zmq.Socket, session: str, up: bytes, down: bytes,
                 heartbeat_s: float, lost_after_s: float) -> None:
        self._context, self.socket, self.session = context, socket, session
        self._up, self._down = up, down
        self.heartbeat_s, self.lost_after_s = heartbeat_s, lost_after_s
        self._seq_out = 0
        self._seq_in = 1  # the welcome's
        self._sent_at = self._heard_at = self._read_at = time.monotonic()
        self.dropped = 0  # messages not sent: the coordinator has not read HWM of ours
        self._finalizer = weakref.finalize(self, shut, context, socket)

    @classmethod
    def join(cls, address: str, key: bytes, request: dict[str, Any],
             timeout: float) -> tuple["Link", int, list[int], Any]:
        """Join the job at `address`: (link, group id, the group's global ranks, payload), or JoinError with the
        one line to print when it is refused or no answer comes within `timeout` seconds."""
        up, down = direction_keys(key)
        session = secrets.token_hex(16)
        context = zmq.Context()
        socket = context.socket(zmq.DEALER)
        for option, value in ((zmq.IDENTITY, session.encode()), (zmq.SNDHWM, wire.HWM), (zmq.RCVHWM, wire.HWM),
                              (zmq.LINGER, 0), (zmq.IPV6, 1)):
            socket.setsockopt(option, value)
        try:
            socket.connect(address)
            socket.send_multipart(pack(up, {"kind": "join", "session": session, "seq": 0},
                                       {**request, "protocol": PROTOCOL}), zmq.NOBLOCK)
            welcome = _await_welcome(socket, down, session, address, timeout)
        except zmq.ZMQError as error:
            context.destroy(linger=0)
            raise JoinError(f"cannot reach the coordinator at {address}: {error}") from None
        except BaseException:
            context.destroy(linger=0)
            raise
        link = cls(context, socket, session, up, down, float(welcome["heartbeat_s"]), float(welcome["lost_after_s"]))
        return link, int(welcome["group"]), list(welcome["ranks"]), welcome["payload"]

    def send(self, message: tuple) -> None:
        """A worker's message to the coordinator; never blocks: dropped and counted if the coordinator has not
        read HWM of ours, and then coordinator_lost() says so."""
        self._send("msg", message)

    def receive(self) -> list[tuple]:
        """What waits (RECEIVE_AT_MOST at a time), in order: ("to", rank, message) | ("release", code, reason) |
        ("ended", code) | ("written_off", reason). Beats and anything unsigned or replayed are consumed silently."""
        now = time.monotonic()
        if now - self._read_at > self.lost_after_s / 2:  # this side did not read (stopped, starved): not the
            self._heard_at += now - self._read_at  # coordinator's silence, and what it sent may not be in yet
        out: list[tuple] = []
        for _ in range(RECEIVE_AT_MOST):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                header, body = unpack(self._down, [frame.buffer for frame in frames])
            except BadMessage:
                continue
            if header["session"] != self.session or header["seq"] <= self._seq_in:
                continue
            self._seq_in = header["seq"]
            self._heard_at = time.monotonic()
            kind = header["kind"]
            if kind == "to":
                out.append(("to", *body))
            elif kind == "release":
                out.append(("release", *body))
            elif kind in ("ended", "written_off"):
                out.append((kind, body))
        self._read_at = time.monotonic()  # the gap to the next call, not this call's own work
        return out

    def beat(self, now: float) -> None:
        """Tell the coordinator this group lives, if nothing else did for heartbeat_s; call it every loop pass."""
        if now - self._sent_at >= self.heartbeat_s:
            self._send("beat", None)

    def coordinator_lost(self, now: float) -> bool:
        """Nothing signed came from the coordinator (not even a beat) for lost_after_s and nothing waits, or it
        stopped reading (a message of ours was dropped: the group's work can no longer be accounted for)."""
        return bool(self.dropped) or (now - self._heard_at > self.lost_after_s and not self.socket.poll(0, zmq.POLLIN))

    def leave(self, reason: str) -> None:
        """Tell the coordinator this group goes (walltime, a signal, released); close() after it."""
        self._send("bye", reason)

    def close(self) -> None:
        self.socket.close(linger=LINGER_MS)
        self._finalizer()

    def _send(self, kind: str, body: Any) -> None:
        self._seq_out += 1
        frames = pack(self._up, {"kind": kind, "session": self.session, "seq": self._seq_out}, body)
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK)
            self._sent_at = time.monotonic()
        except zmq.Again:
            self.dropped += 1


def _await_welcome(socket: zmq.Socket, down: bytes, session: str, address: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not socket.poll(max(1, int(left * 1000)), zmq.POLLIN):
            raise JoinError(f"no answer from the coordinator at {address} within {timeout:g} s")
        frames = socket.recv_multipart()
        if frames == [WRONG_KEY]:
            raise JoinError("the coordinator refused this group: wrong join key")
        try:
            header, body = unpack(down, frames)
        except BadMessage:
            continue
        if header["session"] != session or header["seq"] != 1:
            continue
        if header["kind"] == "refuse":
            raise JoinError(f"the coordinator refused this group: {body}")
        if header["kind"] == "welcome" and isinstance(body, dict):
            return body
