"""Where the ``noted`` command writes: rich consoles for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["emit_json", "err", "out", "progress_bar"]

# Piped output is not cut to 80 columns: ids and texts stay whole for the reader, and an
# error line stays one line for a log or a script that reads it.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def progress_bar(label: str, quiet: bool = False) -> Progress:
    """A progress bar on standard error while it is a terminal (none when ``quiet``, as
    with --json, nor in a file or a pipe, where it would only be noise)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=False,
    )
