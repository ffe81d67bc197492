"""The entry-script process's side: load the user's script, call init/run/shutdown, format results.

This module runs inside the entry-script process (a fresh child, or the rank itself with the
inline executor). It never imports mpi4py, so the child never touches MPI.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from ..records import BatchId, InputInfo, Outcome, Task
from ..text import escape, escape_lines
from .heap import keep_freed_memory


@dataclass(frozen=True)
class WorkerInfo:
    """Who this worker is and where its files go; EntryScript() reads it."""

    rank: int
    node_rank: int
    local_worker_index: int
    gpu: Optional[int]
    agent_name: str
    output_dir: str
    working_dir: str
    log_dir: str
    entry_log_path: str
    logging_level: str = "INFO"


@dataclass(frozen=True)
class RuntimeSpec:
    """Everything the entry-script process needs to host the user's script."""

    script_path: str
    script_home: str
    argv: list[str]
    environment: dict[str, str]
    worker: WorkerInfo
    inputs: list[InputInfo]
    output_action: str
    append_row_options: dict[str, Any]
    models: dict[str, str] = field(default_factory=dict)
    compat: Optional[str] = None
    prefetch: int = 0  # mini-batches prepared ahead on a background thread (child.py; 0 with the inline executor)


_WORKER: Optional[WorkerInfo] = None


class EntryScript:
    """What the entry script may ask about itself: `EntryScript().logger`, `.output_dir`, `.rank`..."""

    @property
    def _info(self) -> WorkerInfo:
        if _WORKER is None:
            raise RuntimeError("EntryScript is only available inside a script that mpibatch runs")
        return _WORKER

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger("mpibatch.entry_script")

    @property
    def output_dir(self) -> str:
        return self._info.output_dir

    @property
    def working_dir(self) -> str:
        return self._info.working_dir

    @property
    def log_dir(self) -> str:
        return self._info.log_dir

    @property
    def agent_name(self) -> str:
        return self._info.agent_name

    @property
    def rank(self) -> int:
        return self._info.rank

    @property
    def node_rank(self) -> int:
        return self._info.node_rank

    @property
    def local_worker_index(self) -> int:
        return self._info.local_worker_index

    @property
    def gpu(self) -> Optional[int]:
        return self._info.gpu


@dataclass
class MiniBatchDataset:
    """`mini_batch_context.dataset`: in Azure ML the input dataset filtered to this mini-batch (its
    partition); here the mini-batch's own part of the input: its local files, or its rows."""

    name: str
    partition_key_value: dict[str, Any]
    items: Any = field(repr=False)  # the list of local paths, or the DataFrame, that run() gets

    def to_path(self) -> list[str]:
        """The mini-batch's local file paths (Azure: the paths of the filtered FileDataset)."""
        if _is_frame(self.items):
            raise TypeError(f"input '{self.name}' is tabular: use to_pandas_dataframe()")
        return list(self.items)

    def to_pandas_dataframe(self) -> Any:
        """The mini-batch's rows (Azure: the filtered TabularDataset as a DataFrame)."""
        if not _is_frame(self.items):
            raise TypeError(f"input '{self.name}' is a file input: use to_path()")
        return self.items


@dataclass
class MiniBatchContext:
    """The second argument of run(mini_batch, mini_batch_context): Azure ML's attributes
    (partition_key_value, dataset, minibatch_index) and mpibatch's own (mini_batch_id, attempt, input_name)."""

    partition_key_value: dict[str, Any]
    mini_batch_id: BatchId
    minibatch_index: BatchId
    attempt: int
    input_name: str
    dataset: Optional[MiniBatchDataset] = None


