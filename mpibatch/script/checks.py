"""What rank 0 checks of the entry script before any work (and `mpibatch submit` and Job.run() before
launching): the file exists, parses and defines run() at top level, all without importing it."""
from __future__ import annotations

import ast

from ..config import ConfigError, JobConfig
from ..inputs.files import describe


def check_entry_script(config: JobConfig) -> None:
    """The script exists, parses, and defines run() at top level (checked without importing it)."""
    path = config.script_path
    if not path.is_file():  # (a stat: a FIFO is never opened)
        raise ConfigError(f"entry_script: {describe(str(path), 'a Python file')}")
    if config.source_directory and not config.script_home.is_dir():
        raise ConfigError(f"source_directory: {describe(str(config.script_home), 'a folder')}")
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"entry_script: '{path}' has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:
        raise ConfigError(f"entry_script: '{path}' cannot be read as Python: {exc}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    if "run" not in names and "*" not in names:
        raise ConfigError(f"entry_script: '{path}' defines no run() function")
