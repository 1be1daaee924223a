"""A store whose ``get_session`` takes only a session id and a user (the SessionStore
interface before a session was read with a page of its runs) still serves
``GET /sessions/{id}``: the server reads the session whole and answers the page asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import LocalClient
from noted import SqliteDb
from noted.server import create_app
from noted.sessions import RunResult, Session


class WholeSessionsDb(SqliteDb):
    """A store written to the older interface: ``get_session(session_id, user_id)``."""

    whole_reads = 0

    def get_session(self, session_id: str, user_id: str | None) -> Session | None:  # type: ignore[override]
        WholeSessionsDb.whole_reads += 1
        return super().get_session(session_id, user_id)


@pytest.fixture
def older(tmp_path: Path) -> Iterator[WholeSessionsDb]:
    store = WholeSessionsDb(tmp_path / "older.db")
    for i in range(5):
        store.append_run(RunResult(run_id=f"r{i}", session_id="s", user_id="ava", input=str(i)))
    yield store
    store.close()


def test_a_store_without_pages_of_runs_answers_a_page_of_a_session(
    older: WholeSessionsDb,
) -> None:
    with LocalClient(create_app(older, embedder=None)) as client:
        reads = WholeSessionsDb.whole_reads
        first = client.get("/sessions/s", params={"user_id": "ava", "runs_limit": 2})
        second = client.get(
            "/session",
            params={"session_id": "s", "user_id": "ava", "runs_limit": 2, "runs_page": 2},
        )
        last = client.get("/sessions/s", params={"user_id": "ava", "runs_limit": 2, "runs_page": 3})
        other = client.get("/sessions/s", params={"user_id": "bob"})

    assert first.status_code == 200, first.text
    assert [r["run_id"] for r in first.json()["runs"]] == ["r3", "r4"]
    assert first.json()["runs_meta"]["total_count"] == 5
    assert [r["run_id"] for r in second.json()["runs"]] == ["r1", "r2"]
    assert [r["run_id"] for r in last.json()["runs"]] == ["r0"]
    assert other.status_code == 404
    assert WholeSessionsDb.whole_reads - reads == 4
