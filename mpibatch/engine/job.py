"""One `mpibatch run` on every rank: rank 0 validates and plans, then all ranks place their
workers and either coordinate (rank 0) or serve (the others)."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..cluster.launch import launcher_rank, mislaunch_message
from ..cluster.listen import listen_address
from ..cluster.placement import Placement, node_layout, place
from ..cluster.walltime import Walltime, job_end_time, stop_margin
from ..config import ConfigError, JobConfig, error_line, report_error
from ..config.azure_v2 import announce, make_output_dirs
from ..inputs import InputListing, list_inputs
from ..inputs.plan import BatchPlan, plan_batches
from ..output.commit import Fingerprint, Prepared, ResultStore, prepare_output
from ..output.integrity import describe_write_error, is_output_error
from ..output.logs import Layout, rank_logger
from ..output.perf import PerfLog
from ..output.remote import RemoteOutput
from ..records import InputInfo
from ..script.checks import check_entry_script
from ..script.entry import RuntimeSpec, WorkerInfo, error_summary
from ..script.inline import InlineExecutor
from ..script.process import ProcessExecutor
from .polling import Backoff
from .signals import StopSignals
from .worker import TAG, Worker, serve


EXIT_INTERNAL = 1  # mpibatch itself failed: the job failed (SPEC §5)


def check_script_environment(config: JobConfig, listings: list[InputListing]) -> None:
    """python: / command_prefix: run once as the executor will run them (script/script_env.py), asked to import
    what reading these inputs needs (a format known from a suffix or an MLTable included)."""
    from ..script.script_env import ScriptEnvError, check_script_env

    if config.python is None and not config.command_prefix:
        return
    formats = [getattr(listing, "format", None) for listing in listings]
    try:
        check_script_env(config.python, config.command_prefix or (), str(config.script_home), dict(os.environ),
                         formats)
    except ScriptEnvError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class Plan:
    """What rank 0 prepared before any work: batches, inputs and the locked output."""

    layout: Layout
    inputs: list[InputInfo]
    batches: BatchPlan
    fingerprint: Fingerprint
    prepared: Prepared
    notes: list[logging.LogRecord]
    listen: Optional[tuple[str, int]] = None  # where groups may join (cluster/listen.py)


class _PlanNotes(logging.Handler):
    """Keeps what planning logged for rank 0's log (the output does not exist yet) and shows warnings."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.levelno >= logging.WARNING:
            print(f"mpibatch: warning: {record.getMessage()}", file=sys.stderr)


def prepare(config: JobConfig, n_ranks: int) -> Plan:
    """Rank 0's validation and planning; raises ConfigError before anything is written."""
    if n_ranks == 1 and not config.coordinator_works and config.join_address == "none":
        raise ConfigError("coordinator_works: false needs at least 2 ranks, or worker groups to join "
                          "(join_address other than none)")
    if config.compat == "azureml":
        from ..script import compat  # noqa: F401 - fails clearly if the shims are missing
    check_entry_script(config)
    notes = _PlanNotes()
    plan_log = logging.getLogger("mpibatch.plan")
    plan_log.setLevel(logging.INFO)
    plan_log.propagate = False
    plan_log.addHandler(notes)
    try:
        listings: list[InputListing] = list_inputs(config.inputs)
        batches = plan_batches(listings, config)
    finally:
        plan_log.removeHandler(notes)
    check_script_environment(config, listings)
    listen = listen_address(config.join_address)
    remote = remote_output(config)
    if remote is not None:
        remote.pull()
        layout = Layout(remote.staging, remote.staging / config.append_row_file_name, config.output)
    else:
        output = Path(config.output.removeprefix("file://"))
        layout = Layout(output, output / config.append_row_file_name)
    fingerprint = Fingerprint.of(config, [listing.digest for listing in listings])
    prepared = prepare_output(config, layout, fingerprint)
    inputs = [InputInfo(listing.name, listing.remote, listing.storage_options, listing.url,
                         getattr(listing, "format", None), getattr(listing, "options", {})) for listing in listings]
    return Plan(layout, inputs, batches, fingerprint, prepared, notes.records, listen)


