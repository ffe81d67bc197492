"""Unit tests for mpibatch.cluster.slurm and the templates in mpibatch/cluster/templates/slurm/: what the sbatch script asks
Slurm for, the launch line for each MPI, that every user value arrives intact and can never run as shell,
and the requeue logic."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mpibatch.cluster.slurm
from mpibatch.cli import main
from mpibatch.config import ConfigError
from mpibatch.cluster.slurm import SubmitRequest, profiles, render, templates_dir, time_limit_seconds

NASTY = ["has space", "it's", 'say "hi"', "$(touch PWNED)", "`touch PWNED`", "a;touch PWNED", "line\nbreak",
         "$HOME", "back\\slash", "*", ""]


@pytest.fixture(autouse=True)
def mpi(monkeypatch) -> None:
    """The MPICH wheel, whatever MPI runs these tests; the tests of other MPIs say theirs."""
    use_mpi(monkeypatch, "mpich")


def use_mpi(monkeypatch, flavour: str) -> None:
    monkeypatch.setattr(mpibatch.cluster.slurm, "mpi_flavour", lambda: flavour)


def request(tmp_path: Path, **overrides) -> SubmitRequest:
    values = dict(job_name="mpibatch-job", nodes=1, output=tmp_path / "out", run_args=["/jobs/job.yaml", "--resume"],
                  workdir=tmp_path)
    values.update(overrides)
    return SubmitRequest(**values)


def directives(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps([os.path.basename(sys.argv[0]), sys.argv[1:]]) + "\\n")
if os.path.basename(sys.argv[0]) == "srun" and "I_MPI_PMI_LIBRARY" in os.environ:
    with open(os.environ["FAKE_LOG"] + ".pmi", "w") as fh:
        fh.write(os.environ["I_MPI_PMI_LIBRARY"])
if os.environ.get("FAKE_RESULT") and os.path.basename(sys.argv[0]) in ("srun", "mpiexec"):
    os.makedirs(os.path.dirname(os.environ["FAKE_RESULT_PATH"]), exist_ok=True)
    with open(os.environ["FAKE_RESULT_PATH"], "w") as fh:  # what the job's rank 0 wrote before the launcher ended
        fh.write(os.environ["FAKE_RESULT"])
sys.exit(int(os.environ.get("FAKE_RC", "0")) if os.path.basename(sys.argv[0]) in ("srun", "mpiexec") else 0)
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """srun, mpiexec, scontrol and module that only record their arguments (and srun's exit status)."""
    folder = tmp_path / "fakebin"
    folder.mkdir()
    for name in ("srun", "mpiexec", "scontrol", "module"):
        (folder / name).write_text(FAKE.format(python=sys.executable))
        (folder / name).chmod(0o755)
    return folder


def execute(script: str, tmp_path: Path, fake_bin: Path, rc: int = 0, restarts: int = 0,
            result: str = "") -> tuple[int, list]:
    """Run the rendered script with bash, the fakes first on PATH; the exit status and the calls."""
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log),
           "FAKE_RC": str(rc), "FAKE_RESULT": result,
           "FAKE_RESULT_PATH": str(tmp_path / "out" / "logs" / "job_result.json"), "SLURM_JOB_ID": "77", "SLURM_NTASKS": "2", "SLURM_RESTART_COUNT": str(restarts)}
    proc = subprocess.run(["bash", str(path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, calls


def test_profiles_are_the_documented_three():
    assert profiles() == ["cpu", "gpu4", "site-modules"]
    assert templates_dir() == Path(mpibatch.cluster.slurm.__file__).parent / "templates" / "slurm", "package data"


def launch_lines(script: str) -> list[str]:
    """The launch block: from after `started=$(mktemp)` to `rc=$?`."""
    lines = script.splitlines()
    return lines[lines.index("started=$(mktemp)") + 1:lines.index("rc=$?")]


SRUN_LINES = {
    "mpich": ["# MPICH is the MPI this environment's mpi4py uses: srun starts its ranks so", "srun --mpi=pmi2 PY"],
    "openmpi": ["# Open MPI is the MPI this environment's mpi4py uses: srun starts its ranks so", "srun --mpi=pmix PY"],
    "impi": ["# Intel MPI is the MPI this environment's mpi4py uses: srun starts its ranks so",
             "export I_MPI_PMI_LIBRARY='/site/slurm 23/lib/libpmi2.so'", "srun --mpi=pmi2 PY"],
    "unknown": ["# mpibatch does not know this environment's MPI: srun uses the site's default --mpi", "srun PY"],
}


@pytest.mark.parametrize("flavour", SRUN_LINES)
@pytest.mark.parametrize("profile", ["cpu", "gpu4"])
def test_the_launch_line_is_the_one_for_this_environments_mpi(tmp_path, fake_bin, monkeypatch, flavour, profile):
    use_mpi(monkeypatch, flavour)
    monkeypatch.setenv("I_MPI_PMI_LIBRARY", "/site/slurm 23/lib/libpmi2.so")
    script = render(request(tmp_path, profile=profile))
    run = f"{sys.executable} -m mpibatch run /jobs/job.yaml --resume"
    assert launch_lines(script) == [line.replace("PY", run) for line in SRUN_LINES[flavour]]
    monkeypatch.delenv("I_MPI_PMI_LIBRARY")  # the job's shell has only what the script exports
    rc, calls = execute(script, tmp_path, fake_bin)
    srun = SRUN_LINES[flavour][-1].replace("PY", run).split()
    assert rc == 0 and [c[1] for c in calls if c[0] == "srun"] == [srun[1:]]
    pmi = tmp_path / "calls.jsonl.pmi"
    assert (pmi.read_text() if pmi.exists() else None) == ("/site/slurm 23/lib/libpmi2.so" if flavour == "impi"
                                                           else None)


def test_intel_mpi_finds_slurms_pmi2_library_itself(tmp_path, monkeypatch):
    use_mpi(monkeypatch, "impi")
    monkeypatch.delenv("I_MPI_PMI_LIBRARY", raising=False)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libpmi2.so").write_bytes(b"")
    monkeypatch.setattr(mpibatch.cluster.launch, "pmi2_search_path", lambda: [tmp_path / "none", tmp_path / "lib"])
    assert f"export I_MPI_PMI_LIBRARY={tmp_path}/lib/libpmi2.so" in launch_lines(render(request(tmp_path)))


def test_intel_mpi_without_slurms_pmi2_library_launches_with_pmi2_and_says_what_to_set(tmp_path, monkeypatch):
    """The impi-rt 2021.18 wheel joined `srun --mpi=pmi2` without I_MPI_PMI_LIBRARY (measured with Slurm 22.05)."""
    use_mpi(monkeypatch, "impi")
    monkeypatch.delenv("I_MPI_PMI_LIBRARY", raising=False)
    monkeypatch.setattr(mpibatch.cluster.launch, "pmi2_search_path", lambda: [])
    assert launch_lines(render(request(tmp_path))) == [
        "# Intel MPI is the MPI this environment's mpi4py uses: srun starts its ranks so",
        "# no Slurm libpmi2.so for I_MPI_PMI_LIBRARY (none beside srun or in /usr/lib, /usr/lib64, /usr/local/lib, "
        "/opt/slurm/lib): Intel MPI 2021 joins without it; export it here if yours does not",
        f"srun --mpi=pmi2 {sys.executable} -m mpibatch run /jobs/job.yaml --resume"]


def test_directives_of_the_default_profile(tmp_path):
    script = render(request(tmp_path, nodes=3, ntasks_per_node=2, time="1-02:00:00", partition="batch",
                            account="proj_1"))
    assert script.startswith("#!/bin/bash\n")
    assert directives(script) == [
        "#SBATCH --job-name=mpibatch-job", "#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=2",
        "#SBATCH --time=1-02:00:00", "#SBATCH --partition=batch", "#SBATCH --account=proj_1",
        f"#SBATCH --output={tmp_path}/out/logs/slurm-%j.out", "#SBATCH --open-mode=append", "#SBATCH --requeue",
        "#SBATCH --signal=TERM@30"]
    assert "export MPIBATCH_WALLTIME_MARGIN=90\n" in script
    assert f"srun --mpi=pmi2 {sys.executable} -m mpibatch run /jobs/job.yaml --resume\n" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_profile_defaults_and_flags_that_override_them(tmp_path):
    cpu = directives(render(request(tmp_path)))
    assert "#SBATCH --ntasks-per-node=4" in cpu and not any("gpus" in d for d in cpu)
    gpu = directives(render(request(tmp_path, profile="gpu4")))
    assert {"#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --exclusive"} <= set(gpu)
    two = directives(render(request(tmp_path, profile="gpu4", gpus_per_node=2)))
    assert {"#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=2"} <= set(two)
    mixed = directives(render(request(tmp_path, profile="gpu4", ntasks_per_node=8)))
    assert {"#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=4"} <= set(mixed)


@pytest.mark.parametrize("limit,margin", [("1", 15), ("10", 90), ("4:00:00", 90), (None, 90)])
def test_walltime_margin_scales_down_for_short_jobs(tmp_path, limit, margin):
    script = render(request(tmp_path, time=limit))
    assert f"export MPIBATCH_WALLTIME_MARGIN={margin}\n" in script


@pytest.mark.parametrize("text,seconds", [("5", 300), ("1:30", 90), ("2:00:05", 7205), ("1-0", 86400),
                                          ("2-3:04", 183840), ("1-00:00:07", 86407), ("UNLIMITED", None)])
def test_time_limit_seconds(text, seconds):
    assert time_limit_seconds(text) == seconds


@pytest.mark.parametrize("profile", ["cpu", "gpu4", "site-modules"])
def test_every_value_reaches_the_launcher_intact_and_none_runs_as_shell(tmp_path, fake_bin, profile, monkeypatch):
    venv = tmp_path / "venv with space"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("ACTIVATED=yes\n")  # the real one would put the real mpiexec first
    monkeypatch.setattr(sys, "prefix", str(venv))
    workdir = tmp_path / "dir with $(touch PWNED) and 'quotes'\nand a newline"
    workdir.mkdir()
    run_args = ["/jobs/my job.yaml", "--output", "out $(touch PWNED)", "--", *NASTY]
    script = render(request(tmp_path, profile=profile, run_args=run_args, workdir=workdir))
    rc, calls = execute(script, tmp_path, fake_bin)
    assert rc == 0
    launcher = [c for c in calls if c[0] in ("srun", "mpiexec")]
    assert len(launcher) == 1
    argv = launcher[0][1]
    assert argv[-len(run_args):] == run_args, "every argument arrives as one word, unchanged"
    assert argv[argv.index("mpibatch") + 1] == "run"
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    if profile == "site-modules":
        assert [c for c in calls if c[0] == "module"] == [["module", ["purge"]], ["module", ["load", "gcc", "openmpi"]]]
        assert argv[:3] == ["-n", "2", "python"]
    else:
        assert argv[:2] == ["--mpi=pmi2", sys.executable]


@pytest.mark.parametrize("rc,restarts,requeued", [(0, 0, False), (1, 0, False), (2, 0, False), (124, 0, True),
                                                  (143, 3, True), (124, 10, False), (130, 0, False)])
def test_requeues_itself_only_after_a_stop_for_the_time_limit(tmp_path, fake_bin, rc, restarts, requeued):
    code, calls = execute(render(request(tmp_path)), tmp_path, fake_bin, rc=rc, restarts=restarts)
    assert code == rc
    assert ([c for c in calls if c[0] == "scontrol"] == [["scontrol", ["requeue", "77"]]]) == requeued


@pytest.mark.parametrize("rc,status,recorded,requeued", [(1, "Interrupted", 143, True), (9, "Interrupted", 124, True),
                                                        (1, "Failed", 1, False), (1, "Interrupted", 130, False)])
def test_a_launcher_status_after_a_clean_stop_defers_to_the_jobs_own_record(tmp_path, fake_bin, rc, status, recorded,
                                                                               requeued):
    """Open MPI's launcher returns its own status after it kills the ranks; the job's files still say Interrupted."""
    result = json.dumps({"status": status, "exit_code": recorded})
    code, calls = execute(render(request(tmp_path)), tmp_path, fake_bin, rc=rc, result=result)
    assert code == (recorded if status == "Interrupted" else rc)
    assert ([c for c in calls if c[0] == "scontrol"] == [["scontrol", ["requeue", "77"]]]) == requeued


def test_a_job_result_left_by_an_earlier_run_is_not_trusted(tmp_path, fake_bin):
    stale = tmp_path / "out" / "logs" / "job_result.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"status": "Interrupted", "exit_code": 143}))
    os.utime(stale, (1_000_000, 1_000_000))
    code, calls = execute(render(request(tmp_path)), tmp_path, fake_bin, rc=1)
    assert code == 1 and not [c for c in calls if c[0] == "scontrol"]


@pytest.mark.parametrize("field,value", [("partition", "a b"), ("partition", "x\nrm -rf ~"), ("account", "$(id)"),
                                         ("account", "a'b"), ("time", "1:00; rm"), ("time", "soon"),
                                         ("partition", "")])
def test_values_that_cannot_stand_on_an_sbatch_line_are_refused(tmp_path, field, value):
    flag = "--" + field
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        render(request(tmp_path, **{field: value}))


def test_an_output_path_unsafe_for_sbatch_keeps_slurms_log_in_the_workdir(tmp_path):
    script = render(request(tmp_path, output=tmp_path / "my out"))
    assert not any(d.startswith("#SBATCH --output") for d in directives(script))
    assert "slurm-%j.out" in render(request(tmp_path))


def test_a_template_that_puts_an_unsafe_value_on_an_sbatch_line_fails(tmp_path):
    template = tmp_path / "mine.sbatch.j2"
    template.write_text('{% extends "base.sbatch.j2" %}{% block directives %}#SBATCH --comment={{ workdir | slurm }}\n'
                        '{% endblock %}')
    with pytest.raises(ConfigError, match="cannot stand on an #SBATCH line"):
        render(request(tmp_path / "a b", template=template))
    (tmp_path / "a b").mkdir()
    assert f"#SBATCH --comment={tmp_path}" in directives(render(request(tmp_path / "a b", template=template,
                                                                        workdir=tmp_path)))


def test_own_template_extends_base_and_sets_knobs(tmp_path):
    template = tmp_path / "local.sbatch.j2"
    template.write_text('{% extends "base.sbatch.j2" %}{% set signal_lead = 0 %}{% set walltime_margin = 20 %}'
                        '{% set max_requeues = 2 %}{% block directives %}#SBATCH --overcommit\n{% endblock %}')
    script = render(request(tmp_path, template=template))
    assert "#SBATCH --overcommit" in directives(script)
    assert not any("--signal" in d for d in directives(script))
    assert "MPIBATCH_WALLTIME_MARGIN=20\n" in script and '-lt 2 ]' in script


def test_template_errors_name_the_template(tmp_path):
    broken = tmp_path / "broken.sbatch.j2"
    broken.write_text("{% extends 'base.sbatch.j2' %}{% block launch %}{{ nope }}{% endblock %}")
    with pytest.raises(ConfigError, match=r"^--template .*broken.sbatch.j2: UndefinedError"):
        render(request(tmp_path, template=broken))
    with pytest.raises(ConfigError, match=r"^--profile: no profile 'gpu' .*\(did you mean 'gpu4'\?\)"):
        render(request(tmp_path, profile="gpu"))
    with pytest.raises(ConfigError, match="^--template: .* does not exist"):
        render(request(tmp_path, template=tmp_path / "missing.j2"))
    with pytest.raises(ConfigError, match="^--profile and --template"):
        render(request(tmp_path, profile="cpu", template=broken))


# ---- the command ------------------------------------------------------------------------------

@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a").write_text("ok\n")
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "job.yaml").write_text("entry_script: score.py\ninputs: [data]\noutput: out\n")
    return tmp_path


def submit(capsys, *args: str) -> tuple[int, str, str]:
    """`mpibatch submit ARGS` in this process: exit status, stdout, stderr."""
    try:
        code = main(["submit", *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_script_forwards_run_flags_and_writes_nothing(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    code, out, err = submit(capsys, "job.yaml", "--nodes", "2", "--dry-run", "--mini-batch-size", "3",
                            "--no-coordinator-works", "--environment-variables", "A=b c", "--progress", "none",
                            "--", "--flag", "x y")
    assert code == 0, err
    assert "#SBATCH --nodes=2" in out
    launch = next(line for line in out.splitlines() if line.startswith("srun "))
    assert launch.endswith(f"run {job_dir}/job.yaml --progress lines --mini-batch-size 3 "
                           "--environment-variables 'A=b c' --no-coordinator-works --progress none --resume "
                           "-- --flag 'x y'")
    assert f"cd {job_dir} ||" in out
    assert not (job_dir / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--dry-run"], "mpibatch: error: --nodes: required (or node_count in the job)"),
    (["--nodes", "0", "--dry-run"], "mpibatch: error: argument --nodes: must be 1 or more (got 0)"),
    (["--nodes", "1", "--partition", "a;b", "--dry-run"], "mpibatch: error: --partition: 'a;b' is not a valid Slurm name"),
    (["--nodes", "1", "--entry-script", "nope.py", "--dry-run"], "mpibatch: error: entry_script: '{d}/nope.py' does not exist"),
    (["--nodes", "1", "--mini-batch-sise", "3"], "mpibatch: error: unknown option '--mini-batch-sise' (did you mean '--mini-batch-size'?)"),
])
def test_bad_submit_input_is_one_line_and_exit_2(job_dir, capsys, monkeypatch, args, message):
    monkeypatch.chdir(job_dir)
    code, _, err = submit(capsys, "job.yaml", *args)
    assert code == 2
    assert err == message.format(d=job_dir) + "\n"
    assert not (job_dir / "out").exists()


def test_node_count_and_process_count_per_node_from_the_job(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    with open(job_dir / "job.yaml", "a") as fh:
        fh.write("node_count: 3\nprocess_count_per_node: 2\n")
    code, out, _ = submit(capsys, "job.yaml", "--dry-run")
    assert code == 0 and {"#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=2"} <= set(directives(out))
    code, _, err = submit(capsys, "job.yaml", "--nodes", "2", "--dry-run")
    assert code == 2 and err == "mpibatch: error: --nodes: 2 but the job says node_count: 3\n"


def fake_sbatch(folder: Path, reply: str, rc: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    script = folder / "sbatch"
    to = ">&2" if rc else ""
    script.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args\ncat > {folder}/script\n"
                      f"echo '{reply}' {to}\nexit {rc}\n")
    script.chmod(0o755)


def test_submit_hands_the_script_to_sbatch_and_says_how_to_watch(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    bin_dir = job_dir / "bin"
    fake_sbatch(bin_dir, "4242;cluster")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, dry, _ = submit(capsys, "job.yaml", "--nodes", "1", "--time", "30", "--dry-run")
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", "--time", "30")
    assert code == 0, err
    assert (bin_dir / "script").read_text() == dry
    assert (bin_dir / "args").read_text().split() == ["--parsable"]
    assert out.splitlines() == [
        f"mpibatch: submitted Slurm job 4242 (1 node(s), profile cpu); Slurm's log: {job_dir}/out/logs/slurm-4242.out",
        f"watch it with: mpibatch status {job_dir}/out --watch"]
    assert (job_dir / "out" / "logs").is_dir(), "Slurm opens its log there when the job starts"


def test_sbatch_refusing_or_missing(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    bin_dir = job_dir / "bin"
    fake_sbatch(bin_dir, "sbatch: error: invalid partition specified: gpu", rc=1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, _, err = submit(capsys, "job.yaml", "--nodes", "1")
    assert code == 1
    assert err == "mpibatch: error: sbatch refused the job: sbatch: error: invalid partition specified: gpu\n"
    (bin_dir / "sbatch").unlink()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, err = submit(capsys, "job.yaml", "--nodes", "1")
    assert code == 2
    assert err == "mpibatch: error: sbatch not found: submit from a Slurm login node (or use --dry-run)\n"


def test_submit_for_open_mpi(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    use_mpi(monkeypatch, "openmpi")
    code, out, err = submit(capsys, "job.yaml", "--nodes", "2", "--dry-run")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("srun")] == [
        f"srun --mpi=pmix {sys.executable} -m mpibatch run {job_dir}/job.yaml --progress lines --resume"]


def test_a_template_file_name_with_a_newline_stays_inside_the_scripts_comment(tmp_path, fake_bin):
    template = tmp_path / "mine\ntouch PWNED\n.sbatch.j2"
    template.write_text('{% extends "base.sbatch.j2" %}')
    script = render(request(tmp_path, template=template))
    assert "(profile mine\\ntouch PWNED\\n.sbatch.j2)" in script
    assert not any(line.strip() == "touch PWNED" for line in script.splitlines())
    rc, _ = execute(script, tmp_path, fake_bin)
    assert rc == 0 and not list(tmp_path.rglob("PWNED"))