@dataclass
class Prepared:
    """One attempt's data made ready for run(), or the error that reading it raised."""

    batch_id: BatchId
    attempt: int
    items: Any
    n_items: int
    label: str = ""
    scratch: Optional[str] = None  # staged remote files, removed once run() is over or the data discarded
    error: Optional[BaseException] = None
    traceback: str = ""
    began: float = 0.0
    ended: float = 0.0
    overlap: float = 0.0  # of began..ended, the seconds another mini-batch's run() ran (prefetch.py)

    def discard(self) -> None:
        self.items = None
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def has_data_phase(info: InputInfo) -> bool:
    """Whether a mini-batch of this input takes time to make ready (staged, or read into a DataFrame): then
    the entry-script process says when run() starts (local files: run() gets their paths at once)."""
    return info.remote or bool(info.format)


def _read_ahead(paths: list[Any]) -> None:
    """Ask the kernel (and a parallel file system behind it) to start reading the next files now."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except (OSError, TypeError, ValueError):
            continue  # a folder, a vanished file: run() finds out itself
        try:
            advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


class EntryScriptError(Exception):
    """Loading the script failed; the message is one line that names the script."""


def error_summary(exc: BaseException) -> str:
    """One line naming the exception, for error.txt and job_result (escaped: a message that quotes a
    file name whose bytes are not UTF-8 still writes to every log)."""
    text = str(exc).strip().splitlines()
    line = escape(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."


def format_result(result: Any, output_action: str, options: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """Turn run()'s return into (result-file bytes, csv header bytes, element count)."""
    if type(result) is not list:  # a list, the usual return, needs no checks (one per mini-batch)
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(result, pandas.DataFrame):
            count = len(result)
            if output_action != "append_row" or count == 0:
                return b"", b"", count
            opts = {k: v for k, v in options.items() if k not in ("path_or_buf", "mode", "header")}
            opts.setdefault("lineterminator", "\n")
            payload = result.to_csv(None, header=False, **opts).encode("utf-8", "surrogateescape")
            header = (result.iloc[:0].to_csv(None, header=True, **opts).encode("utf-8", "surrogateescape")
                      if options.get("header") else b"")
            return payload, header, count
        if isinstance(result, (str, bytes, dict)) or not hasattr(result, "__len__") or not hasattr(result, "__iter__"):
            raise TypeError(f"run() must return a list, tuple or pandas DataFrame, not {type(result).__name__}")
    count = len(result)
    if output_action != "append_row":
        return b"", b"", count
    return "".join([f"{element}\n" for element in result]).encode("utf-8", "surrogateescape"), b"", count


def lines_beyond_elements(result: Any, payload: bytes, count: int) -> int:
    """Result-file lines beyond one per element: an element whose str() holds a newline (a multi-line
    text, a 2-D numpy array) writes several lines yet is one result. The newlines are kept, not escaped
    (the bytes are the user's); this count makes the mismatch visible. A DataFrame's rows are left out:
    CSV quoting keeps a newline inside its record."""
    if not payload or type(result) is not list and _is_frame(result):
        return 0
    return payload.count(b"\n") - count


