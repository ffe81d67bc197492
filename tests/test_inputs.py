"""Unit tests for mpibatch.inputs: listing directories, files, globs, filelists and fsspec URLs."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pytest

from mpibatch.config import ConfigError, InputSpec
from mpibatch.inputs import list_inputs


def spec(path: object, **kw: object) -> InputSpec:
    return InputSpec(path=str(path), **kw)


def make_tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n")


TREE = ["zeta.txt", "b/2.txt", "b/10.txt", "a/y/deep.txt", "a/x.txt", "A.txt", "c.bin"]


@pytest.fixture
def memory_root():
    """A unique folder in fsspec's process-wide memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/t{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_directory_listed_recursively_in_sorted_order(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    [listing] = list_inputs([spec(tmp_path / "d")])
    relative = [os.path.relpath(p, tmp_path / "d") for p in listing.items]
    assert sorted(relative) == sorted(TREE)  # every file, nested ones included, each once
    assert relative == ["A.txt", "a/x.txt", "a/y/deep.txt", "b/10.txt", "b/2.txt", "c.bin", "zeta.txt"]
    assert listing.remote is False and listing.index == 0 and listing.name == "d"
    assert all(os.path.isabs(p) for p in listing.items)


def test_directory_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    make_tree(tmp_path / "one", TREE)
    make_tree(tmp_path / "two", list(reversed(TREE)))
    one, two = list_inputs([spec(tmp_path / "one"), spec(tmp_path / "two")])
    assert [os.path.relpath(p, tmp_path / "one") for p in one.items] == \
        [os.path.relpath(p, tmp_path / "two") for p in two.items]
    assert (one.index, two.index) == (0, 1)


def test_single_file(tmp_path: Path) -> None:
    make_tree(tmp_path, ["only.csv"])
    [listing] = list_inputs([spec(tmp_path / "only.csv")])
    assert listing.items == [str(tmp_path / "only.csv")]
    assert listing.name == "only.csv"


def test_file_url_is_a_local_path(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["a.txt", "b.txt"])
    [listing] = list_inputs([spec(f"file://{tmp_path / 'd'}")])
    assert listing.items == [str(tmp_path / "d" / "a.txt"), str(tmp_path / "d" / "b.txt")]
    assert listing.remote is False


def test_glob(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    [listing] = list_inputs([spec(tmp_path / "d" / "*.txt")])
    assert listing.items == [str(tmp_path / "d" / n) for n in ("A.txt", "zeta.txt")]


def test_recursive_glob(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    [listing] = list_inputs([spec(tmp_path / "d" / "**" / "*.txt")])
    expected = sorted(str(tmp_path / "d" / n) for n in TREE if n.endswith(".txt"))
    assert listing.items == expected


def test_filelist_skips_blanks_and_comments_and_resolves_relative_paths(tmp_path: Path) -> None:
    make_tree(tmp_path / "lists" / "data", ["one.txt", "two.txt"])
    absolute = tmp_path / "elsewhere.txt"
    absolute.write_text("x")
    filelist = tmp_path / "lists" / "files.txt"
    filelist.write_text(f"# header comment\n\ndata/two.txt\n   \n  data/one.txt  \n# data/skipped.txt\n{absolute}\n")
    [listing] = list_inputs([spec(filelist, type="filelist")])
    assert listing.items == [str(tmp_path / "lists" / "data" / "two.txt"),
                             str(tmp_path / "lists" / "data" / "one.txt"), str(absolute)]
    assert listing.remote is False


def test_empty_filelist_rejected(tmp_path: Path) -> None:
    filelist = tmp_path / "files.txt"
    filelist.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match=r"inputs\[0\]"):
        list_inputs([spec(filelist, type="filelist")])


def test_missing_filelist_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"inputs\[0\].*nope\.txt"):
        list_inputs([spec(tmp_path / "nope.txt", type="filelist")])


def test_memory_directory_listing(memory_root) -> None:
    fs, root = memory_root
    fs.pipe(f"{root}/b.txt", b"bee")
    fs.pipe(f"{root}/a/z.txt", b"zed")
    fs.pipe(f"{root}/a.txt", b"a")
    [listing] = list_inputs([spec(f"memory://{root}")])
    assert listing.remote is True
    assert listing.url == f"memory://{root}"
    # items are paths inside the URL's filesystem, sorted, every file once
    assert [p.rsplit(root, 1)[1] for p in listing.items] == ["/a.txt", "/a/z.txt", "/b.txt"]
    url_fs, _ = fsspec.core.url_to_fs(listing.url)
    assert [url_fs.cat_file(p) for p in listing.items] == [b"a", b"zed", b"bee"]


