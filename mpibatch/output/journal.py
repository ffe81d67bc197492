"""The journal of an output: one line per final mini-batch, appended by rank 0 after the result
bytes it covers are on disk (commit.py).

A line is the entry's JSON, closed by a CRC-32 ("crc") over the line's own text and then the result
bytes it commits, so one cheap check tells a damaged line, a truncated result file or changed bytes
(integrity.py). Lines of older versions have no "crc" and are checked by their offsets alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from zlib import crc32

from ..records import BatchId

JOURNAL = "journal.jsonl"
STATUSES = ("succeeded", "failed", "split", "isolated")


def seal(head: str, *chunks: bytes) -> str:
    """A journal line from its head (the entry's JSON without the closing brace): a CRC-32 over the
    head's bytes and then the result bytes the entry commits closes it, so one check covers both."""
    crc = crc32(head.encode())
    for chunk in chunks:
        crc = crc32(chunk, crc)
    return f'{head},"crc":{crc}}}\n'


def journal_line(batch_id: BatchId, end: int, status: str, ok: int, fail: int, attempts: int,
                 errors: Optional[dict[str, int]] = None, payload: bytes = b"", header: bytes = b"") -> str:
    """The journal line of an entry without an isolated item, sealed over its result bytes (the
    header, where this entry wrote it, then the payload). Rank 0 writes one per mini-batch, so the
    common one, without errors, is formatted and sealed here directly (seal() and json.dumps cost
    a few hundred ns more a line)."""
    if errors:
        head = json.dumps({"id": batch_id, "end": end, "status": status, "ok": ok, "fail": fail,
                           "attempts": attempts, "errors": errors}, separators=(",", ":"))[:-1]
    else:
        shown = json.dumps(batch_id) if isinstance(batch_id, str) else batch_id
        head = (f'{{"id":{shown},"end":{end},"status":"{status}","ok":{ok},"fail":{fail},"attempts":{attempts},'
                f'"errors":{{}}')
    crc = crc32(head.encode())
    if header:
        crc = crc32(header, crc)
    return f'{head},"crc":{crc32(payload, crc)}}}\n'


@dataclass
class JournalEntry:
    """One final mini-batch: committed (its bytes end at `end`), failed after all tries, split in
    halves (engine/bisection.py), or a single item isolated by splitting (with its error)."""

    id: BatchId
    end: int
    status: str  # succeeded, failed, split, isolated
    ok: int
    fail: int
    attempts: int
    errors: dict[str, int] = field(default_factory=dict)
    item: str = ""
    error_class: str = ""
    error: str = ""
    crc: Optional[int] = None  # None: a line of an older mpibatch, checked by its offset alone

    def to_json(self) -> str:
        """One journal line of an entry that commits no bytes; the isolated item's fields only where
        set, to keep the journal small."""
        if not self.item:
            return journal_line(self.id, self.end, self.status, self.ok, self.fail, self.attempts, self.errors)
        data = {k: v for k, v in vars(self).items()
                if k != "crc" and (v != "" or k not in ("item", "error_class", "error"))}
        return seal(json.dumps(data, separators=(",", ":"))[:-1])


@dataclass
class Journal:
    """The journal as read: its entries with their raw lines, up to the first line that is torn
    (a killed run's last write) or not a journal entry (damaged): everything after is uncommitted."""

    entries: list[JournalEntry]
    lines: list[bytes]
    size: int  # bytes of the file

    @property
    def kept_bytes(self) -> int:
        return sum(len(line) for line in self.lines)


def read_journal(path: Path) -> Journal:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Journal([], [], 0)
    entries, lines = [], []
    for line in data.splitlines(keepends=True):
        entry = _entry_of(line)
        if entry is None:
            break
        entries.append(entry)
        lines.append(line)
    return Journal(entries, lines, len(data))


def _entry_of(line: bytes) -> Optional[JournalEntry]:
    """The entry of one whole journal line, or None for a torn or damaged one."""
    if not line.endswith(b"\n"):
        return None  # cut before its newline: the next write would have joined it
    try:
        entry = JournalEntry(**json.loads(line))
    except (ValueError, TypeError):
        return None
    if not isinstance(entry.end, int) or isinstance(entry.end, bool) or entry.end < 0 \
            or entry.status not in STATUSES or not (entry.crc is None or isinstance(entry.crc, int)):
        return None
    return entry
