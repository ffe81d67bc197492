"""The `mpibatch` command: argument parsing, subcommands and exit statuses (SPEC sections 1 and 5)."""
from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import KEY_ALIASES, ConfigError, JobConfig, aliases_in, build_config, suggest


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line with a 'did you mean' (exit 2)."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            first = message.split(":", 1)[1].split()[0]
            message = f"unknown option '{first}'{suggest(first.split('=')[0], self._all_options())}"
        self.exit(2, f"mpibatch: error: {message}\n")

    def _all_options(self) -> list[str]:
        """Option strings of this parser and its subcommands (unknown flags surface at the top)."""
        options = []
        for action in self._actions:
            options += action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    options += sub._all_options()
        return options


def _kind(annotation: Any) -> str:
    """How a configuration key is given as a flag: bool, list, map or a plain value."""
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        return "bool"
    if origin is list:
        return "list"
    if origin is dict:
        return "map"
    return "value"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_run_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for name, field in JobConfig.model_fields.items():
        if name in skip:
            continue
        kind = _kind(field.annotation)
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
        parser.add_argument(_flag(alias), dest=alias, type=int, default=argparse.SUPPRESS,
                            help="ParallelRunConfig name, checked against the MPI world")


def parse_mapping(name: str, values: list[str]) -> dict[str, Any]:
    """A mapping flag: one JSON object, or key=value pairs."""
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        try:
            parsed = json.loads(values[0])
        except ValueError as exc:
            raise ConfigError(f"{name}: not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{name}: must be a JSON object")
        return parsed
    out: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"{name}: '{value}' is not key=value")
        out[key] = _scalar(text)
    return out


def _scalar(text: str) -> Any:
    """`true`, `3`, `0.5` and `null` become what they say; anything else (`,`, `|`, a tab) stays text."""
    import yaml

    if text.strip().lower() in ("null", "none", "~"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


def _flags(namespace: argparse.Namespace) -> dict[str, Any]:
    flags = {k: v for k, v in vars(namespace).items()
             if k not in ("command", "job", "images", "dry_run") and not k.startswith("slurm_")}
    for name, field in JobConfig.model_fields.items():
        if name in flags and _kind(field.annotation) == "map":
            flags[name] = parse_mapping(name, flags[name])
    if "inputs" in flags:
        flags["inputs"] = [json.loads(v) if v.lstrip().startswith("{") else v for v in flags["inputs"]]
    return flags


def run_flag_argv(namespace: argparse.Namespace) -> list[str]:
    """The run flags given, as `mpibatch run` arguments again (submit forwards them to the job)."""
    argv: list[str] = []
    given = vars(namespace)
    for name, field in [*JobConfig.model_fields.items(), *((alias, None) for alias in KEY_ALIASES)]:
        if name not in given:
            continue
        value = given[name]
        kind = _kind(field.annotation) if field is not None else "value"
        if kind == "bool":
            argv.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
        elif kind in ("list", "map"):
            argv += [_flag(name), *map(str, value)]
        else:
            argv += [_flag(name), str(value)]
    return argv


def _add_submit(commands: Any) -> None:
    submit = commands.add_parser(
        "submit", allow_abbrev=False, help="write an sbatch script from the templates in slurm/ and submit it",
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
                        help="a template in slurm/ (cpu, gpu4, site-modules...; default cpu)")
    submit.add_argument("--template", dest="slurm_template", metavar="PATH", help="your own sbatch template")
    submit.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    _add_run_flags(submit, skip=("gpus_per_node",))


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status", allow_abbrev=False, help="progress of a running or finished job, from its output folder",
        description="Read OUTPUT's files (works from a login node while the job runs elsewhere).")
    status.add_argument("output", help="the job's output folder")
    status.add_argument("--watch", action="store_true", help="refresh in place until the job ends")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpibatch", allow_abbrev=False,
                     description="Run an entry script over a large dataset on MPI ranks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", allow_abbrev=False, help="run a job (under mpiexec/srun, or on one rank)",
                              description="Run JOB.yaml; every key can also be given as a flag (flags win). "
                                          "Arguments after -- go to the entry script's sys.argv.")
    run.add_argument("job", nargs="?", help="the job file (YAML); optional when flags give every key")
    _add_run_flags(run)
    demo = commands.add_parser("demo", allow_abbrev=False, help="the digit-identification demo (needs TensorFlow)",
                               description="Render digit images, train a small CNN once (cached), and score the "
                                           "images with mpibatch in this MPI world. Any run flag applies.")
    demo.add_argument("--images", type=int, default=2000, help="how many digit images to score (default 2000)")
    _add_run_flags(demo)
    _add_submit(commands)
    _add_status(commands)
    return parser


def split_script_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Everything after the first `--` belongs to the entry script."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, script_args = split_script_args(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    try:
        if args.command == "status":
            from .status import show_status

            return show_status(Path(args.output), watch=args.watch, as_json=args.json, interval=args.interval)
        flags = _flags(args)
        if args.command == "submit":
            from .slurm import submit, submit_request

            options = {k[len("slurm_"):]: v for k, v in vars(args).items() if k.startswith("slurm_")}
            return submit(submit_request(args.job, flags, run_flag_argv(args), script_args, options), args.dry_run)
        if args.command == "demo":
            from .demo.runner import run_demo

            return run_demo(args.images, flags, script_args)
        config = build_config(args.job, flags)
        aliases = aliases_in(args.job, flags)
    except ConfigError as exc:
        print(f"mpibatch: error: {exc}", file=sys.stderr)
        return 2
    from .job import run_job

    return run_job(config, script_args, aliases)
