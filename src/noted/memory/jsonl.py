"""Memories as JSON Lines: one memory object per line, lossless both ways."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TextIO

from noted.errors import DamagedMemoryError, UserError
from noted.memory.door import told
from noted.schema import UserMemory

__all__ = ["jsonl_lines", "read_jsonl", "write_jsonl"]

BYTE_ORDER_MARK = "\ufeff"


def jsonl_lines(text: str) -> list[str]:
    """The lines of JSON Lines ``text``, split at line feeds only (a carriage return
    before one is whitespace to JSON). ``str.splitlines`` would also split at the line
    and paragraph separators (U+2028, U+2029) and U+0085, which an export writes as they
    are inside a memory's text, cutting that memory's line in two."""
    return text.removesuffix("\n").split("\n") if text else []


def read_jsonl(
    lines: Iterable[str],
    on_line: Callable[[int], None] | None = None,
    check: Callable[[UserMemory], object] | None = None,
) -> list[UserMemory]:
    """Parse every line (blank lines are skipped); a bad line raises UserError naming it,
    as does a memory that ``check`` (the writer's own check, such as the limit on the
    length of a text) refuses. A UTF-8 byte order mark before the first line (files saved
    by Windows editors start with one) is skipped.

    Nothing is returned unless every line is valid, so a caller can import all or nothing.
    """
    memories: list[UserMemory] = []
    for number, given in enumerate(lines, start=1):
        line = given.removeprefix(BYTE_ORDER_MARK) if number == 1 else given
        if line.strip():
            try:
                memories.append(UserMemory.from_json(line))
                if check is not None:
                    check(memories[-1])
            except UserError as exc:
                raise UserError(f"line {number}: {told(exc)}") from None
        if on_line is not None:
            on_line(number)
    return memories


def write_jsonl(memories: Iterable[UserMemory], out: TextIO) -> int:
    """Write ``memories`` to ``out`` one JSON object a line (an export); how many.
    :class:`~noted.errors.DamagedMemoryError` for a memory whose stored topics are
    damaged: written with none, it would be restored as a sound memory without them."""
    count = 0
    for memory in memories:
        if memory.damaged is not None:
            raise DamagedMemoryError(memory.memory_id or "", memory.damaged)
        out.write(memory.to_json())
        out.write("\n")
        count += 1
    return count
