"""Unit tests for mpibatch.cluster.doctor: each check on faked facts, the launcher's name, the output probe,
the report's lines and the command's usage errors."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mpibatch.cli import main
from mpibatch.cluster.cpus import RankCpus
from mpibatch.cluster.doctor import (Launcher, OutputProbe, RankFacts, Settings, as_json, check_binding, check_gpus,
                             check_libraries, check_mislaunch, check_output, detect_launcher, find, placements,
                             probe_output, render)

MPICH = "MPICH Version:      5.0.2\nMPICH Release date: 2026\n"
HYDRA = Launcher("MPICH mpiexec (Hydra)", {"PMI_SIZE": "2"})


def facts(rank: int, size: int = 2, **changes: Any) -> RankFacts:
    """What rank `rank` of a healthy 2-core, GPU-less single node would report, with `changes`."""
    base = RankFacts(rank, size, rank, "nodeA", 0, MPICH, "4.1.2", "3.11", HYDRA, None,
                     RankCpus([0, 1], [0, 1], [0, 1]), [0, 1], [], {}, "/tmp", 10 * 2**30, None)
    return dataclasses.replace(base, **changes)


def world(size: int = 2, **changes: Any) -> list[RankFacts]:
    return [facts(r, size, **changes) for r in range(size)]


def test_a_healthy_world_has_no_findings_and_says_so() -> None:
    ranks = world()
    assert find(ranks, Settings()) == []
    lines = render(ranks, Settings())
    assert lines[0].endswith(": 2 ranks on 1 host")
    assert "MPI library: MPICH Version: 5.0.2" in lines
    assert "launcher: MPICH mpiexec (Hydra) (PMI_SIZE=2)" in lines
    assert "host nodeA (node 0): ranks [0, 1], cores allowed [0, 1], scratch /tmp (10.0 GiB free)" in lines
    assert "  rank 0: bound to cores [0, 1]; worker gpu none, cpus [0], 1 thread" in lines
    assert "  rank 1: bound to cores [0, 1]; worker gpu none, cpus [1], 1 thread" in lines
    assert lines[-1] == "result: no mistakes found"


def test_singletons_from_a_wrong_mpi_flag() -> None:
    message = ("the 4 processes did not join one MPI world (SLURM_NTASKS=4 but this process is rank 0 of 1): "
               "under Slurm use 'srun --mpi=pmi2 ...'")
    found = check_mislaunch([facts(0, 1, mislaunch=message)])
    assert len(found) == 1 and found[0].mistake
    assert "did not join one MPI world" in found[0].what
    assert found[0].fix == "under Slurm use 'srun --mpi=pmi2 ...'"
    assert check_mislaunch(world()) == []


def test_ranks_bound_to_one_core_by_a_restricted_launcher_is_a_mistake() -> None:
    ranks = world(cpus=RankCpus([0], [0, 1, 2, 3], [0]))
    found = check_binding(ranks)
    assert len(found) == 1 and found[0].mistake
    assert found[0].what.startswith("ranks bound to one core on nodeA: rank 0 to [0]; rank 1 to [0]; "
                                    "the node allows [0, 1, 2, 3], cores [1, 2, 3] stay idle")
    assert "'mpiexec -bind-to none'" in found[0].fix


def test_ranks_bound_narrowly_by_their_launcher_are_widened_a_note() -> None:
    ranks = [facts(0, cpus=RankCpus([0], [0, 1, 2, 3], [0, 1, 2, 3]), node_cpus=[0, 1, 2, 3],
                   launcher=Launcher("Open MPI mpirun/prterun")),
             facts(1, cpus=RankCpus([1], [0, 1, 2, 3], [0, 1, 2, 3]), node_cpus=[0, 1, 2, 3])]
    found = check_binding(ranks)
    assert len(found) == 1 and not found[0].mistake
    assert "mpibatch widens its workers onto them" in found[0].what
    assert "--bind-to none" in found[0].fix
    assert [p.cpus for p in placements(ranks, Settings()).values()] == [[0, 1], [2, 3]]
    lines = render(ranks, Settings())
    assert any(line.startswith("note: ranks bound by the launcher on nodeA") for line in lines)
    assert any(line.startswith("  hint: 'mpirun --bind-to none'") for line in lines)
    assert lines[-1] == "result: no mistakes found"


def test_ranks_that_share_the_node_between_them_are_fine() -> None:
    ranks = [facts(0, cpus=RankCpus([0], [0, 1], [0, 1])), facts(1, cpus=RankCpus([1], [0, 1], [0, 1]))]
    assert check_binding(ranks) == []


def test_more_workers_than_gpus() -> None:
    ranks = world(gpus=["0"])
    found = check_gpus(placements(ranks, Settings()))
    assert [f.what for f in found] == ["more workers than GPUs on nodeA: 2 workers share 1 GPU round robin"]
    assert "--no-coordinator-works" in found[0].fix
    assert check_gpus(placements(ranks, Settings(coordinator_works=False))) == []
    assert check_gpus(placements(world(gpus=["0", "1"]), Settings())) == []


def test_more_workers_than_gpus_is_said_per_node() -> None:
    ranks = [facts(r, 4, node=r // 2, host=f"node{r // 2}", gpus=["0"]) for r in range(4)]
    found = check_gpus(placements(ranks, Settings()))
    assert [f.what.split(":")[0] for f in found] == ["more workers than GPUs on node0",
                                                     "more workers than GPUs on node1"]


def test_an_mpi_library_that_differs_between_ranks() -> None:
    ranks = [facts(0), facts(1, library="Open MPI v5.0.11, package: Open MPI\n")]
    found = check_libraries(ranks)
    assert len(found) == 1 and found[0].mistake
    assert "ranks [0] (nodeA): MPICH Version: 5.0.2" in found[0].what
    assert "ranks [1] (nodeA): Open MPI v5.0.11, package: Open MPI" in found[0].what
    assert check_libraries(world()) == []


def test_output_not_writable_from_a_host() -> None:
    bad = OutputProbe("/shared/out", False, "cannot write in /shared: Read-only file system")
    ranks = [facts(0, output=OutputProbe("/shared/out", True, "writable")),
             facts(1, host="nodeB", node=1, output=bad)]
    found = check_output(ranks)
    assert [f.what for f in found] == ["output /shared/out is not writable from nodeB: cannot write in /shared: "
                                       "Read-only file system"]
    assert "output /shared/out: NOT writable" in render(ranks, Settings(output="/shared/out"))


def test_every_mistake_has_a_fix_and_the_result_counts_them() -> None:
    ranks = world(gpus=["0"], cpus=RankCpus([0], [0, 1], [0]), node_cpus=[0],
                  output=OutputProbe("/x", False, "cannot write"))
    mistakes = [f for f in find(ranks, Settings()) if f.mistake]
    assert len(mistakes) == 3 and all(f.fix for f in mistakes)
    lines = render(ranks, Settings())
    assert sum(line.startswith("mistake: ") for line in lines) == 3
    assert sum(line.startswith("  fix: ") for line in lines) == 3
    assert lines[-1] == "result: 3 mistakes found"
    report = as_json(ranks, Settings())
    assert report["ok"] is False and len(report["mistakes"]) == 3
    json.dumps(report)


@pytest.mark.parametrize("env, name", [
    ({}, "none: a single process"),
    ({"PMI_RANK": "0", "PMI_SIZE": "2", "HYDI_CONTROL_FD": "5"}, "MPICH mpiexec (Hydra)"),
    ({"PMI_RANK": "0", "I_MPI_PIN_MAPPING": "1:0 0"}, "Intel MPI mpiexec (Hydra)"),
    ({"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0"}, "Open MPI mpirun/prterun"),
    ({"PRTE_LAUNCHED": "1"}, "Open MPI mpirun/prterun"),
    ({"PMIX_RANK": "0"}, "a PMIx launcher"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "PMI_RANK": "0"}, "srun (Slurm job 7, step 0)"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "none: inside Slurm job 7 but not in an srun step"),
])
def test_the_launcher_is_named_from_its_variables(env: dict, name: str) -> None:
    assert detect_launcher(env).name == name


def test_output_probe_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert probe_output(str(out)) == OutputProbe(str(out), True, "writable")
    assert list(out.iterdir()) == []
    missing = tmp_path / "new" / "deeper"
    probe = probe_output(str(missing))
    assert probe.writable and probe.detail == f"would be created in {tmp_path} (writable)"
    assert sorted(tmp_path.iterdir()) == [out], "nothing created"


def test_output_probe_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    probe = probe_output(str(tmp_path / "file" / "out"))
    assert not probe.writable and probe.detail == f"{tmp_path / 'file'} is not a folder"


def test_remote_output_is_not_probed() -> None:
    assert probe_output("az://container/out") == OutputProbe("az://container/out", True, "remote: not probed")


@pytest.mark.parametrize("argv, says", [
    (["doctor", "--gpus-per-node", "x"], "mpibatch: error: argument --gpus-per-node: must be 'auto' or a count"),
    (["doctor", "--threads-per-worker", "0"], "mpibatch: error: argument --threads-per-worker: must be 'auto' or 1"),
    (["doctor", "--outptu", "x"], "mpibatch: error: unknown option '--outptu' (did you mean '--output'?)"),
    (["doctor", "--output", ""], "mpibatch: error: argument --output: must name a path"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture, argv: list[str], says: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith(says), captured.err


def test_help_says_the_exit_statuses(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["doctor", "--help"])
    assert stop.value.code == 0
    assert "0: nothing wrong; 1: a mistake was found" in " ".join(capsys.readouterr().out.split())


def test_no_mpi_library_is_a_mistake_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    import mpi4py

    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)  # what an mpi4py without its libmpi raises: ImportError
    monkeypatch.delattr(mpi4py, "MPI", raising=False)  # (an earlier test in this process may have loaded it)
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("mistake: mpi4py cannot load its MPI library")
    assert out[1].startswith("  fix: install an MPI")
    assert out[-1] == "result: 1 mistake found"