def remote_output(config: JobConfig) -> Optional[RemoteOutput]:
    """The remote side of an fsspec output URL, or None for a local folder."""
    if "://" not in config.output or config.output.startswith("file://"):
        return None
    return RemoteOutput(config.output, dict(config.output_storage_options))


def wait_politely(comm: Any) -> None:
    """A barrier that sleeps instead of spinning, so waiting ranks leave rank 0 the cores."""
    request = comm.Ibarrier()
    backoff = Backoff(max_sleep=5e-3)
    while not request.Test():
        backoff.idle()


def _check_aliases(aliases: dict[str, Any], n_nodes: int, per_node: int) -> Optional[str]:
    """ParallelRunConfig's node_count / process_count_per_node must match the MPI world."""
    for key, actual in (("node_count", n_nodes), ("process_count_per_node", per_node)):
        if key in aliases and int(aliases[key]) != actual:
            return (f"{key}: the job asks for {aliases[key]} but runs with {actual}; "
                    "mpibatch takes its size from the launcher (mpiexec -n / srun -N -n)")
    return None


def _placements(comm: Any, config: JobConfig,
                every_rank_works: bool = False) -> tuple[dict[int, Placement], int, int, Optional[str]]:
    """Every worker rank's placement; nodes come from MPI's shared-memory split of the world. The last
    item is the rank-log line that says this node's workers were widened beyond the launcher's binding.
    In a joined group (every_rank_works) rank 0 only relays, so it works too, whatever coordinator_works says."""
    nodes = node_layout(comm, config.gpus_per_node)
    workers = [r for r in range(comm.size) if r != 0 or config.coordinator_works or every_rank_works]
    placements = {}
    for rank in workers:  # each as its own node sees it: its GPU ids, its cores, its host
        node_workers = [r for r in workers if nodes.node_of[r] == nodes.node_of[rank]]
        placements[rank] = place(nodes.node_of[rank], node_workers.index(rank), len(node_workers), nodes.gpus[rank],
                                 config.threads_per_worker, nodes.cpus[rank], nodes.hosts[rank])
    per_node = max(nodes.node_of.count(n) for n in set(nodes.node_of))
    here = [p.cpus for r, p in placements.items() if nodes.node_of[r] == nodes.node_of[comm.rank]]
    cpu_note = nodes.cpu_share.note(here) if nodes.cpu_share else None
    return placements, len(set(nodes.node_of)), per_node, cpu_note


def _make_worker(comm: Any, config: JobConfig, layout: Layout, inputs: list[InputInfo], placement: Placement,
                 extra_args: list[str], log: Any, rank: int) -> tuple[Worker, str]:
    working_dir = tempfile.mkdtemp(prefix=f"mpibatch-rank{rank:04d}-")
    info = WorkerInfo(rank, placement.node_rank, placement.local_worker_index, placement.gpu_index,
                      f"rank{rank:04d}@{socket.gethostname()}", str(layout.output), working_dir, str(layout.logs),
                      str(layout.entry_log(rank)), config.logging_level)
    spec = RuntimeSpec(str(config.script_path), str(config.script_home), [*config.arguments, *extra_args],
                       {**placement.environment(), **config.environment_variables}, info, inputs,
                       config.output_action, dict(config.append_row_options or {}), dict(config.models),
                       config.compat, config.prefetch_depth)
    stdout = open(layout.stdout_log(rank), "ab")
    stderr = open(layout.stderr_log(rank), "ab")
    if config.executor == "process":
        executor: Any = ProcessExecutor(spec, stdout, stderr, dict(os.environ), config.init_timeout,
                                        config.run_invocation_timeout, placement.cpus, config.memory_limit,
                                        str(config.max_worker_memory or ""), config.python, config.command_prefix or ())
    else:
        executor = InlineExecutor(spec, stdout, stderr, config.init_timeout, config.run_invocation_timeout)
    log.info("worker: node %d (%s), local worker %d of %d, gpu %s, cpus %s, %d threads, executor %s",
             placement.node_rank, placement.host, placement.local_worker_index, placement.workers_on_node,
             placement.gpu, placement.cpus, placement.threads, config.executor)
    if spec.prefetch:
        log.info("prefetch: the next %d mini-batch(es) read while run() runs; at most %d prepared mini-batches "
                 "(of mini_batch_size %s each) held besides the running one", spec.prefetch, spec.prefetch,
                 config.mini_batch_size if config.mini_batch_size is not None else "default")
    elif config.prefetch:
        log.info("prefetch: off with the inline executor (the script runs in a thread of the rank)")
    if placement.shares_gpu:
        log.warning("%d workers share %d GPUs on this node: GPUs are handed out round robin",
                    placement.workers_on_node, placement.gpus_on_node)

    def send(message: tuple) -> None:
        comm.send(message, dest=0, tag=TAG)

    perf = PerfLog(layout.perf_log(rank), lambda: executor.pid, placement.gpu)
    return Worker(rank, executor, send, log, layout, perf), working_dir


