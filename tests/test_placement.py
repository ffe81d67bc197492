"""Unit tests for mpibatch.cluster.placement: GPU detection, GPU/CPU assignment and thread caps."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpibatch.cluster import cpus as cpus_module
from mpibatch.cluster.cpus import RankCpus, cgroup_cpus, node_cpus, online_cpus, parse_cpu_list
from mpibatch.cluster.placement import THREAD_VARIABLES, detect_gpus, place


@pytest.fixture
def no_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH without nvidia-smi, so detection depends on the variables alone."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fake_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)'\n"
                      "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)'\n"
                      "echo '  MIG 1g.10gb Device 0: (UUID: MIG-cccc)'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")


def test_slurm_job_gpus(no_nvidia_smi: None) -> None:
    assert detect_gpus({"SLURM_JOB_GPUS": "0,2"}) == ["0", "2"]


def test_slurm_step_gpus(no_nvidia_smi: None) -> None:
    assert detect_gpus({"SLURM_STEP_GPUS": "1"}) == ["1"]


def test_cuda_visible_devices(no_nvidia_smi: None) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1, 3"}) == ["1", "3"]


def test_cuda_visible_devices_uuids(no_nvidia_smi: None) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}) == ["GPU-aaaa", "GPU-bbbb"]


@pytest.mark.parametrize("value", ["NoDevFiles", "-1", ""])
def test_cuda_visible_devices_meaning_none(no_nvidia_smi: None, value: str) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": value}) == []


def test_slurm_gpus_on_node_count(no_nvidia_smi: None) -> None:
    assert detect_gpus({"SLURM_GPUS_ON_NODE": "3"}) == ["0", "1", "2"]


def test_explicit_setting_wins(no_nvidia_smi: None) -> None:
    assert detect_gpus({"SLURM_GPUS_ON_NODE": "8"}, 2) == ["0", "1"]
    assert detect_gpus({}, 0) == []


def test_nothing_found(no_nvidia_smi: None) -> None:
    assert detect_gpus({}) == []


def test_nvidia_smi_listing(fake_nvidia_smi: None) -> None:
    assert detect_gpus({}) == ["0", "1"]


def test_variables_win_over_nvidia_smi(fake_nvidia_smi: None) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == ["1"]


def test_explicit_count_takes_from_the_visible_devices(no_nvidia_smi: None) -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 2) == ["4", "5"]


def test_gpus_round_robin_over_workers() -> None:
    gpus = [place(0, i, 5, ["0", "1"], cpus=list(range(10))).gpu for i in range(5)]
    assert gpus == ["0", "1", "0", "1", "0"]


def test_one_gpu_per_worker_when_counts_match() -> None:
    gpus = [place(0, i, 4, ["4", "5", "6", "7"], cpus=list(range(8))).gpu for i in range(4)]
    assert gpus == ["4", "5", "6", "7"]


def test_no_gpu() -> None:
    placement = place(0, 0, 2, [], cpus=[0, 1])
    assert placement.gpu is None
    assert "CUDA_VISIBLE_DEVICES" not in placement.environment()


def test_distinct_cpus_when_cores_suffice() -> None:
    cpus = list(range(8))
    placements = [place(1, i, 3, [], cpus=cpus) for i in range(3)]
    assert [p.threads for p in placements] == [2, 2, 2]  # 8 cores // 3 workers
    owned = [c for p in placements for c in p.cpus]
    assert len(owned) == len(set(owned)) == 6
    assert all(len(p.cpus) == 2 for p in placements)
    assert {p.node_rank for p in placements} == {1}


def test_cpus_follow_the_usable_set() -> None:
    cpus = [4, 5, 6, 7]
    placements = [place(0, i, 2, [], cpus=cpus) for i in range(2)]
    assert [p.cpus for p in placements] == [[4, 5], [6, 7]]


def test_more_workers_than_cores_share() -> None:
    placements = [place(0, i, 4, [], cpus=[0, 1]) for i in range(4)]
    assert all(p.threads == 1 and len(p.cpus) == 1 for p in placements)
    assert {c for p in placements for c in p.cpus} == {0, 1}


def test_explicit_threads() -> None:
    placement = place(0, 1, 2, [], threads_setting=3, cpus=list(range(8)))
    assert placement.threads == 3
    assert placement.cpus == [3, 4, 5]


def test_default_cpus_are_this_process_affinity() -> None:
    placement = place(0, 0, 1, [])
    assert set(placement.cpus) == set(os.sched_getaffinity(0))
    assert placement.threads == len(os.sched_getaffinity(0))


def test_environment_sets_thread_caps_and_gpu() -> None:
    env = place(0, 1, 2, ["0", "1"], cpus=list(range(8))).environment()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        assert env[name] == "4"
    assert set(THREAD_VARIABLES) <= set(env)
    assert env["TF_NUM_INTEROP_THREADS"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert all(isinstance(v, str) for v in env.values())


# --- the node's cores: widening workers onto cores a narrow launcher binding left idle (mpibatch.cluster.cpus)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("text, cpus", [("0-3,8,10-11\n", [0, 1, 2, 3, 8, 10, 11]), ("5", [5]), ("", []),
                                        ("\n", []), ("0-x", [])])
def test_cpu_lists_in_the_kernel_format(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus


def test_cgroup_v2_cpuset_of_the_process_cgroup(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cpuset.cpus.effective": "0-7\n",
                                   "job_1/step_0/cpuset.cpus.effective": "2-5\n"})
    proc = _tree(tmp_path, {"proc-cgroup": "0::/job_1/step_0/user/task_0\n"}) / "proc-cgroup"
    assert cgroup_cpus(proc, root) == [2, 3, 4, 5], "a cgroup without cpuset takes its nearest parent's"


def test_cgroup_v1_inside_a_container_reads_the_mounted_root(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cg", {"cpuset/cpuset.effective_cpus": "0-1\n", "cpuset/cpuset.cpus": "0-1\n"})
    proc = _tree(tmp_path, {"proc-cgroup": "4:memory:/docker/abc\n3:cpuset:/docker/abc\n0::/\n"}) / "proc-cgroup"
    assert cgroup_cpus(proc, root) == [0, 1]


def test_no_cpuset_anywhere(tmp_path: Path) -> None:
    proc = _tree(tmp_path, {"proc-cgroup": "0::/a\n"}) / "proc-cgroup"
    assert cgroup_cpus(proc, tmp_path / "nothing") is None
    assert cgroup_cpus(tmp_path / "missing", tmp_path) is None


def test_online_cpus(tmp_path: Path) -> None:
    assert online_cpus(_tree(tmp_path, {"online": "0-3\n"}) / "online") == [0, 1, 2, 3]
    assert online_cpus(tmp_path / "missing") == list(range(os.cpu_count() or 1))


def test_a_rank_bound_to_one_core_by_its_launcher_gets_the_idle_cores() -> None:
    share = node_cpus([RankCpus(bound=[0], cgroup=[0, 1, 2, 3], launcher=[0, 1, 2, 3])])
    assert share.cpus == [0, 1, 2, 3] and share.widened
    assert [place(0, i, 2, [], cpus=share.cpus).cpus for i in range(2)] == [[0, 1], [2, 3]]
    assert share.note([[0, 1], [2, 3]]) == ("ranks were bound to cores [0] by the launcher; the node allows "
                                            "[0, 1, 2, 3]: workers use [0, 1], [2, 3]")


def test_ranks_that_cover_the_node_are_not_widened() -> None:
    share = node_cpus([RankCpus([0], [0, 1], [0, 1]), RankCpus([1], [0, 1], [0, 1])])
    assert share.cpus == [0, 1] and not share.widened
    assert share.note([[0], [1]]) is None


def test_a_launcher_kept_on_some_cores_keeps_the_job_there() -> None:
    """`taskset -c 0-1 mpiexec ...`: the launcher's own cores bound the job, not the whole cgroup."""
    share = node_cpus([RankCpus([0], [0, 1, 2, 3], [0, 1]), RankCpus([0], [0, 1, 2, 3], [0, 1])])
    assert share.cpus == [0, 1]
    assert share.cgroup == [0, 1, 2, 3]


