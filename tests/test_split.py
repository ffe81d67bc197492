"""Unit tests for mpibatch.engine.bisection: deterministic halves and what a resume re-creates."""
from __future__ import annotations

import os

from mpibatch.output.commit import JournalEntry
from mpibatch.output.journal import read_journal
from mpibatch.records import MiniBatch, TableSlice
from mpibatch.engine.bisection import Bisection, failed_item_line, halves, halves_to_redo, rewrite_failed_items, should_bisect
from mpibatch.text import unescape

BATCH = MiniBatch(17, 0, tuple(f"f{i}" for i in range(5)))


def test_halves_have_derived_ids_and_split_the_items() -> None:
    a, b = halves(BATCH)
    assert (a.id, a.items, b.id, b.items) == ("17.0", ("f0", "f1"), "17.1", ("f2", "f3", "f4"))
    assert [h.id for h in halves(b)] == ["17.1.0", "17.1.1"]


def test_should_bisect_batches_failed_by_exception_or_crash() -> None:
    assert should_bisect(None, BATCH, ["exception", "crash"])
    assert not should_bisect(False, BATCH, ["exception"])
    assert not should_bisect(None, BATCH, ["exception", "timeout"])
    assert not should_bisect(None, MiniBatch(3, 0, ("only",)), ["exception"]), "a planned single file fails as before"
    assert should_bisect(None, MiniBatch("3.1", 0, ("only",)), ["exception"]), "a single half is isolated"
    table = MiniBatch(4, 0, (TableSlice("t.csv", "bytes", 0, 10, 2),), n_items=2)
    assert should_bisect(None, table, ["exception"], rows_read=2), "tables bisect by rows too"
    assert not should_bisect(None, table, ["exception"], rows_read=0), "a failed read is no row's fault"
    assert not should_bisect(False, table, ["exception"])


def test_table_halves_split_the_rows_by_fraction_and_cover_each_row_once() -> None:
    table = MiniBatch(4, 0, (TableSlice("t.parquet", "rows", 100, 137, 37),), n_items=37)
    a, b = halves(table)
    assert (a.id, a.rows_part, a.size, b.id, b.rows_part, b.size) == ("4.0", (0, 1, 2), 18, "4.1", (1, 2, 2), 19)
    assert a.items == b.items == table.items
    leaves = [a, *halves(b)]
    assert [leaf.rows_part for leaf in leaves] == [(0, 1, 2), (2, 3, 4), (3, 4, 4)]
    for n in (1, 2, 7, 37):  # whatever the rows read, the fractions cover each row exactly once
        covered = [i for leaf in leaves for i in range(n * leaf.rows_part[0] // leaf.rows_part[2],
                                                          n * leaf.rows_part[1] // leaf.rows_part[2])]
        assert covered == list(range(n))


def test_halves_to_redo_follows_nested_splits_and_skips_committed_halves() -> None:
    journal = [JournalEntry(17, 0, "split", 0, 0, 3), JournalEntry("17.0", 5, "succeeded", 2, 0, 1),
               JournalEntry("17.1", 5, "split", 0, 0, 1), JournalEntry("17.1.1", 5, "isolated", 0, 1, 1)]
    redo = halves_to_redo({b.id: b for b in [BATCH, MiniBatch(18, 0, ("x",))]}.get, journal)
    assert [(b.id, b.items) for b in redo] == [("17.1.0", ("f2",))]


def test_rewrite_failed_items_keeps_only_journaled_isolations(tmp_path) -> None:
    path = tmp_path / "failed_items.txt"
    path.write_text("a\texception\tboom\nb\texception\tboom (never journaled)\n")
    rewrite_failed_items(path, [JournalEntry("1.0", 0, "isolated", 0, 1, 1, item="a", error_class="exception",
                                             error="boom\nmore")])
    assert path.read_text() == "a\texception\tboom\n"


def test_a_failed_item_is_one_line_of_three_fields_whatever_its_name_holds(tmp_path) -> None:
    name = b"/data/raise\xfe\tname\nsecond\\line"
    line = failed_item_line(os.fsdecode(name), "exception", "ValueError: bad item raise\\xfe\nmore")
    assert line == "/data/raise\\xfe\\tname\\nsecond\\\\line\texception\tValueError: bad item raise\\xfe\n"
    item, error_class, error = line.rstrip("\n").split("\t")
    assert os.fsencode(unescape(item)) == name
    path = tmp_path / "failed_items.txt"
    journal = tmp_path / "journal.jsonl"
    journal.write_text(JournalEntry("1.0", 0, "isolated", 0, 1, 1, item=os.fsdecode(name), error_class="exception",
                                    error="boom").to_json())
    rewrite_failed_items(path, read_journal(journal).entries)  # a resume writes the same line from the journal
    assert path.read_bytes().decode("utf-8") == failed_item_line(os.fsdecode(name), "exception", "boom")


def _split_and_fail_both(policy: Bisection, batch_id: int, error: str) -> None:
    policy.split(batch_id, error)
    policy.half_final(f"{batch_id}.0", False, error)
    policy.half_final(f"{batch_id}.1", False, error)


def test_bisection_stops_once_splits_show_the_failure_is_the_same_for_every_item() -> None:
    policy = Bisection(None)
    for batch_id in (1, 2):
        _split_and_fail_both(policy, batch_id, "OSError: model.pt missing")
    assert policy.wants_split(BATCH, ["exception"]), "two uninformative splits are not yet proof"
    _split_and_fail_both(policy, 3, "OSError: model.pt missing")
    assert not policy.wants_split(BATCH, ["exception"])
    assert "3 split mini-batches" in policy.stopped and "OSError: model.pt missing" in policy.stopped


def test_bisection_goes_on_when_a_split_told_something() -> None:
    policy = Bisection(None)
    policy.split(1, "ValueError: bad item f3")
    policy.half_final("1.0", True)  # the good half: the failure is the items'
    for batch_id in (2, 3, 4, 5):
        _split_and_fail_both(policy, batch_id, "OSError: model.pt missing")
    assert policy.stopped is None and policy.wants_split(BATCH, ["exception"])


def test_halves_that_fail_with_other_errors_are_informative() -> None:
    policy = Bisection(None)
    for batch_id in (1, 2, 3):
        policy.split(batch_id, "ValueError: bad item f0")
        policy.half_final(f"{batch_id}.0", False, "ValueError: bad item f0")
        policy.half_final(f"{batch_id}.1", False, "ValueError: bad item f4")
    assert policy.stopped is None


def test_halves_re_created_by_a_resume_are_ignored() -> None:
    policy = Bisection(None)
    policy.half_final("9.0", False, "boom")
    assert not policy.watching and policy.stopped is None
