"""The datapath section's sizes and datasets: ~1 MB parquet row groups and csv files, generated once and kept
in .cache/, and Y, the time mpibatch takes to make one mini-batch ready, measured in a fresh process."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import made_once, printed_json, python_command, run_command

NAME = "datapath"


@dataclass(frozen=True)
class Sizes:
    rows: int  # parquet: rows per slice (one row group)
    slices_per_file: int
    files: int  # copies of the one generated parquet file
    ratios: tuple[float, ...]  # X/Y of the parquet points with every contender
    csv_rows: int  # csv: rows per file, one slice each
    csv_files: int
    csv_ratios: tuple[float, ...]
    one_worker_ratios: tuple[float, ...]  # parquet, `mpiexec -n 2 --no-coordinator-works`
    remote_files: int  # csv files uploaded to the emulator, one per mini-batch
    remote_ratios: tuple[float, ...]
    numpy_workers: tuple[str, ...]  # "all" and/or "one": where the matmul run() is measured (parquet, X/Y 1)
    more_depths: tuple[int, ...]  # prefetch depths beside 0 and 2 where the worker has a spare core
    rounds: int
    timeout_s: float


FULL = Sizes(rows=28_000, slices_per_file=4, files=75, ratios=(0.25, 1.0, 4.0), csv_rows=16_000, csv_files=150,
             csv_ratios=(1.0,), one_worker_ratios=(0.25, 1.0, 4.0), remote_files=100, remote_ratios=(0.25, 1.0, 4.0),
             numpy_workers=("all", "one"), more_depths=(1, 4), rounds=3, timeout_s=300)
QUICK = Sizes(rows=2_000, slices_per_file=2, files=4, ratios=(1.0,), csv_rows=1_000, csv_files=4, csv_ratios=(1.0,),
              one_worker_ratios=(), remote_files=4, remote_ratios=(1.0,), numpy_workers=("one",), more_depths=(),
              rounds=1, timeout_s=120)


@dataclass(frozen=True)
class Workload:
    """One dataset as mpibatch is given it: its slices, rows per slice and Y, one slice's read time."""

    name: str  # as the report shows it
    fmt: str  # parquet, csv, or files (remote files staged to scratch)
    location: str  # a local folder or an az:// URL
    inputs: dict[str, Any] = field(hash=False)  # mpibatch's --inputs
    mini_batch_size: str
    rows: int  # per slice (1 for files: run() counts the files)
    slices: int
    slice_mb: float
    read_ms: float
    reader: str

    @property
    def local(self) -> bool:
        return self.fmt != "files"

    @property
    def folder(self) -> Path:
        return Path(self.location)


def made_table(rows: int):
    """ids, two floats, an int and two string columns (one of them high-cardinality)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(0)
    users = pc.binary_join_element_wise("user-", pc.cast(pa.array(rng.integers(0, 10**6, rows)), pa.string()), "")
    tags = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])[rng.integers(0, 6, rows)]
    return pa.table({"id": np.arange(rows), "x": rng.random(rows), "y": rng.standard_normal(rows),
                     "n": rng.integers(0, 1000, rows).astype(np.int32), "user": users, "tag": pa.array(tags)})


def dataset(cache: Path, fmt: str, sizes: Sizes) -> Path:
    """One generated file copied under `files` names (mpibatch reads a hard-linked file once), made once:
    parquet of `slices_per_file` row groups of `rows` rows; csv of `csv_rows` rows."""
    files = sizes.files if fmt == "parquet" else sizes.csv_files

    def make(folder: Path) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        first = folder / f"part-00000.{fmt}"
        if fmt == "parquet":
            pq.write_table(made_table(sizes.rows * sizes.slices_per_file), first, row_group_size=sizes.rows)
        else:
            pcsv.write_csv(made_table(sizes.csv_rows), first, pcsv.WriteOptions(quoting_style="none"))
        for i in range(1, files):
            shutil.copyfile(first, folder / f"part-{i:05d}.{fmt}")

    shape = f"{sizes.slices_per_file}x{sizes.rows}" if fmt == "parquet" else str(sizes.csv_rows)
    return made_once(cache / f"bench-datapath-{fmt}-{files}x{shape}", make, NAME)


def read_time(*args: Any) -> dict[str, Any]:
    """datapath_read.py's answer: {"read_s", "reader", "prefetch"}."""
    done, _ = run_command(python_command("datapath_read.py", *args), 120)
    return printed_json(done)


def local_workload(cache: Path, fmt: str, sizes: Sizes) -> tuple[Workload, bool]:
    """The dataset, Y measured through mpibatch's reader in a fresh process, and whether `prefetch` exists."""
    folder = dataset(cache, fmt, sizes)
    first = folder / f"part-00000.{fmt}"
    per_file = sizes.slices_per_file if fmt == "parquet" else 1
    rows = sizes.rows if fmt == "parquet" else sizes.csv_rows
    found = read_time(folder, "--format", fmt, "--rows", rows)
    files = sizes.files if fmt == "parquet" else sizes.csv_files
    return Workload(fmt, fmt, str(folder), {"path": str(folder), "type": "tabular"}, f"{rows}rows", rows,
                    files * per_file, first.stat().st_size / per_file / 1e6, found["read_s"] * 1e3,
                    found["reader"]), bool(found["prefetch"])
