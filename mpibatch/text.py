"""The one escaping of names and messages in mpibatch's line-based logs (failed_items.txt, error.txt,
the rank logs, mini_batches.csv, job_result): one record per line, whatever a file name holds.

A file name is any bytes but '/' and NUL, seen by Python as a str where each byte that is not UTF-8
is a lone surrogate (os.fsdecode's surrogateescape); such a str cannot be written to a UTF-8 file,
and a newline or tab in it would split a record. escape() writes a str as printable UTF-8 text:

    \\\\  a backslash          \\n \\t \\r  newline, tab, carriage return
    \\xNN  below 80: that ASCII control character; 80 to ff: that byte of a name that is not UTF-8
    \\uNNNN, \\UNNNNNNNN  any other character that does not print (a lone surrogate, U+2028, ...)

Everything else (letters of any script, spaces, punctuation) is written as itself. unescape()
reverses it exactly, so os.fsencode(unescape(field)) gives back a name's bytes.
"""
from __future__ import annotations

import re

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNNAMED = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|.)", re.DOTALL)


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` as one printable line of UTF-8-safe text (see the module's table)."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join([_escape_char(char) for char in text])


def escape_lines(text: str) -> str:
    """A multi-line text (a traceback) escaped line by line: its newlines stay, nothing else breaks a file."""
    return "\n".join([escape(line) for line in text.split("\n")])


def _unescape_match(match: re.Match) -> str:
    code = match.group(1)
    if len(code) == 1:
        return _UNNAMED.get(code, match.group(0))
    value = int(code[1:], 16)
    return chr(0xDC00 + value) if code[0] == "x" and value >= 0x80 else chr(value)


def unescape(text: str) -> str:
    """The str that escape() turned into `text`."""
    return _ESCAPE.sub(_unescape_match, text) if "\\" in text else text
