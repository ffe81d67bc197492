"""python: and command_prefix: (script_env.py): the keys, the rank-0 check, the child's command and
environment, and the entry-script side's import hygiene (stdlib-only, written for script_env.FLOOR)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mpibatch.config import ConfigError, build_config, config_digest
from mpibatch.script.script_env import (BOOT, FLOOR, PACKAGE_DIR, ScriptEnvError, check_script_env, child_command,
                                 child_environment, prefix_words)

# The modules the entry-script process imports (script/child.py and what it reaches; inputs/read.py for tables).
CHILD_SIDE = ["__init__", "records", "text", "script/__init__", "script/child", "script/entry", "script/heap",
              "script/outbox", "script/prefetch", "script/proctree", "inputs/__init__", "inputs/read", "inputs/mltable_read"]
_BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type", "deque"}


def child_side_files() -> list[Path]:
    files = [PACKAGE_DIR / f"{name}.py" for name in CHILD_SIDE]
    return files + sorted((PACKAGE_DIR / "script" / "compat").rglob("*.py"))


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (strings under `from __future__ import annotations`)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.AnnAssign, ast.arg)):
            notes.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes.append(node.returns)
        for note in notes:
            if note is not None:
                inside |= {id(n) for n in ast.walk(note)}
    return inside


@pytest.mark.parametrize("path", child_side_files(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_child_side_is_written_for_the_floor_python(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, feature_version=FLOOR)  # no match, no except*, no parenthesised with-items
    annotations = _annotation_nodes(tree)
    if annotations:  # annotations stay unevaluated text (list[str] on 3.8)
        futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
        assert any(a.name == "annotations" for n in futures for a in n.names), f"{path}: needs the future import"
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            assert node.value.id not in _BUILTIN_GENERICS, f"{path}:{node.lineno}: {node.value.id}[...] runs on 3.9+ only"
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("removeprefix", "removesuffix", "cache"), f"{path}:{node.lineno}: 3.9+ API"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and isinstance(node.left, ast.Name) \
                and node.left.id in ("int", "str", "float", "bytes", "None"):
            raise AssertionError(f"{path}:{node.lineno}: X | Y types run on 3.10+ only")
        if isinstance(node, ast.keyword) and node.arg == "slots":
            raise AssertionError(f"{path}:{node.lineno}: dataclass(slots=) is 3.10+ (records._SLOTS)")


def test_child_side_imports_the_standard_library_only(tmp_path: Path) -> None:
    """Under an interpreter without any site-packages (-S), BOOT's loading of the package, the child,
    the compat shims and the table reader works, and nothing outside the standard library is loaded."""
    code = textwrap.dedent(f"""
        import sys
        sys.argv = ["-c", {str(PACKAGE_DIR)!r}]
        boot = {BOOT!r}.split(";from mpibatch.script.child")[0]
        exec(boot)
        import mpibatch.script.child, mpibatch.script.compat, mpibatch.inputs.read, mpibatch.script.proctree
        from mpibatch import EntryScript
        from mpibatch.records import Outcome
        foreign = sorted({{n.split(".")[0] for n in sys.modules}} - set(sys.stdlib_module_names) - {{"mpibatch"}})
        print(foreign)
        print(mpibatch.__file__)
        print(mpibatch.script.proctree.descendants(1) is not None)
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['__main__']" or lines[0] == "[]" or lines[0] == "['__main__', '__mp_main__']", lines[0]
    assert lines[1] == str(PACKAGE_DIR / "__init__.py")


