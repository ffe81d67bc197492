"""Unit tests for mpibatch.cli: flags, mapping values, `--` and usage errors (no MPI is started)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mpibatch.engine.job
from mpibatch.cli import _flags, build_parser, main, parse_mapping, split_script_args
from mpibatch.config import ConfigError


def flags(*argv: str) -> dict[str, Any]:
    return _flags(build_parser().parse_args(["run", *argv]))


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "job.yaml").write_text("entry_script: score.py\ninputs: [data]\noutput: out\n")
    return tmp_path


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Stand in for run_job so main() can be driven without MPI."""
    calls: list[tuple] = []

    def fake_run_job(config, script_args, aliases):  # type: ignore[no-untyped-def]
        calls.append((config, script_args, aliases))
        return 0

    monkeypatch.setattr(mpibatch.engine.job, "run_job", fake_run_job)
    return calls


def test_list_flag_takes_several_values_and_repeats() -> None:
    assert flags("--inputs", "a", "b")["inputs"] == ["a", "b"]
    assert flags("--inputs", "a", "--inputs", "b", "c")["inputs"] == ["a", "b", "c"]


def test_inputs_mapping_given_as_json() -> None:
    assert flags("--inputs", '{"path": "list.txt", "type": "filelist"}', "more/")["inputs"] == \
        [{"path": "list.txt", "type": "filelist"}, "more/"]


def test_boolean_flags() -> None:
    assert flags("--resume")["resume"] is True
    assert flags("--no-resume")["resume"] is False
    assert flags("--no-coordinator-works")["coordinator_works"] is False
    assert "resume" not in flags()  # unset flags do not override the YAML


def test_flag_text_becomes_what_yaml_would_give() -> None:
    """Numbers where the key takes numbers, text where it takes text: one model then validates both."""
    assert flags("--mini-batch-size", "5", "--executor", "inline") == {"mini_batch_size": 5, "executor": "inline"}
    assert flags("--mini-batch-size", "1.5")["mini_batch_size"] == 1.5
    assert flags("--mini-batch-size", "64KB", "--credits-per-worker", "auto") == \
        {"mini_batch_size": "64KB", "credits_per_worker": "auto"}
    assert flags("--output", "123", "--run-invocation-timeout", "0.5") == \
        {"output": "123", "run_invocation_timeout": 0.5}


def test_mapping_as_key_value_pairs() -> None:
    assert flags("--environment-variables", "A=1", "B=x")["environment_variables"] == {"A": 1, "B": "x"}


def test_mapping_as_json() -> None:
    assert flags("--environment-variables", '{"A": "1", "B": "x"}')["environment_variables"] == \
        {"A": "1", "B": "x"}
    assert flags("--append-row-options", '{"sep": ","}')["append_row_options"] == {"sep": ","}


def test_mapping_key_value_reads_yaml_scalars() -> None:
    assert flags("--append-row-options", "sep=;", "header=true", "na_rep=")["append_row_options"] == \
        {"sep": ";", "header": True, "na_rep": ""}


@pytest.mark.parametrize("values", [["noequals"], ["=x"], ['{"broken": }']])
def test_bad_mapping_names_the_key(values: list[str]) -> None:
    with pytest.raises(ConfigError, match="environment_variables"):
        parse_mapping("environment_variables", values)


@pytest.mark.parametrize("separator", [",", "\t", "|", "-"])
def test_mapping_value_that_is_not_yaml_is_a_string(separator: str) -> None:
    assert parse_mapping("append_row_options", [f"sep={separator}"]) == {"sep": separator}


def test_split_script_args() -> None:
    assert split_script_args(["run", "job.yaml", "--", "--epochs", "3", "--", "x"]) == \
        (["run", "job.yaml"], ["--epochs", "3", "--", "x"])
    assert split_script_args(["run", "job.yaml"]) == (["run", "job.yaml"], [])


def test_unknown_option_one_line_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "job.yaml", "--mini-batch-sise", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--mini-batch-sise" in err and "did you mean '--mini-batch-size'" in err


def test_missing_flag_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--mini-batch-size"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mini-batch-size" in err


def test_run_with_nothing_names_a_missing_key(capsys: pytest.CaptureFixture[str], captured_run: list) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "missing" in err and any(key in err for key in ("entry_script", "inputs", "output"))
    assert captured_run == []


