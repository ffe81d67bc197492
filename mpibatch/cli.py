"""The `mpibatch` command: argument parsing, subcommands and exit statuses (SPEC sections 1 and 5)."""
from __future__ import annotations

import argparse
import json
import sys
import typing
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


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in JobConfig.model_fields.items():
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
    flags = {k: v for k, v in vars(namespace).items() if k not in ("command", "job", "images")}
    for name, field in JobConfig.model_fields.items():
        if name in flags and _kind(field.annotation) == "map":
            flags[name] = parse_mapping(name, flags[name])
    if "inputs" in flags:
        flags["inputs"] = [json.loads(v) if v.lstrip().startswith("{") else v for v in flags["inputs"]]
    return flags


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
        flags = _flags(args)
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
