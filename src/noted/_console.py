"""Where the ``noted`` command writes: rich consoles for people, JSON for scripts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, Final, TextIO, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from noted.errors import UserError

__all__ = [
    "counted",
    "emit_json",
    "err",
    "guarded_stdout",
    "out",
    "printable",
    "progress_bar",
]

PIPE_WIDTH: Final = 200
"""The width the command lays its output out for in a file or a pipe, unless $COLUMNS
says another: not cut to 80 columns, so that ids and texts stay whole for the reader."""

# spaces (and tabs) before the end of a line, and any colour codes after them
_LINE_END_SPACE: Final = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)(?=\n)")


# What a terminal would act on rather than show: escape sequences (CSI such as "clear the
# screen", OSC such as "set the window title", and the two-character ones), C1 controls
# (U+0080-U+009F, some terminals' single-character CSI and OSC), and the C0 controls and DEL
# save the line feed and the tab.
_TERMINAL_CONTROL: Final = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI: parameters, intermediates, the final byte
    # OSC, DCS, SOS, PM and APC: their text, up to the bell or string terminator that ends it
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"  # the other escape sequences, or a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def printable(text: str) -> str:
    """``text`` without what a terminal would take as a command: the escape sequences and
    control characters that could clear the screen, move the cursor, set the window title
    or colour what follows. Lines and tabs stay; everything else is shown as it is."""
    return _TERMINAL_CONTROL.sub("", text)


def _out_width() -> int | None:
    """The width of standard output: None on a terminal (rich asks it), else $COLUMNS
    when it is a width, else :data:`PIPE_WIDTH`."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and 0 < len(columns) <= 5 and int(columns):
        return int(columns)
    return PIPE_WIDTH


class _Trimmed:
    """Standard output (whatever ``sys.stdout`` is at the time) without the spaces that
    end a line: a table's padding and the right of its last column, which a reader of a
    file or a pipe (``diff``, ``grep ' $'``, a review tool) would see. Everything else is
    the stream's own."""

    def write(self, text: str) -> int:
        sys.stdout.write(_LINE_END_SPACE.sub(r"\1", text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)


out = Console(file=cast(TextIO, _Trimmed()), highlight=False, width=_out_width())
err = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def counted(count: int, thing: str, things: str | None = None) -> str:
    """``count`` and the noun it takes: "1 memory", "2 memories" (``things`` defaults
    to ``thing`` + "s")."""
    return f"{count} {thing if count == 1 else things or thing + 's'}"


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


class _GuardedOutput:
    """Standard output whose write and flush raise a :class:`UserError` for an OSError
    (a full disk under ``> FILE``), so that every command says so in one line; a
    BrokenPipeError (the reader went away) passes as it is. Everything else is the
    stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        with _unwritable():
            return self.stream.write(text)

    def flush(self) -> None:
        with _unwritable():
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def _unwritable() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise UserError(f"cannot write to standard output: {exc.strerror or exc}") from None


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """``sys.stdout`` guarded for the block (see :class:`_GuardedOutput`): what the rich
    console, JSON output and an export write there; as it was afterwards."""
    stream = sys.stdout
    sys.stdout = cast(TextIO, _GuardedOutput(stream))
    try:
        yield
    finally:
        sys.stdout = stream
