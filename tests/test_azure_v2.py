"""Azure ML v2 job files: every key's mpibatch meaning, each error's one line, and Azure-name hints."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mpibatch.config.azure_names import azure_hint, split_program_arguments
from mpibatch.config.azure_v2 import world_notes
from mpibatch.cli import build_parser, run_flag_argv
from mpibatch.config import ConfigError, load_job

FIXTURES = Path(__file__).parent / "e2e" / "v2"


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "v2")
    return tmp_path / "v2"


def load(file: Path, **flags):
    return load_job(str(file), flags, cwd=file.parent)


def refused(file: Path, **flags) -> str:
    with pytest.raises(ConfigError) as caught:
        load(file, **flags)
    return str(caught.value)


def edit(file: Path, change) -> Path:
    data = yaml.safe_load(file.read_text())
    change(data)
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return file


def test_parallel_job_maps_every_key(v2: Path) -> None:
    config, extras = load(v2 / "parallel_job.yml")
    assert config.entry_script == str(v2 / "src" / "score.py")
    assert config.source_directory == str(v2 / "src")
    assert [(i.path, i.name) for i in config.inputs] == [(str(v2 / "data"), "job_data_path")]
    assert config.mini_batch_size == 2
    assert config.allowed_failed_count == 5  # mini_batch_error_threshold
    assert config.error_threshold == 5  # --error_threshold in program_arguments wins over error_threshold: -1
    assert config.allowed_failed_percent == 30
    assert config.logging_level == "DEBUG"
    assert config.run_max_try == 2  # retry_settings.max_retries: Azure's "number of maximum tries"
    assert config.run_invocation_timeout == 60
    assert config.environment_variables == {"AZUREML_PARALLEL_EXAMPLE": "v2_job"}
    assert config.arguments == ["--model", str(v2 / "model"), "--tag", "blue"]
    assert config.output == str(v2 / "out" / "job")
    assert config.append_row_file_name == "aggregated_returns.csv"  # a uri_file output names the result file
    assert config.output_action == "append_row"
    assert extras["v2_sizing"] == {"node_count": 1, "process_count_per_node": 2}
    assert extras["v2_dirs"] == []


def test_parallel_job_notes_list_ignored_keys_once(v2: Path) -> None:
    notes = load(v2 / "parallel_job.yml")[1]["v2_notes"]
    assert notes[0] == ("Azure ML v2 parallel job 'score_files'; ignored here (Azure service settings): name, "
                        "display_name, description, compute, tags, inputs.job_data_path.mode, inputs.score_model.mode, "
                        "outputs.job_output_file.mode")
    assert notes[1] == ("task.program_arguments: Azure service flags with no meaning here (not passed to the script): "
                        "--task_overhead_timeout 1200, --progress_update_timeout 600, --first_task_creation_timeout "
                        "600, --copy_logs_to_parent True, --resource_monitor_interval 20")
    assert notes[2] == ("task.program_arguments: abbreviations taken as Azure's argparse takes them: "
                        "--resource_monitor_interva as --resource_monitor_interval")
    assert "task.program_arguments --error_threshold 5 wins over error_threshold: -1" in notes
    assert notes[-1].endswith("e.g. --command-prefix 'apptainer exec docker://mcr.microsoft.com/azureml/"
                              "openmpi4.1.0-ubuntu20.04'")


def test_environment_note_gone_when_python_given(v2: Path, tmp_path: Path) -> None:
    notes = load(v2 / "parallel_job.yml", python="python3")[1]["v2_notes"]
    assert not any("task.environment" in note for note in notes)


def test_flags_win_over_the_file(v2: Path, tmp_path: Path) -> None:
    config, _ = load(v2 / "parallel_job.yml", mini_batch_size=3, run_max_try=5, output=str(tmp_path / "elsewhere"))
    assert (config.mini_batch_size, config.run_max_try, config.output) == (3, 5, str(tmp_path / "elsewhere"))
    assert config.append_row_file_name == "aggregated_returns.csv"


def test_mini_batch_size_defaults_to_v2s_one(v2: Path) -> None:
    job = edit(v2 / "parallel_job.yml", lambda d: d.pop("mini_batch_size"))
    config, extras = load(job)
    assert config.mini_batch_size == 1
    assert "mini_batch_size: not given, so v2's default 1 applies" in extras["v2_notes"]


def test_a_table_without_mini_batch_size_keeps_the_tabular_default(v2: Path) -> None:
    table = v2 / "table"
    table.mkdir()
    (table / "rows.csv").write_text("x,y\n1,2\n3,4\n")
    (table / "MLTable").write_text("paths:\n  - file: ./rows.csv\ntransformations:\n  - read_delimited:\n"
                                   "      delimiter: ','\n")

    def as_table(data: dict) -> None:
        data.pop("mini_batch_size")
        data["inputs"]["job_data_path"] = {"type": "mltable", "path": "./table"}

    config, extras = load(edit(v2 / "parallel_job.yml", as_table))
    assert config.mini_batch_size is None  # 1MB when planned; v2's 1 would be one row per mini-batch
    assert any("tabular default 1MB applies" in note for note in extras["v2_notes"])


def test_partition_keys_list_or_text(v2: Path) -> None:
    job = edit(v2 / "parallel_job.yml", lambda d: d.update(partition_keys="Store, Brand"))
    assert load(job)[0].partition_keys == ["Store", "Brand"]
    job = edit(job, lambda d: d.update(partition_keys=["Store", "Brand"]))
    assert load(job)[0].partition_keys == ["Store", "Brand"]


def test_no_append_row_to_is_summary_only(v2: Path, tmp_path: Path) -> None:
    job = edit(v2 / "parallel_job.yml", lambda d: d["task"].pop("append_row_to"))
    assert refused(job) == ("output: the parallel job 'score_files' has no task.append_row_to, so give mpibatch's own "
                            "output folder (logs, state) with --output DIR")
    config, _ = load(job, output=str(tmp_path / "o"))
    assert config.output_action == "summary_only"


def test_component_needs_set_for_inputs_without_path(v2: Path) -> None:
    component = v2 / "component" / "parallel_component.yml"
    assert refused(component) == "inputs.job_data_path: has no local path; pass --set inputs.job_data_path=PATH"
    config, extras = load(component, set=["inputs.job_data_path=../data", "inputs.score_model=../model",
                                          "outputs.job_output_file=../out/c", "outputs.copies=../out/copies"])
    assert config.inputs[0].path == str(v2 / "data")  # --set paths are relative to the current directory
    assert config.entry_script == str(v2 / "src" / "score.py")  # task.code relative to the component file
    assert config.arguments == ["--model", str(v2 / "model"), "--tag", "green", "--copies", str(v2 / "out" / "copies")]
    assert (config.output, config.append_row_file_name) == (str(v2 / "out" / "c"), "parallel_run_step.txt")
    assert (config.mini_batch_size, config.run_max_try, config.run_invocation_timeout) == (3, 1, 30)
    assert extras["v2_dirs"] == [str(v2 / "out" / "copies")]
    assert extras["v2_sizing"] == {"node_count": 2, "process_count_per_node": 1}
    assert "name, version, display_name, is_deterministic" in extras["v2_notes"][0]
    assert extras["v2_notes"][-1].startswith("task.environment is not built here: the entry script runs with "
                                             "mpibatch's interpreter unless you give --python PATH")
    assert "--command-prefix 'apptainer" not in extras["v2_notes"][-1]  # a registered environment names no image


def test_pipeline_with_several_parallel_nodes_needs_node(v2: Path) -> None:
    pipeline = v2 / "pipeline.yml"
    assert refused(pipeline) == (f"--node: the pipeline in {pipeline} holds 2 parallel nodes (predict_inline, "
                                 "predict_component); name one with --node NAME")
    assert refused(pipeline, node="nope") == (f"--node: 'nope' is not a node of the pipeline in {pipeline} "
                                              "(parallel nodes: predict_inline, predict_component)")
    assert refused(pipeline, node="prepare_data") == (f"--node: 'prepare_data' is not a parallel node of the pipeline "
                                                      f"in {pipeline} (parallel nodes: predict_inline, "
                                                      "predict_component)")


def test_pipeline_node_bound_to_another_step_needs_set(v2: Path) -> None:
    pipeline = v2 / "pipeline.yml"
    assert refused(pipeline, node="predict_inline") == (
        "inputs.job_data_path: binds ${{parent.jobs.prepare_data.outputs.images}}, the output of pipeline step "
        "'prepare_data', which mpibatch does not run; pass --set inputs.job_data_path=PATH")
    assert refused(pipeline, node="predict_inline", set=["inputs.job_data_path=data"]) == (
        "outputs.job_output_file: has no local path; pass --set outputs.job_output_file=PATH")
    config, extras = load(pipeline, node="predict_inline",
                          set=["inputs.job_data_path=data", "outputs.job_output_file=out/p/scores.txt"])
    assert config.inputs[0].path == str(v2 / "data")
    assert config.arguments == ["--model", str(v2 / "model")]  # ${{parent.inputs.pipeline_model}}
    assert (config.output, config.append_row_file_name) == (str(v2 / "out" / "p"), "scores.txt")
    assert (config.mini_batch_size, config.allowed_failed_count, config.run_max_try) == (5, 5, 3)
    assert "jobs.prepare_data, jobs.predict_component" in extras["v2_notes"][0]
    assert "experiment_name" in extras["v2_notes"][0] and "settings" in extras["v2_notes"][0]


def test_pipeline_node_over_its_component(v2: Path) -> None:
    config, _ = load(v2 / "pipeline.yml", node="predict_component", set=["outputs.copies=out/copies"])
    assert config.inputs[0].path == str(v2 / "data")  # the node's plain path for a uri_folder input
    assert config.arguments == ["--model", str(v2 / "model"), "--tag", "red", "--copies", str(v2 / "out" / "copies")]
    assert config.mini_batch_size == 4  # the node's setting wins over the component's "3"
    assert config.output == str(v2 / "out" / "pipeline_scores")  # ${{parent.outputs.scores}}


@pytest.mark.parametrize("path, line", [
    ("azureml:mnist-data:1", "inputs.job_data_path: 'azureml:mnist-data:1' is an Azure ML asset or cloud URI that "
                             "mpibatch cannot read; pass --set inputs.job_data_path=PATH"),
    ("azureml://datastores/workspaceblobstore/paths/mnist/", "inputs.job_data_path: 'azureml://datastores/"
     "workspaceblobstore/paths/mnist/' is an Azure ML asset or cloud URI that mpibatch cannot read; pass --set "
     "inputs.job_data_path=PATH"),
])
def test_cloud_inputs_need_set(v2: Path, path: str, line: str) -> None:
    job = edit(v2 / "parallel_job.yml", lambda d: d["inputs"]["job_data_path"].update(path=path))
    assert refused(job) == line
    assert load(job, set=["inputs.job_data_path=data"])[0].inputs[0].path == str(v2 / "data")


def test_cloud_output_of_the_sample_needs_set(v2: Path) -> None:
    job = edit(v2 / "parallel_job.yml", lambda d: d["outputs"]["job_output_file"].update(
        path="azureml://datastores/${{default_datastore}}/paths/${{name}}/aggregated_returns.csv"))
    assert refused(job).startswith("outputs.job_output_file: 'azureml://datastores/${{default_datastore}}/paths/")
    assert load(job, set=["outputs.job_output_file=r/x.csv"])[0].append_row_file_name == "x.csv"


@pytest.mark.parametrize("change, line", [
    (lambda d: d["task"].update(type="run_command"),
     "task.type: 'run_command' is not supported; mpibatch runs task.type: run_function"),
    (lambda d: d.update(queue_size=3), "unknown key 'queue_size' in the parallel job 'score_files' (not an Azure ML v2 "
                                       "parallel job key)"),
    (lambda d: d["task"].update(entry="x.py"), "task.entry: not a key of an Azure ML v2 parallel task"),
    (lambda d: d["task"].pop("entry_script"), "task.entry_script: required in the parallel job 'score_files'"),
    (lambda d: d.update(input_data="./data"), "input_data: must be ${{inputs.NAME}} (got './data')"),
    (lambda d: d.update(input_data="${{inputs.nothing}}"), "inputs.nothing: the parallel job 'score_files' has no input "
                                                           "'nothing' (it has: job_data_path, score_model, label)"),
    (lambda d: d["task"].update(append_row_to="${{outputs.none}}"), "outputs.none: the parallel job 'score_files' has "
                                                                    "no output 'none' (it has: job_output_file)"),
    (lambda d: d["task"].update(program_arguments="--model ${{inputs.score_model}} --x ${{parent.inputs.y}}"),
     "task.program_arguments: cannot resolve ${{parent.inputs.y}} (only ${{inputs.NAME}} and ${{outputs.NAME}} are "
     "known there)"),
    (lambda d: d["task"].update(program_arguments="--model 'unclosed"),
     "task.program_arguments: cannot be split into words: No closing quotation"),
    (lambda d: d["task"].update(program_arguments="--model m --error_threshold"),
     "task.program_arguments: --error_threshold needs a value"),
    (lambda d: d["retry_settings"].update(tries=3),
     "retry_settings.tries: not a key of Azure ML's retry_settings (max_retries, timeout)"),
    (lambda d: d["resources"].update(instance_count=0), "resources.instance_count: must be a count of 1 or more (got 0)"),
    (lambda d: d["retry_settings"].update(max_retries=0), "run_max_try: must be 1 or more and at most 1000 (got 0)"),
    (lambda d: d.update(type="command"), "is not a parallel job; mpibatch runs Azure ML v2 files of type: parallel"),
])
def test_unsupported_is_one_line_naming_it(v2: Path, change, line: str) -> None:
    assert line in refused(edit(v2 / "parallel_job.yml", change))


def test_set_and_node_errors(v2: Path, tmp_path: Path) -> None:
    assert refused(v2 / "parallel_job.yml", set=["inputs.job_data_path"]) == (
        "--set: 'inputs.job_data_path' is not inputs.NAME=PATH or outputs.NAME=PATH")
    assert refused(v2 / "parallel_job.yml", set=["inputs.other=x"]) == (
        "--set: the parallel job 'score_files' has no input 'other' (it has: job_data_path, score_model, label)")
    assert refused(v2 / "parallel_job.yml", node="x").startswith("--node: '")
    plain = tmp_path / "job.yml"
    plain.write_text(f"entry_script: {v2 / 'src' / 'score.py'}\ninputs: [{v2 / 'data'}]\noutput: {tmp_path / 'o'}\n")
    assert refused(plain, set=["inputs.a=b"]) == ("--set: only for an Azure ML v2 job file ($schema / type: parallel "
                                                  "or pipeline)")


def test_a_pipeline_without_parallel_nodes(tmp_path: Path) -> None:
    job = tmp_path / "p.yml"
    job.write_text("$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\ntype: pipeline\n"
                   "jobs:\n  train:\n    type: command\n    command: python train.py\n")
    assert refused(job) == f"jobs: the pipeline in {job} holds no parallel node (it holds: train (command))"


def test_registered_component_is_refused(v2: Path) -> None:
    job = edit(v2 / "pipeline.yml", lambda d: d["jobs"]["predict_component"].update(component="azureml:batch_score:1"))
    assert refused(job, node="predict_component") == (
        "jobs.predict_component.component: 'azureml:batch_score:1' is a registered Azure ML component; mpibatch "
        "reads a local component file (component: ./component.yml)")


def test_prs_flags_are_settings_not_arguments() -> None:
    split = split_program_arguments("--model m --run_invocation_timeout=30 --process_count_per_node 4 --mini_batch_size "
                                    "7 --logging_level WARNING --metrics_name_prefix p --push_metrics_to_parent False "
                                    "--error 1 --allowed_failed_count 2 --append_row_file_name r.txt", "w")
    assert split.arguments == ["--model", "m", "--error", "1"]  # a short flag of the script's own stays its own
    assert split.settings == {"run_invocation_timeout": 30, "mini_batch_size": 7, "logging_level": "WARNING",
                              "allowed_failed_count": 2, "append_row_file_name": "r.txt"}
    assert split.sizing == {"process_count_per_node": 4}
    assert split.acknowledged == ["--metrics_name_prefix p", "--push_metrics_to_parent False"]


def test_world_differences_are_warnings() -> None:
    assert world_notes({"node_count": 2, "process_count_per_node": 2}, 1, 2) == [
        "resources.instance_count: the v2 job asks for 2 but runs with 1; mpibatch takes its size from the launcher "
        "(srun -N)"]
    assert world_notes({"process_count_per_node": 4}, 1, 2) == [
        "max_concurrency_per_instance: the v2 job asks for 4 but runs with 2; mpibatch takes its size from the "
        "launcher (mpiexec -n / srun --ntasks-per-node)"]
    assert world_notes({"node_count": 1}, 1, 3) == []


@pytest.mark.parametrize("key, hint", [
    ("mini_batch_error_threshold", " (Azure ML v2 name: use 'allowed_failed_count')"),
    ("compute", " (Azure ML v2 name: none needed: the job runs where mpiexec / srun starts it)"),
    ("resources", " (Azure ML v2 name: use 'node_count', or start the job with mpiexec / srun -N)"),
    ("max_concurrency_per_instance", " (Azure ML v2 name: use 'process_count_per_node', or start the job with "
                                     "mpiexec -n / srun --ntasks-per-node)"),
    ("input_data", " (Azure ML v2 name: use 'inputs')"),
    ("program_arguments", " (Azure ML v2 name: use 'arguments')"),
    ("append_row_to", " (Azure ML v2 name: use 'output' and 'append_row_file_name')"),
    ("environment", " (Azure ML v2 name: use 'python' (an interpreter) or 'command_prefix' (a container))"),
])
def test_azure_names_in_a_plain_job_file_get_their_equivalent(tmp_path: Path, key: str, hint: str) -> None:
    job = tmp_path / "job.yml"
    job.write_text(f"entry_script: s.py\ninputs: [d]\noutput: o\n{key}: 1\n")
    assert refused(job) == f"unknown key '{key}' in {job}{hint}"
    assert azure_hint(key) == hint


def test_unknown_flag_with_an_azure_name() -> None:
    with pytest.raises(ConfigError) as caught:
        build_parser().parse_args(["run", "--mini-batch-error-threshold", "5"])
    assert str(caught.value) == ("unknown option '--mini-batch-error-threshold' (Azure ML v2 name: use "
                                 "'allowed_failed_count')")


def test_near_misses_still_suggested(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("entry_script: s.py\ninputs: [d]\noutput: o\nmini_batch_sise: 3\n")
    assert refused(job) == f"unknown key 'mini_batch_sise' in {job} (did you mean 'mini_batch_size'?)"


def test_submit_forwards_node_and_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["submit", "p.yml", "--node", "predict", "--set", "inputs.a=data",
                                      "--set", "outputs.b=az://c/p", "--mini-batch-size", "3"])
    argv = run_flag_argv(args)
    assert argv[-6:] == ["--node", "predict", "--set", f"inputs.a={tmp_path / 'data'}", "--set", "outputs.b=az://c/p"]
    assert ["--mini-batch-size", "3"] == argv[:2]
