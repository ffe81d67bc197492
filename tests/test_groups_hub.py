"""mpibatch.groups.hub and .link over real sockets on 127.0.0.1, in one process: join, refusals, messages both
ways, release, heartbeats and lost groups, a lost coordinator, and a hub that never waits on a group."""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import zmq

from mpibatch.groups import hub as hub_module
from mpibatch.groups import link as link_module
from mpibatch.groups import wire
from mpibatch.groups.hub import GroupGone, GroupMessage, Hub, JoinRequest
from mpibatch.groups.link import Link
from mpibatch.groups.wire import PROTOCOL, WRONG_KEY, JoinError, direction_keys, pack, unpack

LOG = logging.getLogger("test_groups_hub")
REQUEST = {"n_ranks": 2, "hosts": ["node7", "node8"], "end_time": 1.9e9, "slurm_job_id": "123", "pid": 4242,
           "user": "alice"}
HEARTBEAT_S, LOST_AFTER_S = 0.1, 0.3


class Evil:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def hub(key: bytes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hub_module, "WARN_EVERY_S", 0.0)
    made = Hub("127.0.0.1", 0, key, LOG, heartbeat_s=HEARTBEAT_S, lost_after_s=LOST_AFTER_S)
    yield made
    if not made.socket.closed:
        made.close(0)


@pytest.fixture
def context():
    made = zmq.Context()
    yield made
    made.destroy(linger=0)


def serve_join(hub: Hub, key: bytes, answer: Callable[[JoinRequest], None], request: dict = REQUEST,
               timeout: float = 5.0, address: str = "") -> tuple[dict[str, Any], list[JoinRequest]]:
    """Link.join in a thread while this thread serves the hub and answers each JoinRequest."""
    box: dict[str, Any] = {}

    def joiner() -> None:
        started = time.monotonic()
        try:
            box["result"] = Link.join(address or hub.address, key, request, timeout)
        except JoinError as error:
            box["error"] = error
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=joiner)
    thread.start()
    seen = []
    while thread.is_alive():
        for event in hub.receive(time.monotonic()):
            assert isinstance(event, JoinRequest)
            seen.append(event)
            answer(event)
        time.sleep(0.001)
    thread.join()
    return box, seen


def joined(hub: Hub, key: bytes, group: int = 1, ranks: tuple[int, ...] = (5, 6), payload: Any = None) -> Link:
    box, _ = serve_join(hub, key, lambda request: hub.welcome(request, group, list(ranks), payload))
    return box["result"][0]


