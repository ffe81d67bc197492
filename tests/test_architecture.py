"""The architecture cannot drift from what the tree and docs/architecture.md say.

- every `mpibatch/...` path the document names exists, and every `path::Name.attr` it names is defined there;
- every package folder has an __init__.py whose docstring says what lives there;
- layers: a module imports only its own layer and those MAY_IMPORT allows (all below it), save the few deliberate,
  lazy (in-function) imports listed in UPWARD, each with why;
- no import cycle among the modules at import time (module-level imports only).

Imports are read with ast, nothing is imported: the test needs no MPI, pandas or pydantic.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mpibatch"
DOC = ROOT / "docs" / "architecture.md"

# The layers, lowest first, each with the layers below it that it may import (its own is always allowed),
# as each folder's __init__.py says. A module's layer is named by its first step under mpibatch/: its
# folder, or its own name for a top-level module (MEMBERS). Layers that are not ordered against each other
# stay apart: the script's side never imports output/ or cluster/, the report never the engine.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "vocabulary": (),  # records.py, text.py: the records that cross processes, escaping
    "config": ("vocabulary",),  # one validated JobConfig
    "inputs": ("vocabulary", "config"),  # listing, MLTable, planning, reading slices
    "output": ("vocabulary", "config"),  # result file and journal, logs, progress, status, remote
    "script": ("vocabulary", "config", "inputs"),  # executors, the child, the runtime: never output, cluster
    "cluster": ("vocabulary", "config", "output", "script"),  # placement, walltime, launch, submit, doctor
    "groups": ("vocabulary", "config"),  # worker groups' transport (pyzmq): the hub, the link, signed framing
    "engine": ("vocabulary", "config", "inputs", "output", "script", "cluster", "groups"),  # run_job, coordinator, worker
    "report": ("vocabulary", "config", "output"),  # the HTML report, from the output folder alone
    "api": ("vocabulary", "config", "inputs", "output", "script", "cluster", "report"),  # Job, Run: never engine
    "cli": ("vocabulary", "config", "inputs", "output", "script", "cluster", "groups", "engine", "report", "api"),
}
MEMBERS = {"vocabulary": ("records", "text"), "api": ("api", "azureml"), "cli": ("cli", "__main__", "demo")}

# Imports that go up on purpose. Each must stay lazy (inside a function): a check of a lower layer that
# needs a higher one only when it runs. The key is (importer, imported), dotted below mpibatch; the value why.
UPWARD: dict[tuple[str, str], str] = {
    ("config.keys", "script.script_env"): "command_prefix: is split into words as the child's launch will",
    ("config.checks", "script.entry"): "append_row_options are tried on a frame as the script's results will be",
    ("config.azure_v2", "inputs.mltable"): "an Azure ML v2 job's MLTable input: does it read a table",
}

# Folders holding .py files that are sys.path roots for the entry script (its `azureml` and
# `azureml_user` shims, compat: azureml), not packages of mpibatch.
PATH_ROOTS = {"script/compat/shims", "script/compat/shims_user"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, below mpibatch: "engine.coordinator"; the package itself is ""
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    lazy: bool  # inside a function: runs when called, not when the module is imported
    type_only: bool  # under `if TYPE_CHECKING:`: never runs


@lru_cache(maxsize=None)
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _targets(module: Module, node: ast.AST) -> list[str]:
    """What an import statement imports, as names of modules of mpibatch ("" the package itself)."""
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = ["mpibatch", *module.name.split(".")] if module.name else ["mpibatch"]
            if not module.is_package:
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join([*base, *([node.module] if node.module else [])])
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}".removeprefix("mpibatch.") in known else prefix
                 for a in node.names]
    inside = []
    for name in names:
        if name == "mpibatch" or name.startswith("mpibatch."):
            short = name.removeprefix("mpibatch").removeprefix(".")
            while short and short not in known:  # `import mpibatch.x.y` of a name, not a module
                short = short.rpartition(".")[0]
            inside.append(short)
    return inside


@lru_cache(maxsize=None)
def imports() -> list[Import]:
    found: list[Import] = []
    for module in modules().values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))

        def walk(node: ast.AST, lazy: bool, type_only: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    found.extend(Import(module.name, target, child.lineno, lazy, type_only)
                                 for target in _targets(module, child))
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    walk(child, True, type_only)
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    walk(child, lazy, True)
                else:
                    walk(child, lazy, type_only)

        walk(tree, False, False)
    return found


def layer_of(name: str) -> str:
    """A module's layer; "" where it has none (test_every_module_has_a_layer says so)."""
    first = name.split(".")[0]
    return next((layer for layer in MAY_IMPORT if first in MEMBERS.get(layer, (layer,))), "")


def _under_path_root(module: Module) -> bool:
    relative = module.path.relative_to(PACKAGE).as_posix()
    return any(relative.startswith(root + "/") for root in PATH_ROOTS)


# ---- the reader itself, so that a broken parser cannot pass every check below ---------------------------

