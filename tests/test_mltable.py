"""MLTable inputs: listing, planning and reading as Azure ML reads them (mpibatch/inputs/mltable.py)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mpibatch.config import ConfigError, JobConfig
from mpibatch.inputs import list_inputs
from mpibatch.inputs.mltable import MLTableFiles, MLTableListing, glob_regex
from mpibatch.inputs.read import TableReadError, read_slices
from mpibatch.inputs.tabular import FileOpener
from mpibatch.inputs.plan import plan_batches


def mltable(folder: Path, doc: dict, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / "MLTable").write_text(yaml.safe_dump(doc))
    return folder


def job(path, tmp_path: Path, **keys):
    config = JobConfig(entry_script=__file__, inputs=[path if isinstance(path, dict) else str(path)],
                       output=str(tmp_path / "out"), **keys)
    listings = list_inputs(config.inputs)
    return listings[0], plan_batches(listings, config)


def frames(path, tmp_path: Path, **keys) -> tuple[list, pd.DataFrame]:
    listing, plan = job(path, tmp_path, **keys)
    parts = [read_slices(b.items, listing.format, listing.options, FileOpener()) for b in plan]
    return list(plan), pd.concat(parts, ignore_index=True)


def refused(path, tmp_path: Path, **keys) -> str:
    with pytest.raises(ConfigError) as err:
        job(path, tmp_path, **keys)
    assert "\n" not in str(err.value)
    return str(err.value)


DELIMITED = {"read_delimited": {"delimiter": ",", "encoding": "ascii", "header": "all_files_same_headers",
                                "empty_as_string": False, "include_path_column": True}}
OJ = {"type": "mltable", "paths": [{"pattern": "./**/*.csv"}],
      "transformations": [DELIMITED, {"extract_columns_from_partition_format":
                                      {"partition_format": "{Store}/{Brand}/{file_name}.{extension}"}},
                          {"drop_columns": ["Path", "file_name", "extension"]}]}
OJ_FILES = {"1000/dominicks/data.csv": "Week,Quantity\n1,10\n2,20\n",
            "1000/tropicana/data.csv": "Week,Quantity\n1,5\n",
            "1001/dominicks/data.csv": "Week,Quantity\n1,7\n2,\n3,NA\n"}


def test_partition_format_columns_land_after_the_data_and_path_is_dropped(tmp_path):
    folder = mltable(tmp_path / "oj", OJ, OJ_FILES)
    _, df = frames(folder, tmp_path)
    assert list(df.columns) == ["Week", "Quantity", "Store", "Brand"]
    assert df[["Store", "Brand"]].drop_duplicates().values.tolist() == [
        ["1000", "dominicks"], ["1000", "tropicana"], ["1001", "dominicks"]]
    assert df["Quantity"].tolist()[:3] == [10, 20, 5]
    assert df["Quantity"].isna().tolist() == [False] * 4 + [True, False]
    assert df["Quantity"].tolist()[5] == "NA"  # only an empty field is null, as in Azure


def test_partition_keys_from_the_path_make_one_mini_batch_each(tmp_path):
    folder = mltable(tmp_path / "oj", OJ, OJ_FILES)
    batches, _ = frames(folder, tmp_path, partition_keys=["Store", "Brand"])
    assert [b.partition_key_value for b in batches] == [
        {"Store": "1000", "Brand": "dominicks"}, {"Store": "1000", "Brand": "tropicana"},
        {"Store": "1001", "Brand": "dominicks"}]
    listing, plan = job(folder, tmp_path, partition_keys=["Store"])
    counts = {b.partition_key_value["Store"]: len(read_slices(b.items, listing.format, listing.options, FileOpener()))
              for b in plan}
    assert counts == {"1000": 3, "1001": 3}


def test_partition_keys_on_row_columns_and_mixed_keys(tmp_path):
    folder = mltable(tmp_path / "oj", OJ, OJ_FILES)
    batches, df = frames(folder, tmp_path, partition_keys=["Week"])
    assert sorted(b.partition_key_value["Week"] for b in batches) == [1, 2, 3]
    assert len(df) == 6
    assert "use one kind" in refused(folder, tmp_path, partition_keys=["Store", "Week"])


def test_path_column_first_with_the_absolute_path(tmp_path):
    doc = {"paths": [{"file": "a.csv"}], "transformations": [{"read_delimited": {"include_path_column": True}}]}
    folder = mltable(tmp_path / "t", doc, {"a.csv": "x,y\n1,2\n"})
    _, df = frames(folder / "MLTable", tmp_path)  # the MLTable file itself names the input too
    assert df.columns.tolist() == ["Path", "x", "y"]
    assert df["Path"].tolist() == [str((folder / "a.csv").resolve())]


def test_header_modes(tmp_path):
    files = {"a.csv": "x,y\n1,p\n2,\n", "b/c.csv": "x,y\n3,q\n"}
    first = mltable(tmp_path / "first", {"paths": [{"folder": "."}],
                                         "transformations": [{"read_delimited": {"header": "from_first_file"}}]}, files)
    _, df = frames(first, tmp_path)
    assert df.columns.tolist() == ["x", "y"] and df["x"].astype(str).tolist() == ["1", "2", "x", "3"]
    none = mltable(tmp_path / "none", {"paths": [{"folder": "."}], "transformations": [
        {"read_delimited": {"header": "no_header", "empty_as_string": True, "infer_column_types": False}}]}, files)
    _, df = frames(none, tmp_path)
    assert df.columns.tolist() == ["Column1", "Column2"]
    assert df.values.tolist() == [["x", "y"], ["1", "p"], ["2", ""], ["x", "y"], ["3", "q"]]


def test_delimiter_and_encoding(tmp_path):
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "a.txt").write_bytes("name;city\nJosé;Málaga\n".encode("latin-1"))
    mltable(folder, {"paths": [{"pattern": "*.txt"}],
                     "transformations": [{"read_delimited": {"delimiter": ";", "encoding": "latin1"}}]})
    _, df = frames(folder, tmp_path)
    assert df.values.tolist() == [["José", "Málaga"]]


def test_parquet_take_is_exact_across_row_groups(tmp_path):
    folder = tmp_path / "pq"
    (folder / "x=1").mkdir(parents=True)
    (folder / "x=2").mkdir()
    pd.DataFrame({"v": range(100)}).to_parquet(folder / "x=1" / "a.parquet", row_group_size=10)
    pd.DataFrame({"v": range(100, 150)}).to_parquet(folder / "x=2" / "b.parquet", row_group_size=10)
    mltable(folder, {"paths": [{"pattern": "./*/*.parquet"}], "transformations": [
        {"read_parquet": {"include_path_column": True}},
        {"extract_columns_from_partition_format": {"partition_format": "x={x}/{f}.parquet"}},
        {"take": 123}, {"keep_columns": ["x", "v"]}]})
    batches, df = frames(folder, tmp_path, mini_batch_size="25rows")
    assert len(batches) > 4
    assert df.columns.tolist() == ["v", "x"]  # the table's order, not the list's
    assert df["v"].tolist() == list(range(123))
    assert df["x"].tolist() == ["1"] * 100 + ["2"] * 23


@pytest.mark.parametrize("size", ["7rows", "40"])
def test_csv_take_is_exact_across_mini_batches(tmp_path, size):
    rows = "".join(f"{i},\"t{i}\"\n" for i in range(50))
    folder = mltable(tmp_path / "c", {"paths": [{"pattern": "*.csv"}],
                                      "transformations": [{"read_delimited": {}}, {"take": 63}]},
                     {"a.csv": "i,t\n" + rows, "b.csv": "i,t\n" + rows.replace("\n", "\n", 49), "c.csv": "i,t\n9,9\n"})
    batches, df = frames(folder, tmp_path, mini_batch_size=size)
    assert len(batches) > 2
    assert df["i"].tolist() == list(range(50)) + list(range(13))
    assert all(p.path != str(folder / "c.csv") for b in batches for p in b.items)  # never opened past take


def test_json_lines_invalid_lines(tmp_path):
    files = {"2024/01/05/p.jsonl": '{"a": 1}\nnot json\n{"a": 2}\n', "2024/02/07/p.jsonl": '{"a": 3, "c": true}\n'}
    doc = {"paths": [{"pattern": "./**/*.jsonl"}], "transformations": [
        {"read_json_lines": {"invalid_lines": "drop", "include_path_column": True}},
        {"extract_columns_from_partition_format": {"partition_format": "{Day:yyyy/MM/dd}/{name}.jsonl"}},
        {"drop_columns": "Path"}]}
    folder = mltable(tmp_path / "j", doc, files)
    _, df = frames(folder, tmp_path)
    assert df["a"].tolist() == [1, 2, 3]
    assert df["Day"].tolist() == [pd.Timestamp(2024, 1, 5)] * 2 + [pd.Timestamp(2024, 2, 7)]
    assert df["name"].tolist() == ["p"] * 3
    doc["transformations"][0] = {"read_json_lines": {"include_path_column": True}}
    folder = mltable(tmp_path / "j2", doc, files)
    listing, plan = job(folder, tmp_path)
    with pytest.raises(TableReadError):
        [read_slices(b.items, listing.format, listing.options, FileOpener()) for b in plan]


def test_convert_column_types(tmp_path):
    doc = {"paths": [{"file": "a.csv"}], "transformations": [
        {"read_delimited": {"infer_column_types": False}},
        {"convert_column_types": [{"columns": ["n", "m"], "column_type": "int"},
                                  {"columns": "f", "column_type": "float"},
                                  {"columns": "b", "column_type": {"boolean": {"true_values": ["yes"],
                                                                               "false_values": ["no"]}}},
                                  {"columns": "d", "column_type": {"datetime": {"formats": ["%d/%m/%Y"]}}}]}]}
    folder = mltable(tmp_path / "t", doc, {"a.csv": "n,m,f,b,d\n1,2,0.5,yes,05/01/2024\n3,,1,no,\n"})
    _, df = frames(folder, tmp_path)
    assert str(df["n"].dtype) == "int64" and df["m"].isna().tolist() == [False, True]
    assert df["f"].tolist() == [0.5, 1.0]
    assert df["b"].tolist() == [True, False]
    assert df["d"].tolist()[0] == pd.Timestamp(2024, 1, 5) and pd.isna(df["d"].tolist()[1])


def test_missing_column_fails_the_read_naming_it(tmp_path):
    doc = {"paths": [{"file": "a.csv"}], "transformations": [{"read_delimited": {}}, {"keep_columns": ["nope"]}]}
    folder = mltable(tmp_path / "t", doc, {"a.csv": "x\n1\n"})
    listing, plan = job(folder, tmp_path)
    with pytest.raises(TableReadError, match="nope"):
        read_slices(plan[0].items, listing.format, listing.options, FileOpener())


def test_paths_only_is_a_file_input_without_the_mltable_file(tmp_path):
    folder = mltable(tmp_path / "imgs", {"paths": [{"folder": "./"}]},
                     {"cat/1.png": "c1", "cat/2.png": "c2", "dog/3.png": "d3"})
    listing, plan = job(folder, tmp_path)
    assert isinstance(listing, MLTableFiles)
    assert listing.items == [str(folder / "cat/1.png"), str(folder / "cat/2.png"), str(folder / "dog/3.png")]
    assert all(not item.endswith("MLTable") for b in plan for item in b.items)
    mltable(folder, {"paths": [{"folder": "./"}], "transformations": [
        {"extract_columns_from_partition_format": {"partition_format": "{label}/{name}.png"}}, {"take": 2}]})
    listing, plan = job(folder, tmp_path, partition_keys=["label"])
    assert [(b.partition_key_value, len(b.items)) for b in plan] == [({"label": "cat"}, 2)]


def test_patterns_glob_as_azure(tmp_path):
    folder = mltable(tmp_path / "g", {"paths": [{"pattern": "**/[ab]?.csv"}],
                                      "transformations": [{"read_delimited": {}}]},
                     {"a1.csv": "x\n1\n", ".h/b2.csv": "x\n2\n", "d/e/a3.csv": "x\n3\n", "c1.csv": "x\n4\n",
                      "a10.csv": "x\n5\n"})
    listing, _ = job(folder, tmp_path)
    assert isinstance(listing, MLTableListing)
    assert [Path(p).relative_to(folder).as_posix() for p in listing.items] == [".h/b2.csv", "a1.csv", "d/e/a3.csv"]
    assert glob_regex("/x/**").match("/x/a/b") and not glob_regex("/x/*").match("/x/a/b")
    assert glob_regex("/x/[!a]*").match("/x/b") and not glob_regex("/x/[!a]*").match("/x/a")


def test_a_plain_folder_without_mltable_stays_a_file_input(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    listing, _ = job(tmp_path / "d", tmp_path)
    assert not isinstance(listing, (MLTableFiles, MLTableListing))


def test_changing_the_mltable_changes_the_digest(tmp_path):
    folder = mltable(tmp_path / "t", {"paths": [{"file": "a.csv"}], "transformations": [{"read_delimited": {}}]},
                     {"a.csv": "x\n1\n"})
    before = job(folder, tmp_path)[0].digest
    mltable(folder, {"paths": [{"file": "a.csv"}], "transformations": [{"read_delimited": {}}, {"take": 1}]})
    assert job(folder, tmp_path)[0].digest != before


REFUSALS = [
    ({"transformations": [{"read_delimited": {}}, {"filter": "col('x') > 1"}]}, "transformation 'filter' is not supported"),
    ({"transformations": [{"read_delta_lake": {"version_as_of": 1}}]}, "transformation 'read_delta_lake'"),
    ({"transformations": [{"take_random_sample": {"probability": 0.5}}]}, "'take_random_sample'"),
    ({"transformations": [{"read_delimited": {}}, {"skip": 2}]}, "'skip'"),
    ({"query_source": "x"}, "key 'query_source' is not supported"),
    ({"transformations": [{"read_delimited": {"partition_size": 5}}]}, "option 'partition_size' is not supported"),
    ({"transformations": [{"take": 2}, {"read_delimited": {}}]}, "'read_delimited' must come first"),
    ({"transformations": [{"read_delimited": {"header": "yes"}}]}, "header 'yes'"),
    ({"transformations": [{"read_delimited": {"encoding": "ebcdic"}}]}, "encoding 'ebcdic'"),
    ({"transformations": [{"read_json_lines": {"invalid_lines": "skip"}}]}, "invalid_lines 'skip'"),
    ({"transformations": [{"read_delimited": {}}, {"take": 0}]}, "take: needs a count"),
    ({"transformations": [{"keep_columns": ["x"]}]}, "keep_columns needs a read_delimited"),
    ({"transformations": [{"read_delimited": {}}, {"convert_column_types": [
        {"columns": "x", "column_type": "stream_info"}]}]}, "column_type 'stream_info' is not supported"),
    ({"transformations": [{"read_delimited": {}}, {"extract_columns_from_partition_format":
                                                   {"partition_format": "a/b"}}]}, "names no column"),
    ({"paths": [{"file": "https://example.com/a.csv"}]}, "only local paths"),
    ({"paths": [{"file": "missing.csv"}]}, "missing.csv' does not exist"),
    ({"paths": [{"pattern": "*.parquet"}]}, "holds no files"),
    ({"paths": [{"url": "a.csv"}]}, "paths[0] must be one of file:, folder:, pattern:"),
    ({"type": "table"}, "type 'table'"),
]


@pytest.mark.parametrize("change,message", REFUSALS, ids=[m for _, m in REFUSALS])
def test_refusals_name_what_is_not_supported(tmp_path, change, message):
    doc = {"paths": [{"file": "a.csv"}], "transformations": [{"read_delimited": {}}], **change}
    folder = mltable(tmp_path / "t", doc, {"a.csv": "x\n1\n"})
    text = refused(folder, tmp_path)
    assert text.startswith("inputs[0]: MLTable '") and message in text, text


def test_explicit_type_mltable(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "holds no MLTable file" in refused({"path": str(tmp_path / "empty"), "type": "mltable"}, tmp_path)
    assert "does not exist" in refused({"path": str(tmp_path / "nope"), "type": "mltable"}, tmp_path)
    folder = mltable(tmp_path / "t", {"paths": [{"file": "a.csv"}]}, {"a.csv": "x\n1\n"})
    named = folder / "table.yaml"
    (folder / "MLTable").rename(named)
    listing, _ = job({"path": str(named), "type": "mltable"}, tmp_path)
    assert listing.items == [str(folder / "a.csv")]
    assert "format does not go with" in refused({"path": str(named), "type": "mltable", "format": "csv"}, tmp_path)


def test_datetime_partition_values(tmp_path):
    from mpibatch.inputs.mltable import PartitionFormat

    fmt = PartitionFormat.parse("/{Dept}/{When:yyyy/MM/dd}/data.csv", "x")
    assert fmt.values("/base/Accounts/2019/01/02/data.csv") == (("Dept", "Accounts"), ("When", dt.datetime(2019, 1, 2)))
    assert fmt.values("/base/other.csv") == (("Dept", None), ("When", None))
    assert json.dumps(fmt.names) == '["Dept", "When"]'