@dataclass(frozen=True)
class Stop:
    """What every rank gets when rank 0 refused the command; rank 0 has printed why, once."""

    code: int


def _mislaunched(size: int) -> bool:
    """A world that did not join stops here, said once (by the launcher's rank 0)."""
    problem = mislaunch_message(size)
    if problem and launcher_rank() == 0:
        report_error(problem)
    return problem is not None


def _decided(decide: Callable[[], Any]) -> Any:
    """Rank 0's decision, or a Stop after printing the one line that says why."""
    try:
        return decide()
    except ConfigError as exc:
        report_error(exc)
        return Stop(2)
    except SystemExit as exc:  # argparse's --help, printed here alone
        return Stop(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2)
    except Exception as exc:  # noqa: BLE001 - the other ranks wait for rank 0: never leave them hanging
        report_error(f"internal error while reading the job: {error_summary(exc)}")
        return Stop(EXIT_INTERNAL)


def decide_on_rank_zero(decide: Callable[[], Any]) -> Any:
    """Rank 0 alone parses the command line and reads and validates the job; every rank gets its
    result (or a Stop), so a job file is read once and a usage error is printed once."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if _mislaunched(comm.size):
        return Stop(2)
    outcome = _decided(decide) if comm.rank == 0 else None
    if comm.size > 1:
        wait_politely(comm)
        outcome = comm.bcast(outcome, root=0)
    return outcome


def run_job(config: JobConfig, extra_args: list[str], aliases: dict[str, Any]) -> int:
    """Run one job on this rank; every rank returns the job's exit status."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    if _mislaunched(size):
        return 2
    signals = StopSignals().install()
    placements, n_nodes, per_node, cpu_note = _placements(comm, config)
    plan: Optional[Plan] = None
    error = _check_aliases(aliases, n_nodes, per_node)
    walltime: Optional[Walltime] = None
    if rank == 0 and error is None:
        try:
            walltime = Walltime(job_end_time(), stop_margin())
            plan = prepare(config, size)
            make_output_dirs(aliases)
        except ConfigError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the other ranks wait for rank 0: never leave them hanging
            error = f"cannot plan the job: {error_summary(exc)}"
    wait_politely(comm)
    shared = comm.bcast((error, plan.layout if plan else None, plan.inputs if plan else None,
                         bool(plan and plan.prepared.reuse)), root=0)
    error, layout, inputs, reuse = shared
    if error:
        if rank == 0:
            if plan is not None:
                os.close(plan.prepared.lock_fd)
            report_error(error)
        return 2
    if reuse:
        if rank == 0:
            assert plan is not None
            os.close(plan.prepared.lock_fd)
            print(f"mpibatch: '{layout.output}' already holds this completed job (allow_reuse): nothing to do")
        return 0
    remote = remote_output(config)
    if remote is not None:
        layout.make_dirs()  # this node's staging folder
    log = rank_logger(layout, rank, config.logging_level)
    if rank == 0:
        announce(aliases, n_nodes, per_node, log)
    if cpu_note:
        log.info(cpu_note)
    for note in plan.notes if plan else []:
        log.handle(note)
    worker, working_dir = (None, None)
    if rank in placements:
        worker, working_dir = _make_worker(comm, config, layout, inputs, placements[rank], extra_args, log, rank)
    try:
        if rank != 0:
            assert worker is not None
            code = serve(comm, worker, signals)
            if remote is not None:
                remote.push(layout.rank_files(rank))
            return code
        assert plan is not None
        try:
            hosts = {0: socket.gethostname(), **{r: p.host for r, p in placements.items()}}
            return _coordinate(comm, config, plan, worker, signals, log, size, sorted(placements), walltime, hosts,
                               extra_args)
        except Exception as exc:  # noqa: BLE001 - a bug of ours must not leave the other ranks waiting forever
            log.exception("the coordinator failed")
            if isinstance(exc, OSError) and is_output_error(exc, layout.output):
                line = error_line(f"{describe_write_error(exc, None, layout.output)[0]}; the job is aborted")
            else:
                line = (f"mpibatch: error: internal error on rank 0 ({error_summary(exc)}); the job is aborted, "
                        f"see {layout.shown(layout.rank_log(0))}")
            abort_after_line(comm, line)
            raise
    finally:
        if working_dir:
            shutil.rmtree(working_dir, ignore_errors=True)