def test_records_unpickle_across_interpreters(tmp_path: Path) -> None:
    """Tasks and outcomes as the pipe carries them (ForkingPickler, multiprocessing's default protocol),
    read by an interpreter that has only the mpibatch package, and sent back."""
    from multiprocessing.reduction import ForkingPickler

    from mpibatch.records import MiniBatch, Outcome, TableSlice, Task

    task = Task(MiniBatch("4.1", 0, (TableSlice("/d/a.csv", "bytes", 0, 10, 3, (("k", "x"),)),), {"k": "x"}, 3), 2)
    code = textwrap.dedent(f"""
        import sys, pickle
        sys.argv = ["-c", {str(PACKAGE_DIR)!r}]
        exec({BOOT!r}.split(";from mpibatch.script.child")[0])
        from multiprocessing.reduction import ForkingPickler
        from mpibatch.records import Outcome
        task = pickle.loads(sys.stdin.buffer.read())
        out = Outcome(task.batch.id, task.attempt, 1, task.batch.size, True, b"a\\n", n_returned=1)
        sys.stdout.buffer.write(bytes(ForkingPickler.dumps(out)))
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], input=bytes(ForkingPickler.dumps(task)),
                          capture_output=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    outcome = __import__("pickle").loads(done.stdout)
    assert isinstance(outcome, Outcome)
    assert (outcome.batch_id, outcome.attempt, outcome.n_items, outcome.payload) == ("4.1", 2, 3, b"a\n")


def test_prefix_words() -> None:
    assert prefix_words("apptainer exec --nv 'my image.sif'") == ["apptainer", "exec", "--nv", "my image.sif"]
    assert prefix_words(["nice", "-n", 7]) == ["nice", "-n", "7"]
    for bad in ("", "  ", "'unclosed", [], {"a": 1}, [True]):
        with pytest.raises(ValueError):
            prefix_words(bad)


def test_child_command() -> None:
    assert child_command(None, ()) == [sys.executable, "-m", "mpibatch.script.child"]
    assert child_command(None, ["nice", "-n", "7"]) == ["nice", "-n", "7", sys.executable, "-m", "mpibatch.script.child"]
    assert child_command("/env/bin/python", ["env", "A=1"]) == ["env", "A=1", "/env/bin/python", "-c", BOOT,
                                                                  str(PACKAGE_DIR)]


def test_child_environment_keeps_the_runner_out() -> None:
    runner_bin = os.path.join(sys.prefix, "bin")
    env = {"PATH": f"{runner_bin}:/usr/bin", "PYTHONPATH": "/site", "PYTHONHOME": "/h", "VIRTUAL_ENV": sys.prefix,
           "KEEP": "1"}
    out = child_environment(env, "/env/bin/python")
    assert out == {"PATH": "/env/bin:/usr/bin" if sys.prefix != sys.base_prefix else f"/env/bin:{runner_bin}:/usr/bin",
                   "KEEP": "1"}
    assert child_environment(env, None) is env


def _job(tmp_path: Path, text: str = "") -> Path:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "score.py").write_text("def run(batch):\n    return batch\n")
    (tmp_path / "data").mkdir(exist_ok=True)
    job = tmp_path / "job.yml"
    job.write_text(f"entry_script: code/score.py\ninputs: data\noutput: out\n{text}")
    return job


def test_keys_resolve_and_validate(tmp_path: Path) -> None:
    config = build_config(str(_job(tmp_path, "python: env/bin/python\ncommand_prefix: nice -n 7\n")), {})
    assert config.python == str(tmp_path / "env" / "bin" / "python")
    assert config.command_prefix == ["nice", "-n", "7"]
    assert build_config(str(_job(tmp_path, "python: python3\n")), {}).python == "python3"  # a name: PATH
    flagged = build_config(str(_job(tmp_path)), {"python": "v/bin/python", "command_prefix": "env A=1"}, cwd=tmp_path / "code")
    assert flagged.python == str(tmp_path / "code" / "v" / "bin" / "python")
    assert flagged.command_prefix == ["env", "A=1"]
    base = build_config(str(_job(tmp_path)), {})
    assert config_digest(base) == config_digest(flagged)  # resume-neutral: where the script runs


@pytest.mark.parametrize("text, message", [
    ("python: env/bin/python\nexecutor: inline\n", "python: needs executor: process (the inline executor runs the "
                                                    "entry script in the rank's own interpreter)"),
    ("command_prefix: nice\nexecutor: inline\n", "command_prefix: needs executor: process"),
    ("command_prefix: \"'x\"\n", "command_prefix: cannot be split into words: No closing quotation"),
    ("command_prefix: []\n", "command_prefix: must name a command"),
    ("python: ''\n", "python: must name a path, not an empty text"),
])
def test_bad_keys_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(str(_job(tmp_path, text)), {})
    assert str(err.value).startswith(message)


def _fake_python(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_check_names_what_is_wrong(tmp_path: Path) -> None:
    env = dict(os.environ)
    cwd = str(tmp_path)

    def problem(python, prefix=(), formats=()) -> str:
        with pytest.raises(ScriptEnvError) as err:
            check_script_env(python, prefix, cwd, env, formats)
        return str(err.value)

    assert problem(str(tmp_path / "nope")) == f"python: '{tmp_path / 'nope'}' does not exist"
    assert problem("no-such-python-here") == "python: 'no-such-python-here' is not a command found on PATH"
    (tmp_path / "plain").write_text("")
    assert problem(str(tmp_path / "plain")) == f"python: '{tmp_path / 'plain'}' is not executable"
    assert problem(str(tmp_path)) == f"python: '{tmp_path}' is a folder, not an interpreter (name its bin/python)"
    old = _fake_python(tmp_path / "python3.6", "echo 3.6.15\n")
    assert problem(old) == f"python: '{old}' is Python 3.6.15; the entry-script process needs Python 3.8 or newer"
    broken = _fake_python(tmp_path / "broken", "echo 'no python here' >&2; exit 9\n")
    assert problem(broken) == f"python: '{broken}' did not run as a Python interpreter: no python here"
    assert problem(None, ["no-such-launcher", "x"]) == "command_prefix: 'no-such-launcher' is not a command found on PATH"
    assert problem(sys.executable, ["false"]) == (f"python: '{sys.executable}' under command_prefix 'false' did not run "
                                                  "as a Python interpreter: exit status 1")
    # the runner's own interpreter passes, but only the mpibatch package is on its path: no pydantic
    version = check_script_env(sys.executable, ["env", "X=1"], cwd, env)
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert check_script_env(None, (), cwd, env) is None


def test_check_reports_a_missing_table_package(tmp_path: Path) -> None:
    """An environment without pandas (an interpreter with no site-packages) and a tabular input."""
    bare = _fake_python(tmp_path / "bare-python", f'exec {sys.base_prefix}/bin/python3 -S "$@"\n')
    assert check_script_env(bare, (), str(tmp_path), dict(os.environ), [None])  # a file input needs nothing
    with pytest.raises(ScriptEnvError) as err:
        check_script_env(bare, (), str(tmp_path), dict(os.environ), [None, "csv"])
    assert str(err.value) == (f"python: '{bare}' (Python {'.'.join(map(str, sys.version_info[:3]))}) cannot "
                              "import pandas, which the job's tabular inputs need in the entry-script process: install "
                              "it into that environment")


def test_a_child_behind_a_forking_prefix_ends_when_its_worker_goes(tmp_path: Path) -> None:
    """The child's parent is the prefix (a shell that forks and waits), which outlives the worker: the
    worker's end of the pipe closing is what tells the child to end, its tree with it."""
    import time

    import psutil

    from mpibatch.script.entry import RuntimeSpec, WorkerInfo
    from mpibatch.script.executor import InitDone
    from mpibatch.script.process import ProcessExecutor
    from mpibatch.records import InputInfo, MiniBatch, Task

    script = tmp_path / "sleepy.py"
    script.write_text("import time\ndef run(batch):\n    time.sleep(300)\n")
    info = WorkerInfo(0, 0, 0, None, "rank0000@test", str(tmp_path / "out"), str(tmp_path / "work"),
                      str(tmp_path / "logs"), str(tmp_path / "logs" / "entry.txt"))
    spec = RuntimeSpec(str(script), str(tmp_path), [], {}, info, [InputInfo("data", False)], "append_row", {})
    with open(tmp_path / "stdout", "ab") as out, open(tmp_path / "stderr", "ab") as err:
        executor = ProcessExecutor(spec, out, err, dict(os.environ), 30, 300, python=sys.executable,
                                   prefix=["sh", "-c", '"$@"; exit 0', "sh"])
        executor.start()
        deadline = time.monotonic() + 30
        event = None
        while event is None and time.monotonic() < deadline:
            executor.wait(0.1)
            event = executor.poll()
        assert isinstance(event, InitDone), (event, (tmp_path / "stderr").read_text())
        executor.submit(Task(MiniBatch(0, 0, ("x",)), 1))
        time.sleep(0.5)
        assert executor.proc is not None
        prefix = psutil.Process(executor.proc.pid)
        interpreter = prefix.children()[0]
        assert interpreter.ppid() == prefix.pid  # a forking prefix: the interpreter is not the worker's child
        assert interpreter.is_running()  # in run(), for 300 s
        executor._close_pipes()  # the worker is gone, as far as the child can tell
        gone, alive = psutil.wait_procs([interpreter], timeout=10)
        assert alive == []  # (within the watch's 1 s; its status is the prefix's to read: 70, EXIT_ORPHANED)
        executor.proc.wait(timeout=10)
