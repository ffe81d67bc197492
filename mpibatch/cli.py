"""The `mpibatch` command: argument parsing, subcommands and exit statuses (SPEC sections 1 and 5)."""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import KEY_ALIASES, RANGES, ConfigError, JobConfig, key_hint, load_job, path_problem, report_error
from .config.flags import key_kind, parse_mapping, typed_flags

__all__ = ["build_parser", "main", "parse_mapping", "run_flag_argv", "split_script_args"]

MPI_COMMANDS = ("run", "demo")  # what runs on ranks; status and submit need no MPI


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a ConfigError (one line with a 'did you mean', exit 2), which
    under MPI rank 0 alone reports."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            first = message.split(":", 1)[1].split()[0]
            message = f"unknown option '{first}'{key_hint(first.split('=')[0], self._all_options())}"
        raise ConfigError(message)

    def _all_options(self) -> list[str]:
        """Option strings of this parser and its subcommands (unknown flags surface at the top)."""
        options = []
        for action in self._actions:
            options += action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    options += sub._all_options()
        return options


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_run_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for name, field in JobConfig.model_fields.items():
        if name in skip:
            continue
        kind = key_kind(field.annotation)
        if kind == "bool":
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS)
        elif kind == "list":
            parser.add_argument(_flag(name), dest=name, nargs="+", action="extend", default=argparse.SUPPRESS,
                                metavar="VALUE")
        elif kind == "map":
            parser.add_argument(_flag(name), dest=name, nargs="+", default=argparse.SUPPRESS,
                                metavar="KEY=VALUE|JSON")
        else:
            parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS, metavar="VALUE")
    for alias in KEY_ALIASES:
        parser.add_argument(_flag(alias), dest=alias, default=argparse.SUPPRESS, metavar="N",
                            help="ParallelRunConfig name, checked against the MPI world")


def _add_v2_flags(parser: argparse.ArgumentParser) -> None:
    """--node / --set: which parallel node of an Azure ML v2 pipeline file runs, and its data (azure_v2.py)."""
    parser.add_argument("--node", dest="node", default=argparse.SUPPRESS, metavar="NAME",
                        help="the parallel node of an Azure ML v2 pipeline file (when it holds several)")
    parser.add_argument("--set", dest="set", action="append", default=argparse.SUPPRESS,
                        metavar="inputs.X=PATH|outputs.X=PATH",
                        help="a v2 file's input or output path (for azureml: assets, cloud URIs, other steps' outputs)")


def _flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """The configuration flags given, as the typed values a job file would hold."""
    return typed_flags({k: v for k, v in vars(namespace).items()
                        if k not in ("command", "job", "images", "dry_run") and not k.startswith("slurm_")})


def run_flag_argv(namespace: argparse.Namespace) -> list[str]:
    """The run flags given, as `mpibatch run` arguments again (submit forwards them to the job)."""
    argv: list[str] = []
    given = vars(namespace)
    for name, field in [*JobConfig.model_fields.items(), *((alias, None) for alias in KEY_ALIASES)]:
        if name not in given:
            continue
        value = given[name]
        kind = key_kind(field.annotation) if field is not None else "value"
        if kind == "bool":
            argv.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
        elif kind in ("list", "map"):
            argv += [_flag(name), *map(str, value)]
        else:
            argv += [_flag(name), str(value)]
    if "node" in given:
        argv += ["--node", given["node"]]
    for item in given.get("set", []):  # a relative path made absolute: the batch job may start elsewhere
        key, _, path = item.partition("=")
        argv += ["--set", f"{key}={path if '://' in path or not path else os.path.abspath(path)}"]
    return argv