# Open MPI's prterun prints its own MPI_ABORT banner as soon as a rank aborts, while the rank's stderr
# reaches it through its I/O forwarding: without a head start the line came after the banner, or not at all.
ABORT_LINE_HEAD_START_S = 0.5


def abort_after_line(comm: Any, line: str) -> None:
    """Say why on stderr, give the launcher time to forward that line, then abort every rank."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    time.sleep(ABORT_LINE_HEAD_START_S)
    comm.Abort(EXIT_INTERNAL)


def _coordinate(comm: Any, config: JobConfig, plan: Plan, local: Optional[Worker], signals: StopSignals,
                log: Any, size: int, worker_ranks: list[int], walltime: Optional[Walltime] = None,
                hosts: Optional[dict[int, str]] = None, extra_args: Optional[list[str]] = None) -> int:
    from .coordinator import Coordinator
    from .groups import open_groups

    for note in plan.prepared.notes:  # what the resume repaired in the output
        log.warning("%s", note)
        print(f"mpibatch: warning: {note}", file=sys.stderr)
    store = ResultStore(config, plan.layout, plan.prepared, plan.fingerprint)
    groups = open_groups(config, plan.layout, plan.inputs, extra_args or [], plan.listen, size, log)
    if groups is not None and not worker_ranks:
        print(f"mpibatch: no worker in this job's own ranks: waiting for worker groups "
              f"(mpibatch join {plan.layout.output})", file=sys.stderr)
    coordinator = Coordinator(comm, config, plan.layout, plan.batches, store, plan.prepared.entries, worker_ranks,
                              local, signals, log, size, [i.name for i in plan.inputs], walltime, hosts, groups)
    if local is not None:
        local.send = coordinator.inbox.append
        local.start()
    started = time.monotonic()
    try:
        code = coordinator.run()
    finally:
        if groups is not None and not coordinator.groups_closed:
            groups.close(1)  # the coordinator failed: the groups exit now, not after a heartbeat timeout
    result = coordinator.result()
    items = result["items"]
    if coordinator.output_error:  # the job's files may not say it: the one line must
        line = error_line(f"{coordinator.output_error} ({result['status']}: {items['succeeded']} of "
                          f"{items['total']} items succeeded)")
        print(line.replace("error:", "warning:", 1) if code == 0 else line, file=sys.stderr)
        return code
    warnings = "".join(f" WARNING: {w}." for w in result["warnings"])
    joined = result["groups"]
    helped = (f" and {sum(len(g['ranks']) for g in joined)} in {len(joined)} joined group{'s' * (len(joined) > 1)}"
              if joined else "")
    print(f"mpibatch: {result['status']}: {items['succeeded']} of {items['total']} items succeeded, "
          f"{items['failed']} failed, in {time.monotonic() - started:.1f} s on {size} ranks{helped};{warnings} "
          f"see {plan.layout.shown(plan.layout.job_result_txt)}", file=sys.stderr)
    return code
