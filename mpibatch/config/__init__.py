"""Configuration: every job key with its default, range and validation, and loading a job from a YAML file
(a mpibatch job file or an Azure ML v2 file) and command-line flags into one immutable JobConfig."""
from __future__ import annotations

from .keys import (KEY_ALIASES, RANGES, ConfigError, InputSpec, JobConfig, _check_keys, aliases_in, build_config,
                   config_digest, error_line, fingerprint_fields, glob_root, is_url, key_hint, load_job, path_problem,
                   read_yaml, report_error, suggest)
