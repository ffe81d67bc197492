"""The one escaping of names and messages in line-based logs: one line, valid UTF-8, reversible."""
from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from mpibatch.text import escape, escape_lines, unescape


@given(st.text())
def test_any_text_round_trips_as_one_printable_utf8_line(text: str) -> None:
    escaped = escape(text)
    assert unescape(escaped) == text
    assert escaped.isprintable()
    escaped.encode("utf-8")  # strict: no surrogate survives


@given(st.binary(min_size=1).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_any_file_name_bytes_come_back(name: bytes) -> None:
    assert os.fsencode(unescape(escape(os.fsdecode(name)))) == name


def test_plain_names_are_written_as_they_are() -> None:
    assert escape("données/été 2024 (copy).wav") == "données/été 2024 (copy).wav"


def test_the_table_of_escapes() -> None:
    assert escape("a\\b") == "a\\\\b"
    assert escape("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert escape(os.fsdecode(b"bad\xff.txt")) == "bad\\xff.txt"
    assert escape("\x01\x7f") == "\\x01\\x7f"
    assert escape("\x85\u2028") == "\\u0085\\u2028"  # C1 and separators do not collide with name bytes
    assert escape("\U000e0001") == "\\U000e0001"


def test_multi_line_text_keeps_its_lines() -> None:
    text = "Traceback:\n  File 'x'\nValueError: " + os.fsdecode(b"bad\xfe") + "\tend"
    assert escape_lines(text) == "Traceback:\n  File 'x'\nValueError: bad\\xfe\\tend"


def test_a_name_that_is_not_utf8_comes_back_as_its_bytes_in_result_lines() -> None:
    import pandas as pd

    from mpibatch.script.entry import format_result

    name = os.fsdecode(b"/data/caf\xe9.wav")
    assert format_result([f"{name} ok"], "append_row", {}) == (b"/data/caf\xe9.wav ok\n", b"", 1)
    frame = pd.DataFrame({"file": pd.Series([name], dtype=object), "label": [3]})  # (arrow strings refuse it)
    payload, header, count = format_result(frame, "append_row", {"sep": " ", "index": False, "header": True})
    assert (payload, header, count) == (b"/data/caf\xe9.wav 3\n", b"file label\n", 1)