def test_only_cores_every_rank_of_the_node_may_use_are_added() -> None:
    share = node_cpus([RankCpus([0], [0, 1, 2, 3], [0, 1, 2, 3]), RankCpus([1], [0, 1, 2, 3], [1, 2])])
    assert share.cpus == [0, 1, 2]


def test_rank_cpus_reads_the_binding_the_cgroup_and_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus_module, "cgroup_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0} if pid == 0 else {0, 1, 2, 3})
    seen = cpus_module.rank_cpus()
    assert seen == RankCpus([0], [0, 1, 2, 3], [0, 1, 2, 3])
    assert node_cpus([seen]).cpus == [0, 1, 2, 3]


def test_an_unreadable_parent_leaves_the_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    def affinity(pid: int) -> set[int]:
        if pid:
            raise PermissionError(pid)
        return {1}
    monkeypatch.setattr(cpus_module, "cgroup_cpus", lambda: [0, 1])
    monkeypatch.setattr(os, "sched_getaffinity", affinity)
    assert node_cpus([cpus_module.rank_cpus()]).cpus == [0, 1]


def test_hosts_are_described_with_their_ranks_as_runs() -> None:
    from mpibatch.cluster.placement import ranks_by_host
    from mpibatch.output.status import describe_hosts

    grouped = ranks_by_host({3: "b", 0: "a", 1: "a", 2: "b", 4: "a", 6: "a", 5: "c"})
    assert grouped == {"a": [0, 1, 4, 6], "b": [2, 3], "c": [5]}
    assert describe_hosts(grouped) == "a (ranks 0-1,4,6), b (ranks 2-3), c (rank 5)"


def test_place_keeps_the_node_it_was_given() -> None:
    placement = place(1, 0, 2, ["4", "5"], cpus=[0, 1], host="nodeB")
    assert (placement.host, placement.node_rank, placement.gpu, placement.gpu_index) == ("nodeB", 1, "4", 4)
