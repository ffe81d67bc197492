"""Unit tests for mpibatch.output.commit: the result file, its journal, resume, reuse and the output lock."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from mpibatch.output.commit import JOURNAL, STATE, Fingerprint, ResultStore, prepare_output
from mpibatch.config import ConfigError, JobConfig
from mpibatch.output.logs import Layout
from mpibatch.records import Outcome


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    return tmp_path


def make_config(job: Path, **kw: object) -> JobConfig:
    return JobConfig(entry_script=str(job / "score.py"), inputs=[str(job / "data")], output=str(job / "out"),
                     **kw)


def layout_of(config: JobConfig) -> Layout:
    return Layout(config.output_path, config.result_path)


def outcome(batch_id: int, lines: list[str], n_items: int | None = None, header: bytes = b"") -> Outcome:
    payload = "".join(f"{line}\n" for line in lines).encode()
    n = len(lines) if n_items is None else n_items
    return Outcome(batch_id, 1, 0, n, True, payload, header, len(lines))


def journal_of(layout: Layout) -> list[dict]:
    return [json.loads(line) for line in (layout.state_dir / JOURNAL).read_text().splitlines()]


def first_run(job: Path, status: str = "Interrupted", **kw: object) -> tuple[JobConfig, Layout, Fingerprint]:
    """A run that committed three mini-batches and stopped with `status`."""
    config = make_config(job, **kw)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["inputs-digest"])
    prepared = prepare_output(config, layout, fingerprint)
    assert prepared.entries == [] and prepared.reuse is False
    store = ResultStore(config, layout, prepared, fingerprint)
    store.commit(outcome(0, ["a0", "a1"]), 1, {})
    store.commit(outcome(2, ["c0"], n_items=2), 2, {"exception": 1})
    store.record_failed(3, 4, 3, {"timeout": 3})
    store.commit(outcome(1, ["b0", "b1", "b2"]), 1, {})
    store.close(status)
    return config, layout, fingerprint


def test_commit_writes_bytes_then_journal(job: Path) -> None:
    _, layout, _ = first_run(job)
    data = layout.result_file.read_bytes()
    assert data == b"a0\na1\nc0\nb0\nb1\nb2\n"
    entries = journal_of(layout)
    assert [(e["id"], e["status"], e["end"]) for e in entries] == [
        (0, "succeeded", 6), (2, "succeeded", 9), (3, "failed", 9), (1, "succeeded", 18)]
    assert (entries[1]["ok"], entries[1]["fail"], entries[1]["attempts"], entries[1]["errors"]) == \
        (1, 1, 2, {"exception": 1})
    assert (entries[2]["ok"], entries[2]["fail"]) == (0, 4)
    assert entries[-1]["end"] == len(data)
    state = json.loads((layout.state_dir / STATE).read_text())
    assert state["status"] == "Interrupted"


def test_commit_many_equals_commits_one_by_one(job: Path) -> None:
    """Rank 0 commits a worker's message at once: the same bytes and journal lines, each entry's end
    offset its own, the header only in front of the first bytes."""
    files = {}
    for how in ("one by one", "at once"):
        config = make_config(job).model_copy(update={"output": str(job / how.replace(" ", "_"))})
        layout = layout_of(config)
        fingerprint = Fingerprint.of(config, ["inputs-digest"])
        store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
        done = [(outcome(0, ["a0", "a1"], header=b"h\n"), 1, {}), (outcome(1, ["b0"], n_items=3, header=b"h\n"), 2,
                                                                   {"timeout": 1}), (outcome(2, ["c0"]), 1, {})]
        if how == "at once":
            store.commit_many(done)
        else:
            for args in done:
                store.commit(*args)
        store.close("Completed")
        files[how] = (layout.result_file.read_bytes(), journal_of(layout))
    assert files["at once"] == files["one by one"]
    data, entries = files["at once"]
    assert data == b"h\na0\na1\nb0\nc0\n"
    assert [(e["id"], e["end"], e["ok"], e["fail"], e["errors"]) for e in entries] == [
        (0, 8, 2, 0, {}), (1, 11, 1, 2, {"timeout": 1}), (2, 14, 1, 0, {})]


def test_csv_has_one_header_row(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    prepared = prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)
    store = ResultStore(config, layout, prepared, fingerprint)
    store.add_csv_rows([9, "data", 1, 1, "succeeded", 1, 0, 0.1, 0, "", ""])
    store.close("Completed")
    rows = list(csv.reader(layout.mini_batches_csv.open()))
    assert rows[0][0] == "id" and [r[0] for r in rows].count("id") == 1
    assert rows[-1][0] == "9"


def test_fresh_prepare_on_used_output_refused(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    before = layout.result_file.read_bytes()
    with pytest.raises(ConfigError) as err:
        prepare_output(config, layout, fingerprint)
    assert "resume" in str(err.value)
    assert layout.result_file.read_bytes() == before


def test_output_with_foreign_result_file_refused(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    layout.output.mkdir()
    layout.result_file.write_text("someone else's results\n")
    with pytest.raises(ConfigError, match="parallel_run_step.txt"):
        prepare_output(config, layout, Fingerprint.of(config, ["d"]))
    assert layout.result_file.read_text() == "someone else's results\n"


def test_output_that_is_a_file_refused(job: Path) -> None:
    config = make_config(job)
    Path(config.output).write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_output(config, layout_of(config), Fingerprint.of(config, ["d"]))


def test_resume_truncates_to_last_journaled_offset(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    committed = layout.result_file.read_bytes()
    with open(layout.result_file, "ab") as fh:  # a killed run appended bytes it never journaled
        fh.write(b"half-written\nlines of an uncommitted mini-batch")
    resumed = config.model_copy(update={"resume": True})
    prepared = prepare_output(resumed, layout, fingerprint)
    assert layout.result_file.read_bytes() == committed
    assert [(e.id, e.status, e.end) for e in prepared.entries] == [
        (0, "succeeded", 6), (2, "succeeded", 9), (3, "failed", 9), (1, "succeeded", 18)]
    assert prepared.reuse is False
    store = ResultStore(resumed, layout, prepared, fingerprint)
    store.commit(outcome(4, ["d0"]), 1, {})
    store.close("Completed")
    assert layout.result_file.read_bytes() == committed + b"d0\n"
    last = journal_of(layout)[-1]
    assert isinstance(last.pop("crc"), int)
    assert last == {"id": 4, "end": len(committed) + 3, "status": "succeeded", "ok": 1, "fail": 0, "attempts": 1,
                    "errors": {}}


def test_resume_ignores_a_torn_journal_line(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    journal = layout.state_dir / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:2]) + lines[2][:15])  # the third line was cut mid-write
    prepared = prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0, 2]
    assert layout.result_file.read_bytes() == b"a0\na1\nc0\n"
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == [0, 2]  # tail dropped


def test_resume_without_journal_truncates_to_zero(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    prepared = prepare_output(config, layout, fingerprint)
    store = ResultStore(config, layout, prepared, fingerprint)
    store.result.write(b"unjournaled\n")  # killed before any flush of the journal
    store.result.flush()
    os.close(store.lock_fd)
    prepared = prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)
    assert prepared.entries == []
    assert layout.result_file.read_bytes() == b""


def test_resume_on_fresh_output_starts_fresh(job: Path) -> None:
    config = make_config(job, resume=True)
    prepared = prepare_output(config, layout_of(config), Fingerprint.of(config, ["d"]))
    assert prepared.entries == [] and prepared.reuse is False
    os.close(prepared.lock_fd)


def test_resume_refused_when_script_changed(job: Path) -> None:
    config, layout, _ = first_run(job)
    with open(layout.result_file, "ab") as fh:
        fh.write(b"garbage")
    before = layout.result_file.read_bytes()
    (job / "score.py").write_text("def run(mini_batch):\n    return ['changed'] * len(mini_batch)\n")
    resumed = config.model_copy(update={"resume": True})
    with pytest.raises(ConfigError) as err:
        prepare_output(resumed, layout, Fingerprint.of(resumed, ["inputs-digest"]))
    assert str(err.value).startswith("resume refused")
    assert "entry script" in str(err.value)
    assert layout.result_file.read_bytes() == before  # nothing truncated on refusal


def test_resume_refused_when_inputs_changed(job: Path) -> None:
    config, layout, _ = first_run(job)
    resumed = config.model_copy(update={"resume": True})
    with pytest.raises(ConfigError) as err:
        prepare_output(resumed, layout, Fingerprint.of(resumed, ["another-digest"]))
    assert str(err.value).startswith("resume refused") and "inputs" in str(err.value)


def test_resume_refused_when_config_key_changed(job: Path) -> None:
    config, layout, _ = first_run(job, mini_batch_size=4)
    resumed = make_config(job, mini_batch_size=5, resume=True)
    with pytest.raises(ConfigError) as err:
        prepare_output(resumed, layout, Fingerprint.of(resumed, ["inputs-digest"]))
    assert str(err.value).startswith("resume refused") and "mini_batch_size" in str(err.value)


def test_resume_allowed_when_only_neutral_keys_changed(job: Path) -> None:
    config, layout, _ = first_run(job)
    resumed = make_config(job, resume=True, logging_level="DEBUG", executor="inline", run_invocation_timeout=5)
    prepared = prepare_output(resumed, layout, Fingerprint.of(resumed, ["inputs-digest"]))
    assert len(prepared.entries) == 4
    os.close(prepared.lock_fd)


def test_allow_reuse_of_completed_identical_job(job: Path) -> None:
    config, layout, fingerprint = first_run(job, status="Completed")
    before = layout.result_file.read_bytes()
    prepared = prepare_output(config.model_copy(update={"allow_reuse": True}), layout, fingerprint)
    assert prepared.reuse is True
    assert layout.result_file.read_bytes() == before
    os.close(prepared.lock_fd)


def test_allow_reuse_does_not_reuse_an_interrupted_job(job: Path) -> None:
    config, layout, fingerprint = first_run(job, status="Interrupted")
    with pytest.raises(ConfigError):
        prepare_output(config.model_copy(update={"allow_reuse": True}), layout, fingerprint)


def test_allow_reuse_does_not_reuse_a_different_job(job: Path) -> None:
    config, layout, fingerprint = first_run(job, status="Completed")
    with pytest.raises(ConfigError):
        prepare_output(config.model_copy(update={"allow_reuse": True}), layout,
                       Fingerprint.of(config, ["new-inputs"]))


def test_output_in_use_by_a_running_job(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    first = prepare_output(config, layout, fingerprint)
    try:
        with pytest.raises(ConfigError) as err:
            prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)
        assert "in use" in str(err.value)
        assert f"pid {os.getpid()}" in str(err.value)
    finally:
        os.close(first.lock_fd)
    prepared = prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)  # lock released
    os.close(prepared.lock_fd)


def test_header_written_once_at_offset_zero(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(outcome(0, ["1,a"], header=b"n,s\n"), 1, {})
    store.commit(outcome(1, ["2,b"], header=b"n,s\n"), 1, {})
    store.close("Interrupted")
    assert layout.result_file.read_bytes() == b"n,s\n1,a\n2,b\n"
    assert journal_of(layout)[0]["end"] == len(b"n,s\n1,a\n")
    prepared = prepare_output(config.model_copy(update={"resume": True}), layout, fingerprint)
    store = ResultStore(config, layout, prepared, fingerprint)
    store.commit(outcome(2, ["3,c"], header=b"n,s\n"), 1, {})
    store.close("Completed")
    assert layout.result_file.read_bytes() == b"n,s\n1,a\n2,b\n3,c\n"


def test_header_written_by_first_non_empty_commit(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(Outcome(0, 1, 0, 2, True, b"", b"", 0), 1, {})  # an empty DataFrame: no header known
    store.commit(outcome(1, ["2,b"], header=b"n,s\n"), 1, {})
    store.close("Completed")
    assert layout.result_file.read_bytes() == b"n,s\n2,b\n"


def test_summary_only_writes_no_result_file(job: Path) -> None:
    config = make_config(job, output_action="summary_only")
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(Outcome(0, 1, 0, 2, True, b"", b"", 2), 1, {})
    store.close("Completed")
    assert not layout.result_file.exists()
    assert journal_of(layout)[0]["ok"] == 2


def test_journal_never_points_past_result_bytes_after_flush(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    for i in range(5):
        store.commit(outcome(i, [f"line{i}"]), 1, {})
    store.flush()
    assert journal_of(layout)[-1]["end"] == layout.result_file.stat().st_size == 30
    store.close("Completed")


def test_a_background_flush_journals_only_synced_bytes_and_close_waits_for_it(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    for i in range(3):
        store.commit(outcome(i, [f"line{i}"]), 1, {})
    store.flush(wait=False)  # fsyncs on a thread: dispatch goes on
    store.commit(outcome(3, ["line3"]), 1, {})  # after the group: not covered by it
    store._syncing.result()
    assert [e["id"] for e in journal_of(layout)] == [0, 1, 2]
    assert journal_of(layout)[-1]["end"] == 18 <= layout.result_file.stat().st_size
    store.close("Completed")
    assert [e["id"] for e in journal_of(layout)] == [0, 1, 2, 3]
    assert layout.result_file.read_bytes() == b"line0\nline1\nline2\nline3\n"


# ---- the result file checked against its journal (issue 16, bug 1) ----------------------------

def resume_of(config: JobConfig, layout: Layout, fingerprint: Fingerprint, **kw: object):
    return prepare_output(config.model_copy(update={"resume": True, **kw}), layout, fingerprint)


@pytest.mark.parametrize("cut", [1, 4, 18])
def test_resume_of_a_shortened_result_file_reruns_the_lost_mini_batches_and_never_pads(job: Path, cut: int) -> None:
    config, layout, fingerprint = first_run(job)
    data = layout.result_file.read_bytes()  # a0 a1 | c0 | (3 failed) | b0 b1 b2
    layout.result_file.write_bytes(data[:-cut])
    prepared = resume_of(config, layout, fingerprint)
    kept = {1: [0, 2, 3], 4: [0, 2, 3], 18: []}[cut]
    assert [e.id for e in prepared.entries] == kept
    assert layout.result_file.read_bytes() == data[:prepared.entries[-1].end if kept else 0]
    assert b"\0" not in layout.result_file.read_bytes()
    assert [json.loads(line)["id"] for line in (layout.state_dir / JOURNAL).read_text().splitlines()] == kept
    assert len(prepared.notes) == 1 and "shorter than its journal" in prepared.notes[0]
    os.close(prepared.lock_fd)


def test_resume_of_a_changed_byte_keeps_the_entries_before_it(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    data = bytearray(layout.result_file.read_bytes())
    data[7] ^= 0x20  # inside mini-batch 2's "c0\n"
    layout.result_file.write_bytes(bytes(data))
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0]
    assert layout.result_file.read_bytes() == b"a0\na1\n"
    assert "mini-batch 2's bytes 6-9 do not match the journal" in prepared.notes[0]
    os.close(prepared.lock_fd)


def test_resume_of_a_damaged_journal_line_drops_it_and_what_follows(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    journal = layout.state_dir / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"id":2', '"id":5')  # still JSON, but not the line that was sealed
    journal.write_text("".join(lines))
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0]
    assert layout.result_file.read_bytes() == b"a0\na1\n"
    os.close(prepared.lock_fd)


def test_resume_of_a_journal_damaged_in_the_middle_says_so(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    journal = layout.state_dir / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    lines[1] = "garbage\n"
    journal.write_text("".join(lines))
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0] and layout.result_file.read_bytes() == b"a0\na1\n"
    assert any("is damaged after entry 1" in note for note in prepared.notes)
    os.close(prepared.lock_fd)


def test_a_journal_of_an_older_version_without_seals_still_resumes(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    journal = layout.state_dir / JOURNAL
    old = [{k: v for k, v in json.loads(line).items() if k != "crc"} for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in old))
    with open(layout.result_file, "ab") as fh:
        fh.write(b"tail\n")
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0, 2, 3, 1] and prepared.notes == []
    assert layout.result_file.read_bytes() == b"a0\na1\nc0\nb0\nb1\nb2\n"
    os.close(prepared.lock_fd)


def test_resume_of_a_removed_result_file_runs_its_mini_batches_again(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    layout.result_file.unlink()
    prepared = resume_of(config, layout, fingerprint)
    assert prepared.entries == [] and "parallel_run_step.txt is missing (18 bytes committed)" in prepared.notes[0]
    os.close(prepared.lock_fd)


def test_allow_reuse_refuses_a_completed_output_whose_result_file_was_cut(job: Path) -> None:
    config, layout, fingerprint = first_run(job, status="Completed")
    layout.result_file.write_bytes(layout.result_file.read_bytes()[:-3])
    with pytest.raises(ConfigError, match="shorter than its journal.*not reused; pass --resume"):
        prepare_output(config.model_copy(update={"allow_reuse": True}), layout, fingerprint)
    with open(layout.result_file, "ab") as fh:
        fh.write(b"b2\nextra\n")  # the lines again, and one more
    with pytest.raises(ConfigError, match="holds 24 bytes, not the 18 its journal committed"):
        prepare_output(config.model_copy(update={"allow_reuse": True}), layout, fingerprint)
    prepared = resume_of(config, layout, fingerprint, allow_reuse=True)
    assert not prepared.reuse and len(prepared.entries) == 4 and layout.result_file.stat().st_size == 18
    os.close(prepared.lock_fd)


def test_a_damaged_state_file_is_refused_in_one_line(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    (layout.state_dir / STATE).write_text('{"status": "Interr')
    with pytest.raises(ConfigError, match=r"state.json' is damaged"):
        resume_of(config, layout, fingerprint)


def test_a_journal_left_without_its_state_is_no_runs_journal(job: Path) -> None:
    config, layout, fingerprint = first_run(job)
    (layout.state_dir / STATE).unlink()
    layout.result_file.unlink()
    prepared = resume_of(config, layout, fingerprint)
    assert prepared.entries == [] and not (layout.state_dir / JOURNAL).exists()
    os.close(prepared.lock_fd)


def test_a_run_whose_result_file_was_cut_while_it_ran_is_told(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(outcome(0, ["line0", "line1"]), 1, {})
    assert store.verify_written() is None
    os.truncate(layout.result_file, 6)
    store.commit(outcome(1, ["line2"]), 1, {})
    assert "holds 12 bytes, not the 18 this job committed" in store.verify_written()
    store.close("Failed")
    prepared = resume_of(config, layout, fingerprint)  # the appended bytes sit where mini-batch 0's were
    assert prepared.entries == [] and layout.result_file.read_bytes() == b""
    os.close(prepared.lock_fd)


def test_a_failed_write_breaks_the_store_which_then_never_says_completed(job: Path, monkeypatch) -> None:
    import errno

    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(outcome(0, ["line0"]), 1, {})
    store.flush()
    store.commit(outcome(1, ["line1"]), 1, {})

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.result, "writelines", full, raising=False)
    with pytest.raises(OSError) as raised:
        store.commit(outcome(2, ["line2"]), 1, {})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(layout.result_file)
    with pytest.raises(OSError):
        store.commit(outcome(3, ["line3"]), 1, {})  # nothing more is appended
    monkeypatch.undo()
    store.close("Completed")
    assert json.loads((layout.state_dir / STATE).read_text())["status"] == "Interrupted"
    assert [e["id"] for e in journal_of(layout)] == [0]  # mini-batch 1 was not journaled: it runs again
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0] and layout.result_file.read_bytes() == b"line0\n"
    os.close(prepared.lock_fd)


def test_the_state_is_rewritten_in_place_when_no_new_file_can_be_made(job: Path, monkeypatch) -> None:
    import errno

    config, layout, fingerprint = first_run(job, status="Running")
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if self.name.endswith(".tmp"):
            self.touch()
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    from mpibatch.output import commit

    commit._write_state(layout, fingerprint, "Interrupted")
    assert json.loads((layout.state_dir / STATE).read_text())["status"] == "Interrupted"
    assert not (layout.state_dir / (STATE + ".tmp")).exists()


def test_the_header_is_sealed_with_the_entry_that_wrote_it(job: Path) -> None:
    config = make_config(job)
    layout = layout_of(config)
    fingerprint = Fingerprint.of(config, ["d"])
    store = ResultStore(config, layout, prepare_output(config, layout, fingerprint), fingerprint)
    store.commit(outcome(0, ["a"], header=b"h\n"), 1, {})
    store.commit(outcome(1, ["b"], header=b"h\n"), 1, {})
    store.close("Interrupted")
    prepared = resume_of(config, layout, fingerprint)
    assert [e.id for e in prepared.entries] == [0, 1] and prepared.notes == []
    os.close(prepared.lock_fd)
    layout.result_file.write_bytes(b"H\na\nb\n")  # the header changed
    prepared = resume_of(config, layout, fingerprint)
    assert prepared.entries == [] and layout.result_file.read_bytes() == b""
    os.close(prepared.lock_fd)
