"""A session read (whole or a page of its runs) never answers another user's runs.

SQLite, PostgreSQL and MongoDB read a session's row and then its runs. Another process
may delete the session and begin one of the same id for another user between the two:
the runs read then must still be the first owner's (or none), never the new owner's.
The race is driven deterministically: the hook that turns the session's row into a
Session (run between the two reads) deletes the session and begins it again for bob
through a second store on the same tables, as another process would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import server_url
from noted import SessionStore, SqliteDb
from noted.sessions import RunResult
from servers import Server

# each backend's module and the name, in it, of what makes a Session of the session's row
_HOOKS = {
    "sqlite": ("noted.db.sqlite.sessions", "row_to_session"),
    "postgres": ("noted.db.postgres.sessions", "row_to_session"),
    "mongo": ("noted.db.mongodb.sessions", "_session_of"),
}


def _open(kind: str, servers: dict[str, Server | str], where: Path, names: dict[str, str]) -> Any:
    """A store of ``kind`` on the tables ``names`` (a second one is another process's)."""
    if kind == "sqlite":
        return SqliteDb(where / "race.db", **names)  # type: ignore[arg-type]
    url = server_url(servers, kind)
    if kind == "postgres":
        from noted.db.postgres import PostgresDb

        return PostgresDb(url, **names)  # type: ignore[arg-type]
    from noted.db.mongodb import MongoDb

    return MongoDb(url, database="noted_tests", **names)  # type: ignore[arg-type]


@pytest.fixture(params=sorted(_HOOKS))
def two_stores(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[tuple[str, SessionStore, SessionStore]]:
    """The backend's name, a store, and a second store on the same tables."""
    tag = uuid.uuid4().hex[:10]
    names = {"memory_table": f"race{tag}_memories", "session_table": f"race{tag}_sessions"}
    first = _open(request.param, servers, tmp_path, names)
    second = _open(request.param, servers, tmp_path, names)
    yield request.param, first, second
    second.close()
    first.close()


def _run(run_id: str, user_id: str) -> RunResult:
    return RunResult(run_id=run_id, session_id="s", user_id=user_id, input=f"{user_id}'s words")


def _begun_again_for_bob(kind: str, other: SessionStore) -> None:
    """Delete session "s" and begin it again with two runs of bob's (from another store)."""
    assert other.delete_session("s", None)
    assert other.append_run(_run("bob-1", "bob"))
    assert other.append_run(_run("bob-2", "bob"), existing="bob-1")
    if kind == "mongo":  # bob's run as runs stored before they named their session's start
        with other._db() as db:  # type: ignore[attr-defined]
            db.runs.update_many({"session_id": "s"}, {"$unset": {"session_created_at": ""}})


def _swap_after_the_row(
    monkeypatch: pytest.MonkeyPatch, kind: str, other: SessionStore
) -> list[bool]:
    """Hook the backend so that, once, the session is begun again for bob right after its
    row is read; the list it returns holds True once that happened."""
    module, name = _HOOKS[kind]
    original: Callable[..., Any] = getattr(__import__(module, fromlist=[name]), name)
    swapped: list[bool] = []

    def hooked(row: Any) -> Any:
        session = original(row)
        if not swapped:
            swapped.append(True)
            _begun_again_for_bob(kind, other)
        return session

    monkeypatch.setattr(f"{module}.{name}", hooked)
    return swapped


@pytest.mark.parametrize("page", [{}, {"last_n": 5}, {"last_n": 5, "offset": 1}])
def test_a_session_begun_again_by_another_user_mid_read_shows_none_of_their_runs(
    two_stores: tuple[str, SessionStore, SessionStore],
    monkeypatch: pytest.MonkeyPatch,
    page: dict[str, int],
) -> None:
    kind, store, other = two_stores
    for i in range(3):
        assert store.append_run(_run(f"ava-{i}", "ava"))
    swapped = _swap_after_the_row(monkeypatch, kind, other)

    session = store.get_session("s", "ava", **page)  # type: ignore[call-arg]

    assert swapped == [True]
    assert session is not None and session.user_id == "ava"
    assert [run.user_id for run in session.runs if run.user_id != "ava"] == []
    assert all(run.run_id.startswith("ava-") for run in session.runs)
