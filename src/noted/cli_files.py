"""Files the ``noted`` command writes (``noted memories export -o FILE``): whole or not at all.

An export is written to a temporary file next to the one named, which takes its place only
once every line is written. Stopped half-way (Ctrl-C, a full disk, a failing store), the
export leaves the named file as it was (absent, or an earlier export) rather than a shorter
file that reads like a complete one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from noted.errors import UserError

__all__ = ["written_file"]


@contextlib.contextmanager
def written_file(name: str) -> Iterator[TextIO]:
    """A text stream for the file ``name``, which holds what was written when the block ends
    without an exception, and is left untouched when it raises one. A name that is not a
    regular file (``/dev/stdout``, a named pipe) is written directly. An OSError of the
    file, on opening or writing, becomes a :class:`UserError` naming it."""
    path = Path(name)
    try:
        if path.exists() and not path.is_file():
            with path.open("w", encoding="utf-8") as stream:
                yield stream
            return
        with _replacing(path) as stream:
            yield stream
    except OSError as exc:
        raise UserError(f"cannot write {name}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    """A temporary file beside ``path`` that replaces it at the end of the block (with the
    permissions ``path`` had, or that a new file gets), or is removed if the block fails."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(fd, "w", encoding="utf-8") as stream:
            yield stream
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
