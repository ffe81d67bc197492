"""Unit tests for mpibatch.script.entry: result formatting and hosting an entry script in this process."""
from __future__ import annotations

import logging
import os
import sys
import textwrap
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from mpibatch.script import entry
from mpibatch.script.entry import (EntryRuntime, EntryScript, EntryScriptError, RuntimeSpec, WorkerInfo, format_result,
                           lines_beyond_elements)
from mpibatch.records import InputInfo, MiniBatch, Task

DEFAULT_OPTIONS = {"sep": " ", "header": False, "index": False}


# ---- format_result ---------------------------------------------------------------------------

def test_list_is_one_line_per_element_via_str() -> None:
    assert format_result(["a", 1, 2.5, None], "append_row", DEFAULT_OPTIONS) == (b"a\n1\n2.5\nNone\n", b"", 4)


def test_tuple() -> None:
    assert format_result(("x", "y"), "append_row", DEFAULT_OPTIONS) == (b"x\ny\n", b"", 2)


def test_empty_list() -> None:
    assert format_result([], "append_row", DEFAULT_OPTIONS) == (b"", b"", 0)


def test_numpy_array() -> None:
    assert format_result(np.array([1, 2, 3]), "append_row", DEFAULT_OPTIONS) == (b"1\n2\n3\n", b"", 3)


def test_dataframe_default_options() -> None:
    frame = pd.DataFrame({"name": ["a.png", "b.png"], "label": [3, 7]})
    assert format_result(frame, "append_row", DEFAULT_OPTIONS) == (b"a.png 3\nb.png 7\n", b"", 2)


def test_dataframe_with_header_returns_header_separately() -> None:
    frame = pd.DataFrame({"name": ["a.png", "b.png"], "label": [3, 7]})
    payload, header, count = format_result(frame, "append_row", {"sep": ",", "header": True, "index": False})
    assert header == b"name,label\n"
    assert payload == b"a.png,3\nb.png,7\n"
    assert count == 2


def test_dataframe_with_index() -> None:
    frame = pd.DataFrame({"v": [10, 20]}, index=[5, 6])
    payload, _, _ = format_result(frame, "append_row", {"sep": ",", "header": False, "index": True})
    assert payload == b"5,10\n6,20\n"


@pytest.mark.parametrize("result", [["a", "b", "c"], pd.DataFrame({"x": [1, 2, 3]})])
def test_summary_only_counts_without_payload(result: object) -> None:
    assert format_result(result, "summary_only", DEFAULT_OPTIONS) == (b"", b"", 3)


@pytest.mark.parametrize("result", [None, "a string", b"bytes", {"a": 1}, 42, (x for x in [1, 2])])
def test_other_return_types_raise_type_error(result: object) -> None:
    with pytest.raises(TypeError, match="list, tuple or pandas DataFrame"):
        format_result(result, "append_row", DEFAULT_OPTIONS)


@pytest.mark.parametrize("result,extra", [
    (["a", "b"], 0),
    (["two\nlines", "x"], 1),
    (["ends with a newline\n"], 1),
    ([np.zeros((3, 2))], 2),  # a 2-D array's str() spans its rows
    (np.array([1, 2]), 0),
    (pd.DataFrame({"text": ["a\nb", "c"]}), 0),  # CSV quoting keeps the newline inside its record
])
def test_lines_beyond_elements_counts_what_newlines_inside_elements_add(result: object, extra: int) -> None:
    """The newlines are written as they are (the bytes are the user's), and counted."""
    payload, _, count = format_result(result, "append_row", DEFAULT_OPTIONS)
    assert lines_beyond_elements(result, payload, count) == extra
    assert payload.count(b"\n") == count + extra or isinstance(result, pd.DataFrame)


def test_summary_only_has_no_lines_to_count() -> None:
    payload, _, count = format_result(["two\nlines"], "summary_only", DEFAULT_OPTIONS)
    assert lines_beyond_elements(["two\nlines"], payload, count) == 0


# ---- EntryRuntime ----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """EntryRuntime changes process state on purpose; give it back after each test."""
    saved_env = dict(os.environ)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(entry, "_WORKER", None)
    logger = logging.getLogger("mpibatch.entry_script")
    handlers = list(logger.handlers)
    yield
    os.environ.clear()
    os.environ.update(saved_env)
    for handler in [h for h in logger.handlers if h not in handlers]:
        handler.close()
        logger.removeHandler(handler)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def worker_info(tmp_path: Path, **kw: object) -> WorkerInfo:
    values = dict(rank=3, node_rank=1, local_worker_index=2, gpu=1, agent_name="rank0003@node",
                  output_dir=str(tmp_path / "out"), working_dir=str(tmp_path / "work"),
                  log_dir=str(tmp_path / "out" / "logs"),
                  entry_log_path=str(tmp_path / "out" / "logs" / "user" / "entry_script_log" / "rank-0003.txt"))
    values.update(kw)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def make_runtime(tmp_path: Path, source: str, *, argv: list[str] | None = None, env: dict | None = None,
                 inputs: list[InputInfo] | None = None, output_action: str = "append_row",
                 options: dict | None = None, home: Path | None = None) -> EntryRuntime:
    home = home or tmp_path / "src"
    home.mkdir(parents=True, exist_ok=True)
    script = home / f"score_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(source))
    spec = RuntimeSpec(str(script), str(home), argv or [], env or {}, worker_info(tmp_path),
                       inputs or [InputInfo("data", False)], output_action, options or dict(DEFAULT_OPTIONS))
    return EntryRuntime(spec)


