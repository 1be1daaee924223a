"""The ``get_chat_history`` tool (``read_chat_history``): a session's earlier turns as JSON.

A model reads at most ``max_tool_result_chars`` of a tool's result, its start and its end
(:func:`~noted.agent.fitting.shown_to_model`). A session of thousands of long runs would be
read whole only for its middle to be cut away, so under that limit the tool reads pages of
the session's runs from its oldest end and from its newest end, only until each end fills
its share of the limit (two thirds for the oldest turns, one third for the newest, as the
cut shares it), and puts between them a note of what was left out. A session that fits is
read whole and returned as it always was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from noted.agent.fitting import shown_to_model
from noted.agent.tools import Tool
from noted.db.base import SessionStore, check_page
from noted.sessions import RunResult

__all__ = ["chat_history_tool", "read_chat_history"]

Turn = dict[str, str]
"""One message as the tool returns it: ``{"role": ..., "content": ...}``."""

NOTE_ROLE = "note"
"""The role of the item between the oldest and the newest turns saying what was left out."""

FIRST_PAGE = 8
"""How many runs the first page read from either end holds; each next page holds twice as
many (a session of short runs is read in a few pages, one of long runs in one)."""

_SEPARATOR = len(", ")  # between the items of a JSON list, as json.dumps writes it
_AFTER_START = " [...]"  # follows the start kept of a message cut at the boundary
_BEFORE_END = "[...] "  # precedes the end kept of one
_LEAST_PART = 80  # a message's part shorter than this is not worth showing
_RETRIES = 3  # re-reads of a page while runs are appended to the session meanwhile
_WIDEST = 10**15  # a count as wide as any the note will say
# a result this much longer than the limit may still be shown whole (shown_to_model does
# not cut a text by less than its mark's length): turns read up to it are read on
_WHOLE_SLACK = 200


def turns_of(run: RunResult) -> list[Turn]:
    """The turns a run shows: its user and assistant texts (none for a failed run)."""
    if run.status != "completed":
        return []
    return [
        {"role": m.role, "content": m.content}
        for m in run.messages
        if m.role in ("user", "assistant") and m.content
    ]


def _dumped(item: Turn) -> int:
    """The characters ``item`` takes in the tool's JSON list, its separator included."""
    return len(json.dumps(item, ensure_ascii=False)) + _SEPARATOR


def _note(left_out: int, count: int, cut: int, limit: int) -> Turn:
    """The item saying how much of the session's ``count`` runs was left out."""
    return {
        "role": NOTE_ROLE,
        "content": (
            f"[... left out here: {left_out:,} of the {count:,} turns asked for, and "
            f"{cut:,} characters of the messages either side; the model is shown at most "
            f"{limit:,} characters of its history (num_chats reads the most recent turns) ...]"
        ),
    }


def shares(limit: int) -> tuple[int, int]:
    """The characters the oldest turns and the newest take of a result of at most
    ``limit`` characters: two thirds and one third of what the brackets and the note
    leave."""
    free = max(limit - len("[]") - _dumped(_note(_WIDEST, _WIDEST, _WIDEST, limit)), 0)
    return free * 2 // 3, free - free * 2 // 3


class _Source(Protocol):
    """A session's runs by place, the oldest at 0: ``count`` of them, ``read`` a page."""

    count: int

    def read(self, start: int, stop: int) -> list[RunResult] | None: ...


@dataclass
class Listed:
    """Runs already read (the last ``num_chats`` of a session)."""

    runs: list[RunResult]
    count: int = field(init=False)

    def __post_init__(self) -> None:
        self.count = len(self.runs)

    def read(self, start: int, stop: int) -> list[RunResult] | None:
        return self.runs[start:stop]


class _Paged:
    """A session's runs read a page at a time (``get_session(last_n=, offset=)``), placed
    among the ``count`` it had at the first read: runs appended since are not counted,
    and a page is read again when they shifted it."""

    def __init__(self, db: SessionStore, session_id: str, user_id: str) -> None:
        self._db, self._session_id, self._user_id = db, session_id, user_id
        first = db.get_session(session_id, user_id, last_n=FIRST_PAGE)
        self.found = first is not None
        self.count = self._now = first.run_count if first is not None else 0
        self._first = first.runs if first is not None else []

    def read(self, start: int, stop: int) -> list[RunResult] | None:
        """The runs at ``start`` to ``stop``; None when the session is gone (deleted, or
        begun again with fewer runs)."""
        first_start = self.count - len(self._first)
        if start >= first_start:
            return self._first[start - first_start : stop - first_start]
        for _ in range(_RETRIES):
            page = self._db.get_session(
                self._session_id, self._user_id, last_n=stop - start, offset=self._now - stop
            )
            if page is None or page.run_count < self.count:
                return None
            if page.run_count == self._now:
                return page.runs
            self._now = page.run_count
        return None


@dataclass
class _Ends:
    """The turns of the runs read from either end of a session of ``count`` runs: runs
    from the oldest (``head``, oldest first) and from the newest (``tail``, newest
    first) until each filled its share, or met; ``whole`` when they met (every run read)."""

    count: int
    head: list[list[Turn]] = field(default_factory=list)
    tail: list[list[Turn]] = field(default_factory=list)
    whole: bool = False


def _take(runs: list[RunResult], into: list[list[Turn]], used: int, room: int) -> int:
    """Append the turns of ``runs``, in order, to ``into`` until they take ``room``
    characters; the characters they take then."""
    for run in runs:
        if used >= room:
            break
        turns = turns_of(run)
        into.append(turns)
        used += sum(_dumped(t) for t in turns)
    return used


