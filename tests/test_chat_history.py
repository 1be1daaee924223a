"""The ``get_chat_history`` tool (``read_chat_history=True``) on long sessions: under
``max_tool_result_chars`` it reads only the pages of runs the model is shown, from either
end of the session, and says what it left out between them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from noted import Agent, SessionStore, SqliteDb
from noted.agent.history_tool import (
    FIRST_PAGE,
    NOTE_ROLE,
    Listed,
    read_chat_history,
    read_ends,
    render,
    shares,
)
from noted.models.types import Message, ModelResponse, ToolCall
from noted.sessions import RunResult, Session
from noted.testing import ScriptedModel

LIMIT = 6_000
NOTE = re.compile(r"left out here: ([\d,]+) of the ([\d,]+) turns asked for, and ([\d,]+)")


def run(i: int, size: int, status: str = "completed", session: str = "s") -> RunResult:
    """Run ``i`` of user ``u``'s session: a message and an answer of ``size`` characters
    each, beginning and ending with the run's number (JSON escapes some of them)."""
    start, end = f"turn {i} ", f" end of turn {i}"
    filler = ('q"é\n' * size)[: max(size - len(start) - len(end), 0)]
    text = (start + filler + end)[:size]
    messages = [Message(role="user", content=text), Message(role="assistant", content=text)]
    return RunResult(
        run_id=f"{session}-r{i}",
        session_id=session,
        user_id="u",
        input=text,
        content=text,
        messages=messages,
        status=status,  # type: ignore[arg-type]
    )


def fill(db: SessionStore, sizes: list[int], failed: frozenset[int] = frozenset()) -> None:
    for i, size in enumerate(sizes):
        db.append_run(run(i, size, "failed" if i in failed else "completed"))


def whole(db: SessionStore, num_chats: int | None = None) -> list[dict[str, str]]:
    """Every turn of the session's completed runs, read whole (as the tool read it)."""
    runs = db.get_runs("s", "u", last_n=num_chats, completed_only=True)
    return [
        {"role": m.role, "content": m.content}
        for r in runs
        for m in r.messages
        if m.role in ("user", "assistant") and m.content
    ]


class Counted:
    """A session store that counts the runs each read returns (and refuses whole reads)."""

    def __init__(self, db: SessionStore) -> None:
        self.db = db
        self.runs_read = 0
        self.reads: list[dict[str, Any]] = []

    def get_session(self, session_id: str, user_id: str | None, **page: Any) -> Session | None:
        assert page.get("last_n") is not None, "the whole session was read"
        found = self.db.get_session(session_id, user_id, **page)
        self.reads.append(page)
        self.runs_read += len(found.runs) if found is not None else 0
        return found

    def get_runs(self, session_id: str, user_id: str, **page: Any) -> list[RunResult]:
        found = self.db.get_runs(session_id, user_id, **page)
        self.reads.append(page)
        self.runs_read += len(found)
        return found


def shown(result: str, limit: int, turns: list[dict[str, str]]) -> tuple[int, int]:
    """Check the result against the session's whole ``turns``: at most ``limit``
    characters of JSON, the oldest turns, the note, the newest turns (a turn at either
    side of the note may be cut, keeping its start or its end); the note's counts of runs
    left out and of characters cut."""
    assert len(result) <= limit
    items = json.loads(result)
    [at] = [i for i, item in enumerate(items) if item["role"] == NOTE_ROLE]
    head, tail = items[:at], items[at + 1 :]
    for item, turn in zip(head, turns, strict=False):
        assert item["role"] == turn["role"]
        assert item == turn or turn["content"].startswith(item["content"].removesuffix(" [...]"))
    for item, turn in zip(tail[::-1], turns[::-1], strict=False):
        assert item["role"] == turn["role"]
        assert item == turn or turn["content"].endswith(item["content"].removeprefix("[...] "))
    assert head[:-1] == turns[: len(head) - 1] and tail[1:] == turns[len(turns) - len(tail) + 1 :]
    found = NOTE.search(items[at]["content"])
    assert found is not None
    left_out, _, cut = (int(n.replace(",", "")) for n in found.groups())
    return left_out, cut


def test_the_model_is_shown_the_oldest_and_newest_turns_and_a_note(tmp_path: Path) -> None:
    """A session of 300 runs of 4,000 characters: the model asked for all of its history
    and was shown 6,000 characters cut from the middle of 2.4 million read whole (not
    even JSON); now it reads the first turns, a note of the 297 runs left out, the last."""
    db = SqliteDb(tmp_path / "s.db")
    fill(db, [2_000] * 300)
    model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("get_chat_history", {})]), "ok"])
    agent = Agent(model, db=db, read_chat_history=True, max_tool_result_chars=LIMIT)
    agent.run("What did I say first and last?", user_id="u", session_id="s")
    [result] = [m.content for m in model.requests[1].messages if m.role == "tool"]
    assert result is not None
    items = json.loads(result)
    assert items[0] == {"role": "user", "content": whole(db)[0]["content"]}
    assert items[0]["content"].startswith("turn 0 ") and items[-1]["role"] == "assistant"
    assert items[-1]["content"].endswith(" end of turn 299")
    left_out, cut = shown(result, LIMIT, whole(db)[:-2])  # the question's run is not shown
    assert left_out == 298 and cut > 0
    assert "of the 300 turns asked for" in result


