"""Unit tests for join jobs in mpibatch.cluster.slurm (join.sbatch.j2, join-allocator.sbatch.j2): a join job
is the same profile whose ranks run `mpibatch join OUTPUT`, never requeued; the main job of --max-join-jobs
starts the allocator beside its launch and stops it before it decides on a requeue; `submit` hands the
join jobs to sbatch after the main job, and --dry-run prints every script."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_slurm_templates import NASTY, directives, execute, launch_lines, request, submit
from test_slurm_templates import fake_bin, job_dir, mpi  # noqa: F401 - the fixtures, shared

from mpibatch.cluster.slurm import JoinRequest, profiles, render, render_join
from mpibatch.config import ConfigError

JOIN = f"{sys.executable} -m mpibatch join"


def join_request(tmp_path: Path, join: JoinRequest | None = None, **overrides) -> "object":
    return request(tmp_path, join=join or JoinRequest(jobs=1), **overrides)


def test_join_templates_are_not_profiles():
    assert profiles() == ["cpu", "gpu4", "site-modules"]


@pytest.mark.parametrize("profile,launch", [
    ("cpu", ["# MPICH is the MPI this environment's mpi4py uses: srun starts its ranks so",
             f"srun --mpi=pmi2 {JOIN} OUT --wait 600"]),
    ("gpu4", ["# MPICH is the MPI this environment's mpi4py uses: srun starts its ranks so",
              f"srun --mpi=pmi2 {JOIN} OUT --wait 600"]),
    ("site-modules", ['mpiexec -n "$SLURM_NTASKS" python -m mpibatch join OUT --wait 600']),
])
def test_a_join_job_is_the_profile_running_join_and_never_requeued(tmp_path, profile, launch):
    script = render_join(join_request(tmp_path, profile=profile, nodes=3, time="2:00:00"))
    output = str(tmp_path / "out")
    assert launch_lines(script) == [line.replace("OUT", output) for line in launch]
    main = directives(render(request(tmp_path, profile=profile, nodes=3, time="2:00:00")))
    expected = [d.replace("--job-name=mpibatch-job", "--job-name=mpibatch-job-join")
                .replace("--requeue", "--no-requeue") for d in main]
    assert directives(script) == expected, "the profile's directives, its name with -join, never requeued"
    assert "scontrol" not in script
    assert "requeue" not in script.replace("--no-requeue", "").replace("never requeued", "")
    assert script.endswith('rc=$?\nrm -f "$started"\nexit "$rc"\n')
    assert "Slurm may run this script again" not in script and "a join job" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_join_nodes_time_and_wait(tmp_path):
    script = render_join(join_request(tmp_path, JoinRequest(jobs=2, nodes=1, time="4", wait_s=45.5), nodes=4,
                                      time="4:00:00", ntasks_per_node=2))
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=4"} <= set(directives(script))
    assert "export MPIBATCH_WALLTIME_MARGIN=60\n" in script, "the margin fits the join job's own limit"
    assert launch_lines(script)[-1].endswith(f"join {tmp_path}/out --wait 45.5")
    inherits = render_join(join_request(tmp_path, nodes=4, time="4:00:00"))
    assert {"#SBATCH --nodes=4", "#SBATCH --time=4:00:00"} <= set(directives(inherits))


@pytest.mark.parametrize("rc", [0, 1, 124, 143])
def test_a_join_job_exits_with_its_launch_and_never_requeues_itself(tmp_path, fake_bin, rc):
    result = json.dumps({"status": "Interrupted", "exit_code": 143})  # the MAIN job's clean stop must not count
    code, calls = execute(render_join(join_request(tmp_path)), tmp_path, fake_bin, rc=rc, result=result)
    assert code == rc
    assert [c[0] for c in calls] == ["srun"]
    assert calls[0][1][-4:] == ["join", str(tmp_path / "out"), "--wait", "600"]


@pytest.mark.parametrize("profile", ["cpu", "site-modules"])
def test_every_value_reaches_the_join_launcher_intact_and_none_runs_as_shell(tmp_path, fake_bin, profile, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    monkeypatch.setattr(sys, "prefix", str(venv))
    workdir = tmp_path / "dir with $(touch PWNED) and 'quotes'\nand a newline"
    workdir.mkdir()
    for nasty in NASTY[:-1]:
        output = tmp_path / f"out {nasty}"
        code, calls = execute(render_join(join_request(tmp_path, output=output, profile=profile, workdir=workdir)),
                              tmp_path, fake_bin)
        launcher = [c for c in calls if c[0] in ("srun", "mpiexec")]
        assert code == 0 and len(launcher) == 1
        assert launcher[0][1][-4:] == ["join", str(output), "--wait", "600"]
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_a_template_whose_launch_does_not_run_mpibatch_run_cannot_make_a_join_job(tmp_path):
    template = tmp_path / "wrapped.sbatch.j2"
    template.write_text('{% extends "base.sbatch.j2" %}{% block launch %}srun ./my-wrapper.sh{% endblock %}')
    assert "srun ./my-wrapper.sh" in render(request(tmp_path, template=template))
    with pytest.raises(ConfigError, match=r"^--template .*wrapped.sbatch.j2: TemplateRuntimeError: its launch block "
                                          r"does not run `mpibatch run \{\{ run_args \| q \}\}` once"):
        render_join(join_request(tmp_path, template=template))


def test_a_users_own_template_gets_join_to_tell_the_two_apart(tmp_path):
    template = tmp_path / "mine.sbatch.j2"
    template.write_text('{% extends "cpu.sbatch.j2" %}{% set ntasks_per_node = ntasks_per_node or (2 if join else 1) %}'
                        '{% block directives %}{% if join %}#SBATCH --partition=spot\n{% endif %}{% endblock %}')
    main = directives(render(join_request(tmp_path, template=template)))
    group = directives(render_join(join_request(tmp_path, template=template)))
    assert "#SBATCH --ntasks-per-node=1" in main and "#SBATCH --partition=spot" not in main
    assert {"#SBATCH --ntasks-per-node=2", "#SBATCH --partition=spot"} <= set(group)
    (tmp_path / "join.sbatch.j2").write_text("a user's file of that name is not mpibatch's join template\n")
    assert "mpibatch join" in render_join(join_request(tmp_path, template=template))


# ---- the main job with the allocator -------------------------------------------------------------

def allocator_request(tmp_path: Path, **overrides) -> "object":
    return request(tmp_path, join=JoinRequest(max_jobs=3, backlog=2), **overrides)


def test_the_main_job_starts_the_allocator_beside_its_launch_and_stops_it_before_the_end(tmp_path):
    script = render(allocator_request(tmp_path))
    out = tmp_path / "out"
    assert launch_lines(script) == [
        "# the join allocator: submits join jobs while mini-batches wait; its lines go to this log",
        f"{sys.executable} -m mpibatch.cluster.join_alloc {out} --script {out}/logs/join.sbatch --max-jobs 3 "
        "--backlog 2 &",
        "allocator=$!",
        "# MPICH is the MPI this environment's mpi4py uses: srun starts its ranks so",
        f"srun --mpi=pmi2 {sys.executable} -m mpibatch run /jobs/job.yaml --resume"]
    after = script.split("rc=$?\n", 1)[1]
    assert after.startswith('kill -TERM "$allocator" 2>/dev/null\nwait "$allocator"\n# A launcher that kills')
    assert "#SBATCH --requeue" in directives(script) and 'scontrol requeue "$SLURM_JOB_ID"' in after
    plain = render(request(tmp_path))
    assert script.replace("\n".join(launch_lines(script)[:3]) + "\n", "").replace(
        'kill -TERM "$allocator" 2>/dev/null\nwait "$allocator"\n', "") == plain, "otherwise the profile's script"


@pytest.mark.parametrize("rc,requeued", [(0, False), (124, True)])
def test_the_main_job_with_an_allocator_still_requeues_after_a_clean_stop(tmp_path, fake_bin, rc, requeued):
    (tmp_path / "out" / "logs").mkdir(parents=True)
    (tmp_path / "out" / "logs" / "join.sbatch").write_text("#!/bin/bash\n")
    code, calls = execute(render(allocator_request(tmp_path)), tmp_path, fake_bin, rc=rc)
    assert code == rc
    assert ([c for c in calls if c[0] == "scontrol"] == [["scontrol", ["requeue", "77"]]]) == requeued


# ---- the command ---------------------------------------------------------------------------------

def banners(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("# ====")]


def scripts_in(out: str) -> list[tuple[str, str]]:
    """A dry run's (banner, script) pairs; a blank line parts one script from the next banner."""
    pieces = re.split(r"(?m)^(# ={20} .* ={20})\n", out)
    assert pieces[0] == ""
    scripts = pieces[2::2]
    assert all(s.endswith('exit "$rc"\n\n') for s in scripts[:-1]) and scripts[-1].endswith('exit "$rc"\n')
    return list(zip(pieces[1::2], [s[:-1] for s in scripts[:-1]] + scripts[-1:]))