def _add_submit(commands: Any) -> None:
    submit = commands.add_parser(
        "submit", allow_abbrev=False, help="write an sbatch script from a Slurm profile and submit it",
        description="Submit JOB.yaml as a Slurm batch job that resumes after a requeue and stops cleanly "
                    "before its time limit. Run flags and `-- ARGS` are passed on to `mpibatch run`.")
    submit.add_argument("job", nargs="?", help="the job file (YAML)")
    submit.add_argument("--nodes", dest="slurm_nodes", type=_count(1), metavar="N",
                        help="nodes (default: the job's node_count)")
    submit.add_argument("--ntasks-per-node", dest="slurm_ntasks_per_node", type=_count(1), metavar="R",
                        help="MPI ranks per node (default: the job's process_count_per_node, else the profile's)")
    submit.add_argument("--gpus-per-node", dest="slurm_gpus_per_node", type=_count(0), metavar="G",
                        help="GPUs to ask Slurm for on each node; workers find them by themselves")
    submit.add_argument("--time", dest="slurm_time", metavar="T", help="time limit (minutes, HH:MM:SS, D-HH:MM)")
    submit.add_argument("--partition", dest="slurm_partition", metavar="P")
    submit.add_argument("--account", dest="slurm_account", metavar="A")
    submit.add_argument("--profile", dest="slurm_profile", metavar="NAME",
                        help="a built-in profile (cpu, gpu4, site-modules; default cpu)")
    submit.add_argument("--template", dest="slurm_template", metavar="PATH", help="your own sbatch template")
    submit.add_argument("--join-jobs", dest="slurm_join_jobs", type=_count(1), metavar="K",
                        help="also submit K join jobs: worker groups that join the job once it has started")
    submit.add_argument("--max-join-jobs", dest="slurm_max_join_jobs", type=_count(1), metavar="J",
                        help="instead, the job submits join jobs itself while work waits, at most J at a time")
    submit.add_argument("--backlog", dest="slurm_backlog", type=_count(1), metavar="B",
                        help="with --max-join-jobs: at most B join jobs waiting in the queue (default 1)")
    submit.add_argument("--join-nodes", dest="slurm_join_nodes", type=_count(1), metavar="M",
                        help="nodes per join job (default: --nodes)")
    submit.add_argument("--join-time", dest="slurm_join_time", metavar="T",
                        help="a join job's time limit (default: --time)")
    submit.add_argument("--join-wait", dest="slurm_join_wait", type=_seconds, metavar="S",
                        help="seconds a join job waits for the job to be up (default 600)")
    submit.add_argument("--dry-run", action="store_true", help="print the script(s), submit nothing")
    _add_run_flags(submit, skip=("gpus_per_node",))
    _add_v2_flags(submit)


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status", allow_abbrev=False, help="progress of a running or finished job, from its output folder",
        description="Read OUTPUT's files (works from a login node while the job runs elsewhere).")
    status.add_argument("output", help="the job's output folder")
    status.add_argument("--watch", action="store_true", help="refresh in place until the job ends")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes (default 2)")


def _add_doctor(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor", allow_abbrev=False, help="check this site: MPI, launcher, nodes, cores, GPUs, scratch, output",
        description="Run it as you would run a job (mpiexec -n N / srun ... mpibatch doctor): rank 0 prints the MPI "
                    "library and launcher, the hosts and ranks per node, each worker's GPU, cores and threads as "
                    "`mpibatch run` would place them, scratch space, and the classic mistakes with a fix each. "
                    "Exit status 0: nothing wrong; 1: a mistake was found; 2: invalid usage.")
    doctor.add_argument("--output", type=_path, metavar="DIR", help="check that the job's output folder is writable")
    doctor.add_argument("--gpus-per-node", type=_auto_or("gpus_per_node"), default="auto", metavar="G",
                        help="as the job key (default auto)")
    doctor.add_argument("--threads-per-worker", type=_auto_or("threads_per_worker"), default="auto", metavar="T",
                        help="as the job key (default auto)")
    doctor.add_argument("--coordinator-works", action=argparse.BooleanOptionalAction, default=True,
                        help="as the job key (default: rank 0 also hosts a worker)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_join(commands: Any) -> None:
    join = commands.add_parser(
        "join", allow_abbrev=False, help="add this MPI world as a worker group to the job running in OUTPUT",
        description="Run under mpiexec or srun in another allocation (mpiexec -n N mpibatch join OUTPUT): every "
                    "rank runs a worker of the job in OUTPUT, with its entry script and settings, until the job "
                    "ends, releases the group, or this allocation nears its end. Only the owner of OUTPUT can "
                    "join (the job's join key is readable by its owner alone).")
    join.add_argument("output", type=_path, help="the running job's output folder")
    join.add_argument("--wait", type=_seconds, default=600.0, metavar="S",
                      help="seconds to wait for the job's coordinator to be up (default 600)")


def _join(own: list[str]) -> int:
    from .engine.join import join_job

    args = _parse_on_every_rank(own)
    return 2 if args is None else join_job(args.output, args.wait)


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report", allow_abbrev=False, help="write one HTML page about a job: timeline, throughput, errors",
        description="Write a self-contained HTML page (plots embedded, no server) about the job in OUTPUT, "
                    "running or finished, and print its path.")
    report.add_argument("output", help="the job's output folder")
    report.add_argument("-o", "--html", metavar="FILE.html", help="where to write it (default OUTPUT/logs/report.html)")


