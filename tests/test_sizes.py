"""Unit tests for mpibatch.config.sizes: mini_batch_size values."""
from __future__ import annotations

import pytest

from mpibatch.config.sizes import BatchSize, files_per_batch, parse_mini_batch_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, BatchSize("count", 7)),
        ("1024", BatchSize("count", 1024)),
        (" 12 ", BatchSize("count", 12)),
        ("64KB", BatchSize("bytes", 64 * 1024)),
        ("64kb", BatchSize("bytes", 65536)),
        ("10MB", BatchSize("bytes", 10 * 1024**2)),
        ("1GB", BatchSize("bytes", 1024**3)),
        ("1.5KB", BatchSize("bytes", 1536)),
        ("100B", BatchSize("bytes", 100)),
        ("5000rows", BatchSize("rows", 5000)),
        ("5000 ROWS", BatchSize("rows", 5000)),
    ],
)
def test_parse_valid_sizes(value: object, expected: BatchSize) -> None:
    assert parse_mini_batch_size(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["abc", "", "10XB", "KB", "-5", "1.5rows", "0rows", "0", "0KB", "0.0001KB",
                                   "10 MB extra", 0, -3, True])
def test_parse_invalid_sizes_raise_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_mini_batch_size(value)  # type: ignore[arg-type]


def test_files_per_batch_default_and_counts() -> None:
    assert files_per_batch(None) == 10
    assert files_per_batch(None, default=4) == 4
    assert files_per_batch(3) == 3
    assert files_per_batch("25") == 25


@pytest.mark.parametrize("value", ["64KB", "1MB", "100rows"])
def test_files_per_batch_rejects_sizes_and_rows(value: str) -> None:
    with pytest.raises(ValueError, match=value):
        files_per_batch(value)


def test_parse_bytes_and_format_bytes() -> None:
    from mpibatch.config.sizes import format_bytes, parse_bytes

    assert parse_bytes("8GB") == 8 * 1024**3 and parse_bytes("1.5MB") == 1536 * 1024 and parse_bytes(77) == 77
    for bad in ("10rows", "big", "0", True):
        with pytest.raises(ValueError):
            parse_bytes(bad)  # type: ignore[arg-type]
    assert (format_bytes(9.1 * 1024**3), format_bytes(231 * 1024**2), format_bytes(3000)) == ("9.1 GB", "231 MB", "3 KB")
