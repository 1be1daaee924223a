"""The plain listing answered before the framework gives exactly what the documented route
gives, and leaves everything else to the route."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from live_server import LocalClient
from noted import MemoryQuery, SqliteDb, UserMemory
from noted.server import create_app, issue_token
from noted.server.fast import FastMemoryList

SECRET = "s" * 32
KEY = "k" * 32


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    db = SqliteDb(db_file=tmp_path / "fast.db")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    memories = [
        UserMemory(
            f"fact {i} about {user} <b>é😀</b>",
            topics=[["ski", "food"][i % 2], *(["travel"] if i % 3 == 0 else [])],
            memory_id=f"{user}-{i:03d}",
            user_id=user,
            agent_id="helper" if i % 4 == 0 else None,
            created_at=start + timedelta(minutes=i),
            updated_at=start + timedelta(minutes=(i * 7) % 50),
        )
        for user in ("ava", "bob")
        for i in range(45)
    ]
    db.upsert_memories(memories)
    with LocalClient(create_app(db, api_key=KEY, token_secret=SECRET)) as c:
        yield c
    db.close()


def _fast(client: TestClient) -> FastMemoryList:
    app = client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(app, FastMemoryList):
        app = app.app
    return app


QUERIES = [
    "user_id=ava",
    "user_id=ava&limit=20&page=2",
    "user_id=ava&limit=20&page=3",
    "user_id=ava&limit=100",
    "user_id=bob&sort_by=created_at&sort_order=asc&limit=7&page=4",
    "user_id=ava&topics=ski",
    "user_id=ava&topics=ski,travel&limit=5",
    "user_id=ava&topics=ski&topics=travel",
    "user_id=ava&agent_id=helper",
    "user_id=ava&team_id=nobody",
    "page=2&limit=10",
    "",
    "user_id=nobody",
    "user_id=ava&page=99",
]


@pytest.mark.parametrize("query", QUERIES)
def test_same_answer_as_the_route(client: TestClient, query: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    fast = _fast(client)
    before = fast.answered
    quick = client.get(f"/memories?{query}", headers=headers)
    assert fast.answered == before + 1
    # An unknown parameter sends the same request to the documented route, which ignores it.
    routed = client.get(f"/memories?{query}&unknown=1", headers=headers)
    assert fast.answered == before + 1
    assert quick.status_code == routed.status_code == 200
    assert quick.json() == routed.json()
    assert quick.headers["content-type"] == routed.headers["content-type"]


@pytest.mark.parametrize(
    "query",
    [
        "user_id=ava&limit=101",
        "user_id=ava&limit=0",
        "user_id=ava&page=0",
        "user_id=ava&limit=x",
        "user_id=ava&limit=٣",  # a digit, but not an ASCII one
        "user_id=ava&sort_by=memory",
        "user_id=ava&sort_order=up",
        "user_id=",
        "user_id=" + "u" * 256,
        "user_id=ava&user_id=bob",
        "user_id=a%00b",
        "user_id=ava&search_content=ski",
        "user_id=ava&search_type=keyword",
    ],
)
def test_anything_unusual_goes_to_the_route(client: TestClient, query: str) -> None:
    fast = _fast(client)
    before = fast.answered
    answer = client.get(f"/memories?{query}", headers={"Authorization": f"Bearer {KEY}"})
    assert fast.answered == before
    assert 400 <= answer.status_code < 500 or answer.status_code == 200
    assert "detail" in answer.json() or "data" in answer.json()


def test_credentials_are_checked_the_same_way(client: TestClient) -> None:
    fast = _fast(client)
    before = fast.answered
    assert client.get("/memories?user_id=ava").status_code == 401
    assert client.get("/memories", headers={"Authorization": "Bearer nope"}).status_code == 401
    ava = {"Authorization": f"Bearer {issue_token('ava', SECRET)}"}
    assert client.get("/memories?user_id=bob", headers=ava).status_code == 404
    assert fast.answered == before
    mine = client.get("/memories", headers=ava)
    assert fast.answered == before + 1
    assert mine.json()["meta"]["total_count"] == 45
    assert {m["user_id"] for m in mine.json()["data"]} == {"ava"}


def test_the_listing_is_each_memorys_to_dict(client: TestClient) -> None:
    store = client.app.state.noted.store  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {KEY}"}
    for query, expected in [
        ("user_id=ava&limit=100", MemoryQuery(user_id="ava", limit=100)),
        (
            "user_id=bob&sort_by=created_at&sort_order=asc&limit=9&page=2",
            MemoryQuery(user_id="bob", sort_by="created_at", sort_order="asc", limit=9, offset=9),
        ),
    ]:
        answer = client.get(f"/memories?{query}", headers=headers)
        assert answer.json()["data"] == [m.to_dict() for m in store.list_memories(expected)]