def task(batch_id: int, items: list[str], attempt: int = 1, input_index: int = 0) -> Task:
    return Task(MiniBatch(batch_id, input_index, tuple(items)), attempt)


RECORDING_SCRIPT = """
    import os, sys
    from mpibatch import EntryScript

    calls = []
    seen = {}

    def init():
        calls.append("init")
        es = EntryScript()
        seen.update(rank=es.rank, node_rank=es.node_rank, local_worker_index=es.local_worker_index, gpu=es.gpu,
                    agent_name=es.agent_name, output_dir=es.output_dir, working_dir=es.working_dir,
                    log_dir=es.log_dir, argv=list(sys.argv), my_var=os.environ.get("MY_VAR"),
                    bi_output=os.environ.get("AZUREML_BI_OUTPUT_PATH"))
        es.logger.info("hello from init")

    def run(mini_batch, mini_batch_context):
        calls.append(("run", mini_batch_context.mini_batch_id, mini_batch_context.minibatch_index,
                      mini_batch_context.attempt, mini_batch_context.input_name,
                      mini_batch_context.partition_key_value))
        return [os.path.basename(p) + " done" for p in mini_batch]

    def shutdown():
        calls.append("shutdown")
"""


def test_init_run_shutdown_and_context(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, RECORDING_SCRIPT, inputs=[InputInfo("first", False), InputInfo("second", False)])
    runtime.init()
    outcome = runtime.run(task(4, ["/d/a.txt", "/d/b.txt"], attempt=2, input_index=1))
    runtime.shutdown()
    assert outcome.ok, outcome.error
    assert outcome.payload == b"a.txt done\nb.txt done\n"
    assert (outcome.batch_id, outcome.attempt, outcome.rank, outcome.n_items, outcome.n_returned) == (4, 2, 3, 2, 2)
    assert outcome.succeeded == 2 and outcome.failed == 0
    assert runtime.module.calls == ["init", ("run", 4, 4, 2, "second", {}), "shutdown"]


def test_entry_script_attributes_match_worker_info(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, RECORDING_SCRIPT)
    runtime.init()
    info = runtime.spec.worker
    seen = runtime.module.seen
    for name in ("rank", "node_rank", "local_worker_index", "gpu", "agent_name", "output_dir", "working_dir",
                 "log_dir"):
        assert seen[name] == getattr(info, name), name
    assert os.path.isdir(info.working_dir)
    assert seen["bi_output"] == info.output_dir


def test_entry_script_logger_writes_the_entry_log(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, RECORDING_SCRIPT)
    runtime.init()
    for handler in logging.getLogger("mpibatch.entry_script").handlers:
        handler.flush()
    assert "hello from init" in Path(runtime.spec.worker.entry_log_path).read_text()


def test_environment_and_arguments_reach_the_script(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, RECORDING_SCRIPT, argv=["--model", "m.bin", "extra"], env={"MY_VAR": "42"})
    runtime.init()
    assert runtime.module.seen["my_var"] == "42"
    assert runtime.module.seen["argv"] == [runtime.spec.script_path, "--model", "m.bin", "extra"]


def test_script_home_is_on_sys_path(tmp_path: Path) -> None:
    helper = f"helper_{uuid.uuid4().hex[:8]}"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{helper}.py").write_text("VALUE = 'from helper'\n")
    runtime = make_runtime(tmp_path, f"import {helper}\ndef run(batch):\n    return [{helper}.VALUE] * len(batch)\n")
    runtime.init()
    assert runtime.run(task(0, ["x"])).payload == b"from helper\n"


def test_entry_script_outside_mpibatch_raises() -> None:
    with pytest.raises(RuntimeError):
        EntryScript().rank


