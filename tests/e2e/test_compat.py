"""compat: azureml: ParallelRunStep entry scripts run unchanged, and the shims never get in the way."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import SCRIPTS, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Rendered digit PNGs with labels, and a nearest-mean 'model' registered as mnist."""
    from mpibatch.demo.digits import make_arrays, write_images

    root = tmp_path_factory.mktemp("digits")
    labels_file = write_images(root / "images", 60, seed=5)
    images, labels = make_arrays(3000, seed=6)
    flat = images.reshape(len(images), 784).astype(np.float32) / 255.0
    np.save(root / "templates.npy", np.stack([flat[labels == d].mean(axis=0) for d in range(10)]))
    truth = {row["file"]: row["label"] for row in csv.DictReader(open(labels_file))}
    return root, truth


def digit_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--entry-script", str(SCRIPTS / "azureml_digits.py"), "--inputs", str(root / "images"),
            "--output", str(out), "--mini-batch-size", "5", "--models", f"mnist={root / 'templates.npy'}",
            "--progress", "none", *extra]


def test_azureml_digit_script_runs_unchanged(tmp_path, digits):
    root, truth = digits
    out = tmp_path / "out"
    job = run_cli(digit_args(root, out, "--compat", "azureml"), out, ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    answers = dict(line.split(": ") for line in job.lines)
    assert sorted(answers) == sorted(truth)
    assert all(answer.isdigit() for answer in answers.values())
    assert sum(answers[f] == truth[f] for f in truth) >= 0.5 * len(truth)  # a crude model, but a real one
    entry_logs = "".join(p.read_text() for p in (out / "logs/user/entry_script_log").iterdir())
    assert "loaded " in entry_logs and "metric scored = 5" in entry_logs
    assert "run method start" in (out / "logs/user/stdout/rank-0000.txt").read_text()


def test_without_compat_the_import_fails_with_a_clear_message(tmp_path, digits):
    root, _ = digits
    out = tmp_path / "out"
    job = run_cli(digit_args(root, out), out, ranks=2)
    assert job.rc == 1
    assert "No module named 'azureml': add 'compat: azureml' to the job" in job.result_txt


def test_unknown_model_name_raises_azureml_error_naming_known_models(tmp_path, digits):
    root, _ = digits
    out = tmp_path / "out"
    args = digit_args(root, out, "--compat", "azureml")
    args[args.index("--models") + 1] = f"other={root / 'templates.npy'}"
    job = run_cli(args, out, ranks=None)
    assert job.rc == 1
    assert "ModelNotFoundException: Model with name mnist not found" in job.result["error"]
    assert "known models: other" in job.result_txt


def test_a_real_installed_azureml_is_not_shadowed(tmp_path, digits):
    root, _ = digits
    fake = tmp_path / "site" / "azureml" / "core"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("class Run:\n    @staticmethod\n    def get_context():\n        return 'REAL'\n")
    (fake / "model.py").write_text("class Model:\n    @staticmethod\n    def get_model_path(name):\n"
                                   "        raise RuntimeError('the real azureml answered')\n")
    out = tmp_path / "out"
    job = run_cli(digit_args(root, out, "--compat", "azureml"), out, ranks=None,
                  env={"PYTHONPATH": str(tmp_path / "site")})
    assert job.rc == 1
    assert job.result["error"] == "RuntimeError: the real azureml answered"


def test_shims_are_invisible_to_mpibatch_itself():
    import importlib.util

    import mpibatch  # noqa: F401

    assert importlib.util.find_spec("azureml") is None
    assert importlib.util.find_spec("azureml_user") is None


def test_azureml_tabular_iris_script_runs_unchanged(tmp_path):
    import pickle

    import pandas as pd

    rng = np.random.default_rng(3)
    centres = {"Setosa": [5.0, 3.4, 1.5, 0.2], "Versicolor": [5.9, 2.8, 4.3, 1.3], "Virginica": [6.6, 3.0, 5.6, 2.0]}
    rows = []
    for name, centre in centres.items():
        for _ in range(100):
            rows.append([*(np.array(centre) + rng.normal(0, 0.05, 4)).round(3), name])
    df = pd.DataFrame(rows, columns=["sepal_length", "sepal_width", "petal_length", "petal_width", "true_variety"])
    df.to_csv(tmp_path / "iris.csv", index=False)
    with open(tmp_path / "iris.pkl", "wb") as fh:
        pickle.dump({k: np.array(v) for k, v in centres.items()}, fh)
    (tmp_path / "job.yaml").write_text(
        "entry_script: " + str(SCRIPTS / "azureml_iris.py") + "\ncompat: azureml\n"
        "inputs: [{path: iris.csv, type: tabular}]\nmodels: {iris-model: iris.pkl}\n"
        "arguments: [--model_name, iris-model, --extra, 1]\nmini_batch_size: 2KB\noutput: out\n"
        "append_row_options: {sep: ',', header: true}\nprogress: none\n")
    job = run_cli(["run", str(tmp_path / "job.yaml")], tmp_path / "out", ranks=2)
    assert job.rc == 0, job.stderr + job.result_txt
    assert job.lines[0] == "sepal_length,sepal_width,petal_length,petal_width,variety"
    predicted = [line.rsplit(",", 1)[1] for line in job.lines[1:]]
    assert len(predicted) == 300 and sorted(set(predicted)) == sorted(centres)
    assert job.result["mini_batches"]["total"] > 3
    logs = "".join(p.read_text() for p in (tmp_path / "out/logs/user/entry_script_log").iterdir())
    assert "loaded iris-model, unknown args ['--extra', '1']" in logs and "run((" in logs


def test_azureml_partitioned_file_script_runs_unchanged(tmp_path):
    root = tmp_path / "music"
    expected = []
    for user, genres in (("u1", "jazz"), ("u1", "rock"), ("u2", "jazz")):
        for k in range(2):
            (root / user / genres).mkdir(parents=True, exist_ok=True)
            (root / user / genres / f"{k}.wav").write_text("x")
            expected.append(f"{user},{genres},2,{k}.wav")
    out = tmp_path / "out"
    spec = '{"path": "%s", "partition_format": "{user}/{genres}/*.wav"}' % root
    job = run_cli(["run", "--entry-script", str(SCRIPTS / "azureml_partitioned.py"), "--compat", "azureml",
                   "--inputs", spec, "--partition-keys", "user", "genres", "--output", str(out), "--progress", "none"],
                  out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(expected)
    stdout = "".join(p.read_text() for p in (out / "logs/user/stdout").iterdir())
    assert "partition_key_value = {'user': 'u1', 'genres': 'jazz'}" in stdout
