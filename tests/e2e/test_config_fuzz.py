"""Property-based fuzzing of the configuration (issue 16): random keys, types and values, through
a job file and through flags alike.

In-process (many examples): reading and validating either ends in a JobConfig that keeps every
stated bound, or in a ConfigError: never another exception. Through the real CLI under
`mpiexec -n 2` (a few examples): exit 0 or 2, never a traceback; on 2 exactly one stderr line
and nothing written.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, cli_env, mpiexec, without_launcher_banner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mpibatch.cli import _run_request
from mpibatch.config import RANGES, ConfigError, JobConfig, build_config, config_digest, glob_root
from mpibatch.config.flags import key_kind

pytestmark = pytest.mark.e2e

KEYS = sorted(JobConfig.model_fields) + ["node_count", "process_count_per_node"]
TEXTS = ["", " ", "auto", "nan", "inf", "-inf", "1e306", "-1", "0", "1.5", "2", "64KB", "5000rows", "logs",
         ".mpibatch", "LOGS", "..", "a/b", "data", "data/out", "out", "score.py", "x\ny", "\u2028", "process",
         "inline", "append_row", "summary_only", "DEBUG", "azureml", "true", "{", "{bad json", "[1, 2]",
         '{"path": "data"}', '{"sepp": ","}', "sep=,", "sep=;;", "A=1", "8GB", "1", "~", "null", "1:30", "0x10"]
HOSTILE_YAML = [
    "mini_batch_size: 1\nmini_batch_size: 2\n",
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d]\n",
    "arguments: &r [x, *r]\n", "append_row_options: !!python/object:os.system {}\n", "\tindented: tab\n",
    "stop_grace: !!float nope\n", "inputs: " + "[" * 200 + "]" * 200 + "\n", "models: {<<: {m: a}, m: b}\n",
]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(TEXTS))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(["sep", "path", "type", "header", "A"]), st.text(max_size=6)),
                    inner, max_size=3)), max_leaves=6)
PATH_TEXTS = {
    "output": ["data", "data/out", "./data/x/..", "out", "", " ", "x\ny", "memory://o", "file://data", "score.py"],
    "inputs": [["data"], ["data/*.txt"], ["data/**"], [""], ["nowhere"], [{"path": "data"}], [{"path": ""}], "data"],
    "append_row_file_name": ["logs", ".mpibatch", "LOGS", "a/b", "..", ".", "", "x.txt", "r\nx", "x" * 300],
}


def plausible(key: str) -> st.SearchStrategy:
    """Values of the key's own kind, near and past its bounds, so most examples get past the type check."""
    if key in RANGES:
        high = RANGES[key].high
        return st.one_of(st.integers(min_value=-2, max_value=int(min(high, 10**6)) + 1),
                         st.floats(min_value=-1, max_value=high * 1.01, allow_nan=False),
                         st.sampled_from([high, high + 1, float("nan"), float("inf"), 1e306, "auto", "1e306"]))
    if key in PATH_TEXTS:
        return st.sampled_from(PATH_TEXTS[key])
    field = JobConfig.model_fields.get(key)
    kind = key_kind(field.annotation) if field is not None else "value"
    if kind == "bool":
        return st.booleans()
    if kind == "list":
        return st.lists(st.sampled_from(TEXTS), max_size=3)
    if kind == "map":
        return st.dictionaries(st.sampled_from(["sep", "header", "index", "na_rep", "sepp", "A", "m"]),
                               st.one_of(st.sampled_from(TEXTS), st.booleans()), max_size=2)
    return st.sampled_from(TEXTS)


entry = st.sampled_from(KEYS).flatmap(lambda key: st.tuples(st.just(key), st.one_of(plausible(key), plausible(key),
                                                                                       values)))
FOCUS = ["output", "append_row_file_name", "inputs", "mini_batch_size", "append_row_options", "max_worker_memory",
         *RANGES]
focused = st.sampled_from(FOCUS).flatmap(lambda key: st.tuples(st.just(key), plausible(key)))
mutations = st.tuples(focused, st.one_of(
    st.lists(entry, max_size=3).map(dict),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)), values, max_size=3))
).map(lambda pair: {pair[0][0]: pair[0][1], **pair[1]})


@pytest.fixture(scope="module")
def job_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fuzz")
    (home / "data").mkdir()
    (home / "data" / "a.txt").write_text("a\n")
    (home / "score.py").write_text("import os\n\ndef run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n")
    return home


def base_job(home: Path) -> dict[str, Any]:
    return {"entry_script": str(home / "score.py"), "inputs": [str(home / "data")], "output": str(home / "out"),
            "progress": "none"}


def flag_text(value: Any) -> str:
    """A value as a user would type it; argv cannot carry NUL."""
    text = "null" if value is None else value if isinstance(value, str) else json.dumps(value)
    return str(text).replace("\0", "")


def as_flags(data: dict[str, Any]) -> list[str]:
    """The same job as `--key=value` flags (the `=` keeps a value such as '-x' a value)."""
    argv: list[str] = []
    for key, value in data.items():
        name = flag_text(key)
        flag = "--" + name.replace("_", "-")
        field = JobConfig.model_fields.get(name)
        kind = key_kind(field.annotation) if field is not None else "value"
        if kind == "bool" and isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif kind == "list" and isinstance(value, list):
            argv += [f"{flag}={flag_text(item)}" for item in value] or [flag]
        else:
            argv.append(f"{flag}={flag_text(value)}")
    return argv


