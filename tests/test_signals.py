"""StopSignals: copies of one stop count once; a later, distinct stop counts again."""
from __future__ import annotations

import signal

from mpibatch.engine.signals import DUPLICATE_WINDOW_S, StopSignals


def test_copies_of_one_signal_count_once():
    stops = StopSignals()
    stops.note(signal.SIGTERM, 100.0)
    stops.note(signal.SIGTERM, 100.01)  # forwarded by the launcher
    stops.note(signal.SIGTERM, 100.02)
    assert stops.count == 1 and stops.received == signal.SIGTERM and stops.exit_code == 143


def test_a_second_stop_after_the_window_counts():
    stops = StopSignals()
    stops.note(signal.SIGINT, 100.0)
    stops.note(signal.SIGINT, 100.0 + DUPLICATE_WINDOW_S + 0.1)  # a user's second Ctrl-C
    assert stops.count == 2 and stops.exit_code == 130


def test_a_different_signal_is_a_second_stop():
    stops = StopSignals()
    stops.note(signal.SIGTERM, 100.0)
    stops.note(signal.SIGINT, 100.05)
    assert stops.count == 2 and stops.received == signal.SIGTERM
