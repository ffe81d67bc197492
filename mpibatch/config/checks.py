"""Checks of a validated JobConfig against the world before any work: the output outside every input,
append_row options that pandas.DataFrame.to_csv takes, a configuration that state.json can store."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError, suggest
from .keys import APPEND_ROW_DEFAULTS, JobConfig, config_digest
from .paths import glob_root, local_path


def check_output_outside_inputs(config: JobConfig) -> None:
    """An output inside an input would be listed as input by the next run, and a resume refused."""
    output = local_path(config.output)
    if output is None:
        return
    out = os.path.realpath(output)
    for index, spec in enumerate(config.inputs):
        local = local_path(spec.path)
        if local is None or spec.type == "filelist":
            continue
        root = os.path.realpath(glob_root(local))
        if out == root or out.startswith(root.rstrip(os.sep) + os.sep):
            where = "is the same folder as" if out == root else "is inside"
            raise ConfigError(f"output: '{config.output}' {where} inputs[{index}] '{spec.path}': the job would "
                              "read its own output; choose an output folder outside every input")


def _to_csv_keywords() -> list[str]:
    import inspect

    import pandas

    return [name for name in inspect.signature(pandas.DataFrame.to_csv).parameters if name != "self"]


def _check_csv_keywords(options: dict[str, Any], where: str) -> None:
    keywords = _to_csv_keywords()
    for key in options:
        if key not in keywords:
            raise ConfigError(f"{where}: '{key}' is not a pandas.DataFrame.to_csv keyword{suggest(key, keywords)}")


def _try_csv_options(options: dict[str, Any]) -> None:
    """Format a tiny DataFrame as a worker would: options to_csv refuses fail here, not in every mini-batch."""
    import pandas

    from ..script.entry import format_result

    frame = pandas.DataFrame({"item": ["a.txt", "b c"], "score": [0.5, None], "n": [1, 2]})
    trial = {k: v for k, v in options.items() if k != "columns"}  # columns name the user's frame, not this one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            format_result(frame, "append_row", trial)
    except Exception as exc:  # noqa: BLE001 - whatever to_csv raises, the options are what is wrong
        reason = str(exc).strip().splitlines()
        raise ConfigError(f"append_row_options: pandas.DataFrame.to_csv refuses them: {type(exc).__name__}"
                          f"{': ' + reason[0] if reason else ''}") from None


def _settings_json_options(settings: Path) -> dict[str, Any]:
    """The to_csv options of a parallel_run_step.settings.json (Azure ML's format)."""
    try:
        parsed = json.loads(settings.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"'{settings}' is not valid settings JSON: {exc}") from None
    section = parsed.get("append_row", {}) if isinstance(parsed, dict) else None
    options = section.get("pandas.DataFrame.to_csv", {}) if isinstance(section, dict) else None
    if not isinstance(options, dict):
        raise ConfigError(f"'{settings}': append_row.pandas.DataFrame.to_csv must be a JSON object")
    return options


def append_row_options(config: JobConfig) -> dict[str, Any]:
    """Merge append_row options: defaults < parallel_run_step.settings.json < the job's key.

    Options a user gave are checked here, before any work: a key to_csv does not know, or a
    value it refuses, would otherwise fail every mini-batch.
    """
    options = dict(APPEND_ROW_DEFAULTS)
    settings = config.script_home / "parallel_run_step.settings.json"
    given = False
    if settings.is_file():
        from_settings = _settings_json_options(settings)
        _check_csv_keywords(from_settings, f"'{settings}'")
        options.update(from_settings)
        given = bool(from_settings)
    if config.append_row_options:
        _check_csv_keywords(config.append_row_options, "append_row_options")
        options.update(config.append_row_options)
        given = True
    if given:
        _try_csv_options(options)
    return options



def check_storable(config: JobConfig) -> None:
    """The fingerprint goes into state.json: a value JSON cannot hold is refused now, not after the work."""
    try:
        config_digest(config)
    except Exception as exc:  # noqa: BLE001 - pydantic's and json's errors differ; the cause is the value
        raise ConfigError(f"the configuration holds a value that cannot be stored as JSON: {exc}") from None