def check_bounds(config: JobConfig) -> None:
    """What a validated config promises, whatever it was built from."""
    for key, bound in RANGES.items():
        value = getattr(config, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value) and bound.admits(value), (key, value)
    name = config.append_row_file_name
    assert name.strip() and "/" not in name and name not in (".", "..") and name.casefold() not in ("logs", ".mpibatch")
    for path in (config.entry_script, config.output, *(spec.path for spec in config.inputs)):
        assert path.strip() and "\0" not in path
    out = os.path.realpath(config.output)
    for spec in config.inputs:
        if "://" not in spec.path and spec.type != "filelist":
            root = os.path.realpath(glob_root(spec.path))
            assert out != root and not out.startswith(root.rstrip("/") + "/"), (config.output, spec.path)
    config_digest(config)


def validated_or_refused(build: Any) -> None:
    try:
        config = build()
    except ConfigError:
        return
    check_bounds(config)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations, st.sets(st.sampled_from(["entry_script", "inputs", "output"]), max_size=1),
       st.lists(st.sampled_from(HOSTILE_YAML), max_size=1), st.binary(max_size=8))
def test_a_job_file_is_validated_or_refused_in_one_line(job_home: Path, changes: dict, dropped: set,
                                                        hostile: list, noise: bytes) -> None:
    data = {k: v for k, v in {**base_job(job_home), **changes}.items() if k not in dropped}
    text = yaml.safe_dump(data, allow_unicode=True).encode() + "".join(hostile).encode()
    text += noise if noise and noise[0] % 4 == 0 else b""
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", dir=job_home, delete=False) as fh:
        fh.write(text)
    try:
        validated_or_refused(lambda: build_config(fh.name, {}))
    finally:
        os.unlink(fh.name)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations, st.sets(st.sampled_from(["entry_script", "inputs", "output"]), max_size=1))
def test_the_same_job_as_flags_is_validated_or_refused_in_one_line(job_home: Path, changes: dict,
                                                                   dropped: set) -> None:
    data = {k: v for k, v in {**base_job(job_home), **changes}.items() if k not in dropped}
    validated_or_refused(lambda: _run_request(["run", *as_flags(data)], [])[1])


# ---- through the real CLI under mpiexec -n 2 ---------------------------------------------------

SAFE_VALID = {  # valid values that cannot make a trivial job fail (which would be exit 1)
    "run_invocation_timeout": [30, 60.5], "init_timeout": [60, 600], "stop_grace": [1, 5],
    "max_worker_memory": ["2GB", None], "environment_variables": [{"FUZZ_A": "1"}, {"FUZZ_B": "x y"}],
    "entry_script": ["score.py"], "inputs": [["data"], "data/*.txt"], "output": ["out"],
    "source_directory": ["."],
}
INVALID = [float("nan"), float("inf"), -1, 0, 1e306, "soon", True, 1.5, "", "logs", ".mpibatch", "a/b", "data",
           "data/out", {"sepp": ","}, ["x"], "{bad json", "x\ny"]
cli_entry = st.one_of(st.sampled_from(KEYS), st.sampled_from(["mini_batch_sise", "outputs", "zzz"])).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(plausible(key), plausible(key), st.sampled_from(INVALID), scalars)))
cli_mutations = st.lists(cli_entry, max_size=2).map(dict)


def safe_for_a_trivial_job(changes: dict[str, Any]) -> dict[str, Any]:
    """Keys whose valid values could make the job fail (not a usage error) get a safe valid value or an invalid one."""
    out = {}
    for key, value in changes.items():
        if key in SAFE_VALID:
            try:
                build_config(None, {"entry_script": "/x.py", "inputs": ["/nowhere"], "output": "/o", key: value})
                value = SAFE_VALID[key][len(repr(value)) % len(SAFE_VALID[key])]  # valid: use a safe one
            except ConfigError:
                pass  # invalid: keep it, exit 2 expected
        out[key] = value
    return out


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cli_mutations, st.booleans())
def test_the_cli_under_mpiexec_exits_0_or_2_with_one_line(job_home: Path, changes: dict, as_yaml: bool) -> None:
    folder = Path(tempfile.mkdtemp(dir=job_home))
    (folder / "data").mkdir()
    (folder / "data" / "a.txt").write_text("a\n")
    (folder / "data" / "b.txt").write_text("b\n")
    (folder / "score.py").write_text((job_home / "score.py").read_text())
    data = {"entry_script": "score.py", "inputs": ["data"], "output": "out", "progress": "none",
            "run_invocation_timeout": 30, **safe_for_a_trivial_job(changes)}
    if as_yaml:
        (folder / "job.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
        args = ["run", "job.yaml"]
    else:
        args = ["run", *as_flags(data)]
    before = files_under(folder)
    job = subprocess.run([*mpiexec(2), str(BIN / "mpibatch"), *args], capture_output=True, text=True,
                         cwd=folder, env=cli_env(), timeout=120)
    event(f"exit {job.returncode}")
    assert job.returncode in (0, 2), (args, job.returncode, job.stderr[-3000:])
    assert "Traceback" not in job.stderr, job.stderr[-3000:]
    if job.returncode == 2:
        lines = without_launcher_banner(job.stderr).splitlines()
        assert len(lines) == 1 and lines[0].startswith("mpibatch: error: "), (args, job.stderr)
        assert files_under(folder) == before, "nothing may be written on exit 2"
    else:
        config_output = next((p for p in folder.rglob("job_result.json")), None)
        assert config_output is not None and json.loads(config_output.read_text())["status"] == "Completed"
