"""The server mounted under a prefix in an application of one's own (``create_app`` as
docs/server.md shows it): its routes, and a 405's ``Allow``, are those of the path below
the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from live_server import LocalClient
from noted import SqliteDb
from noted.server import create_app
from noted.server.fast import FastMemoryList


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[LocalClient]:
    db = SqliteDb(tmp_path / "mounted.db")
    outer = FastAPI()
    outer.mount("/api", create_app(db, embedder=None))
    with LocalClient(outer) as client:
        yield client
    db.close()


def test_a_405_under_a_prefix_allows_the_methods_of_the_path_below_it(
    mounted: LocalClient,
) -> None:
    # PUT /api/memory answered Allow: GET: the methods were looked up for "/api/memory",
    # which no path of the schema fits, instead of "/memory"
    for method, path, allowed in (
        ("PUT", "/api/memory", "DELETE, GET, HEAD, PATCH"),
        ("PUT", "/api/memories/m1", "DELETE, GET, HEAD, PATCH"),
        ("PUT", "/api/memories/m1/history", "GET, HEAD"),
        ("PUT", "/api/sessions/s1", "DELETE, GET, HEAD"),
    ):
        answer = mounted.request(method, path)
        assert (answer.status_code, answer.headers["allow"]) == (405, allowed), (method, path)
        assert answer.json()["detail"] == f"{method} is not allowed here: use {allowed}"


def test_routes_under_a_prefix_read_the_path_below_it(mounted: LocalClient) -> None:
    assert mounted.get("/api/memories", params={"user_id": "ava"}).status_code == 200
    assert mounted.head("/api/memories", params={"user_id": "ava"}).status_code == 200
    assert mounted.get("/api/sessions/s%2F1", params={"user_id": "ava"}).status_code == 404


def test_the_plain_listing_under_a_prefix_is_answered_by_the_fast_path(
    mounted: LocalClient,
) -> None:
    # it compared the whole path with "/memories", so under /api every listing went the
    # slower way through the framework
    mounted.get("/api/memories", params={"user_id": "ava"})  # the app builds its stack
    inner = next(r.app for r in mounted.app.routes if getattr(r, "path", "") == "/api")
    fast = inner.middleware_stack
    while not isinstance(fast, FastMemoryList):
        fast = fast.app
    before = fast.answered
    answer = mounted.get("/api/memories", params={"user_id": "ava", "limit": 5})
    assert answer.status_code == 200
    assert answer.json()["meta"]["limit"] == 5
    assert fast.answered == before + 1
    assert mounted.get("/apix/memories", params={"user_id": "ava"}).status_code == 404
    assert fast.answered == before + 1
