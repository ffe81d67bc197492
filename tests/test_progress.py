"""Unit tests for mpibatch.output.progress: progress lines, the overview file and time formatting."""
from __future__ import annotations

from pathlib import Path

import pytest

from mpibatch.output import progress
from mpibatch.output.progress import Progress, format_seconds


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (5.9, "0:05"), (59, "0:59"), (61, "1:01"),
                                               (600, "10:00"), (3600, "1:00:00"), (3725.9, "1:02:05"),
                                               (90061, "25:01:01")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.fixture
def overview(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs" / "job_progress_overview.txt"


def test_lines_mode_reports_on_close(overview: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = Progress("lines", total=8, done_before=0, overview=overview)
    report.update(1, 3, 0)  # too soon after the start for a line
    assert capsys.readouterr().err == ""
    report.close(8, 30, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mpibatch: 8/8 mini-batches (100.0%)")
    assert "items 30 succeeded 2 failed" in err and "ETA 0:00" in err
    lines = overview.read_text().splitlines()
    assert len(lines) == 1 and "8/8 mini-batches" in lines[0]


def test_lines_are_rate_limited(overview: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    monkeypatch.setattr(progress, "OVERVIEW_EVERY_S", 0.0)
    report = Progress("lines", total=4, done_before=0, overview=overview)
    for done in range(1, 4):
        report.update(done, done, 0)
    report.close(4, 4, 0)
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err] == ["1/4", "2/4", "3/4", "4/4"]
    assert [line.split()[2] for line in overview.read_text().splitlines()] == ["1/4", "2/4", "3/4", "4/4"]


def test_partial_progress_has_percent_and_eta(overview: Path) -> None:
    report = Progress("none", total=10, done_before=0, overview=overview)
    text = report.summary(5, 50, 0)
    assert text.startswith("5/10 mini-batches (50.0%)") and "ETA" in text and "ETA ?" not in text


def test_no_progress_yet_after_resume_has_unknown_eta(overview: Path) -> None:
    report = Progress("none", total=10, done_before=4, overview=overview)
    assert report.summary(4, 40, 0).endswith("ETA ?")


def test_none_mode_prints_nothing_but_keeps_the_overview(overview: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    report = Progress("none", total=2, done_before=0, overview=overview)
    report.close(2, 2, 0)
    assert capsys.readouterr().err == ""
    assert "2/2 mini-batches" in overview.read_text()


def test_empty_job(overview: Path) -> None:
    report = Progress("none", total=0, done_before=0, overview=overview)
    report.close(0, 0, 0)
    assert "0/0 mini-batches (100.0%)" in overview.read_text()


def test_bar_mode_closes_cleanly(overview: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = Progress("bar", total=3, done_before=1, overview=overview)
    report.update(2, 2, 0)
    report.close(3, 3, 0)
    assert "3/3" in capsys.readouterr().err
    assert "3/3 mini-batches" in overview.read_text()


def test_auto_mode_without_a_terminal_is_lines(overview: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "launched_from_terminal", lambda: False)
    assert Progress("auto", total=1, done_before=0, overview=overview).mode == "lines"
