"""The compat finder serves exactly the azureml modules nothing installed provides; models: are laid
out as azureml-core's offline cache. Each case runs in a fresh interpreter (the finder is process-wide)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mpibatch.script.compat import lay_out_models

PROBE = """
import json, sys
from mpibatch.script.compat import activate
activate("azureml", {"m": sys.argv[1]}, sys.argv[2], {})
import azureml, azureml.core, azureml.core.model, azureml.exceptions, azureml_user.parallel_run
origin = {name: getattr(sys.modules[name], "__file__", None) or "namespace" for name in
          ("azureml", "azureml.core", "azureml.core.model", "azureml.exceptions", "azureml_user.parallel_run")}
missing = []
for name in ("azureml.nothing", "azureml.core.nothing", "azureml_user.nothing"):
    try:
        __import__(name)
    except ModuleNotFoundError as exc:
        missing.append(exc.name)
print(json.dumps({"origin": origin, "missing": missing, "path": azureml.core.model.Model.get_model_path("m")}))
"""


def probe(tmp_path: Path, site: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "model.bin"), str(tmp_path / "scratch")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def shim(name: str) -> str:
    return str(Path(__file__).parent.parent / "mpibatch/script/compat" / name)


def test_beside_a_namespace_package_every_missing_module_is_shimmed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "azureml" / "telemetry").mkdir(parents=True)  # a PEP 420 namespace `azureml`, as pip leaves it
    (site / "azureml" / "telemetry" / "__init__.py").write_text("")
    seen = probe(tmp_path, site)
    assert seen["origin"] == {"azureml": "namespace",
                              "azureml.core": shim("shims/azureml/core/__init__.py"),
                              "azureml.core.model": shim("shims/azureml/core/model.py"),
                              "azureml.exceptions": shim("shims/azureml/exceptions.py"),
                              "azureml_user.parallel_run": shim("shims_user/azureml_user/parallel_run/__init__.py")}
    assert seen["missing"] == ["azureml.nothing", "azureml.core.nothing", "azureml_user.nothing"]
    assert seen["path"] == str(tmp_path / "model.bin")


def test_a_real_module_wins_and_only_the_missing_ones_are_shimmed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "azureml" / "core").mkdir(parents=True)
    (site / "azureml" / "__init__.py").write_text("__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    (site / "azureml" / "core" / "__init__.py").write_text("")
    (site / "azureml" / "core" / "model.py").write_text(
        "import os\nclass Model:\n    @staticmethod\n    def get_model_path(name):\n"
        "        return os.path.join(os.environ['AML_APP_ROOT'], 'azureml-models', name)\n")
    seen = probe(tmp_path, site)
    assert seen["origin"]["azureml"] == str(site / "azureml/__init__.py")
    assert seen["origin"]["azureml.core.model"] == str(site / "azureml/core/model.py")
    assert seen["origin"]["azureml.exceptions"] == shim("shims/azureml/exceptions.py")
    assert seen["path"] == str(tmp_path / "scratch/azureml-models/m")


def test_models_are_laid_out_as_azureml_cores_offline_cache(tmp_path: Path) -> None:
    (tmp_path / "w.pkl").write_text("w")
    (tmp_path / "ckpt").mkdir()
    root = tmp_path / "scratch"
    one = lay_out_models({"w": str(tmp_path / "w.pkl")}, root)
    assert one == {"AML_APP_ROOT": str(root), "AZUREML_MODEL_DIR": str(root / "azureml-models/w/1")}
    both = lay_out_models({"w": str(tmp_path / "w.pkl"), "c": str(tmp_path / "ckpt")}, root)  # again: idempotent
    assert both["AZUREML_MODEL_DIR"] == str(root / "azureml-models")
    assert os.listdir(root / "azureml-models/w/1") == ["w.pkl"] and os.listdir(root / "azureml-models/c/1") == ["ckpt"]
    assert os.readlink(root / "azureml-models/c/1/ckpt") == str(tmp_path / "ckpt")
    assert lay_out_models({}, tmp_path / "none") == {}