def collect(receive: Callable[[], list], count: int, timeout: float = 3.0) -> list:
    """What receive() returns until `count` items came, then anything straggling in 50 ms more."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += receive()
        time.sleep(0.0005)
    time.sleep(0.05)
    return got + receive()


def test_join_welcome_carries_ranks_and_payload_both_ways(hub: Hub, key: bytes):
    payload = {"config": ("a", 1.5, None), "blob": b"\x00" * 1000, "ranks": list(range(3))}
    box, seen = serve_join(hub, key, lambda request: hub.welcome(request, 4, [7, 8], payload))
    link, group, ranks, got = box["result"]
    assert (group, ranks, got) == (4, [7, 8], payload)
    [request] = seen
    assert (request.n_ranks, request.hosts, request.end_time, request.slurm_job_id, request.pid, request.user,
            request.peer) == (2, ["node7", "node8"], 1.9e9, "123", 4242, "alice", "127.0.0.1")
    assert request.identity == request.session.encode() == link.session.encode()
    info = hub.groups[4]
    assert (info.state, info.hosts, info.ranks, info.why, info.dropped) == ("active", ["node7", "node8"], [7, 8], "", 0)
    assert abs(info.joined_at - time.time()) < 5
    link.close()


def test_a_refusal_is_the_one_line_the_group_prints(hub: Hub, key: bytes):
    box, seen = serve_join(hub, key, lambda request: hub.refuse(request, "the job has finished"))
    assert len(seen) == 1 and str(box["error"]) == "the coordinator refused this group: the job has finished"
    assert box["error"].code == 1 and not hub.groups


def test_a_wrong_key_is_refused_at_once_and_logged(hub: Hub, key: bytes, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        box, seen = serve_join(hub, os.urandom(32), lambda request: pytest.fail("a wrong key got a JoinRequest"))
    assert str(box["error"]) == "the coordinator refused this group: wrong join key"
    assert box["seconds"] < 2.0 and not seen and not hub.groups
    [record] = caplog.records
    line = record.getMessage()
    assert line.startswith("refused a peer at 127.0.0.1 (identity ") and line.endswith("): bad signature")


def test_refusals_are_logged_and_answered_sparingly(hub: Hub, key: bytes, context: zmq.Context,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(hub_module, "WARN_EVERY_S", 60.0)
    peer = context.socket(zmq.DEALER)
    peer.connect(hub.address)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        for _ in range(50):
            peer.send_multipart([b"x", b"y", b"z"])
        events: list = []

        def answers_so_far() -> list:
            events.extend(hub.receive(time.monotonic()))
            return [peer.recv_multipart()] if peer.poll(0) else []

        answers = collect(answers_so_far, 1)
    assert events == []
    assert answers == [[WRONG_KEY]]  # once per connection: a flood gets no flood back
    assert len(caplog.records) == 1


def test_no_coordinator_is_a_join_error_within_the_timeout(key: bytes, context: zmq.Context):
    socket = context.socket(zmq.ROUTER)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    socket.close(linger=0)
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(JoinError) as caught:
        Link.join(address, key, REQUEST, 0.5)
    assert str(caught.value) == f"no answer from the coordinator at {address} within 0.5 s"
    assert 0.5 <= time.monotonic() - started < 2.0


def test_an_address_that_is_no_address_is_a_join_error(key: bytes):
    with pytest.raises(JoinError, match="^cannot reach the coordinator at nowhere: "):
        Link.join("nowhere", key, REQUEST, 0.5)


def test_another_protocol_is_refused(hub: Hub, key: bytes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(link_module, "PROTOCOL", PROTOCOL + 98)
    box, seen = serve_join(hub, key, lambda request: pytest.fail("another protocol got a JoinRequest"))
    assert str(box["error"]) == (f"the coordinator refused this group: its mpibatch speaks protocol {PROTOCOL + 98}, "
                                 f"the coordinator's {PROTOCOL}: use the same mpibatch")
    assert not seen


def test_a_busy_port_is_an_os_error_naming_it(hub: Hub, key: bytes):
    port = int(hub.address.rpartition(":")[2])
    with pytest.raises(OSError, match=f"^cannot listen on tcp://127.0.0.1:{port}: "):
        Hub("127.0.0.1", port, key, LOG)


def test_a_forged_pickle_reaches_neither_side_undecoded(hub: Hub, key: bytes, context: zmq.Context, tmp_path: Path):
    marker = tmp_path / "marker"
    link = joined(hub, key)
    peer = context.socket(zmq.DEALER)
    peer.connect(hub.address)
    head = b'{"kind":"join","session":"ff","seq":0}'
    peer.send_multipart([b"\0" * 32, head, pickle.dumps(Evil(marker))])
    peer.send_multipart(pack(os.urandom(32), {"kind": "msg", "session": link.session, "seq": 99}, Evil(marker)))
    events: list = []

    def answers_so_far() -> list:
        events.extend(hub.receive(time.monotonic()))
        return [peer.recv_multipart()] if peer.poll(0) else []

    assert collect(answers_so_far, 1) == [[WRONG_KEY]] and events == []  # once per connection
    fake = context.socket(zmq.ROUTER)  # the link's side: a forged message from someone posing as the hub
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    link.socket.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.1)
    fake.send_multipart([link.session.encode(), b"\0" * 32, b'{"kind":"to","session":"x","seq":9}',
                         pickle.dumps(Evil(marker))])
    assert collect(link.receive, 1, timeout=0.3) == []
    assert not marker.exists()
    link.close()


def test_the_hub_refuses_replays(hub: Hub, key: bytes, context: zmq.Context, caplog: pytest.LogCaptureFixture):
    up, _ = direction_keys(key)
    group = context.socket(zmq.DEALER)
    group.setsockopt(zmq.IDENTITY, b"s1")
    group.connect(hub.address)
    join = pack(up, {"kind": "join", "session": "s1", "seq": 0}, {**REQUEST, "protocol": PROTOCOL})
    group.send_multipart(join)
    [request] = collect(lambda: hub.receive(time.monotonic()), 1)
    hub.welcome(request, 1, [5, 6], None)
    one = pack(up, {"kind": "msg", "session": "s1", "seq": 1}, ("one",))
    for frames in (one, one, pack(up, {"kind": "msg", "session": "s1", "seq": 1}, ("again",)),
                   pack(up, {"kind": "msg", "session": "s1", "seq": 2}, ("two",))):
        group.send_multipart(frames)
    other = context.socket(zmq.DEALER)  # someone who captured the traffic, on another connection
    other.connect(hub.address)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        other.send_multipart(join)
        other.send_multipart(pack(up, {"kind": "msg", "session": "s1", "seq": 3}, ("three",)))
        events = collect(lambda: hub.receive(time.monotonic()), 2)
        time.sleep(0.1)
        events += hub.receive(time.monotonic())
    assert events == [GroupMessage(1, ("one",)), GroupMessage(1, ("two",))]
    lines = [r.getMessage() for r in caplog.records]
    assert "refused a replayed join from 127.0.0.1" in lines
    assert sum(line == "refused a message from 127.0.0.1: replayed or from no group" for line in lines) == 3


def test_the_link_refuses_replays_and_unsigned_frames(key: bytes, context: zmq.Context):
    up, down = direction_keys(key)
    fake = context.socket(zmq.ROUTER)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=Link.join(f"tcp://127.0.0.1:{port}", key, REQUEST, 5)))
    thread.start()
    assert fake.poll(5000)
    identity, *frames = fake.recv_multipart()
    header, body = unpack(up, frames)
    assert (header["kind"], header["seq"], body) == ("join", 0, {**REQUEST, "protocol": PROTOCOL})
    session = header["session"]

    def say(kind: str, seq: int, body: Any, sign: bytes = down, session: str = session) -> None:
        fake.send_multipart([identity, *pack(sign, {"kind": kind, "session": session, "seq": seq}, body)])

    say("welcome", 1, {"group": 3, "ranks": [1], "payload": None, "heartbeat_s": 0.1, "lost_after_s": 0.3})
    thread.join()
    link = box["result"][0]
    say("to", 2, (1, ("a",)))
    say("to", 2, (1, ("a",)))
    say("to", 1, (1, ("old",)))
    say("to", 9, (1, ("other session",)), session="other")
    say("to", 10, (1, ("reflected",)), sign=up)
    fake.send_multipart([identity, WRONG_KEY])
    fake.send_multipart([identity, b"junk"])
    say("to", 3, (1, ("b",)))
    assert collect(link.receive, 2) == [("to", 1, ("a",)), ("to", 1, ("b",))]
    link.close()


def test_messages_go_both_ways_in_order(hub: Hub, key: bytes):
    link = joined(hub, key)
    for n in range(1000):
        hub.send(1, 5 + n % 2, ("tasks", n))
    assert collect(link.receive, 1000) == [("to", 5 + n % 2, ("tasks", n)) for n in range(1000)]
    for n in range(1000):
        link.send(("outcomes", n, "x" * 100))
    assert collect(lambda: hub.receive(time.monotonic()), 1000) == [GroupMessage(1, ("outcomes", n, "x" * 100))
                                                                      for n in range(1000)]
    hub.send(99, 5, ("nobody",))  # no such group: nothing happens
    link.close()


def test_release_then_bye_is_a_clean_leave(hub: Hub, key: bytes):
    link = joined(hub, key)
    hub.release(1, 3, "its allocation ends")
    assert collect(link.receive, 1) == [("release", 3, "its allocation ends")]
    link.send(("returned", 5, ["b1"]))
    link.leave("released")
    assert collect(lambda: hub.receive(time.monotonic()), 2) == [GroupMessage(1, ("returned", 5, ["b1"])),
                                                                   GroupGone(1, False, "released")]
    assert (hub.groups[1].state, hub.groups[1].why) == ("left", "released")
    assert hub.housekeeping(time.monotonic() + 60) == []  # a group that left is never lost as well
    link.close()


def serve(hub: Hub, link: Link, seconds: float, beat: bool) -> list:
    """Both sides' loops for a while; the hub's events."""
    events: list = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        now = time.monotonic()
        events += hub.receive(now) + hub.housekeeping(now)
        link.receive()
        if beat:
            link.beat(now)
        time.sleep(0.005)
    return events


def test_a_group_that_stops_beating_is_lost_once(hub: Hub, key: bytes):
    link = joined(hub, key)
    assert serve(hub, link, 3 * LOST_AFTER_S, beat=True) == []
    assert not link.coordinator_lost(time.monotonic())  # the hub's beats reached it
    stopped = time.monotonic()
    events: list = []
    while not events and time.monotonic() - stopped < 2.0:
        now = time.monotonic()
        events = hub.receive(now) + hub.housekeeping(now)
        time.sleep(0.005)
    waited = time.monotonic() - stopped
    [gone] = events
    assert gone.group == 1 and gone.lost and gone.reason.startswith("no heartbeat for 0.")
    assert LOST_AFTER_S - HEARTBEAT_S <= waited < LOST_AFTER_S + 0.5
    assert hub.groups[1].state == "lost" and hub.housekeeping(time.monotonic() + 60) == []
    assert collect(link.receive, 1) == [("written_off", gone.reason)]
    link.send(("outcomes", "late"))  # the engine decides what a late result is worth
    assert collect(lambda: hub.receive(time.monotonic()), 1) == [GroupMessage(1, ("outcomes", "late"))]
    link.close()


def test_a_flood_without_the_key_neither_holds_the_hub_nor_keeps_a_silent_group_alive(
        hub: Hub, key: bytes, context: zmq.Context, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hub_module, "WARN_EVERY_S", 10.0)
    link = joined(hub, key)
    stop = threading.Event()

    def flood() -> None:
        peer = context.socket(zmq.DEALER)
        peer.connect(hub.address)
        while not stop.is_set():
            peer.send_multipart([b"x", b"y", b"z"])
        peer.close(linger=0)

    thread = threading.Thread(target=flood)
    thread.start()
    stopped = time.monotonic()
    events: list = []
    try:
        while not events and time.monotonic() - stopped < 5.0:
            now = time.monotonic()
            events = hub.receive(now) + hub.housekeeping(now)
            time.sleep(0.002)
        waited = time.monotonic() - stopped
    finally:
        stop.set()
        thread.join()
    assert [(e.group, e.lost) for e in events] == [(1, True)]
    assert waited < LOST_AFTER_S + 1.5  # a receive() of 10000 refused frames, on shared cores
    link.close()


def test_the_link_notices_a_silent_or_dead_coordinator(hub: Hub, key: bytes):
    link = joined(hub, key)
    assert serve(hub, link, 2 * LOST_AFTER_S, beat=True) == []
    assert not link.coordinator_lost(time.monotonic())
    hub.socket.close(linger=0)  # killed: no "ended" comes
    died = time.monotonic()
    while not link.coordinator_lost(time.monotonic()) and time.monotonic() - died < 3.0:
        link.receive()
        link.beat(time.monotonic())
        time.sleep(0.005)
    assert time.monotonic() - died < LOST_AFTER_S + 0.5 and link.coordinator_lost(time.monotonic())
    link.close()


def test_close_tells_every_group_the_job_ended(hub: Hub, key: bytes):
    first, second = joined(hub, key, 1, (5,)), joined(hub, key, 2, (6,))
    first.leave("done")
    assert collect(lambda: hub.receive(time.monotonic()), 1) == [GroupGone(1, False, "done")]
    hub.close(7)
    assert collect(second.receive, 1) == [("ended", 7)]
    assert collect(first.receive, 1, timeout=0.2) == []  # it had left
    first.close()
    second.close()


def test_a_group_that_does_not_read_never_blocks_the_hub(key: bytes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(wire, "HWM", 1000)  # the default, 100 000 a side, only takes longer to fill
    hub = Hub("127.0.0.1", 0, key, LOG, heartbeat_s=HEARTBEAT_S, lost_after_s=60.0)  # lost for dropping alone
    stuck, reader = joined(hub, key, 1, (5,)), joined(hub, key, 2, (6,))
    started = time.monotonic()
    for n in range(200_000):
        hub.send(1, 5, ("tasks", n))
    assert time.monotonic() - started < 3.0
    assert hub.groups[1].dropped > 0
    hub.send(2, 6, ("tasks", "still served"))
    assert collect(reader.receive, 1) == [("to", 6, ("tasks", "still served"))]
    [gone] = hub.housekeeping(time.monotonic())
    assert gone.group == 1 and gone.lost and gone.reason.startswith("it stopped reading: ")
    assert hub.groups[2].state == "active"
    stuck.close()
    reader.close()
    hub.close(0)


FORGETFUL = """
import gc, logging, threading, time
from mpibatch.groups.hub import Hub
from mpibatch.groups.link import Link


def pair():
    hub = Hub("127.0.0.1", 0, bytes(32), logging.getLogger("forgetful"))
    box = {}
    request = {"n_ranks": 1, "hosts": ["h"]}
    thread = threading.Thread(target=lambda: box.update(link=Link.join(hub.address, bytes(32), request, 5)))
    thread.start()
    while not (events := hub.receive(time.monotonic())):
        time.sleep(0.001)
    hub.welcome(events[0], 1, [1], None)
    thread.join()
    return hub, box["link"][0]


hub, link = pair()
link.cycle, hub.cycle = link, hub  # as a traceback that holds them would
del hub, link
gc.collect()
hub, link = pair()
for n in range(5000):
    hub.send(1, 1, ("tasks", n))
    link.send(("outcomes", n))
print("leaving without close()", flush=True)
"""


def test_a_hub_and_link_never_closed_hang_neither_the_collector_nor_the_exit():
    """An exception that skips close() leaves them to the garbage collector (zmq's own cleanup there waits
    forever on a socket it no longer lists) or to the exit, with messages queued."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", FORGETFUL], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "leaving without close()\n", "")
    assert time.monotonic() - started < 10
