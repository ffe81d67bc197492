"""Configuration: one validated, immutable JobConfig from a job file (a mpibatch YAML file or an Azure ML v2
job, translated) and command-line flags; any error is a ConfigError naming the key (exit 2). Read in order:
errors.py (ConfigError, the one stderr line), paths.py, sizes.py, keys.py (every key, its default, range and
validators), jobfile.py (reading YAML safely), flags.py (flag text as YAML values), the Azure ML v2 modules
(azure_names, azure_bindings, azure_v2), checks.py (what is checked against the world before any work) and
load.py (load_job: read, merge, resolve paths, validate). These modules import the standard library, pydantic
and yaml, each other in that order, and nothing else of mpibatch (paths.py names the output folder's own
entries, which output.logs.Layout lays out); three checks call up at run time, never at import: the
command_prefix words (script.script_env), a trial of append_row options (script.entry.format_result) and
whether an Azure MLTable reads a table (inputs.mltable).
"""
from __future__ import annotations

from .errors import ConfigError, error_line, report_error, suggest
from .keys import APPEND_ROW_DEFAULTS, KEY_ALIASES, RANGES, InputSpec, JobConfig, config_digest, fingerprint_fields, known_keys
from .jobfile import read_yaml
from .load import aliases_in, build_config, check_keys, key_hint, load_job, sizing_keys
from .paths import glob_root, is_url, path_problem

__all__ = ["APPEND_ROW_DEFAULTS", "KEY_ALIASES", "RANGES", "ConfigError", "InputSpec", "JobConfig", "aliases_in", "build_config",
           "check_keys", "config_digest", "error_line", "fingerprint_fields", "glob_root", "is_url", "key_hint",
           "known_keys", "load_job", "path_problem", "read_yaml", "report_error", "sizing_keys", "suggest"]
