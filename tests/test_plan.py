"""Unit tests for mpibatch.inputs.plan: splitting listed inputs into mini-batches."""
from __future__ import annotations

from typing import Optional, Union

import pytest

from mpibatch.config import ConfigError, JobConfig
from mpibatch.inputs import InputListing
from mpibatch.inputs.plan import FileRun, plan_batches


def config(mini_batch_size: Optional[Union[int, str]] = None, **kw: object) -> JobConfig:
    return JobConfig(entry_script="/s.py", inputs=["/in"], output="/out", mini_batch_size=mini_batch_size, **kw)


def listing(index: int, n: int) -> InputListing:
    return InputListing(index, f"input{index}", [f"/in{index}/f{i:03d}" for i in range(n)], f"digest{index}")


def test_batch_sizes_last_one_smaller() -> None:
    batches = list(plan_batches([listing(0, 23)], config(5)))
    assert [b.size for b in batches] == [5, 5, 5, 5, 3]
    assert [b.id for b in batches] == [0, 1, 2, 3, 4]
    assert all(b.input_index == 0 for b in batches)


def test_default_is_ten_files() -> None:
    batches = list(plan_batches([listing(0, 25)], config()))
    assert [b.size for b in batches] == [10, 10, 5]


def test_string_size_from_a_flag() -> None:
    assert [b.size for b in plan_batches([listing(0, 7)], config("3"))] == [3, 3, 1]


def test_each_input_split_separately_with_contiguous_ids() -> None:
    listings = [listing(0, 7), listing(1, 2), listing(2, 9)]
    batches = list(plan_batches(listings, config(4)))
    assert [b.id for b in batches] == list(range(len(batches)))
    assert [(b.input_index, b.size) for b in batches] == [(0, 4), (0, 3), (1, 2), (2, 4), (2, 4), (2, 1)]
    for b in batches:  # a batch never mixes inputs
        assert {item.split("/")[1] for item in b.items} == {f"in{b.input_index}"}


def test_every_item_exactly_once_in_order() -> None:
    listings = [listing(0, 13), listing(1, 1), listing(2, 30)]
    batches = list(plan_batches(listings, config(6)))
    planned = [item for b in batches for item in b.items]
    assert planned == [item for lst in listings for item in lst.items]


def test_plan_is_deterministic() -> None:
    listings = [listing(0, 11), listing(1, 5)]
    assert list(plan_batches(listings, config(2))) == list(plan_batches(listings, config(2)))


def test_batch_size_larger_than_input() -> None:
    batches = list(plan_batches([listing(0, 3)], config(100)))
    assert len(batches) == 1 and batches[0].size == 3


def test_byte_size_for_file_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mini_batch_size"):
        list(plan_batches([listing(0, 3)], config("1MB")))


def test_partition_keys_for_files_not_silently_ignored() -> None:
    with pytest.raises(ConfigError, match="partition_keys"):
        list(plan_batches([listing(0, 3)], config(2, partition_keys=["user"])))


def test_a_million_files_are_planned_lazily_with_the_same_ids() -> None:
    items = [f"/in/f{i:07d}" for i in range(1_000_000)]
    plan = plan_batches([InputListing(0, "big", items, "d")], config(3))
    assert isinstance(plan.parts[0], FileRun)  # no mini-batch object exists until one is asked for
    assert len(plan) == 333_334 and plan.n_items == 1_000_000
    assert plan[333_333].items == ("/in/f0999999",) and plan[333_333].id == 333_333
    assert plan.get(5).items == ("/in/f0000015", "/in/f0000016", "/in/f0000017")
    assert plan.get("5.0") is None and plan.get(333_334) is None


def test_plan_of_several_inputs_iterates_gets_and_skips_done_ids_alike() -> None:
    plan = plan_batches([listing(0, 5), listing(1, 3)], config(2))
    assert [b.id for b in plan] == [0, 1, 2, 3, 4] and [b.input_index for b in plan] == [0, 0, 0, 1, 1]
    assert [plan.get(i) for i in range(5)] == list(plan)
    assert [b.id for b in plan.after({0, 3})] == [1, 2, 4]
    assert plan.n_items == 8


def test_an_unreadable_table_whose_name_is_not_utf8_is_logged_as_one_utf8_line(tmp_path, caplog) -> None:
    import os

    from mpibatch.inputs import TableListing

    path = os.fsencode(tmp_path) + b"/bad\xff\n.parquet"
    with open(path, "wb") as fh:
        fh.write(b"not parquet")
    listing = TableListing(0, "t", [os.fsdecode(path)], "d", format="parquet")
    with caplog.at_level("WARNING", logger="mpibatch.plan"):
        plan = plan_batches([listing], config())
    assert len(plan) == 1
    [message] = [r.getMessage() for r in caplog.records]
    message.encode("utf-8")  # strict: the rank-0 log can hold it
    assert f"{tmp_path}/bad\\xff\\n.parquet: cannot read its parquet metadata" in message