def _path(text: str) -> str:
    problem = path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _auto_or(key: str) -> Any:
    """'auto' or a count within the job key's range."""
    def parse(text: str) -> Any:
        if text == "auto":
            return text
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not RANGES[key].admits(value):
            raise argparse.ArgumentTypeError(f"{RANGES[key].says} (got '{text}')")
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 3600 seconds (got {text})")
    return value


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more (got {value})")
        return value
    return parse


class _Version(argparse.Action):
    """`mpibatch --version`: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, help: Optional[str] = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> typing.NoReturn:
        from . import installed_version

        sys.stdout.write(f"mpibatch {installed_version()}\n")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpibatch", allow_abbrev=False,
                     description="Run an entry script over a large dataset on MPI ranks.")
    parser.add_argument("--version", action=_Version, help="print mpibatch's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", allow_abbrev=False, help="run a job (under mpiexec/srun, or on one rank)",
                              description="Run JOB.yaml; every key can also be given as a flag (flags win). "
                                          "Arguments after -- go to the entry script's sys.argv.")
    run.add_argument("job", nargs="?", help="the job file (YAML); optional when flags give every key")
    _add_run_flags(run)
    _add_v2_flags(run)
    demo = commands.add_parser("demo", allow_abbrev=False, help="the digit-identification demo (needs TensorFlow)",
                               description="Render digit images, train a small CNN once (cached), and score the "
                                           "images with mpibatch in this MPI world. Any run flag applies.")
    demo.add_argument("--images", type=int, default=2000, help="how many digit images to score (default 2000)")
    _add_run_flags(demo)
    _add_submit(commands)
    _add_status(commands)
    _add_doctor(commands)
    _add_report(commands)
    _add_join(commands)
    return parser


def split_script_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` belongs to the entry script."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def _command(argv: list[str]) -> Optional[str]:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _run_request(own: list[str], script_args: list[str]) -> tuple[Any, ...]:
    """Rank 0's reading of `run` / `demo`: parsed flags, and for run the validated job."""
    args = build_parser().parse_args(own)
    flags = _flags(args)
    if args.command == "demo":
        return ("demo", args.images, flags, script_args)
    config, aliases = load_job(args.job, flags)
    return ("run", config, aliases, script_args)


def _on_ranks(own: list[str], script_args: list[str]) -> int:
    """run and demo: rank 0 reads and validates, every rank gets the result and runs."""
    from .engine.job import Stop, decide_on_rank_zero, run_job

    request = decide_on_rank_zero(lambda: _run_request(own, script_args))
    if isinstance(request, Stop):
        return request.code
    if request[0] == "demo":
        from .demo.runner import run_demo

        return run_demo(*request[1:])
    return run_job(request[1], request[3], request[2])


def _alone(own: list[str], script_args: list[str]) -> int:
    """status and submit: one process, no MPI."""
    args = build_parser().parse_args(own)
    if args.command == "status":
        from .output.status import show_status

        return show_status(Path(args.output), watch=args.watch, as_json=args.json, interval=args.interval)
    if args.command == "report":
        from .report import write_report

        print(write_report(args.output, args.html))
        return 0
    from .cluster.slurm import submit, submit_request

    options = {k[len("slurm_"):]: v for k, v in vars(args).items() if k.startswith("slurm_")}
    return submit(submit_request(args.job, _flags(args), run_flag_argv(args), script_args, options), args.dry_run)


def _parse_on_every_rank(own: list[str]) -> Optional[argparse.Namespace]:
    """doctor and join: every rank parses its command line (there is no job file to read once); the
    launcher's rank 0 alone prints a usage error or --help. None after a usage error."""
    from .cluster.launch import launcher_rank

    speaks = launcher_rank() == 0
    try:
        with contextlib.nullcontext() if speaks else contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(own)
    except ConfigError as exc:
        if speaks:
            report_error(exc)
        return None


def _doctor(own: list[str]) -> int:
    from .cluster.doctor import Settings, doctor

    args = _parse_on_every_rank(own)
    if args is None:
        return 2
    return doctor(Settings(args.output, args.gpus_per_node, args.threads_per_worker, args.coordinator_works),
                  args.json)


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, script_args = split_script_args(sys.argv[1:] if argv is None else argv)
    if _command(own) == "doctor":
        return _doctor(own)
    if _command(own) == "join":
        return _join(own)
    if _command(own) in MPI_COMMANDS:
        return _on_ranks(own, script_args)
    try:
        return _alone(own, script_args)
    except ConfigError as exc:
        report_error(exc)
        return 2
