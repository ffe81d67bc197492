"""Unit tests for mpibatch.config: YAML + flag merge, path resolution, validation, fingerprints."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpibatch.config import RANGES, ConfigError, JobConfig, build_config, config_digest, error_line, fingerprint_fields, load_job
from mpibatch.config.flags import typed_flags
from mpibatch.config.jobfile import MAX_JOB_FILE_BYTES


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job folder with a script, an input folder and a YAML file using relative paths."""
    folder = tmp_path / "job"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (folder / "data").mkdir()
    (folder / "data" / "a.txt").write_text("a\n")
    return folder


def write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def minimal_flags(job: Path) -> dict:
    return {"entry_script": str(job / "src" / "score.py"), "inputs": [str(job / "data")],
            "output": str(job / "out")}


def test_yaml_relative_paths_resolve_against_the_yaml_folder(job: Path, tmp_path: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "models: {m: models/m.bin}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = build_config(yaml_file, {}, cwd=elsewhere)
    assert config.entry_script == str(job / "src" / "score.py")
    assert config.inputs[0].path == str(job / "data")
    assert config.output == str(job / "out")
    assert config.models == {"m": str(job / "models" / "m.bin")}


def test_flag_paths_resolve_against_cwd(job: Path, tmp_path: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    config = build_config(yaml_file, {"output": "results", "inputs": ["more"]}, cwd=cwd)
    assert config.output == str(cwd / "results")
    assert config.inputs[0].path == str(cwd / "more")
    assert config.entry_script == str(job / "src" / "score.py")  # still from the YAML


def test_flags_win_over_yaml(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "mini_batch_size: 3\nrun_max_try: 5\nlogging_level: DEBUG\n")
    config = build_config(yaml_file, {"mini_batch_size": "7", "logging_level": "warning"}, cwd=job)
    assert config.mini_batch_size == 7
    assert config.logging_level == "WARNING"
    assert config.run_max_try == 5  # not overridden: YAML value kept


def test_job_by_flags_alone(job: Path) -> None:
    config = build_config(None, minimal_flags(job), cwd=job)
    assert config.entry_script == str(job / "src" / "score.py")
    assert config.run_max_try == 3 and config.error_threshold == -1 and config.executor == "process"


def test_entry_script_relative_to_source_directory(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "source_directory: src\nentry_script: score.py\n"
                                             "inputs: [data]\noutput: out\n")
    config = build_config(yaml_file, {}, cwd=Path("/"))
    assert config.source_directory == str(job / "src")
    assert config.entry_script == str(job / "src" / "score.py")
    assert config.script_home == job / "src"


def test_entry_script_flag_relative_to_source_directory_flag(job: Path) -> None:
    flags = {"source_directory": "src", "entry_script": "score.py", "inputs": ["data"], "output": "out"}
    config = build_config(None, flags, cwd=job)
    assert config.entry_script == str(job / "src" / "score.py")


def test_script_home_defaults_to_the_script_folder(job: Path) -> None:
    config = build_config(None, minimal_flags(job), cwd=job)
    assert config.script_home == job / "src"


def test_urls_are_left_alone(job: Path) -> None:
    flags = {**minimal_flags(job), "inputs": ["memory://bucket/data", {"path": "s3://b/k", "type": "files"}]}
    config = build_config(None, flags, cwd=job)
    assert [spec.path for spec in config.inputs] == ["memory://bucket/data", "s3://b/k"]


def test_unknown_key_in_yaml_suggests_the_near_miss(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "mini_batch_sise: 4\n")
    with pytest.raises(ConfigError) as err:
        build_config(yaml_file, {}, cwd=job)
    message = str(err.value)
    assert "mini_batch_sise" in message
    assert "did you mean 'mini_batch_size'" in message
    assert "\n" not in message


def test_unknown_flag_key_suggests_the_near_miss(job: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'run_max_tri'.*did you mean 'run_max_try'"):
        build_config(None, {**minimal_flags(job), "run_max_tri": 2}, cwd=job)


def test_unknown_key_far_from_everything_has_no_suggestion(job: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(None, {**minimal_flags(job), "zzzzqqqq": 1}, cwd=job)
    assert "zzzzqqqq" in str(err.value) and "did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("run_max_try", -1),
        ("run_max_try", 0),
        ("error_threshold", -2),
        ("allowed_failed_count", -5),
        ("allowed_failed_percent", 101),
        ("allowed_failed_percent", -1),
        ("logging_level", "LOUD"),
        ("executor", "thread"),
        ("output_action", "append_rows"),
        ("append_row_file_name", "sub/result.txt"),
        ("append_row_file_name", ".."),
        ("mini_batch_size", 0),
        ("mini_batch_size", "abc"),
        ("mini_batch_size", "0"),
        ("run_invocation_timeout", 0),
        ("init_timeout", -3),
        ("gpus_per_node", -1),
        ("threads_per_worker", 0),
        ("compat", "aml"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(job: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(None, {**minimal_flags(job), key: value}, cwd=job)
    message = str(err.value)
    assert key in message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["output", "inputs", "entry_script"])
def test_missing_required_key_is_named(job: Path, key: str) -> None:
    flags = minimal_flags(job)
    del flags[key]
    with pytest.raises(ConfigError) as err:
        build_config(None, flags, cwd=job)
    assert key in str(err.value)
    assert "missing" in str(err.value)


def test_empty_inputs_rejected(job: Path) -> None:
    with pytest.raises(ConfigError, match="inputs"):
        build_config(None, {**minimal_flags(job), "inputs": []}, cwd=job)


def test_bad_input_mapping_names_the_input(job: Path) -> None:
    flags = {**minimal_flags(job), "inputs": [str(job / "data"), {"path": str(job / "data"), "type": "rows"}]}
    with pytest.raises(ConfigError, match=r"inputs\[1\]"):
        build_config(None, flags, cwd=job)


def test_settings_json_beside_script_merged_job_options_win(job: Path) -> None:
    settings = {"append_row": {"pandas.DataFrame.to_csv": {"sep": ",", "header": True, "na_rep": "NA"}}}
    (job / "src" / "parallel_run_step.settings.json").write_text(json.dumps(settings))
    config = build_config(None, {**minimal_flags(job), "append_row_options": {"sep": ";"}}, cwd=job)
    assert config.append_row_options == {"sep": ";", "header": True, "index": False, "na_rep": "NA"}


def test_settings_json_alone_is_honoured(job: Path) -> None:
    settings = {"append_row": {"pandas.DataFrame.to_csv": {"sep": ","}}}
    (job / "src" / "parallel_run_step.settings.json").write_text(json.dumps(settings))
    config = build_config(None, minimal_flags(job), cwd=job)
    assert config.append_row_options == {"sep": ",", "header": False, "index": False}


def test_default_append_row_options(job: Path) -> None:
    config = build_config(None, minimal_flags(job), cwd=job)
    assert config.append_row_options == {"sep": " ", "header": False, "index": False}


def test_invalid_settings_json_is_a_config_error(job: Path) -> None:
    (job / "src" / "parallel_run_step.settings.json").write_text("{not json")
    with pytest.raises(ConfigError, match="parallel_run_step.settings.json"):
        build_config(None, minimal_flags(job), cwd=job)


def test_mini_batch_size_string_equals_int(job: Path) -> None:
    as_flag = build_config(None, {**minimal_flags(job), "mini_batch_size": "5"}, cwd=job)
    as_yaml = build_config(None, {**minimal_flags(job), "mini_batch_size": 5}, cwd=job)
    assert as_flag.mini_batch_size == 5
    assert as_flag == as_yaml
    assert config_digest(as_flag) == config_digest(as_yaml)


def test_flag_strings_are_coerced_for_numbers_and_booleans(job: Path) -> None:
    config = build_config(None, {**minimal_flags(job), "run_max_try": "4", "allowed_failed_percent": "12.5",
                                 "gpus_per_node": "2", "coordinator_works": "false"}, cwd=job)
    assert config.run_max_try == 4
    assert config.allowed_failed_percent == 12.5
    assert config.gpus_per_node == 2
    assert config.coordinator_works is False


@pytest.mark.parametrize(("key", "value"), [("logging_level", "DEBUG"), ("resume", True), ("executor", "inline"),
                                            ("allow_reuse", True), ("run_invocation_timeout", 5),
                                            ("threads_per_worker", 3)])
def test_fingerprint_ignores_resume_neutral_keys(job: Path, key: str, value: object) -> None:
    base = build_config(None, minimal_flags(job), cwd=job)
    changed = build_config(None, {**minimal_flags(job), key: value}, cwd=job)
    assert getattr(changed, key) != getattr(base, key)
    assert fingerprint_fields(changed) == fingerprint_fields(base)
    assert config_digest(changed) == config_digest(base)


@pytest.mark.parametrize(("key", "value"), [("mini_batch_size", 3), ("arguments", ["--x", "1"]),
                                            ("output_action", "summary_only"),
                                            ("append_row_options", {"sep": ","}),
                                            ("environment_variables", {"A": "b"})])
def test_fingerprint_changes_with_output_deciding_keys(job: Path, key: str, value: object) -> None:
    base = build_config(None, minimal_flags(job), cwd=job)
    changed = build_config(None, {**minimal_flags(job), key: value}, cwd=job)
    assert key in fingerprint_fields(changed)
    assert config_digest(changed) != config_digest(base)


def test_digest_is_stable(job: Path) -> None:
    assert config_digest(build_config(None, minimal_flags(job), cwd=job)) == \
        config_digest(build_config(None, minimal_flags(job), cwd=job))


def test_invalid_yaml_names_the_file(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: [unclosed\ninputs: x\n")
    with pytest.raises(ConfigError) as err:
        build_config(yaml_file, {}, cwd=job)
    assert yaml_file in str(err.value)
    assert "YAML" in str(err.value)
    assert "\n" not in str(err.value)


def test_non_mapping_yaml_names_the_file(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "- entry_script\n- inputs\n")
    with pytest.raises(ConfigError) as err:
        build_config(yaml_file, {}, cwd=job)
    assert yaml_file in str(err.value)
    assert "mapping" in str(err.value)


def test_missing_yaml_file_named(job: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml"):
        build_config(str(job / "nope.yaml"), {}, cwd=job)


def test_azure_ml_sizing_keys_are_accepted(job: Path) -> None:
    config = build_config(None, {**minimal_flags(job), "node_count": 2, "process_count_per_node": 4}, cwd=job)
    assert "node_count" not in config.model_dump()


def test_config_is_immutable(job: Path) -> None:
    config = build_config(None, minimal_flags(job), cwd=job)
    with pytest.raises(Exception):
        config.run_max_try = 9  # type: ignore[misc]


def test_numeric_environment_variable_values_become_strings(job: Path) -> None:
    config = build_config(None, {**minimal_flags(job), "environment_variables": {"BATCH": 32, "SCALE": 0.5}},
                          cwd=job)
    assert config.environment_variables == {"BATCH": "32", "SCALE": "0.5"}


def test_numeric_arguments_become_strings(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "arguments: [--batch-size, 32, --scale, 0.5]\n")
    config = build_config(yaml_file, {}, cwd=job)
    assert config.arguments == ["--batch-size", "32", "--scale", "0.5"]


def test_boolean_mini_batch_size_rejected(job: Path) -> None:
    with pytest.raises(ConfigError, match="mini_batch_size"):
        build_config(None, {**minimal_flags(job), "mini_batch_size": True}, cwd=job)


@pytest.mark.parametrize(("value", "expected"), [("8GB", 8 * 1024**3), ("200MB", 200 * 1024**2), ("1024", 1024),
                                                 (4096, 4096), (None, None)])
def test_max_worker_memory_parses_sizes(job: Path, value: object, expected: object) -> None:
    config = build_config(None, {**minimal_flags(job), "max_worker_memory": value})
    assert config.memory_limit == expected


@pytest.mark.parametrize("value", ["lots", "5000rows", "0", True])
def test_max_worker_memory_rejects_non_sizes(job: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="^max_worker_memory: must be"):
        build_config(None, {**minimal_flags(job), "max_worker_memory": value})


def test_max_worker_memory_needs_the_process_executor(job: Path) -> None:
    with pytest.raises(ConfigError, match="max_worker_memory: needs executor: process"):
        build_config(None, {**minimal_flags(job), "max_worker_memory": "1GB", "executor": "inline"})


# ---- numbers: finite and within a stated range (issue 16, bug 3) ------------------------------

RANGE_CASES = [
    ("stop_grace", 86_401), ("run_invocation_timeout", 30 * 86_400 + 1), ("init_timeout", 1e306),
    ("speculation_factor", 1001), ("allowed_failed_percent", 100.5), ("error_threshold", 10**15 + 1),
    ("allowed_failed_count", 1e306), ("run_max_try", 1001), ("credits_per_worker", 1_000_000),
    ("gpus_per_node", 257), ("threads_per_worker", 4097),
]


@pytest.mark.parametrize(("key", "value"), RANGE_CASES)
def test_numbers_past_their_stated_bound_are_refused(job: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: must be .*at most|^{key}: must be .* to "):
        build_config(None, {**minimal_flags(job), key: value}, cwd=job)


@pytest.mark.parametrize("key", sorted(RANGES))
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1e306", "true"])
def test_nan_inf_huge_and_booleans_from_yaml_are_refused_for_every_number(job: Path, key: str, text: str) -> None:
    yaml_file = write_yaml(job / "job.yaml", f"entry_script: src/score.py\ninputs: [data]\noutput: out\n{key}: {text}\n")
    with pytest.raises(ConfigError) as err:
        build_config(yaml_file, {}, cwd=job)
    assert str(err.value).startswith(f"{key}: {RANGES[key].says}"), err.value


@pytest.mark.parametrize("key", sorted(RANGES))
@pytest.mark.parametrize("text", ["nan", "inf", "NaN", "1e306", "-1e306", "infinity"])
def test_nan_inf_and_huge_flag_text_is_refused_for_every_number(job: Path, key: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        build_config(None, {**minimal_flags(job), **typed_flags({key: text})}, cwd=job)


def test_the_bounds_admit_their_edges(job: Path) -> None:
    config = build_config(None, {**minimal_flags(job), "stop_grace": 86_400, "run_invocation_timeout": 2_592_000,
                                 "credits_per_worker": 256, "error_threshold": -1, "speculation_factor": 1}, cwd=job)
    assert (config.stop_grace, config.credits_per_worker) == (86_400, 256)


def test_credit_bound_matches_the_coordinators() -> None:
    from mpibatch.engine.coordinator import MAX_CREDITS

    assert RANGES["credits_per_worker"].high == MAX_CREDITS


@pytest.mark.parametrize(("value", "needle"), [(1.5, "whole count"), ("1.5", "whole number"), ("99999999999999TB", "at most"),
                                               ("9" * 400 + "TB", "mini_batch_size"), (10**13, "at most")])
def test_mini_batch_size_is_never_rounded_or_unbounded(job: Path, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=f"mini_batch_size: .*{needle}|{needle}"):
        build_config(None, {**minimal_flags(job), "mini_batch_size": value}, cwd=job)


def test_max_worker_memory_is_bounded(job: Path) -> None:
    with pytest.raises(ConfigError, match="max_worker_memory: must be at most 1024TB"):
        build_config(None, {**minimal_flags(job), "max_worker_memory": "2000TB"}, cwd=job)


@pytest.mark.parametrize(("key", "value"), [("node_count", "abc"), ("node_count", 0), ("process_count_per_node", 1e306),
                                            ("process_count_per_node", True)])
def test_azure_sizing_keys_are_validated(job: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_job(None, {**minimal_flags(job), key: value}, cwd=job)


# ---- paths (issue 16: bug 2, `--output ''`) ---------------------------------------------------

@pytest.mark.parametrize("key", ["output", "entry_script", "source_directory"])
@pytest.mark.parametrize("value", ["", "  ", "a\0b"])
def test_empty_or_nul_paths_are_refused(job: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: must"):
        build_config(None, {**minimal_flags(job), key: value}, cwd=job)


@pytest.mark.parametrize("value", ["", "a\0b"])
def test_empty_input_paths_are_refused(job: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^inputs\[1\]\.path: must"):
        build_config(None, {**minimal_flags(job), "inputs": [str(job / "data"), value]}, cwd=job)


@pytest.mark.parametrize("output", ["data", "data/out", "data/sub/deeper"])
def test_output_inside_or_equal_to_an_input_folder_is_refused(job: Path, output: str) -> None:
    with pytest.raises(ConfigError, match=r"^output: .* inputs\[0\] .*would read its own output"):
        build_config(None, {**minimal_flags(job), "output": str(job / output)}, cwd=job)


def test_output_inside_a_globs_root_is_refused(job: Path) -> None:
    with pytest.raises(ConfigError, match=r"is inside inputs\[0\]"):
        build_config(None, {**minimal_flags(job), "inputs": [str(job / "data" / "**" / "*.txt")],
                            "output": str(job / "data" / "results")}, cwd=job)


def test_output_reached_through_a_symlink_is_refused(job: Path) -> None:
    (job / "link").symlink_to(job / "data")
    with pytest.raises(ConfigError, match="is inside"):
        build_config(None, {**minimal_flags(job), "output": str(job / "link" / "out")}, cwd=job)
    with pytest.raises(ConfigError, match="is the same folder as"):
        build_config(None, {**minimal_flags(job), "inputs": [f"file://{job / 'link'}"],
                            "output": str(job / "data")}, cwd=job)


def test_output_beside_an_input_or_named_like_it_is_fine(job: Path) -> None:
    (job / "data2").mkdir()
    assert build_config(None, {**minimal_flags(job), "output": str(job / "data2")}, cwd=job)
    assert build_config(None, {**minimal_flags(job), "output": str(job / "data-out")}, cwd=job)
    assert build_config(None, {**minimal_flags(job), "output": "memory://bucket/out"}, cwd=job)


# ---- append_row_file_name (issue 16, bug 5) ---------------------------------------------------

@pytest.mark.parametrize("name", ["logs", ".mpibatch", "LOGS", "", " ", "a/b", "..", ".", "a\0b", "x" * 256])
def test_result_file_name_cannot_clash_with_mpibatchs_own(job: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="^append_row_file_name: "):
        build_config(None, {**minimal_flags(job), "append_row_file_name": name}, cwd=job)


@pytest.mark.parametrize("name", ["scores.csv", "logs.txt", "..result", "résultat.txt"])
def test_plain_result_file_names_are_fine(job: Path, name: str) -> None:
    assert build_config(None, {**minimal_flags(job), "append_row_file_name": name}, cwd=job).append_row_file_name == name


# ---- append_row_options (issue 16, bug 11) ----------------------------------------------------

def test_unknown_append_row_option_is_named_with_a_suggestion(job: Path) -> None:
    with pytest.raises(ConfigError, match=r"^append_row_options: 'sepp' is not a pandas.DataFrame.to_csv keyword "
                                          r"\(did you mean 'sep'\?\)"):
        build_config(None, {**minimal_flags(job), "append_row_options": {"sepp": ","}}, cwd=job)


def test_unknown_option_in_settings_json_is_named(job: Path) -> None:
    settings = {"append_row": {"pandas.DataFrame.to_csv": {"heder": True}}}
    (job / "src" / "parallel_run_step.settings.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match=r"settings.json': 'heder' is not .*did you mean 'header'"):
        build_config(None, minimal_flags(job), cwd=job)


@pytest.mark.parametrize("content", ['{"append_row": {"pandas.DataFrame.to_csv": [1, 2]}}', '[1]',
                                     '{"append_row": 3}'])
def test_settings_json_of_the_wrong_shape_is_one_line(job: Path, content: str) -> None:
    (job / "src" / "parallel_run_step.settings.json").write_text(content)
    with pytest.raises(ConfigError, match="settings.json"):
        build_config(None, minimal_flags(job), cwd=job)


@pytest.mark.parametrize("options", [{"sep": ",,"}, {"quoting": 99}, {"lineterminator": 5}])
def test_append_row_option_values_to_csv_refuses_are_refused_up_front(job: Path, options: dict) -> None:
    with pytest.raises(ConfigError, match="^append_row_options: pandas.DataFrame.to_csv refuses them"):
        build_config(None, {**minimal_flags(job), "append_row_options": options}, cwd=job)


def test_append_row_options_that_name_the_users_columns_are_not_tried(job: Path) -> None:
    config = build_config(None, {**minimal_flags(job), "append_row_options": {"columns": ["label"], "sep": ";"}},
                          cwd=job)
    assert config.append_row_options["columns"] == ["label"]


# ---- the job file: aliases, duplicate keys, size (issue 16, weak spot) -------------------------

ALIAS_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] +
                       [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
                        f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                        for i in range(8)])


def test_alias_bomb_is_refused_at_once(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             f"append_row_options:\n  {ALIAS_BOMB.replace(chr(10), chr(10) + '  ')}\n")
    with pytest.raises(ConfigError, match="is refused: its aliases expand to more than 10000 values"):
        build_config(yaml_file, {}, cwd=job)


def test_an_alias_that_contains_itself_is_refused(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "arguments: &a [x, *a]\n")
    with pytest.raises(ConfigError, match="an alias contains itself"):
        build_config(yaml_file, {}, cwd=job)


def test_modest_anchors_and_merge_keys_still_work(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "environment_variables: &env {A: '1', B: '2'}\n"
                                             "models: {<<: {m: m.bin, n: old.bin}, n: n.bin}\n"
                                             "arguments: &args [--x, '1']\npartition_keys: *args\n")
    config = build_config(yaml_file, {}, cwd=job)
    assert config.partition_keys == config.arguments == ["--x", "1"]
    assert config.environment_variables == {"A": "1", "B": "2"}
    assert config.models == {"m": str(job / "m.bin"), "n": str(job / "n.bin")}  # an explicit key wins a merge


def test_duplicate_key_is_refused_with_its_line(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "mini_batch_size: 1\nrun_max_try: 2\nmini_batch_size: 5\n")
    with pytest.raises(ConfigError, match=r"key 'mini_batch_size' is given twice \(again at line 6\)"):
        build_config(yaml_file, {}, cwd=job)


def test_duplicate_nested_key_is_refused(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "environment_variables: {A: '1', A: '2'}\n")
    with pytest.raises(ConfigError, match="key 'A' is given twice"):
        build_config(yaml_file, {}, cwd=job)


def test_job_file_over_1_mb_is_refused_unread(job: Path) -> None:
    yaml_file = write_yaml(job / "job.yaml", "entry_script: src/score.py\ninputs: [data]\noutput: out\n"
                                             "# " + "x" * MAX_JOB_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"holds \d+ bytes; a job file may hold at most 1048576 bytes \(1 MB\)"):
        build_config(yaml_file, {}, cwd=job)


@pytest.mark.parametrize(("content", "needle"), [(b"a: \xff\xfe\n", "not valid YAML"), (b"[" * 5000, "YAML|nested"),
                                                 (b"a: !!int xyz\n", "not valid YAML"), (b"a: \x00\n", "not valid YAML")])
def test_unreadable_job_files_are_one_line(job: Path, content: bytes, needle: str) -> None:
    (job / "job.yaml").write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as err:
        build_config(str(job / "job.yaml"), {}, cwd=job)
    assert "\n" not in str(err.value)


def test_job_file_that_is_a_folder_says_so(job: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        build_config(str(job / "src"), {}, cwd=job)


def test_error_line_escapes_line_breaks() -> None:
    line = error_line("output: 'a\nb\u2028c\x85d'")
    assert line.splitlines() == [line] and "a\\nb" in line


@pytest.mark.parametrize("key", ["output", "source_directory", "entry_script"])
def test_a_path_longer_than_the_os_allows_is_refused_by_its_key(job: Path, key: str) -> None:
    """Found by the fuzz test: a 300-byte name made os.stat raise ENAMETOOLONG (a traceback)."""
    with pytest.raises(ConfigError, match=f"^{key}: is longer than a path can be"):
        build_config(None, {**minimal_flags(job), key: str(job / ("x" * 300))}, cwd=job)


def test_every_job_key_has_a_row_in_the_readme_configuration_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## The entry script")]
    missing = [key for key in JobConfig.model_fields if f"| `{key}` |" not in table]
    assert not missing, f"README's configuration table lacks {missing}"


@pytest.mark.parametrize("text", ["auto", "none", "ib0", "10.1.2.3:7000", "[fd00::5]:7000", "node-12.cluster"])
def test_join_address_forms_accepted(text):
    from mpibatch.config.listen_syntax import join_address_problem

    assert join_address_problem(text) is None


@pytest.mark.parametrize("text", ["", "a b", "host:port", "10.0.0.1:70000", "tcp://x:1"])
def test_join_address_forms_refused(text):
    from mpibatch.config.listen_syntax import join_address_problem

    assert join_address_problem(text) is not None