def test_memory_glob_and_single_file(memory_root) -> None:
    fs, root = memory_root
    fs.pipe(f"{root}/x/1.csv", b"1")
    fs.pipe(f"{root}/x/2.csv", b"2")
    fs.pipe(f"{root}/x/3.txt", b"3")
    globbed, single = list_inputs([spec(f"memory://{root}/x/*.csv"), spec(f"memory://{root}/x/3.txt")])
    assert [p.rsplit("/", 1)[1] for p in globbed.items] == ["1.csv", "2.csv"]
    assert globbed.remote and single.remote
    assert [p.rsplit("/", 1)[1] for p in single.items] == ["3.txt"]
    assert single.name == "3.txt"


def test_missing_memory_path_rejected(memory_root) -> None:
    _, root = memory_root
    with pytest.raises(ConfigError, match=r"inputs\[0\]"):
        list_inputs([spec(f"memory://{root}/absent")])


def test_missing_path_names_the_input(tmp_path: Path) -> None:
    make_tree(tmp_path / "ok", ["a.txt"])
    with pytest.raises(ConfigError) as err:
        list_inputs([spec(tmp_path / "ok"), spec(tmp_path / "absent")])
    assert "inputs[1]" in str(err.value)
    assert str(tmp_path / "absent") in str(err.value)


def test_empty_directory_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"inputs\[0\].*no files"):
        list_inputs([spec(tmp_path / "empty")])


def test_glob_matching_nothing_rejected(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["a.txt"])
    with pytest.raises(ConfigError, match=r"inputs\[0\].*matches no files"):
        list_inputs([spec(tmp_path / "d" / "*.csv")])


def test_tabular_input_with_an_unknown_suffix_asks_for_a_format(tmp_path: Path) -> None:
    make_tree(tmp_path, ["t.data"])
    with pytest.raises(ConfigError, match=r"inputs\[0\]: cannot tell the table format .*set format: csv"):
        list_inputs([spec(tmp_path / "t.data", type="tabular")])


