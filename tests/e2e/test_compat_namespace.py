"""compat: azureml beside real `azureml-*` packages: the shims serve exactly the modules nothing installed
provides, so a real `azureml` namespace package (here azureml-telemetry, the lightest real one: pure Python,
33 KB, imports nothing at `import azureml`) no longer switches them off."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPTS, require, run_cli

pytestmark = pytest.mark.e2e

TELEMETRY = ["azureml-telemetry==1.62.0", "applicationinsights==0.11.10"]  # the latter: what it imports


def pip_target(name: str, requirements: list[str]) -> Path:
    """Real packages from PyPI, installed once (without their dependencies) into a cached gitignored
    folder under .cache/, which a job puts on its entry script's path."""
    target = ROOT / ".cache" / "pip-target" / name
    if not (target / ".complete").exists():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target",
                               str(target), *requirements], capture_output=True, text=True, timeout=600)
        require(done.returncode == 0, f"{' '.join(requirements)} from PyPI ({done.stderr.strip()[-300:]})")
        (target / ".complete").write_text("")
    return target


@pytest.fixture(scope="session")
def telemetry_site():
    return pip_target("azureml-telemetry", TELEMETRY)


def partitioned_files(root):
    for user in ("u1", "u2"):
        (root / user).mkdir(parents=True)
        for k in range(2):
            (root / user / f"{k}.bin").write_bytes(b"x" * (k + 1))
    return json.dumps({"path": str(root), "partition_format": "{user}/*.bin"})


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_shims_work_beside_a_real_azureml_namespace_package(tmp_path, telemetry_site, executor):
    (tmp_path / "sizes.txt").write_text("model-v1\n")
    (tmp_path / "job.yaml").write_text(
        f"entry_script: {SCRIPTS / 'd_compat_namespace.py'}\ncompat: azureml\nexecutor: {executor}\n"
        f"inputs: [{partitioned_files(tmp_path / 'data')}]\npartition_keys: [user]\n"
        f"models: {{sizes: sizes.txt}}\nenvironment_variables: {{PYTHONPATH: '{telemetry_site}'}}\n"
        "output: out\nprogress: none\n")
    out = tmp_path / "out"
    job = run_cli(["run", str(tmp_path / "job.yaml")], out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == ["model-v1 0 u1 2 0.bin", "model-v1 0 u1 2 1.bin",
                                 "model-v1 1 u2 2 0.bin", "model-v1 1 u2 2 1.bin"]
    logs = "".join(p.read_text() for p in (out / "logs/user/entry_script_log").iterdir())
    assert f"azureml.telemetry from {telemetry_site / 'azureml/telemetry/__init__.py'}" in logs
    assert "azureml.core from " + str(ROOT / "mpibatch/compat/shims/azureml/core/__init__.py") in logs
    assert "caught ModelNotFoundException" in logs and "metric namespace = 'ok'" in logs
    stdout = "".join(p.read_text() for p in (out / "logs/user/stdout").iterdir())
    assert "dataset = MiniBatchDataset(name='data', partition_key_value={'user': 'u1'})" in stdout