def test_dry_run_prints_the_main_job_then_each_join_job(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    code, out, err = submit(capsys, "job.yaml", "--nodes", "2", "--join-jobs", "2", "--join-nodes", "1",
                            "--join-time", "45", "--join-address", "lo", "--dry-run")
    assert code == 0, err
    rule = "=" * 20
    assert banners(out) == [f"# {rule} the main job {rule}",
                            f"# {rule} join job 1 of 2: sbatch --dependency=after:<main job id> {rule}",
                            f"# {rule} join job 2 of 2: sbatch --dependency=after:<main job id> {rule}"]
    main, first, second = [script for _, script in scripts_in(out)]
    assert first == second
    assert main.startswith("#!/bin/bash\n") and first.startswith("#!/bin/bash\n")
    assert {"#SBATCH --nodes=2", "#SBATCH --requeue"} <= set(directives(main))
    assert {"#SBATCH --nodes=1", "#SBATCH --time=45", "#SBATCH --no-requeue"} <= set(directives(first))
    assert next(line for line in main.splitlines() if line.startswith("srun ")).endswith(
        f"run {job_dir}/job.yaml --progress lines --join-address lo --resume"), "the run flag reaches the main job"
    assert next(line for line in first.splitlines() if line.startswith("srun ")).endswith(
        f"join {job_dir}/out --wait 600")
    assert not (job_dir / "out").exists()


def test_dry_run_with_the_allocator_prints_the_main_job_and_the_join_script(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", "--max-join-jobs", "4", "--dry-run")
    assert code == 0, err
    rule = "=" * 20
    assert banners(out) == [f"# {rule} the main job {rule}",
                            f"# {rule} the join job: the main job's allocator submits this script "
                            f"({job_dir}/out/logs/join.sbatch), at most 1 waiting and 4 at a time {rule}"]
    assert "--max-jobs 4 --backlog 1 &" in out
    assert not (job_dir / "out").exists()


def test_without_join_flags_the_dry_run_is_the_main_script_alone(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    code, out, _ = submit(capsys, "job.yaml", "--nodes", "1", "--dry-run")
    assert code == 0 and out.startswith("#!/bin/bash\n") and not banners(out)
    assert "mpibatch join" not in out and "join_alloc" not in out


@pytest.mark.parametrize("args,message", [
    (["--join-jobs", "1", "--max-join-jobs", "2"], "--join-jobs and --max-join-jobs: give one of them"),
    (["--backlog", "2"], "--backlog: only with --max-join-jobs (how many join jobs may wait in the queue)"),
    (["--max-join-jobs", "2", "--backlog", "3"], "--backlog: 3 is more than --max-join-jobs 2"),
    (["--join-nodes", "2"], "--join-nodes: only with --join-jobs or --max-join-jobs"),
    (["--join-wait", "5"], "--join-wait: only with --join-jobs or --max-join-jobs"),
    (["--join-jobs", "1", "--join-time", "soon"],
     "--join-time: 'soon' is not a Slurm time (minutes, HH:MM:SS, D-HH:MM...)"),
    (["--join-jobs", "0"], "argument --join-jobs: must be 1 or more (got 0)"),
    (["--join-jobs", "1", "--join-address", "none"],
     "--join-jobs: the job's join_address is none, so no group could join it (leave join_address auto or name an "
     "interface)"),
    (["--max-join-jobs", "1", "--join-address", "none"],
     "--max-join-jobs: the job's join_address is none, so no group could join it (leave join_address auto or name an "
     "interface)"),
])
def test_bad_join_flags_are_one_line_and_exit_2(job_dir, capsys, monkeypatch, args, message):
    monkeypatch.chdir(job_dir)
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", *args, "--dry-run")
    assert (code, out, err) == (2, "", f"mpibatch: error: {message}\n")
    assert not (job_dir / "out").exists()


def fake_sbatch_counting(folder: Path) -> None:
    """sbatch that answers 500, 501, ... and keeps each call's arguments and script."""
    folder.mkdir(exist_ok=True)
    (folder / "sbatch").write_text(f"""#!/bin/sh
n=$(ls {folder}/calls 2>/dev/null | wc -l)
mkdir -p {folder}/calls/$n
echo "$@" > {folder}/calls/$n/args
cat > {folder}/calls/$n/script
echo $((500 + n))
""")
    (folder / "sbatch").chmod(0o755)


def sbatch_calls(folder: Path) -> list[tuple[list[str], str]]:
    calls = sorted((folder / "calls").iterdir(), key=lambda p: int(p.name)) if (folder / "calls").exists() else []
    return [((c / "args").read_text().split(), (c / "script").read_text()) for c in calls]


def test_submit_hands_the_main_job_then_the_join_jobs_to_sbatch(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    bin_dir = job_dir / "bin"
    fake_sbatch_counting(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, dry, _ = submit(capsys, "job.yaml", "--nodes", "1", "--join-jobs", "2", "--dry-run")
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", "--join-jobs", "2")
    assert code == 0, err
    calls = sbatch_calls(bin_dir)
    assert [args for args, _ in calls] == [["--parsable"], ["--parsable", "--dependency=after:500"],
                                           ["--parsable", "--dependency=after:500"]]
    assert [script for _, script in scripts_in(dry)] == [script for _, script in calls]
    assert out.splitlines() == [
        f"mpibatch: submitted Slurm job 500 (1 node(s), profile cpu); Slurm's log: {job_dir}/out/logs/slurm-500.out",
        "mpibatch: submitted 2 join job(s) of 1 node(s), starting once job 500 has: 501 502",
        f"watch it with: mpibatch status {job_dir}/out --watch"]
    recorded = json.loads((job_dir / "out" / "logs" / "join_jobs.json").read_text())["jobs"]
    assert [(j["job_id"], j["by"]) for j in recorded] == [("501", "submit"), ("502", "submit")]
    assert json.loads((job_dir / "out" / "logs" / "slurm_job.json").read_text())["job_id"] == "500"


def test_submit_with_the_allocator_writes_the_join_script_and_submits_the_main_job_alone(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    bin_dir = job_dir / "bin"
    fake_sbatch_counting(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, dry, _ = submit(capsys, "job.yaml", "--nodes", "1", "--max-join-jobs", "3", "--backlog", "2", "--dry-run")
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", "--max-join-jobs", "3", "--backlog", "2")
    assert code == 0, err
    calls = sbatch_calls(bin_dir)
    assert len(calls) == 1 and "-m mpibatch.cluster.join_alloc" in calls[0][1]
    join_script = (job_dir / "out" / "logs" / "join.sbatch").read_text()
    assert [script for _, script in scripts_in(dry)] == [calls[0][1], join_script]
    assert "mpibatch join" in join_script
    assert out.splitlines()[1] == (f"mpibatch: job 500 submits join jobs of 1 node(s) itself while mini-batches "
                                   f"wait: at most 2 waiting in the queue, 3 at a time (script: "
                                   f"{job_dir}/out/logs/join.sbatch)")


def test_a_join_job_sbatch_refuses_is_said_and_the_main_job_runs_without_it(job_dir, capsys, monkeypatch):
    monkeypatch.chdir(job_dir)
    bin_dir = job_dir / "bin"
    fake_sbatch_counting(bin_dir)
    text = (bin_dir / "sbatch").read_text()
    refuse = 'if [ "$n" -ge 2 ]; then echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2; exit 1; fi\n'
    (bin_dir / "sbatch").write_text(text.replace("echo $((500 + n))", refuse + "echo $((500 + n))"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, out, err = submit(capsys, "job.yaml", "--nodes", "1", "--join-jobs", "3")
    assert code == 1
    assert err == ("mpibatch: error: join job 2 of 3: sbatch refused the job: sbatch: error: "
                   "QOSMaxSubmitJobPerUserLimit; job 500 runs without it\n")
    assert out.splitlines()[1] == "mpibatch: submitted 1 join job(s) of 1 node(s), starting once job 500 has: 501"
    recorded = json.loads((job_dir / "out" / "logs" / "join_jobs.json").read_text())["jobs"]
    assert [j["job_id"] for j in recorded] == ["501"]
