"""mpibatch.groups.wire: the join key and address files, and signed framing that decodes nothing unsigned."""
from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from mpibatch.groups import wire
from mpibatch.groups.wire import (ADDRESS_FILE, KEY_FILE, BadMessage, JoinError, create_key, direction_keys, pack,
                                  read_address, read_key, remove_address, unpack, write_address)


class Evil:
    """Unpickling this creates the marker file: proof that a payload was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


HEADER = {"kind": "msg", "session": "ab" * 16, "seq": 7}


def test_the_key_file_is_0600_even_under_a_permissive_umask(tmp_path: Path):
    state = tmp_path / "out" / ".mpibatch"
    old = os.umask(0)
    try:
        key = create_key(state)
    finally:
        os.umask(old)
    path = state / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.hex() + "\n" and len(key) == 32
    assert read_key(state) == key
    assert sorted(os.listdir(state)) == [KEY_FILE]  # no temporary file left behind


def test_each_run_gets_a_new_key(tmp_path: Path):
    first = create_key(tmp_path)
    second = create_key(tmp_path)
    assert first != second and read_key(tmp_path) == second
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_a_missing_key_is_one_line_naming_the_file(tmp_path: Path):
    with pytest.raises(JoinError) as caught:
        read_key(tmp_path)
    assert str(caught.value) == f"{tmp_path / KEY_FILE}: no join key: no job is running in this output folder"
    assert caught.value.code == 1


def test_an_unreadable_key_is_refused_naming_the_file(tmp_path: Path):
    (tmp_path / KEY_FILE).mkdir()  # readable by nobody as a file, whoever runs the test
    with pytest.raises(JoinError) as caught:
        read_key(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / KEY_FILE}: cannot read the join key: ")


def test_permission_denied_says_only_the_owner_can_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    create_key(tmp_path)

    def denied(self: Path, *args, **kwargs) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # the tests run as root, where chmod 000 does not deny
    with pytest.raises(JoinError) as caught:
        read_key(tmp_path)
    assert str(caught.value) == f"{tmp_path / KEY_FILE}: permission denied: only the output folder's owner can join"


@pytest.mark.parametrize("text", ["", "xyz\n", "ab" * 16 + "\n"])
def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path, text: str):
    (tmp_path / KEY_FILE).write_text(text)
    with pytest.raises(JoinError) as caught:
        read_key(tmp_path)
    assert str(caught.value) == f"{tmp_path / KEY_FILE}: not a join key (64 hex digits)"


def test_the_address_file_round_trips_and_goes(tmp_path: Path):
    assert read_address(tmp_path) is None
    info = {"address": "tcp://10.1.2.3:45678", "host": "n1", "pid": 42, "run_id": "ab", "started": 1.5, "job_name": "j"}
    write_address(tmp_path, info)
    assert read_address(tmp_path) == info
    assert json.loads((tmp_path / ADDRESS_FILE).read_text()) == info
    write_address(tmp_path, {**info, "pid": 43})
    assert read_address(tmp_path)["pid"] == 43 and sorted(os.listdir(tmp_path)) == [ADDRESS_FILE]
    remove_address(tmp_path)
    remove_address(tmp_path)  # already gone: no error
    assert read_address(tmp_path) is None


def test_a_half_written_or_foreign_address_file_reads_as_none(tmp_path: Path):
    (tmp_path / ADDRESS_FILE).write_text('{"address": "tcp://')
    assert read_address(tmp_path) is None
    (tmp_path / ADDRESS_FILE).write_text('{"host": "n1"}')
    assert read_address(tmp_path) is None


def test_pack_and_unpack_round_trip():
    key = os.urandom(32)
    body = ("outcomes", [1, 2.5, b"\x00bytes", {"a": None}])
    frames = pack(key, HEADER, body)
    assert [type(f) for f in frames] == [bytes, bytes, bytes] and len(frames[0]) == 32
    assert json.loads(frames[1]) == HEADER
    assert unpack(key, frames) == (HEADER, body)
    assert unpack(key, [memoryview(f) for f in frames]) == (HEADER, body)


def test_a_large_payload_is_signed_in_pieces_the_same_way():
    key = os.urandom(32)
    body = b"x" * (wire._INCREMENTAL * 3)
    frames = pack(key, HEADER, body)
    assert unpack(key, frames)[1] == body
    with pytest.raises(BadMessage, match="bad signature"):
        unpack(key, [frames[0], frames[1], frames[2][:-1] + b"y"])


def test_a_forged_pickle_is_never_loaded(tmp_path: Path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(Evil(marker))
    pickle.loads(evil)  # the control: loading it does create the marker
    assert marker.exists()
    marker.unlink()
    key = os.urandom(32)
    head = json.dumps(HEADER).encode()
    forgeries = [
        pack(os.urandom(32), HEADER, Evil(marker)),  # signed with another key
        [b"\0" * 32, head, evil],  # a made-up signature
        [pack(key, HEADER, "harmless")[0], head, evil],  # a real signature of another payload
        [b"", head, evil],
    ]
    for frames in forgeries:
        with pytest.raises(BadMessage, match="bad signature"):
            unpack(key, frames)
    assert not marker.exists()


def test_the_header_is_not_parsed_before_the_signature_holds():
    key = os.urandom(32)
    with pytest.raises(BadMessage, match="bad signature"):
        unpack(key, [b"\0" * 32, b"not json", pickle.dumps(None)])
    for header in (b"not json", b'["a list"]', b'{"kind": "msg", "session": "s", "seq": "1"}'):
        payload = pickle.dumps(None)
        frames = [wire._sign(key, header, payload), header, payload]
        with pytest.raises(BadMessage, match="header"):
            unpack(key, frames)


def test_a_signed_payload_that_does_not_unpickle_is_a_bad_message():
    key = os.urandom(32)
    head = json.dumps(HEADER).encode()
    payload = b"\x80\x05not a pickle"
    with pytest.raises(BadMessage, match="does not unpickle"):
        unpack(key, [wire._sign(key, head, payload), head, payload])


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_a_message_of_other_than_three_frames_is_bad(count: int):
    key = os.urandom(32)
    frames = (pack(key, HEADER, None) + [b"extra"])[:count]
    with pytest.raises(BadMessage, match=f"{count} frames"):
        unpack(key, frames)


def test_each_direction_signs_with_its_own_key():
    key = os.urandom(32)
    up, down = direction_keys(key)
    assert len({key, up, down}) == 3 and direction_keys(key) == (up, down)
    with pytest.raises(BadMessage):
        unpack(down, pack(up, HEADER, None))  # a group's message reflected back to it is not the hub's