def test_invalid_value_exits_2_and_writes_nothing(job: Path, capsys: pytest.CaptureFixture[str],
                                                  captured_run: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(job)
    assert main(["run", "job.yaml", "--run-max-try", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpibatch: error: ") and "run_max_try" in err and err.count("\n") == 1
    assert not (job / "out").exists()
    assert captured_run == []


def test_bad_mapping_flag_exits_2(job: Path, capsys: pytest.CaptureFixture[str], captured_run: list) -> None:
    assert main(["run", str(job / "job.yaml"), "--environment-variables", "NOVALUE"]) == 2
    assert "environment_variables" in capsys.readouterr().err


def test_valid_run_reaches_run_job_with_flags_and_script_args(job: Path, captured_run: list,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(job)
    code = main(["run", "job.yaml", "--mini-batch-size", "5", "--node-count", "2", "--",
                 "--epochs", "3", "--unknown-to-mpibatch"])
    assert code == 0
    [(config, script_args, aliases)] = captured_run
    assert config.mini_batch_size == 5
    assert config.entry_script == str(job / "score.py")
    assert script_args == ["--epochs", "3", "--unknown-to-mpibatch"]
    assert aliases == {"node_count": 2}


def test_job_by_flags_alone(job: Path, captured_run: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(job)
    assert main(["run", "--entry-script", "score.py", "--inputs", "data", "--output", "o2", "--resume"]) == 0
    [(config, _, _)] = captured_run
    assert config.output == str(job / "o2") and config.resume is True


def test_environment_variables_key_value_numbers(job: Path, captured_run: list,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(job / "job.yaml"), "--environment-variables", "BATCH=32", "SCALE=0.5"]) == 0, \
        capsys.readouterr().err
    [(config, _, _)] = captured_run
    assert config.environment_variables == {"BATCH": "32", "SCALE": "0.5"}


def test_comma_separator_flag_reaches_the_config(job: Path, captured_run: list) -> None:
    assert main(["run", str(job / "job.yaml"), "--append-row-options", "sep=,", "header=true"]) == 0
    [(config, _, _)] = captured_run
    assert config.append_row_options == {"sep": ",", "header": True, "index": False}


@pytest.mark.parametrize(("argv", "needle"), [
    (["--inputs", "{bad json"], "inputs: not valid JSON"),
    (["--inputs", "[1, 2]"], None),  # not JSON-looking: a path, refused later as missing
    (["--inputs", '{"path": 3}'], "inputs[0].path"),
    (["--inputs", '["a"]', '{"a": 1'], "inputs: not valid JSON"),
    (["--append-row-options", "{oops"], "append_row_options: not valid JSON"),
    (["--environment-variables", "[1]"], "environment_variables"),
    (["--node-count", "two"], "node_count:"),
    (["--stop-grace", "nan"], "stop_grace: must be a number of seconds above 0 and at most 86400 (1 day)"),
])
def test_every_parsed_flag_value_is_one_line_never_a_traceback(job: Path, capsys: pytest.CaptureFixture[str],
                                                               captured_run: list, argv: list[str],
                                                               needle: "str | None") -> None:
    code = main(["run", str(job / "job.yaml"), *argv])
    err = capsys.readouterr().err
    if needle is None:
        assert code == 0 and captured_run  # planning finds the missing path, not the parser
        return
    assert code == 2 and err.count("\n") == 1 and err.startswith("mpibatch: error: ") and needle in err, err
    assert captured_run == []


@pytest.mark.parametrize(("flag", "yaml_value"), [("1.5", "1.5"), ("0", "0"), ("true", "true"), ("-3", "-3")])
def test_a_flag_and_its_yaml_spelling_are_refused_alike(job: Path, capsys: pytest.CaptureFixture[str],
                                                        captured_run: list, flag: str, yaml_value: str) -> None:
    assert main(["run", str(job / "job.yaml"), "--mini-batch-size", flag]) == 2
    from_flag = capsys.readouterr().err
    with open(job / "job.yaml", "a") as fh:
        fh.write(f"mini_batch_size: {yaml_value}\n")
    assert main(["run", str(job / "job.yaml")]) == 2
    assert capsys.readouterr().err == from_flag and from_flag.startswith("mpibatch: error: mini_batch_size: ")


def test_a_flag_and_its_yaml_spelling_are_accepted_alike(job: Path, captured_run: list) -> None:
    assert main(["run", str(job / "job.yaml"), "--mini-batch-size", "2.0", "--gpus-per-node", "1"]) == 0
    with open(job / "job.yaml", "a") as fh:
        fh.write("mini_batch_size: 2.0\ngpus_per_node: 1\n")
    assert main(["run", str(job / "job.yaml")]) == 0
    assert captured_run[0][0] == captured_run[1][0]


def test_help_under_run_exits_0(capsys: pytest.CaptureFixture[str], captured_run: list) -> None:
    assert main(["run", "--help"]) == 0
    assert "--mini-batch-size" in capsys.readouterr().out and captured_run == []


@pytest.mark.parametrize("interval", ["nan", "0", "-1", "inf", "soon"])
def test_status_interval_must_be_a_sane_number(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               interval: str) -> None:
    assert main(["status", str(tmp_path), "--interval", interval]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--interval" in err
