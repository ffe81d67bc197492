"""`mpibatch report OUTPUT`: one self-contained HTML page about a job (running or finished), read from
its output folder alone, so it can be written and opened on a login node. Imports matplotlib, which
nothing else of mpibatch does: import this package only to write a report."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional, Union

from ..config import ConfigError

__all__ = ["write_report"]


def write_report(output: Union[str, Path], html: Optional[Union[str, Path]] = None) -> Path:
    """Write the report of the job in `output` to `html` (default OUTPUT/logs/report.html); its path.
    Raises ConfigError when `output` holds no mpibatch job."""
    from . import data as loading, page, plots

    output = Path(output)
    if not output.is_dir():
        raise ConfigError(f"output: '{output}' is not a folder")
    if not (output / ".mpibatch").is_dir() and not (output / "logs").is_dir():
        raise ConfigError(f"output: '{output}' holds no mpibatch job (no .mpibatch/ or logs/)")
    target = Path(html) if html is not None else output / "logs" / "report.html"
    facts = loading.load(output)
    figures = {"timeline": plots.timeline(facts), "throughput": plots.throughput(facts),
               "errors": plots.errors_over_time(facts), "phases": plots.phases(facts),
               "resources": plots.resources(facts)}
    text = page.render(facts, figures)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"html: cannot write '{target}': {exc.strerror or exc}") from None
    return target