@pytest.mark.parametrize("size", [10, 2_000])
def test_only_pages_of_the_ends_are_read(tmp_path: Path, size: int) -> None:
    """Whatever the runs' size, the store is asked for pages only, and of no more runs
    than twice those the model is shown (and a first page at each end)."""
    db = SqliteDb(tmp_path / "s.db")
    fill(db, [size] * 3_000)
    counted = Counted(db)
    result = read_chat_history(counted, "s", "u", None, LIMIT)  # type: ignore[arg-type]
    left_out, _ = shown(result, LIMIT, whole(db))
    assert all(read.get("last_n") for read in counted.reads)
    shown_runs = 3_000 - left_out
    assert counted.runs_read <= 2 * shown_runs + 2 * FIRST_PAGE
    asked_for_more = read_chat_history(counted, "s", "u", 5_000, LIMIT)  # type: ignore[arg-type]
    assert asked_for_more == result


def test_a_session_that_fits_is_returned_as_read_whole(tmp_path: Path) -> None:
    """Up to the limit (and a little over it, as a result a cut would not shorten), the
    result is the session's every turn, as the tool always returned it."""
    db = SqliteDb(tmp_path / "s.db")
    assert read_chat_history(db, "s", "u", None, LIMIT) == "[]"
    fill(db, [300, 5, 40, 700, 1, 90, 200], failed=frozenset({2}))
    db.append_run(RunResult(run_id="bare", session_id="s", user_id="u", input="x"))
    expected = json.dumps(whole(db), ensure_ascii=False)
    for limit in (None, len(expected), len(expected) - 1, 50_000):
        assert read_chat_history(db, "s", "u", None, limit) == expected
    for num_chats in (0, 1, 3, 100):
        expected = json.dumps(whole(db, num_chats), ensure_ascii=False)
        assert read_chat_history(db, "s", "u", num_chats, LIMIT) == expected
    cut = read_chat_history(db, "s", "u", None, len(expected) - 300)
    assert cut != expected and len(cut) <= len(expected) - 300


def test_runs_of_any_size_are_shown_from_both_ends(tmp_path: Path) -> None:
    """Sessions of runs of mixed sizes (some larger than the limit, some failed) under
    limits small and large: the note's counts add up and the turns are the session's."""
    rng = random.Random(7)
    db = SqliteDb(tmp_path / "s.db")
    for n in range(12):
        sizes = [rng.choice([1, 30, 400, 3_000, 9_000]) for _ in range(rng.randint(1, 60))]
        failed = frozenset(i for i in range(len(sizes)) if rng.random() < 0.1)
        session = f"m{n}"
        for i, size in enumerate(sizes):
            db.append_run(run(i, size, "failed" if i in failed else "completed", session))
        turns = [
            {"role": m.role, "content": m.content}
            for r in db.get_runs(session, "u", completed_only=True)
            for m in r.messages
            if m.content
        ]
        for limit in (1_000, 4_000, 25_000):
            result = read_chat_history(db, session, "u", None, limit)
            if result == json.dumps(turns, ensure_ascii=False):
                assert len(result) <= limit + 200
                continue
            left_out, cut = shown(result, limit, turns)
            assert 0 <= left_out < len(sizes) and (left_out or cut)


def test_runs_appended_while_it_reads_are_not_shown(tmp_path: Path) -> None:
    """Runs another writer appends between two pages do not shift the pages (a page is
    read again): the result is the session as it was at the first read."""
    db = SqliteDb(tmp_path / "s.db")
    fill(db, [500] * 200)
    before = read_chat_history(db, "s", "u", None, LIMIT)

    class Appending(Counted):
        def get_session(self, session_id: str, user_id: str | None, **page: Any) -> Any:
            found = super().get_session(session_id, user_id, **page)
            if len(self.reads) <= 2:  # after the first page and after the second
                db.append_run(run(1_000 + len(self.reads), 500))
            return found

    assert read_chat_history(Appending(db), "s", "u", None, LIMIT) == before  # type: ignore[arg-type]


def test_every_store_reads_the_same_pages(sessions: SessionStore) -> None:
    """The pages read from either end give each store the same result, the one of the
    runs in a list."""
    rng = random.Random(3)
    sizes = [rng.choice([3, 50, 600, 2_500]) for _ in range(90)]
    failed = frozenset({0, 44, 89})
    fill(sessions, sizes, failed)
    counted = Counted(sessions)
    result = read_chat_history(counted, "s", "u", None, LIMIT)  # type: ignore[arg-type]
    listed = [
        run(i, size, "failed" if i in failed else "completed") for i, size in enumerate(sizes)
    ]
    assert result == render(read_ends(Listed(listed), LIMIT), LIMIT)
    left_out, _ = shown(result, LIMIT, whole(sessions))
    assert counted.runs_read < 90 and left_out > 0
    head, tail = shares(LIMIT)
    assert len(result) > (head + tail) * 0.9  # both ends are filled