def test_run_with_one_parameter_gets_no_context(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(mini_batch):\n    return list(mini_batch)\n")
    runtime.init()
    outcome = runtime.run(task(0, ["a", "b"]))
    assert outcome.ok, outcome.error
    assert outcome.payload == b"a\nb\n"


def test_run_with_optional_context_parameter_gets_it(tmp_path: Path) -> None:
    source = "def run(mini_batch, mini_batch_context=None):\n    return [mini_batch_context.attempt]\n"
    runtime = make_runtime(tmp_path, source)
    runtime.init()
    assert runtime.run(task(0, ["a"], attempt=3)).payload == b"3\n"


def test_exception_in_run_becomes_failed_outcome(tmp_path: Path) -> None:
    source = """
        def run(mini_batch):
            raise ValueError("bad pixel in image\\nsecond line of detail")
    """
    runtime = make_runtime(tmp_path, source)
    runtime.init()
    outcome = runtime.run(task(9, ["a", "b", "c"], attempt=2))
    assert outcome.ok is False
    assert outcome.error_class == "exception"
    assert outcome.error == "ValueError: bad pixel in image"
    assert "Traceback" in outcome.traceback and runtime.spec.script_path in outcome.traceback
    assert "raise ValueError" in outcome.traceback
    assert (outcome.batch_id, outcome.attempt, outcome.n_items) == (9, 2, 3)
    assert outcome.succeeded == 0 and outcome.failed == 3
    assert outcome.payload == b""


def test_sys_exit_in_run_is_a_failed_attempt(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "import sys\ndef run(mini_batch):\n    sys.exit(3)\n")
    runtime.init()
    outcome = runtime.run(task(0, ["a"]))
    assert outcome.ok is False and outcome.error_class == "exception" and "SystemExit" in outcome.error


def test_bad_return_type_is_a_failed_attempt(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(mini_batch):\n    return None\n")
    runtime.init()
    outcome = runtime.run(task(0, ["a"]))
    assert outcome.ok is False and outcome.error_class == "exception" and "TypeError" in outcome.error


def test_partial_return_counts_failed_items(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(mini_batch):\n    return mini_batch[:2]\n")
    runtime.init()
    outcome = runtime.run(task(0, ["a", "b", "c", "d", "e"]))
    assert outcome.ok
    assert (outcome.n_items, outcome.n_returned, outcome.succeeded, outcome.failed) == (5, 2, 2, 3)


def test_more_elements_than_items_is_allowed(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(mini_batch):\n    return mini_batch * 3\n")
    runtime.init()
    outcome = runtime.run(task(0, ["a", "b"]))
    assert outcome.ok and outcome.payload == b"a\nb\na\nb\na\nb\n"
    assert (outcome.succeeded, outcome.failed) == (2, 0)


def test_dataframe_result_uses_append_row_options(tmp_path: Path) -> None:
    source = """
        import pandas as pd
        def run(mini_batch):
            return pd.DataFrame({"file": mini_batch, "n": range(len(mini_batch))})
    """
    runtime = make_runtime(tmp_path, source, options={"sep": ";", "header": True, "index": False})
    runtime.init()
    outcome = runtime.run(task(0, ["a", "b"]))
    assert outcome.ok, outcome.error
    assert outcome.payload == b"a;0\nb;1\n" and outcome.header == b"file;n\n"


def test_summary_only_outcome_has_counts_but_no_bytes(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(mini_batch):\n    return mini_batch\n", output_action="summary_only")
    runtime.init()
    outcome = runtime.run(task(0, ["a", "b"]))
    assert outcome.ok and outcome.payload == b"" and outcome.succeeded == 2


def test_init_exception_propagates(tmp_path: Path) -> None:
    source = "def init():\n    raise RuntimeError('no model')\ndef run(b):\n    return b\n"
    runtime = make_runtime(tmp_path, source)
    with pytest.raises(RuntimeError, match="no model"):
        runtime.init()


def test_script_without_run_is_rejected(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def init():\n    pass\n")
    with pytest.raises(EntryScriptError, match="run"):
        runtime.init()


def test_shutdown_is_optional(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, "def run(b):\n    return b\n")
    runtime.init()
    runtime.shutdown()  # nothing to call, nothing raised


def test_remote_items_are_fetched_to_local_scratch_and_removed(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/e{uuid.uuid4().hex}"
    fs.pipe(f"{root}/sub/a.txt", b"alpha")
    fs.pipe(f"{root}/b.txt", b"beta")
    try:
        source = """
            import os
            def run(mini_batch):
                assert all(os.path.isfile(p) for p in mini_batch), mini_batch
                return [os.path.basename(p) + "=" + open(p).read() + "@" + os.path.dirname(p) for p in mini_batch]
        """
        runtime = make_runtime(tmp_path, source, inputs=[InputInfo("data", True, {}, url=f"memory://{root}")])
        runtime.init()
        outcome = runtime.run(task(5, [f"{root}/sub/a.txt", f"{root}/b.txt"]))
        assert outcome.ok, outcome.traceback
        lines = outcome.payload.decode().splitlines()
        assert [line.split("@")[0] for line in lines] == ["a.txt=alpha", "b.txt=beta"]
        work = runtime.spec.worker.working_dir
        assert all(line.split("@")[1].startswith(work) for line in lines)
        assert lines[0].split("@")[1].endswith("sub")  # folders inside the input are kept
        assert not os.path.exists(os.path.join(work, "mini-batch-5"))  # scratch removed after run()
    finally:
        fs.rm(root, recursive=True)