def test_digest_stable_when_nothing_changes(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    assert list_inputs([spec(tmp_path / "d")])[0].digest == list_inputs([spec(tmp_path / "d")])[0].digest


def test_digest_changes_when_a_file_grows(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    before = list_inputs([spec(tmp_path / "d")])[0].digest
    stat = os.stat(tmp_path / "d" / "a" / "x.txt")
    (tmp_path / "d" / "a" / "x.txt").write_text("longer content\n")
    os.utime(tmp_path / "d" / "a" / "x.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size alone differs
    assert list_inputs([spec(tmp_path / "d")])[0].digest != before


def test_digest_changes_when_a_file_is_added(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", TREE)
    before = list_inputs([spec(tmp_path / "d")])[0].digest
    make_tree(tmp_path / "d", ["b/new.txt"])
    assert list_inputs([spec(tmp_path / "d")])[0].digest != before


def test_glob_digest_changes_when_a_file_is_added(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["a.txt"])
    before = list_inputs([spec(tmp_path / "d" / "*.txt")])[0].digest
    make_tree(tmp_path / "d", ["b.txt"])
    assert list_inputs([spec(tmp_path / "d" / "*.txt")])[0].digest != before


def test_memory_digest_changes_when_a_file_changes_size(memory_root) -> None:
    fs, root = memory_root
    fs.pipe(f"{root}/a.txt", b"a")
    before = list_inputs([spec(f"memory://{root}")])[0].digest
    assert list_inputs([spec(f"memory://{root}")])[0].digest == before
    fs.pipe(f"{root}/a.txt", b"aaaa")
    assert list_inputs([spec(f"memory://{root}")])[0].digest != before


def test_filelist_digest_covers_the_listed_names_not_the_files(tmp_path: Path) -> None:
    """By design: statting a million listed files would cost minutes on a parallel file system."""
    make_tree(tmp_path, ["data/one.txt", "data/two.txt"])
    filelist = tmp_path / "files.txt"
    filelist.write_text("data/one.txt\n")
    before = list_inputs([spec(filelist, type="filelist")])[0].digest
    (tmp_path / "data" / "one.txt").write_text("different and longer\n")
    assert list_inputs([spec(filelist, type="filelist")])[0].digest == before
    filelist.write_text("data/one.txt\ndata/two.txt\n")
    assert list_inputs([spec(filelist, type="filelist")])[0].digest != before


def test_directory_with_symlink_cycle(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["x/f.txt"])
    os.symlink(tmp_path / "d", tmp_path / "d" / "x" / "loop")
    try:
        [listing] = list_inputs([spec(tmp_path / "d")])
    except ConfigError as exc:  # a clean one-line refusal is acceptable too
        assert "inputs[0]" in str(exc)
    else:
        assert [os.path.realpath(p) for p in listing.items].count(str(tmp_path / "d" / "x" / "f.txt")) == 1


def write_bytes_name(folder: Path, name: bytes, text: str = "x\n") -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as fh:
        fh.write(text.encode())
    return path


def test_a_name_that_is_not_utf8_is_listed_and_digested_like_any_other(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["a.txt"])
    bad = write_bytes_name(tmp_path / "d", b"bad\xff.txt")
    [listing] = list_inputs([spec(tmp_path / "d")])
    assert [os.fsencode(p) for p in listing.items] == [os.fsencode(tmp_path / "d" / "a.txt"), bad]
    assert listing.digest == list_inputs([spec(tmp_path / "d")])[0].digest
    [globbed] = list_inputs([spec(tmp_path / "d" / "bad*")])
    assert [os.fsencode(p) for p in globbed.items] == [bad]


def test_a_filelist_may_list_names_that_are_not_utf8(tmp_path: Path) -> None:
    bad = write_bytes_name(tmp_path / "d", b"caf\xe9.txt")
    (tmp_path / "list.txt").write_bytes(bad + b"\n")
    [listing] = list_inputs([spec(tmp_path / "list.txt", type="filelist")])
    assert [os.fsencode(p) for p in listing.items] == [bad]


GLOB_TREE = ["a.txt", "b.csv", ".hidden.txt", "x/a.txt", "x/.h/deep.txt", "x/y/z/c.txt", "x/y/d.csv",
             ".dot/e.txt", "q1.txt", "q22.txt"]


@pytest.mark.parametrize("pattern", ["*.txt", "**/*.txt", "**", "x/**", "x/**/*.csv", "**/y/**/*.txt",
                                     "q?.txt", "[ab].*", ".*", ".dot/*", "x/*/z/*", "*/a.txt", "**/.h/*"])
def test_glob_matches_what_glob_glob_matches_on_a_tree_without_links(tmp_path: Path, pattern: str) -> None:
    import glob

    make_tree(tmp_path / "d", GLOB_TREE)
    full = str(tmp_path / "d" / pattern)
    expected = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))
    [listing] = list_inputs([spec(full)])
    assert listing.items == expected


def test_recursive_glob_enters_a_symlink_loop_once(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", ["f.txt", "x/g.txt"])
    os.symlink(tmp_path / "d", tmp_path / "d" / "x" / "up")  # glob.glob followed it 40 deep: g.txt 41 times
    [listing] = list_inputs([spec(tmp_path / "d" / "**" / "*.txt")])
    assert listing.items == [str(tmp_path / "d" / "f.txt"), str(tmp_path / "d" / "x" / "g.txt")]


def test_a_file_reached_again_is_listed_once_under_the_first_path(tmp_path: Path, caplog) -> None:
    d = tmp_path / "d"
    make_tree(d, ["a.txt", "sub/b.txt"])
    os.symlink(d / "a.txt", d / "sub" / "link.txt")
    os.link(d / "sub" / "b.txt", d / "hard.txt")
    with caplog.at_level("WARNING", logger="mpibatch.plan"):
        first, twice, globbed = list_inputs([spec(d), spec(d), spec(d / "sub" / "*.txt")])
    assert first.items == [str(d / "a.txt"), str(d / "hard.txt")]  # sub/b.txt is hard.txt, sub/link.txt a.txt
    assert twice.items == [] and globbed.items == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("inputs: 8 paths reach a file listed already")  # 2 + 4 + 2
    assert f"e.g. '{d / 'sub' / 'b.txt'}' is '{d / 'hard.txt'}'" in warning


def test_broken_links_loops_and_fifos_inside_a_folder_are_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    d = tmp_path / "d"
    make_tree(d, ["a.txt"])
    os.symlink(d / "nowhere", d / "dangling")
    os.symlink(d / "self", d / "self")  # scandir's is_dir() raised ELOOP: "cannot plan the job"
    os.mkfifo(d / "pipe")
    with caplog.at_level("WARNING", logger="mpibatch.plan"):
        [listing] = list_inputs([spec(d)])
    assert listing.items == [str(d / "a.txt")]
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == (f"inputs: skipped what is not a file: 1 FIFO (e.g. '{d / 'pipe'}'), 1 broken symbolic link "
                       f"(e.g. '{d / 'dangling'}'), 1 symlink loop (e.g. '{d / 'self'}')")


def test_an_input_that_is_not_a_file_or_folder_is_named_for_what_it_is(tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    os.mkfifo(tmp_path / "pipe")
    cases = {"dangling": f"is a broken symbolic link (to '{tmp_path / 'nowhere'}')",
             "loop": "is a symlink loop", "pipe": "is a FIFO, not a file or folder"}
    for name, said in cases.items():
        with pytest.raises(ConfigError) as err:
            list_inputs([spec(tmp_path / name)])
        assert str(err.value) == f"inputs[0]: '{tmp_path / name}' {said}"
