"""The files of ``noted memories export`` and ``import``: JSON Lines, in UTF-8 whatever the
locale, written whole or not at all.

An export is written to a temporary file next to the one named, which takes its place only
once every line is written. Stopped half-way (Ctrl-C, a full disk, a failing store), the
export leaves the named file as it was (absent, or an earlier export) rather than a shorter
file that reads like a complete one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TextIO

from noted.db.base import MemoryQuery, after_cursor
from noted.errors import StoreError, UserError
from noted.memory import Memory
from noted.memory.door import TextTooLong
from noted.memory.jsonl import write_jsonl
from noted.schema import UserMemory

__all__ = ["export_memories", "import_check", "in_utf8", "read_text", "written_file"]

EXPORT_PAGE: Final = 1000  # memories read from the store at a time


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


def export_memories(memory: Memory, user: str | None, stream: TextIO) -> int:
    """Write the memories of ``user`` (of everyone for None) to ``stream``, oldest first,
    a page at a time; how many. Each page is read past the last memory of the one before
    (not at an offset), so a page costs the same however deep it is, and a memory added
    or deleted meanwhile does not make another one be skipped or written twice."""
    written = 0
    query = MemoryQuery(user_id=user, sort_by="created_at", sort_order="asc", limit=EXPORT_PAGE)
    while True:
        page = memory.db.list_memories(query)
        if page and not after_cursor(query, page[0]):  # else the same page again and again
            raise StoreError(
                f"{type(memory.db).__name__} does not list the memories past one "
                "(MemoryQuery.after): nothing more is exported"
            )
        written += write_jsonl(page, stream)
        if len(page) < EXPORT_PAGE:
            return written
        query = query.following(page[-1])


def read_text(name: str) -> str:
    """The text of the file ``name``, or of standard input for ``-``, read as UTF-8 (JSON
    Lines are); an unreadable file or one that is not UTF-8 is a :class:`UserError`."""
    if name == "-":
        in_utf8(sys.stdin)
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise UserError(f"cannot read standard input: {exc}") from None
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {name}: {exc}") from None


def in_utf8(stream: TextIO) -> None:
    """Standard input or output (``stream``) read or written in UTF-8, as JSON Lines are,
    whatever the locale's encoding (an ISO 8859 locale, a Windows code page), which would
    fail on the first emoji or turn every accent into two wrong characters."""
    reconfigure = getattr(stream, "reconfigure", None)
    if callable(reconfigure):
        reconfigure(encoding="utf-8")


def import_check(memory: Memory) -> Callable[[UserMemory], object]:
    """The store's check of a memory to import, whose refusal of a text over the limit
    names the option that raises it."""

    def check(given: UserMemory) -> object:
        try:
            return memory.door.check(given)
        except TextTooLong as exc:
            raise UserError(f"{exc.without_hint} (--max-memory-length raises it)") from None

    return check
