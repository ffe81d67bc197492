"""Usage errors: ConfigError and the one stderr line it becomes (exit status 2), and near-miss hints."""
from __future__ import annotations

import difflib
import sys


class ConfigError(Exception):
    """Invalid usage, configuration or input: reported as one line, exit status 2."""

    __module__ = "mpibatch.config"  # its public home (pickles and messages name it there)


def error_line(message: object) -> str:
    """The one stderr line for a usage error: control characters (a newline in a path) escaped."""
    text = str(message)
    return "mpibatch: error: " + "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text)


def report_error(message: object) -> None:
    """Print a usage error's one line in one write, so a launcher never splits or interleaves it."""
    sys.stderr.write(error_line(message) + "\n")
    sys.stderr.flush()


def suggest(key: object, choices: list[str]) -> str:
    """A ' (did you mean ...?)' tail for near-miss names, or ''."""
    close = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