def read_ends(source: _Source, limit: int) -> _Ends:
    """The runs of ``source`` to show in a result of ``limit`` characters, read in pages
    from either end (never one twice): from the newest until their turns fill the newest
    turns' share, then from the oldest until theirs fill the oldest turns' share and the
    turns read could not all be shown whole (else on, to the newest read: all of them)."""
    head_room, tail_room = shares(limit)
    ends = _Ends(source.count)
    low, tail_used, size = source.count, 0, FIRST_PAGE  # low: the oldest run read so far
    while low > 0 and tail_used < tail_room:
        page = source.read(max(low - size, 0), low)
        if not page:
            return ends
        taken = len(ends.tail)
        tail_used = _take(page[::-1], ends.tail, tail_used, tail_room)
        low, size = low - (len(ends.tail) - taken), size * 2
    room = max(head_room, limit + _WHOLE_SLACK - tail_used)
    high, used, size = 0, 0, FIRST_PAGE  # high: the run after the newest read from the oldest
    while high < low and used < room:
        page = source.read(high, min(high + size, low))
        if not page:
            return ends
        taken = len(ends.head)
        used = _take(page, ends.head, used, room)
        high, size = high + len(ends.head) - taken, size * 2
    ends.whole = high == low
    return ends


def _part(turn: Turn, room: int, *, from_start: bool) -> Turn | None:
    """``turn`` with as much of its content as takes ``room`` characters in the list, its
    start (or its end) and a mark of the cut; None when too little would be left."""
    content = turn["content"]

    def kept(n: int) -> Turn:
        part = content[:n] + _AFTER_START if from_start else _BEFORE_END + content[-n:]
        return {"role": turn["role"], "content": part}

    low, high = 0, len(content)
    while low < high:  # the longest part that fits
        middle = (low + high + 1) // 2
        if _dumped(kept(middle)) <= room:
            low = middle
        else:
            high = middle - 1
    return kept(low) if low >= _LEAST_PART else None


@dataclass
class _Fitted:
    """What one end shows: ``items`` in the order walked, how many runs they span
    (``runs``, each run shown at least in part, or with nothing to show) and how many
    characters of those runs' messages were left out (``cut``)."""

    items: list[Turn] = field(default_factory=list)
    runs: int = 0
    cut: int = 0


def _fit(runs: list[list[Turn]], room: int, *, from_start: bool) -> _Fitted:
    """The turns of ``runs`` (walked from the end they are read from) that fit in
    ``room`` characters, the first that does not cut to fit."""
    fitted, used, full = _Fitted(), 0, False
    for turns in runs:
        if full:
            break
        fitted.runs += 1
        for turn in turns if from_start else reversed(turns):
            size = _dumped(turn)
            if not full and used + size <= room:
                fitted.items.append(turn)
                used += size
                continue
            part = None if full else _part(turn, room - used, from_start=from_start)
            if part is not None:
                fitted.items.append(part)
                used += _dumped(part)
            shown = len(part["content"]) - len(_AFTER_START) if part is not None else 0
            fitted.cut += len(turn["content"]) - shown
            full = True
    return fitted


def _walked(ends: _Ends) -> Iterator[Turn]:
    """Every turn read, oldest first (when every run was read: all of the session's)."""
    for turns in ends.head:
        yield from turns
    for turns in reversed(ends.tail):
        yield from turns


def render(ends: _Ends, limit: int) -> str:
    """The tool's result: every turn when all were read and are shown whole, else the
    oldest turns, a note of what was left out and the newest turns, in ``limit``
    characters (unless the note alone is longer)."""
    if ends.whole:
        whole = json.dumps(list(_walked(ends)), ensure_ascii=False)
        if len(shown_to_model(whole, limit)) == len(whole):
            return whole
    head_room, tail_room = shares(limit)
    head = _fit(ends.head, head_room, from_start=True)
    tail = _fit(ends.tail, tail_room, from_start=False)
    left_out = ends.count - head.runs - tail.runs
    note = _note(left_out, ends.count, head.cut + tail.cut, limit)
    return json.dumps([*head.items, note, *tail.items[::-1]], ensure_ascii=False)


def read_chat_history(
    db: SessionStore, session_id: str, user_id: str, num_chats: int | None, limit: int | None
) -> str:
    """The tool's result: the turns of the session's completed runs (the last
    ``num_chats`` of them), oldest first, as a JSON list; under a ``limit`` only what the
    model is shown of them, read in pages from either end (see :func:`read_ends`)."""
    check_page(num_chats, 0)
    if limit is not None:
        pages = _Paged(db, session_id, user_id)
        if pages.found and (num_chats is None or num_chats >= pages.count):
            return render(read_ends(pages, limit), limit)
    runs = db.get_runs(session_id, user_id, last_n=num_chats, completed_only=True)
    if limit is not None:
        return render(read_ends(Listed(runs), limit), limit)
    return json.dumps([turn for run in runs for turn in turns_of(run)], ensure_ascii=False)


def chat_history_tool(
    db: SessionStore, session_id: str, user_id: str, limit: int | None = None
) -> Tool:
    """The tool that reads the earlier turns of a session (``read_chat_history``), for a
    model shown at most ``limit`` characters of a tool's result (None: all of it)."""

    async def get_chat_history(num_chats: int | None = None) -> str:
        """Read earlier turns of this conversation, oldest first, as JSON messages (a long
        history as its oldest and newest turns, with a note of what is left out between).

        Args:
            num_chats: How many of the most recent turns to return; all when omitted.
        """
        return await asyncio.to_thread(read_chat_history, db, session_id, user_id, num_chats, limit)

    return Tool.from_function(get_chat_history)
