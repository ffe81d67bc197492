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
# azureml-core without its 30-odd dependencies (most of them for a workspace: 260 MB): what importing
# azureml.core and Model.get_model_path need beyond mpibatch's own (requests, azure-core, jwt ...); 145 MB
AZUREML_CORE = ["azureml-core==1.61.0.post4", "msrest==0.7.1", "msrestazure==0.6.4.post1", "oauthlib==3.3.1",
                "requests-oauthlib==2.0.0", "pytz==2026.6", "docker==7.2.0", "pathspec==0.12.1", "knack==0.12.0",
                "argcomplete==3.7.2", "azure-common==1.1.28", "azure-mgmt-core==1.6.0", "azure-mgmt-storage==24.0.0",
                "azure-mgmt-keyvault==11.0.0", "azure-mgmt-resource==24.0.0"]


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


@pytest.fixture(scope="session")
def azureml_core_site():
    return pip_target("azureml-core", AZUREML_CORE)


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
    assert "azureml.core from " + str(ROOT / "mpibatch/script/compat/shims/azureml/core/__init__.py") in logs
    assert "caught ModelNotFoundException" in logs and "metric namespace = 'ok'" in logs
    stdout = "".join(p.read_text() for p in (out / "logs/user/stdout").iterdir())
    assert "dataset = MiniBatchDataset(name='data', partition_key_value={'user': 'u1'})" in stdout


def test_the_real_azureml_core_finds_models_offline(tmp_path, azureml_core_site):
    """Before: the real Model.get_model_path bypassed `models:` ("ModelNotFoundException:")."""
    (tmp_path / "w.txt").write_text("weights-v3\n")
    for name in ("checkpoint", "model.ckpt.index"):
        (tmp_path / "mnist-prs").mkdir(exist_ok=True)
        (tmp_path / "mnist-prs" / name).write_text("")
    (tmp_path / "data").mkdir()
    for k in range(3):
        (tmp_path / "data" / f"{k}.png").write_text("")
    (tmp_path / "job.yaml").write_text(
        f"entry_script: {SCRIPTS / 'd_real_core.py'}\ncompat: azureml\ninputs: [data]\nmini_batch_size: 2\n"
        f"models: {{weights: w.txt, mnist-prs: mnist-prs}}\n"
        f"environment_variables: {{PYTHONPATH: '{azureml_core_site}'}}\noutput: out\nprogress: none\n")
    out = tmp_path / "out"
    job = run_cli(["run", str(tmp_path / "job.yaml")], out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines) == [f"{k}.png weights-v3 checkpoint,model.ckpt.index" for k in range(3)]
    logs = "".join(p.read_text() for p in (out / "logs/user/entry_script_log").iterdir())
    assert f"azureml.core from {azureml_core_site / 'azureml/core/__init__.py'}" in logs
    found = [line.split(" weights at ", 1)[1] for line in logs.splitlines() if " weights at " in line]
    # one per worker whose init() ended before the job did (a slow import on a loaded machine can leave
    # rank 1 still in init() when rank 0 has done both mini-batches), each in its own scratch folder
    assert 1 <= len(found) <= 2 and len({line.split("/azureml-models/")[0] for line in found}) == len(found)
    for line in found:
        weights, rest = line.split(", mnist-prs at ")
        folder, model_dir = rest.split(", AZUREML_MODEL_DIR ")
        assert weights.endswith("/azureml-models/weights/1/w.txt") and folder.endswith("/azureml-models/mnist-prs/1/mnist-prs")
        assert model_dir == weights[:-len("/weights/1/w.txt")]
