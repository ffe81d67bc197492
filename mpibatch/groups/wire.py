"""What the coordinator and the groups share: the join key and the address in the job's state folder, and the
signed framing of every message between them.

A message is three frames: [signature, header, payload]. The signature is HMAC-SHA256 under the job's key over
the header and the payload, and it is checked before the header is parsed or the payload unpickled, so a peer
without the key never gets a byte of its own decoded (pickle runs code). The key never travels: each side
signs with a key derived from it for its direction, so a message cannot be reflected back to its sender.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import zmq

KEY_FILE, ADDRESS_FILE = "join.key", "coordinator.json"
PROTOCOL = 1  # a join from another mpibatch speaking another protocol is refused, never misread
WRONG_KEY = b"refused: wrong key"  # the one unsigned frame the hub answers a bad signature with
KEY_BYTES = 32
HWM = 100_000  # messages queued per direction before a send is dropped (and its sender written off)
RECEIVE_AT_MOST = 10_000  # frames taken per receive(): a flood, even of refused frames, never holds the caller
_INCREMENTAL = 1 << 16  # payloads above this are hashed in pieces rather than copied into one buffer

Buffer = Union[bytes, bytearray, memoryview]


class JoinError(Exception):
    """One line for the user; `mpibatch join` prints it and exits with .code (default 1)."""

    def __init__(self, line: str, code: int = 1) -> None:
        super().__init__(line)
        self.code = code


class BadMessage(Exception):
    """A message that is not signed with the job's key, not framed as ours, or replayed: dropped undecoded."""


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a fresh file made with `mode` (never a file someone else made), then move it to path."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def create_key(state_dir: Path) -> bytes:
    """A new random key for this run, written 0600 so only the output folder's owner can read it and join."""
    key = secrets.token_bytes(KEY_BYTES)
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_private(state_dir / KEY_FILE, key.hex().encode() + b"\n", 0o600)
    return key


def read_key(state_dir: Path) -> bytes:
    """This run's key; JoinError naming the file when it is missing, unreadable or not a key."""
    path = state_dir / KEY_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise JoinError(f"{path}: no join key: no job is running in this output folder") from None
    except PermissionError:
        raise JoinError(f"{path}: permission denied: only the output folder's owner can join") from None
    except (OSError, UnicodeDecodeError) as error:
        raise JoinError(f"{path}: cannot read the join key: {getattr(error, 'strerror', None) or error}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise JoinError(f"{path}: not a join key ({KEY_BYTES * 2} hex digits)")
    return key


def write_address(state_dir: Path, info: dict[str, Any]) -> None:
    """Say where the coordinator listens; replaced whole, so a reader never sees half of it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_private(state_dir / ADDRESS_FILE, json.dumps(info, sort_keys=True).encode() + b"\n", 0o644)


def read_address(state_dir: Path) -> Optional[dict[str, Any]]:
    """Where the coordinator listens, or None while no coordinator says so."""
    try:
        info = json.loads((state_dir / ADDRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("address"), str) else None


def remove_address(state_dir: Path) -> None:
    (state_dir / ADDRESS_FILE).unlink(missing_ok=True)


def direction_keys(key: bytes) -> tuple[bytes, bytes]:
    """(group -> coordinator, coordinator -> group) signing keys, both derived from the job's key."""
    return (hmac.digest(key, b"mpibatch group->coordinator", "sha256"),
            hmac.digest(key, b"mpibatch coordinator->group", "sha256"))


def _sign(key: bytes, header: Buffer, payload: Buffer) -> bytes:
    if len(payload) < _INCREMENTAL:
        return hmac.digest(key, b"".join((header, b"\0", payload)), "sha256")
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(b"\0")
    mac.update(payload)
    return mac.digest()


def pack(key: bytes, header: dict[str, Any], body: Any) -> list[bytes]:
    """[signature, header as JSON, pickled body]; header: {"kind": str, "session": str, "seq": int}."""
    head = json.dumps(header, separators=(",", ":")).encode()
    payload = pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
    return [_sign(key, head, payload), head, payload]


def unpack(key: bytes, frames: Sequence[Buffer]) -> tuple[dict[str, Any], Any]:
    """The header and body of a signed message; BadMessage, with nothing decoded, unless the signature holds."""
    if len(frames) != 3:
        raise BadMessage(f"{len(frames)} frames, not 3")
    signature, head, payload = frames
    if not hmac.compare_digest(bytes(signature), _sign(key, head, payload)):
        raise BadMessage("bad signature")
    try:
        header = json.loads(bytes(head))
    except ValueError:
        raise BadMessage("header is not JSON") from None
    if not (isinstance(header, dict) and isinstance(header.get("kind"), str)
            and isinstance(header.get("session"), str) and type(header.get("seq")) is int):
        raise BadMessage("header lacks kind, session or seq")
    try:
        body = pickle.loads(payload)
    except Exception as error:  # signed by our key, yet unreadable here: another version's classes
        raise BadMessage(f"payload does not unpickle: {type(error).__name__}: {error}") from None
    return header, body


def shut(context: zmq.Context, socket: zmq.Socket, linger_ms: int = 0) -> None:
    """Close the socket, then its context. Run by weakref.finalize when a hub or link is dropped unclosed: its
    references keep the socket alive until here, where zmq's own cleanup in the garbage collector can find the
    context's socket list already emptied and wait on the socket forever."""
    socket.close(linger=linger_ms)
    context.term()