def test_the_import_reader_sees_known_imports():
    edges = {(i.importer, i.imported): i for i in imports()}
    assert len(edges) > 150
    assert not edges[("engine.coordinator", "engine.retry")].lazy  # `from .retry import Retries`
    assert ("", "script.entry") in edges  # the public face: `from .script.entry import EntryScript`
    assert any(i.lazy for i in edges.values()) and any(i.type_only for i in edges.values())


# ---- the document -------------------------------------------------------------------------------------

PATH = re.compile(r"mpibatch/[A-Za-z0-9_./-]*[A-Za-z0-9_/]")
QUALIFIED = re.compile(r"(mpibatch/[A-Za-z0-9_./-]+\.py)::([A-Za-z_][A-Za-z0-9_.]*)")


def _defined(path: Path, qualname: str) -> bool:
    """Whether `qualname` (a function, class, method or module-level constant) is defined in path."""
    scope: list[ast.stmt] = ast.parse(path.read_text(encoding="utf-8")).body
    for part in qualname.split("."):
        match = None
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part:
                match = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == part for t in targets):
                    match = node
        if match is None:
            return False
        scope = getattr(match, "body", [])
    return True


def test_every_path_the_document_names_exists():
    text = DOC.read_text(encoding="utf-8")
    named = set(PATH.findall(text))
    assert len(named) > 20, "docs/architecture.md names the modules it describes"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_function_the_document_names_is_defined_there():
    text = DOC.read_text(encoding="utf-8")
    named = set(QUALIFIED.findall(text))
    assert len(named) > 20
    missing = sorted(f"{p}::{q}" for p, q in named if not (ROOT / p).is_file() or not _defined(ROOT / p, q))
    assert not missing, f"docs/architecture.md names what is not defined there: {missing}"


# ---- the tree -----------------------------------------------------------------------------------------

def test_every_package_folder_says_what_lives_there():
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    bare, silent = [], []
    for folder in sorted(folders):
        relative = folder.relative_to(PACKAGE).as_posix()
        if relative in PATH_ROOTS:
            continue
        init = folder / "__init__.py"
        if not init.exists():
            bare.append(relative)
        elif not (ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").strip():
            silent.append(relative)
    assert not bare, f"folders of .py files without an __init__.py: {bare}"
    assert not silent, f"packages whose __init__.py has no docstring: {silent}"


def test_the_layers_are_in_order():
    """A layer may import only layers listed before it: the table is one order, lowest first."""
    seen: set[str] = set()
    for layer, below in MAY_IMPORT.items():
        assert set(below) <= seen, f"{layer} may import {sorted(set(below) - seen)}, listed after it"
        seen.add(layer)


def test_the_document_lists_the_layers_in_this_order():
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `mpibatch/")]
    layers = [layer_of(PATH.search(row).group(0).removeprefix("mpibatch/").split("/")[0].removesuffix(".py"))
              for row in rows]
    assert layers == list(MAY_IMPORT), "docs/architecture.md's table of folders and MAY_IMPORT disagree"


def test_every_module_has_a_layer():
    unplaced = sorted({m.name.split(".")[0] for m in modules().values() if m.name and not layer_of(m.name)})
    assert not unplaced, f"add these to MAY_IMPORT or MEMBERS in tests/test_architecture.py: {unplaced}"


def _upward() -> list[Import]:
    """Imports of a layer the importer may not import (the package itself is everyone's: importing any
    module of it ran its __init__ first)."""
    wrong = []
    for i in imports():
        if not (i.importer and i.imported):
            continue
        mine, theirs = layer_of(i.importer), layer_of(i.imported)
        if mine and theirs and theirs != mine and theirs not in MAY_IMPORT[mine]:
            wrong.append(i)
    return wrong


def test_lower_layers_never_import_higher_ones():
    wrong = sorted({f"mpibatch/{modules()[i.importer].path.relative_to(PACKAGE)}:{i.line} imports "
                    f"mpibatch.{i.imported}{' (lazily: list it in UPWARD with why)' if i.lazy else ''}"
                    for i in _upward() if (i.importer, i.imported) not in UPWARD or not i.lazy})
    assert not wrong, "a lower layer imports a higher one:\n" + "\n".join(wrong)


def test_every_upward_exception_is_still_needed():
    unknown = sorted(f"{a} -> {b}" for a, b in UPWARD if a not in modules() or b not in modules())
    assert not unknown, f"UPWARD names modules that do not exist: {unknown}"
    used = {(i.importer, i.imported) for i in _upward()}
    stale = sorted(f"{a} -> {b}" for a, b in UPWARD if (a, b) not in used)
    assert not stale, f"UPWARD lists imports that no longer happen: {stale}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_at_import_time():
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for i in imports():
        if not (i.lazy or i.type_only) and i.imported != i.importer:
            graph[i.importer].add(i.imported)
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other at import time: " + "; ".join(
        " <-> ".join(f"mpibatch.{m}" if m else "mpibatch" for m in cycle) for cycle in cycles)