def _is_frame(result: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(result, pandas.DataFrame)


def _rows_part(frame: Any, batch: Any) -> tuple[Any, str]:
    """The rows of a bisected tabular half, and a label that finds them again."""
    lo, hi, den = batch.rows_part
    first, stop = len(frame) * lo // den, len(frame) * hi // den
    piece = batch.items[0]
    where = f"{piece.path} ({piece.unit} {piece.start}-{piece.stop})"
    label = f"{where} row {first}" if stop - first == 1 else f"{where} rows {first}-{stop - 1}"
    return frame.iloc[first:stop].reset_index(drop=True), label


def _load_module(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"cannot load entry script '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _wants_context(run: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _setup_logger(info: WorkerInfo) -> None:
    logger = logging.getLogger("mpibatch.entry_script")
    logger.setLevel(info.logging_level)
    logger.propagate = False
    if not any(getattr(h, "_mpibatch", False) for h in logger.handlers):
        os.makedirs(os.path.dirname(info.entry_log_path), exist_ok=True)
        handler = logging.FileHandler(info.entry_log_path, errors="surrogateescape")  # a name's bytes, as print()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._mpibatch = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


class EntryRuntime:
    """Hosts one loaded entry script: init once, run per task, shutdown at the end."""

    def __init__(self, spec: RuntimeSpec) -> None:
        self.spec = spec
        self.module: Optional[ModuleType] = None
        self._run: Optional[Callable[..., Any]] = None
        self._with_context = False
        self._filesystems: dict[str, Any] = {}
        self._openers: dict[str, Any] = {}

    def prepare(self) -> None:
        """Set the process up as the script expects: sys.path, argv, environment, logger, and a heap
        that keeps what one mini-batch freed for the next."""
        global _WORKER
        spec = self.spec
        _WORKER = spec.worker
        os.makedirs(spec.worker.working_dir, exist_ok=True)
        os.environ.update(spec.environment)
        for folder in reversed(spec.environment.get("PYTHONPATH", "").split(os.pathsep)):  # as if set at start
            if folder and folder not in sys.path:
                sys.path.insert(0, folder)
        os.environ["AZUREML_BI_OUTPUT_PATH"] = spec.worker.output_dir
        from ..inputs.read import import_readers

        import_readers([info.format for info in spec.inputs])  # counted in init(), not in the first read
        keep_freed_memory()
        if spec.compat:
            from .compat import activate

            activate(spec.compat, spec.models, spec.worker.working_dir, spec.environment)
        if spec.script_home not in sys.path:
            sys.path.insert(0, spec.script_home)
        sys.argv = [spec.script_path, *spec.argv]
        _setup_logger(spec.worker)

    def init(self) -> None:
        """Load the script and call its init(); raises what the script raises."""
        self.prepare()
        try:
            self.module = _load_module(self.spec.script_path)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in ("azureml", "azureml_user") and not self.spec.compat:
                raise ModuleNotFoundError(f"No module named '{exc.name}': add 'compat: azureml' to the job to run "
                                          "Azure ML entry scripts unchanged", name=exc.name) from exc
            raise
        run = getattr(self.module, "run", None)
        if not callable(run):
            raise EntryScriptError(f"entry script '{self.spec.script_path}' defines no run() function")
        self._run = run
        self._with_context = _wants_context(run)
        init = getattr(self.module, "init", None)
        if callable(init):
            init()

    def run(self, task: Task, on_started: Optional[Callable[[], None]] = None,
            prepared: Optional[Prepared] = None) -> Outcome:
        """Call run() on one mini-batch; every failure becomes an Outcome, never an exception.
        `prepared`: its data made ready ahead (prefetch.py), else read here; `on_started` is told
        just before run() is called (the worker's run_invocation_timeout starts there)."""
        begun = time.perf_counter()
        data = prepared if prepared is not None else self.prepare_data(task)
        try:
            return self._call(task, data, begun, on_started)
        finally:
            data.discard()

    def prepare_data(self, task: Task) -> Prepared:
        """A mini-batch's data as run() gets it: remote files staged, table slices read; a failure is
        kept for the attempt (it fails when its turn comes), never raised."""
        batch = task.batch
        began = time.perf_counter()
        data = Prepared(task.batch.id, task.attempt, list(batch.items), batch.size, began=began)
        try:
            info = self.spec.inputs[batch.input_index]
            if info.format:
                from ..inputs.read import read_slices

                data.n_items = 0  # until the rows are read: a failed read is no row's fault (no bisection)
                items = read_slices(batch.items, info.format, info.options, self._opener(info))
                if batch.rows_part:
                    items, data.label = _rows_part(items, batch)
                data.items, data.n_items = items, len(items)
            elif info.remote:
                data.scratch, data.items = self._fetch(batch.id, batch.items, info)
            elif self.spec.prefetch:
                _read_ahead(data.items)
        except BaseException as exc:  # noqa: BLE001 - a reader may raise anything
            if isinstance(exc, KeyboardInterrupt):
                raise
            data.error, data.traceback = exc, escape_lines(traceback.format_exc())
        data.ended = time.perf_counter()
        return data

    def _call(self, task: Task, data: Prepared, begun: float, on_started: Optional[Callable[[], None]]) -> Outcome:
        batch = task.batch
        rank = self.spec.worker.rank
        info = self.spec.inputs[batch.input_index]
        started = begun if not info.remote else data.ended  # remote: run()'s clock starts once staged
        data_s, overlap_s = data.ended - data.began, data.overlap
        if data.error is not None:
            ended = time.perf_counter()
            return Outcome(batch.id, task.attempt, rank, data.n_items, False, error_class="exception",
                           error=error_summary(data.error), traceback=data.traceback, seconds=ended - started,
                           label=data.label, data_seconds=data_s, overlap_seconds=overlap_s)
        called = returned = 0.0
        try:
            items = data.items
            args: list[Any] = [items]
            if self._with_context:
                keys = dict(batch.partition_key_value)
                args.append(MiniBatchContext(keys, batch.id, batch.id, task.attempt, info.name,
                                             MiniBatchDataset(info.name, keys, items)))
            assert self._run is not None
            if on_started:
                on_started()
            if info.remote:
                started = time.perf_counter()
            called = time.perf_counter()
            data_s += called - data.ended if data.began >= begun else 0.0  # building the call, read inline
            result = self._run(*args)
            returned = time.perf_counter()
            payload, header, count = format_result(result, self.spec.output_action, self.spec.append_row_options)
            return Outcome(batch.id, task.attempt, rank, data.n_items, True, payload, header, count,
                           seconds=time.perf_counter() - started, label=data.label,
                           extra_lines=lines_beyond_elements(result, payload, count),
                           data_seconds=data_s, run_seconds=returned - called, overlap_seconds=overlap_s)
        except BaseException as exc:  # noqa: BLE001 - the user's script may raise anything, SystemExit too
            if isinstance(exc, KeyboardInterrupt):
                raise
            ended = time.perf_counter()
            return Outcome(batch.id, task.attempt, rank, data.n_items, False, error_class="exception",
                           error=error_summary(exc), traceback=escape_lines(traceback.format_exc()),
                           seconds=ended - started, label=data.label, data_seconds=data_s,
                           run_seconds=(returned or ended) - called if called else 0.0, overlap_seconds=overlap_s)

    def _opener(self, info: InputInfo) -> Any:
        """One opener per input, so a remote filesystem is connected once per process."""
        from ..inputs.read import FileOpener

        key = info.url or info.name
        if key not in self._openers:
            self._openers[key] = FileOpener(info.remote, info.url, info.storage_options)
        return self._openers[key]

    def _filesystem(self, info: InputInfo, item: str) -> tuple[Any, str]:
        """The fsspec filesystem that holds an item, opened once per input."""
        import fsspec

        if info.url is None:
            return fsspec.core.url_to_fs(item, **info.storage_options)
        if info.url not in self._filesystems:
            self._filesystems[info.url] = fsspec.core.url_to_fs(info.url, **info.storage_options)[0]
        return self._filesystems[info.url], item

    def _fetch(self, batch_id: int, items: tuple[str, ...], info: InputInfo) -> tuple[str, list[str]]:
        """Copy remote files to this worker's scratch folder; run() gets local paths."""
        os.makedirs(self.spec.worker.working_dir, exist_ok=True)
        # a folder of its own per attempt: a discarded prefetch of the same mini-batch may still be cleaned up
        scratch = tempfile.mkdtemp(prefix=f"mini-batch-{batch_id}-", dir=self.spec.worker.working_dir)
        local = []
        for item in items:
            fs, path = self._filesystem(info, item)
            target = os.path.join(scratch, path.split("://")[-1].lstrip("/"))  # keeps names and folders
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs.get_file(path, target)
            local.append(target)
        return scratch, local

    def shutdown(self) -> None:
        shutdown = getattr(self.module, "shutdown", None) if self.module else None
        if callable(shutdown):
            shutdown()
