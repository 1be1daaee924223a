"""noted's REST server: every route, its answers and its refusals, on a real SQLite file."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from held_model import HeldAnswer
from live_server import LocalClient, live_server
from model_helpers import FAST, model_for
from noted import (
    Agent,
    Memory,
    MemoryQuery,
    Message,
    RunResult,
    SessionSummary,
    SqliteDb,
    UserMemory,
)
from noted.agent.agent import CANCELLED_RUN_ERROR
from noted.db import Store
from noted.db.urls import open_store
from noted.errors import StoreError
from noted.models.openai import OpenAIChat
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.server import create_app
from noted.server.failures import HIDDEN_RUN_ERROR
from noted.sessions import RunMetrics
from noted.testing import FunctionModel, ScriptedModel
from servers import free_port
from user_facts import user_facts
from wire import Reply, WireServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTED_API_KEY", raising=False)
    monkeypatch.delenv("NOTED_TOKEN_SECRET", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDb]:
    store = SqliteDb(tmp_path / "server.db")
    yield store
    store.close()


@pytest.fixture
def client(db: SqliteDb) -> Iterator[TestClient]:
    with LocalClient(create_app(db)) as c:
        yield c


def add(client: TestClient, text: str, user: str = "ava", **fields: Any) -> dict[str, Any]:
    r = client.post("/memories", json={"memory": text, "user_id": user, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def texts(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [m["memory"] for m in r.json()["data"]]


def seed(db: SqliteDb, *rows: tuple[str, str, int, int]) -> dict[str, str]:
    """Memories with fixed timestamps: (text, user, created minute, updated minute) -> ids."""
    memories = [
        UserMemory(
            text,
            user_id=user,
            created_at=T0 + timedelta(minutes=created),
            updated_at=T0 + timedelta(minutes=updated),
        )
        for text, user, created, updated in rows
    ]
    Memory(db).import_user_memories(memories)
    return {m.memory: m.memory_id or "" for m in db.list_memories(MemoryQuery(user_id=None))}


# -- memories: create, get, update, delete ----------------------------------------------


def test_create_get_update_delete(client: TestClient) -> None:
    created = add(client, "  Ava likes to ski  ", topics=["hobbies", "sport"], agent_id="helper")
    mid = created["memory_id"]
    assert created["memory"] == "Ava likes to ski"
    assert created["topics"] == ["hobbies", "sport"]
    assert created["user_id"] == "ava"
    assert created["agent_id"] == "helper"
    assert created["created_at"] == created["updated_at"]

    got = client.get(f"/memories/{mid}", params={"user_id": "ava"})
    assert got.status_code == 200
    assert got.json() == created

    text_only = client.patch(
        f"/memories/{mid}", params={"user_id": "ava"}, json={"memory": "Ava skis"}
    )
    assert text_only.status_code == 200, text_only.text
    assert text_only.json()["memory"] == "Ava skis"
    assert text_only.json()["topics"] == ["hobbies", "sport"]
    assert text_only.json()["agent_id"] == "helper"
    assert text_only.json()["created_at"] == created["created_at"]
    assert text_only.json()["updated_at"] > created["updated_at"]

    topics_only = client.patch(
        f"/memories/{mid}", params={"user_id": "ava"}, json={"topics": ["winter"]}
    )
    assert topics_only.json()["memory"] == "Ava skis"
    assert topics_only.json()["topics"] == ["winter"]
    cleared = client.patch(f"/memories/{mid}", params={"user_id": "ava"}, json={"topics": []})
    assert cleared.json()["topics"] == []
    both = client.patch(
        f"/memories/{mid}",
        params={"user_id": "ava"},
        json={"memory": "Ava snowboards", "topics": ["x"]},
    )
    assert (both.json()["memory"], both.json()["topics"]) == ("Ava snowboards", ["x"])
    assert client.get(f"/memories/{mid}", params={"user_id": "ava"}).json() == both.json()
    # restating the memory as it is writes nothing: no event, the same updated_at
    events = len(client.get(f"/memories/{mid}/history", params={"user_id": "ava"}).json())
    for same in (
        {"memory": "Ava snowboards"},
        {"topics": ["x"]},
        {"memory": "Ava snowboards", "topics": ["x"]},
    ):
        again = client.patch(f"/memories/{mid}", params={"user_id": "ava"}, json=same)
        assert again.status_code == 200 and again.json() == both.json()
    history = client.get(f"/memories/{mid}/history", params={"user_id": "ava"}).json()
    assert len(history) == events

    deleted = client.delete(f"/memories/{mid}", params={"user_id": "ava"})
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/memories/{mid}", params={"user_id": "ava"}).status_code == 404
    again = client.delete(f"/memories/{mid}", params={"user_id": "ava"})
    assert again.status_code == 404
    assert again.json() == {"detail": "no such memory"}


def test_an_update_made_on_what_was_read_is_refused_once_the_memory_changed(
    client: TestClient,
) -> None:
    """Two editors read the same memory: the first change is written, the second, made
    on the text it no longer has, answers 409 and writes nothing."""
    read = add(client, "Lives in Lisbon", topics=["home"])
    path, ava = f"/memories/{read['memory_id']}", {"user_id": "ava"}
    first = client.patch(
        path,
        params=ava,
        json={"memory": "Lives in Lisbon, Alfama", "if_updated_at": read["updated_at"]},
    )
    assert first.status_code == 200, first.text
    assert first.json()["updated_at"] > read["updated_at"]
    second = client.patch(
        path,
        params=ava,
        json={"memory": "Lives in Lisbon since 2019", "if_updated_at": read["updated_at"]},
    )
    assert second.status_code == 409, second.text
    assert second.json()["detail"] == (
        f"the memory changed since it was read (updated at {first.json()['updated_at']}): "
        "nothing was written"
    )
    topics_only = client.patch(
        path, params=ava, json={"topics": ["city"], "if_updated_at": read["updated_at"]}
    )
    assert topics_only.status_code == 409
    assert client.get(path, params=ava).json() == first.json()
    history = client.get(f"{path}/history", params=ava).json()
    assert [e["event"] for e in history] == ["add", "update"]

    # the time as last read, in any offset, is the same time
    seen = datetime.fromisoformat(first.json()["updated_at"])
    elsewhere = seen.astimezone(timezone(timedelta(hours=2))).isoformat()
    again = client.patch(
        path, params=ava, json={"memory": "Lives in Lisbon since 2019", "if_updated_at": elsewhere}
    )
    assert again.status_code == 200, again.text
    assert again.json()["memory"] == "Lives in Lisbon since 2019"
    # without if_updated_at a change is written whatever it was made on, as before
    blind = client.patch(path, params=ava, json={"memory": "Lives in Porto"})
    assert blind.status_code == 200
    assert blind.json()["memory"] == "Lives in Porto"

    for bad in ("yesterday", "2024-01-01T00:00:00", 1704067200, True):
        refused = client.patch(path, params=ava, json={"memory": "x", "if_updated_at": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert "if_updated_at" in refused.json()["detail"]
    # another user's memory, or none, stays a 404 (a 409 would say that it exists)
    for user, memory_id in (("bob", read["memory_id"]), ("ava", "nope")):
        missing = client.patch(
            f"/memories/{memory_id}",
            params={"user_id": user},
            json={"memory": "x", "if_updated_at": blind.json()["updated_at"]},
        )
        assert missing.status_code == 404, missing.text
    assert client.get(path, params=ava).json() == blind.json()

    operation = client.get("/openapi.json").json()["paths"]["/memories/{memory_id}"]["patch"]
    assert "409" in operation["responses"]
    assert "if_updated_at" in operation["description"]


def test_create_limits_and_defaults(client: TestClient) -> None:
    assert add(client, "x" * 5000)["memory"] == "x" * 5000
    too_long = client.post("/memories", json={"memory": "x" * 5001, "user_id": "ava"})
    assert too_long.status_code == 422
    assert "memory" in too_long.json()["detail"]
    blank = client.post("/memories", json={"memory": " \n\t ", "user_id": "ava"})
    assert blank.status_code == 422
    assert blank.json()["detail"] == "memory: must not be empty or blank"
    assert blank.json()["errors"] == [
        {"loc": ["body", "memory"], "msg": "must not be empty or blank"}
    ]
    assert client.post("/memories", json={"memory": "", "user_id": "ava"}).status_code == 422
    assert client.post("/memories", json={"user_id": "ava"}).status_code == 422
    # the admin key (an open server) without a user writes for the default user
    default = client.post("/memories", json={"memory": "no user named"})
    assert default.status_code == 201
    assert default.json()["user_id"] == "default"
    with_input = add(client, "Ava is 30", input="I am 30 years old", team_id="t1")
    assert (with_input["input"], with_input["team_id"]) == ("I am 30 years old", "t1")


def test_text_is_trimmed_before_its_length_is_checked(db: SqliteDb, helper: Agent) -> None:
    """A memory, a topic or a search of the longest length with whitespace around it was
    refused (422) though the Memory API keeps them (it leaves the whitespace out first),
    and one of whitespace only passed the length check, then was refused by the API as a
    400; a run's message the same. Each is now checked without the whitespace around it:
    kept when it fits, a 422 saying what is wrong when it is blank or too long."""
    pad = " \n\t "
    longest = "x" * 5000
    topic = "t" * 255
    with LocalClient(create_app(db, agent=helper)) as client:
        made = client.post(
            "/memories",
            json={"memory": pad + longest + pad, "topics": [pad + topic], "user_id": "ava"},
        )
        assert made.status_code == 201, made.text
        assert (made.json()["memory"], made.json()["topics"]) == (longest, [topic])
        url = f"/memories/{made.json()['memory_id']}"
        changed = client.patch(
            url, params={"user_id": "ava"}, json={"memory": f"{pad}y{pad}", "topics": [f"{topic} "]}
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["memory"], changed.json()["topics"]) == ("y", [topic])
        blank = "must not be empty or blank"
        for method, path, body, said in (
            ("POST", "/memories", {"memory": pad, "user_id": "ava"}, f"memory: {blank}"),
            (
                "POST",
                "/memories",
                {"memory": "a", "topics": [pad], "user_id": "ava"},
                f"topics.0: {blank}",
            ),
            ("PATCH", url, {"memory": pad, "user_id": "ava"}, f"memory: {blank}"),
            ("PATCH", url, {"topics": ["a", " "], "user_id": "ava"}, f"topics.1: {blank}"),
            (
                "POST",
                "/memories",
                {"memory": longest + "x", "user_id": "ava"},
                "memory: String should have at most 5000 characters",
            ),
            (
                "PATCH",
                url,
                {"topics": [topic + "t"], "user_id": "ava"},
                "topics.0: String should have at most 255 characters",
            ),
            ("POST", "/agents/helper/runs", {"message": pad}, f"message: {blank}"),
            (
                "POST",
                "/agents/helper/runs",
                {"message": "m" * 32_001},
                "message: String should have at most 32000 characters",
            ),
        ):
            r = client.request(method, path, json=body)
            assert (r.status_code, r.json()["detail"]) == (422, said), body
        ran = client.post(
            "/agents/helper/runs", json={"message": f" {'m' * 32_000}\n", "stream": False}
        )
        assert ran.status_code == 200, ran.text
        assert ran.json()["input"] == f" {'m' * 32_000}\n"  # the message is the agent's as sent
        ava = {"user_id": "ava", "search_type": "keyword"}
        found = client.get("/memories", params={**ava, "search_content": f" {'y' * 998} y "})
        assert found.status_code == 200, found.text
        for query, said in (
            (pad, blank),
            ("q" * 1001, "String should have at most 1000 characters"),
        ):
            r = client.get("/memories", params={**ava, "search_content": query})
            assert (r.status_code, r.json()["detail"]) == (422, f"query.search_content: {said}")


def test_update_refusals(client: TestClient) -> None:
    mid = add(client, "Ava likes tea")["memory_id"]
    nothing = client.patch(f"/memories/{mid}", params={"user_id": "ava"}, json={})
    assert nothing.status_code == 400
    assert "nothing to change" in nothing.json()["detail"]
    assert (
        client.patch(
            f"/memories/{mid}", params={"user_id": "ava"}, json={"memory": " "}
        ).status_code
        == 422
    )
    assert (
        client.patch(
            f"/memories/{mid}", params={"user_id": "ava"}, json={"memory": "x" * 5001}
        ).status_code
        == 422
    )
    missing = client.patch("/memories/nope", params={"user_id": "ava"}, json={"memory": "y"})
    assert missing.status_code == 404
    other_user = client.patch(f"/memories/{mid}", params={"user_id": "bob"}, json={"memory": "y"})
    assert other_user.status_code == 404
    no_user = client.patch(f"/memories/{mid}", json={"memory": "y"})
    assert no_user.status_code == 400
    assert "user_id is required" in no_user.json()["detail"]
    assert (
        client.get(f"/memories/{mid}", params={"user_id": "ava"}).json()["memory"]
        == "Ava likes tea"
    )


def test_update_takes_the_user_from_the_body_too(client: TestClient) -> None:
    mid = add(client, "Ava likes tea")["memory_id"]
    r = client.patch(f"/memories/{mid}", json={"memory": "Ava likes green tea", "user_id": "ava"})
    assert r.status_code == 200, r.text
    assert r.json()["memory"] == "Ava likes green tea"
    # the body's user is not silently ignored in favour of the query's
    clash = client.patch(
        f"/memories/{mid}", params={"user_id": "ava"}, json={"memory": "changed", "user_id": "bob"}
    )
    assert clash.status_code == 400
    assert "user_id" in clash.json()["detail"]
    same = client.patch(
        f"/memories/{mid}", params={"user_id": "ava"}, json={"topics": ["t"], "user_id": "ava"}
    )
    assert same.status_code == 200
    assert (
        client.get(f"/memories/{mid}", params={"user_id": "ava"}).json()["memory"]
        == "Ava likes green tea"
    )


def test_delete_many(client: TestClient, db: SqliteDb) -> None:
    ava = [add(client, f"ava fact {i}")["memory_id"] for i in range(3)]
    bob = add(client, "bob fact", user="bob")["memory_id"]
    r = client.request(
        "DELETE",
        "/memories",
        json={"memory_ids": [ava[0], ava[1], bob, "unknown"], "user_id": "ava"},
    )
    assert r.status_code == 200
    assert r.json() == {"deleted": 2}
    assert [m.memory_id for m in db.list_memories(MemoryQuery(user_id="ava"))] == [ava[2]]
    assert db.get_memory(bob, "bob") is not None
    no_user = client.request("DELETE", "/memories", json={"memory_ids": [ava[2]]})
    assert no_user.status_code == 400
    assert (
        client.request("DELETE", "/memories", json={"memory_ids": [], "user_id": "ava"}).status_code
        == 422
    )
    assert (
        client.request(
            "DELETE", "/memories", json={"memory_ids": ava[2], "user_id": "ava"}
        ).status_code
        == 422
    )
    assert (
        client.request(
            "DELETE", "/memories", json={"memory_ids": [" "], "user_id": "ava"}
        ).status_code
        == 400
    )
    assert db.get_memory(ava[2], "ava") is not None


# -- memories: list, filters, sort, pages, search ----------------------------------------


def test_list_pages(client: TestClient, db: SqliteDb) -> None:
    seed(db, *[(f"fact {i:02}", "ava", i, i) for i in range(25)], ("bob fact", "bob", 0, 0))
    first = client.get("/memories", params={"user_id": "ava", "limit": 10})
    assert first.json()["meta"] == {"page": 1, "limit": 10, "total_pages": 3, "total_count": 25}
    assert texts(first) == [f"fact {i:02}" for i in range(24, 14, -1)]
    third = client.get("/memories", params={"user_id": "ava", "limit": 10, "page": 3})
    assert texts(third) == [f"fact {i:02}" for i in range(4, -1, -1)]
    assert third.json()["meta"] == {"page": 3, "limit": 10, "total_pages": 3, "total_count": 25}
    past = client.get("/memories", params={"user_id": "ava", "limit": 10, "page": 4})
    assert texts(past) == []
    assert past.json()["meta"]["total_count"] == 25
    every = client.get("/memories", params={"limit": 100})
    assert every.json()["meta"]["total_count"] == 26
    assert len(texts(every)) == 26
    default = client.get("/memories")
    assert default.json()["meta"] == {"page": 1, "limit": 20, "total_pages": 2, "total_count": 26}
    empty = client.get("/memories", params={"user_id": "nobody"})
    assert empty.json() == {
        "data": [],
        "meta": {"page": 1, "limit": 20, "total_pages": 0, "total_count": 0},
    }
    for bad in ({"limit": 101}, {"limit": 0}, {"limit": -5}, {"page": 0}, {"page": -1}):
        r = client.get("/memories", params=bad)
        assert r.status_code == 422, bad
        assert next(iter(bad)) in r.json()["detail"]
    for huge in (
        {"page": 10**7},
        {"page": 10**40},
        {"limit": 10**40},
        {"page": "two"},
        {"page": "1.5"},
    ):
        assert client.get("/memories", params=huge).status_code == 422, huge
    last_allowed = client.get("/memories", params={"page": 1_000_000, "limit": 100})
    assert last_allowed.status_code == 200
    assert last_allowed.json()["data"] == []


def test_list_sort(client: TestClient, db: SqliteDb) -> None:
    seed(db, ("first", "ava", 1, 9), ("second", "ava", 2, 3), ("third", "ava", 3, 4))
    order = {
        ("updated_at", "desc"): ["first", "third", "second"],
        ("updated_at", "asc"): ["second", "third", "first"],
        ("created_at", "desc"): ["third", "second", "first"],
        ("created_at", "asc"): ["first", "second", "third"],
    }
    for (sort_by, sort_order), expected in order.items():
        r = client.get(
            "/memories", params={"user_id": "ava", "sort_by": sort_by, "sort_order": sort_order}
        )
        assert texts(r) == expected, (sort_by, sort_order)
    assert texts(client.get("/memories", params={"user_id": "ava"})) == order["updated_at", "desc"]
    paged = client.get(
        "/memories",
        params={
            "user_id": "ava",
            "sort_by": "created_at",
            "sort_order": "asc",
            "limit": 2,
            "page": 2,
        },
    )
    assert texts(paged) == ["third"]
    for bad in (
        {"sort_by": "memory"},
        {"sort_by": ""},
        {"sort_order": "up"},
        {"sort_by": "updated_at; drop"},
    ):
        r = client.get("/memories", params={"user_id": "ava", **bad})
        assert r.status_code == 422, bad
        assert "sort_" in r.json()["detail"]


def test_list_filters(client: TestClient) -> None:
    add(client, "Ava skis", topics=["sport", "winter"], agent_id="coach", team_id="red")
    add(client, "Ava swims", topics=["sport"], agent_id="coach")
    add(client, "Ava reads", topics=["books"], team_id="red")
    add(client, "Bob skis", user="bob", topics=["sport"], agent_id="coach")

    def listed(**params: Any) -> set[str]:
        return set(texts(client.get("/memories", params=params)))

    assert listed(user_id="ava") == {"Ava skis", "Ava swims", "Ava reads"}
    assert listed(user_id="bob") == {"Bob skis"}
    assert listed() == {"Ava skis", "Ava swims", "Ava reads", "Bob skis"}
    assert listed(agent_id="coach") == {"Ava skis", "Ava swims", "Bob skis"}
    assert listed(user_id="ava", agent_id="coach") == {"Ava skis", "Ava swims"}
    assert listed(team_id="red") == {"Ava skis", "Ava reads"}
    assert listed(user_id="ava", topics="winter") == {"Ava skis"}
    assert listed(user_id="ava", topics=["winter", "books"]) == {"Ava skis", "Ava reads"}
    assert listed(user_id="ava", topics="winter,books") == {"Ava skis", "Ava reads"}
    assert listed(user_id="ava", topics=" winter , books ") == {"Ava skis", "Ava reads"}
    assert listed(user_id="ava", topics=["winter,books", "sport"]) == {
        "Ava skis",
        "Ava reads",
        "Ava swims",
    }
    assert listed(user_id="ava", topics="nothing") == set()
    filtered = client.get(
        "/memories", params={"user_id": "ava", "topics": "sport", "limit": 1, "page": 2}
    )
    assert filtered.json()["meta"] == {"page": 2, "limit": 1, "total_pages": 2, "total_count": 2}
    assert client.get("/memories", params={"agent_id": ""}).status_code == 422
    assert client.get("/memories", params={"agent_id": " "}).status_code == 400


def test_a_topic_with_a_comma_can_be_asked_for(client: TestClient) -> None:
    add(client, "Ava plays a game", topics=["rock, paper, scissors"])
    add(client, "Ava climbs", topics=["rock"])
    add(client, "Ava writes", topics=["paper"])
    for forced_route in (False, True):  # the plain listing, and the route itself
        extra = [("page", "1"), ("page", "1")] if forced_route else []

        def listed(*topics: str, extra: list[tuple[str, str]] = extra) -> set[str]:
            params = [("user_id", "ava"), *(("topics", t) for t in topics), *extra]
            return set(texts(client.get("/memories", params=params)))

        assert listed("rock, paper, scissors") == {"Ava plays a game", "Ava climbs", "Ava writes"}
        assert listed("scissors") == set()
        assert listed("rock") == {"Ava climbs"}
        assert listed("paper", "rock, paper, scissors") == {
            "Ava plays a game",
            "Ava climbs",
            "Ava writes",
        }


def test_keyword_search(client: TestClient) -> None:
    add(client, "Ava likes to ski in winter")
    add(client, "Ava drinks green tea")
    add(client, "Ava skis with her ski club", topics=["club"])
    add(client, "Bob likes to ski", user="bob")
    r = client.get("/memories", params={"user_id": "ava", "search_content": "ski"})
    found = texts(r)
    assert set(found) == {"Ava likes to ski in winter", "Ava skis with her ski club"}
    assert found[0] == "Ava skis with her ski club"  # two matches rank first
    assert all(m["score"] > 0 for m in r.json()["data"])
    assert r.json()["meta"]["total_count"] == 2
    keyword = client.get(
        "/memories", params={"user_id": "ava", "search_content": "tea", "search_type": "keyword"}
    )
    assert texts(keyword) == ["Ava drinks green tea"]
    topic = client.get(
        "/memories", params={"user_id": "ava", "search_content": "ski", "topics": "club"}
    )
    assert texts(topic) == ["Ava skis with her ski club"]
    page2 = client.get(
        "/memories", params={"user_id": "ava", "search_content": "ski", "limit": 1, "page": 2}
    )
    assert texts(page2) == [found[1]]
    assert page2.json()["meta"] == {"page": 2, "limit": 1, "total_pages": 2, "total_count": 2}
    odd = client.get(
        "/memories", params={"user_id": "ava", "search_content": '"ski" OR (*:) AND %'}
    )
    assert odd.status_code == 200
    no_user = client.get("/memories", params={"search_content": "ski"})
    assert no_user.status_code == 400
    assert "needs a user_id" in no_user.json()["detail"]
    for text in ("\x00", "ski\x00"):
        nul = client.get("/memories", params={"user_id": "ava", "search_content": text})
        assert nul.status_code == 400
        assert nul.json()["detail"] == "search_content must not contain NUL characters"
    lone_type = client.get("/memories", params={"user_id": "ava", "search_type": "keyword"})
    assert lone_type.status_code == 400
    assert "search_type needs search_content" in lone_type.json()["detail"]
    assert (
        client.get(
            "/memories", params={"user_id": "ava", "search_content": "x", "search_type": "fuzzy"}
        ).status_code
        == 422
    )
    assert (
        client.get("/memories", params={"user_id": "ava", "search_content": ""}).status_code == 422
    )
    assert (
        client.get("/memories", params={"user_id": "ava", "search_content": "x" * 1001}).status_code
        == 422
    )


def test_semantic_search_needs_an_embedder(client: TestClient) -> None:
    add(client, "Ava likes to ski")
    assert client.get("/health").json()["semantic_search"] is False
    for kind in ("semantic", "hybrid"):
        r = client.get(
            "/memories", params={"user_id": "ava", "search_content": "sport", "search_type": kind}
        )
        assert r.status_code == 400, kind
        assert "embedder" in r.json()["detail"]
    # without a search_type the server picks what it can: keyword here
    assert texts(client.get("/memories", params={"user_id": "ava", "search_content": "ski"})) == [
        "Ava likes to ski"
    ]


def test_semantic_and_hybrid_search_with_the_local_embedder(db: SqliteDb) -> None:
    with LocalClient(create_app(db, embedder="local")) as client:
        assert client.get("/health").json()["semantic_search"] is True
        add(client, "Ava's daughter is named Mia")
        add(client, "Ava loves skiing in the Alps every winter")
        add(client, "Ava works as a nurse at the city hospital")
        add(client, "Bob loves snowboarding", user="bob")
        for kind in ("semantic", "hybrid", None):
            params = {"user_id": "ava", "search_content": "winter sports on snowy mountains"}
            if kind is not None:
                params["search_type"] = kind
            r = client.get("/memories", params=params)
            found = texts(r)
            assert found[0] == "Ava loves skiing in the Alps every winter", kind
            assert "Bob loves snowboarding" not in found
            scores = [m["score"] for m in r.json()["data"]]
            assert scores == sorted(scores, reverse=True)
        # the keyword index has no word of the query
        keyword = client.get(
            "/memories",
            params={
                "user_id": "ava",
                "search_content": "winter sports on snowy mountains",
                "search_type": "keyword",
            },
        )
        assert texts(keyword) == ["Ava loves skiing in the Alps every winter"]
        one = client.get(
            "/memories",
            params={
                "user_id": "ava",
                "search_content": "hospital job",
                "search_type": "semantic",
                "limit": 1,
            },
        )
        assert texts(one) == ["Ava works as a nurse at the city hospital"]
        assert one.json()["meta"]["total_pages"] == one.json()["meta"]["total_count"]


def test_a_hybrid_page_is_what_the_memory_api_gives_for_that_limit(db: SqliteDb) -> None:
    """Hybrid's scores depend on how deep it fuses, which follows the limit: a page over
    REST is the Python API's search of the same limit (a deeper one reorders the tail)."""
    memory = Memory(db=db, embedder="local")
    facts = user_facts(300)
    memory.add_user_memories(facts, user_id="ava")
    memory.add_user_memories([UserMemory("Ava drinks coffee at the piano")], user_id="bob")
    with LocalClient(create_app(db, embedder="local")) as client:
        for question in ("coffee and piano", "where does she live"):
            params = {"user_id": "ava", "search_content": question, "search_type": "hybrid"}
            first = client.get("/memories", params={**params, "limit": 10}).json()
            second = client.get("/memories", params={**params, "limit": 10, "page": 2}).json()
            ten = memory.search_user_memories(question, "ava", 10, "hybrid")
            twenty = memory.search_user_memories(question, "ava", 20, "hybrid")
            assert [(m["memory_id"], m["score"]) for m in first["data"]] == [
                (m.memory_id, m.score) for m in ten
            ]
            assert [m["memory_id"] for m in second["data"]] == [m.memory_id for m in twenty[10:]]
            assert first["meta"]["total_count"] == 300 == second["meta"]["total_count"]
            assert first["meta"]["total_pages"] == 30
        narrowed = client.get(
            "/memories",
            params={"user_id": "ava", "search_content": "x", "topics": "none-such", "limit": 5},
        ).json()
        assert narrowed == {"data": [], "meta": narrowed["meta"]}
        assert narrowed["meta"]["total_count"] == 0


class Words(BaseEmbedder):
    """Hashed word counts: enough to turn semantic and hybrid search on."""

    def __init__(self) -> None:
        super().__init__("test-words", 32)

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        rows = np.zeros((len(texts), 32), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                rows[i, zlib.crc32(word.encode()) % 32] += 1.0
        return rows


def test_a_hybrid_search_that_finds_fewer_than_asked_counts_what_it_found(
    db: SqliteDb,
) -> None:
    """Memories not embedded yet are found by their words only: the pages end where the
    matches do, not at the count of every memory the filters keep."""
    Memory(db).add_user_memories(
        [UserMemory(f"Note {i} about skiing") for i in range(25)]
        + [UserMemory(f"Note {i} about cooking") for i in range(25, 60)],
        user_id="ava",
    )
    memory = Memory(db, embedder=Words())
    assert memory.index is not None
    memory.index.embed_on_search = 0  # more waiting than a search embeds: none are
    with LocalClient(create_app(memory=memory)) as client:
        params = {"user_id": "ava", "search_content": "skiing", "search_type": "hybrid"}
        first = client.get("/memories", params={**params, "limit": 20}).json()
        assert len(first["data"]) == 20
        second = client.get("/memories", params={**params, "limit": 20, "page": 2}).json()
        assert len(second["data"]) == 5
        assert second["meta"] == {"page": 2, "limit": 20, "total_pages": 2, "total_count": 25}
        third = client.get("/memories", params={**params, "limit": 20, "page": 3}).json()
        assert third["data"] == []
        assert third["meta"]["total_pages"] == 2
        every = client.get("/memories", params={**params, "limit": 100}).json()
        assert every["meta"]["total_count"] == 25


# -- topics, stats, history -----------------------------------------------------------------


def test_topics(client: TestClient) -> None:
    add(client, "a", topics=["sport", "winter"])
    add(client, "b", topics=["sport", "books"])
    add(client, "c", user="bob", topics=["cars"])
    assert client.get("/memory_topics", params={"user_id": "ava"}).json() == [
        "books",
        "sport",
        "winter",
    ]
    assert client.get("/memory_topics", params={"user_id": "bob"}).json() == ["cars"]
    assert client.get("/memory_topics").json() == ["books", "cars", "sport", "winter"]
    assert client.get("/memory_topics", params={"user_id": "nobody"}).json() == []


def test_user_stats(client: TestClient, db: SqliteDb) -> None:
    seed(db, ("a1", "ava", 1, 1), ("a2", "ava", 2, 5), ("b1", "bob", 3, 9), ("c1", "cid", 0, 0))
    r = client.get("/user_memory_stats")
    assert r.status_code == 200
    rows = r.json()["data"]
    assert [(s["user_id"], s["memory_count"]) for s in rows] == [("bob", 1), ("ava", 2), ("cid", 1)]
    assert datetime.fromisoformat(rows[1]["last_updated"]) == T0 + timedelta(minutes=5)
    assert r.json()["meta"] == {"page": 1, "limit": 20, "total_pages": 1, "total_count": 3}
    page2 = client.get("/user_memory_stats", params={"limit": 2, "page": 2})
    assert [s["user_id"] for s in page2.json()["data"]] == ["cid"]
    assert page2.json()["meta"] == {"page": 2, "limit": 2, "total_pages": 2, "total_count": 3}
    assert client.get("/user_memory_stats", params={"limit": 101}).status_code == 422


def test_user_stats_of_the_users_whose_id_holds_a_text(client: TestClient, db: SqliteDb) -> None:
    seed(db, ("a1", "Ava", 1, 1), ("a2", "Ava", 2, 5), ("b1", "bob", 3, 9), ("d1", "dave", 0, 0))
    r = client.get("/user_memory_stats", params={"user_id_contains": "AV", "limit": 1})
    assert [(s["user_id"], s["memory_count"]) for s in r.json()["data"]] == [("Ava", 2)]
    assert r.json()["meta"] == {"page": 1, "limit": 1, "total_pages": 2, "total_count": 2}
    page2 = client.get(
        "/user_memory_stats", params={"user_id_contains": "av", "page": 2, "limit": 1}
    )
    assert [s["user_id"] for s in page2.json()["data"]] == ["dave"]
    none = client.get("/user_memory_stats", params={"user_id_contains": "zed"}).json()
    assert none == {
        "data": [],
        "meta": {"page": 1, "limit": 20, "total_pages": 0, "total_count": 0},
    }
    for bad in ("", " ", "a\x00b"):
        answer = client.get("/user_memory_stats", params={"user_id_contains": bad})
        assert answer.status_code in (400, 422), (bad, answer.text)


def test_history(client: TestClient) -> None:
    mid = add(client, "Ava likes tea", topics=["drinks"])["memory_id"]
    client.patch(f"/memories/{mid}", params={"user_id": "ava"}, json={"memory": "Ava likes coffee"})
    client.patch(f"/memories/{mid}", params={"user_id": "ava"}, json={"topics": ["morning"]})
    assert client.delete(f"/memories/{mid}", params={"user_id": "ava"}).status_code == 204
    r = client.get(f"/memories/{mid}/history", params={"user_id": "ava"})
    assert r.status_code == 200
    events = r.json()
    assert [e["event"] for e in events] == ["add", "update", "update", "delete"]
    assert (events[0]["old_memory"], events[0]["new_memory"]) == (None, "Ava likes tea")
    assert (events[1]["old_memory"], events[1]["new_memory"]) == (
        "Ava likes tea",
        "Ava likes coffee",
    )
    assert (events[2]["old_topics"], events[2]["new_topics"]) == (["drinks"], ["morning"])
    assert events[3]["old_memory"] == "Ava likes coffee"
    assert all(e["memory_id"] == mid and e["user_id"] == "ava" for e in events)
    assert all(e["actor"] == "api" for e in events)
    assert client.get(f"/memories/{mid}/history", params={"user_id": "bob"}).status_code == 404
    assert client.get("/memories/unknown/history", params={"user_id": "ava"}).status_code == 404
    assert client.get(f"/memories/{mid}/history").status_code == 400


def _damage_topics(db: SqliteDb, memory_id: str, stored: str = "[bad") -> None:
    """Write ``stored`` as the topics of ``memory_id`` behind the store's back (a
    hand-edited file)."""
    with sqlite3.connect(db.db_file) as connection:
        connection.execute(
            f"UPDATE {db.memory_table} SET topics = ? WHERE memory_id = ?", (stored, memory_id)
        )
    connection.close()


def test_a_memory_with_damaged_topics_is_listed_marked_and_can_be_repaired_or_deleted(
    tmp_path: Path,
) -> None:
    """A memory whose stored topics are damaged made its user's whole listing (the
    Memories page's) a 500, and so a search, GET /memory_topics and an agent run; on
    SQLite one holding JSON of another shape (``{"a": 1}``) was listed with that object as
    its topics. Every read now gives it with no topics and ``damaged`` saying what is
    wrong, beside the user's other memories; a PATCH of its text alone answers a 500
    naming it and saying to give its topics; a PATCH with topics repairs it; a DELETE
    records its text and no topics."""
    db = SqliteDb(tmp_path / "server.db")
    app = create_app(db, api_key="admin-key", token_secret="s" * 32)
    with LocalClient(app) as client:
        admin = {"Authorization": "Bearer admin-key"}
        token = client.post("/tokens", json={"user_id": "ava"}, headers=admin).json()["token"]
        ava = {"Authorization": f"Bearer {token}"}
        client.headers.update(admin)
        add(client, "Ava likes tea", topics=["food"])
        damaged = add(client, "Ava likes to ski", topics=["sport"])["memory_id"]
        odd = add(client, "Ava likes to row", topics=["sport"])["memory_id"]
        gone = add(client, "Ava skated once")["memory_id"]
        _damage_topics(db, damaged)
        _damage_topics(db, odd, '{"sport": 1}')
        reasons = {
            damaged: "not valid JSON (Expecting value): '[bad'",
            odd: """not a JSON list of strings: '{"sport": 1}'""",
        }
        params = {"user_id": "ava"}
        for headers in (ava, admin):
            for query in ({}, {"search_content": "Ava likes"}, {"limit": 2, "page": 2}):
                r = client.get("/memories", headers=headers, params={**params, **query})
                assert r.status_code == 200, r.text
                rows = r.json()["data"]
                assert len(rows) >= 2, query
                for m in rows:
                    if m["memory_id"] in reasons:
                        assert (m["topics"], m["damaged"]) == ([], reasons[m["memory_id"]])
                    else:
                        assert "damaged" not in m and all(isinstance(t, str) for t in m["topics"])
            r = client.get(f"/memories/{odd}", headers=headers, params=params)
            assert (r.status_code, r.json()["topics"], r.json()["damaged"]) == (
                200,
                [],
                reasons[odd],
            )
            r = client.get("/memory_topics", headers=headers, params=params)
            assert (r.status_code, r.json()) == (200, ["food"])  # the damaged ones have none
        said = f"memory {damaged!r} has damaged topics: {reasons[damaged]}"
        repair = "PATCH the memory with its topics to repair it, or DELETE it"
        url = f"/memories/{damaged}"
        r = client.patch(url, headers=ava, json={"memory": "Ava skis"})
        assert r.status_code == 500 and said in r.json()["detail"]  # the topics are needed
        assert repair in r.json()["detail"]
        r = client.patch(url, headers=ava, json={"memory": "Ava skis", "topics": ["sport"]})
        assert r.status_code == 200, r.text
        assert (r.json()["memory"], r.json()["topics"]) == ("Ava skis", ["sport"])
        assert "damaged" not in r.json()
        r = client.patch(f"/memories/{odd}", headers=ava, json={"topics": ["rowing"]})
        assert r.status_code == 200, r.text
        assert (r.json()["memory"], r.json()["topics"]) == ("Ava likes to row", ["rowing"])
        _damage_topics(db, gone)
        assert client.delete(f"/memories/{gone}", headers=ava).status_code == 204
        listed = client.get("/memories", headers=ava).json()["data"]
        assert [m["memory"] for m in listed] == ["Ava likes to row", "Ava skis", "Ava likes tea"]
        assert not any("damaged" in m for m in listed)
        for memory_id, event, text in (
            (damaged, "update", "Ava likes to ski"),
            (gone, "delete", "Ava skated once"),
        ):
            r = client.get(f"/memories/{memory_id}/history", headers=ava)
            assert r.status_code == 200, r.text
            last = r.json()[-1]
            assert (last["event"], last["old_memory"], last["old_topics"]) == (event, text, [])
    db.close()


# -- sessions ---------------------------------------------------------------------------------


def run(session: str, user: str, text: str, answer: str, minute: int = 0) -> RunResult:
    return RunResult(
        run_id=f"run_{session}_{minute}",
        session_id=session,
        user_id=user,
        agent_id="helper",
        input=text,
        content=answer,
        messages=[Message("user", text), Message("assistant", answer)],
        model="scripted",
        created_at=T0 + timedelta(minutes=minute),
    )


def test_sessions(client: TestClient, db: SqliteDb) -> None:
    db.append_run(run("s1", "ava", "hi", "hello", 1))
    db.append_run(run("s1", "ava", "how are you?", "fine", 2))
    db.set_session_summary("s1", "ava", SessionSummary("Ava said hi", ["greeting"], 2))
    db.append_run(run("s2", "ava", "bye", "see you", 3))
    db.append_run(run("s3", "bob", "yo", "hey", 4))

    listed = client.get("/sessions", params={"user_id": "ava"})
    assert listed.status_code == 200
    body = listed.json()
    assert [s["session_id"] for s in body["data"]] == ["s2", "s1"]
    assert body["meta"] == {"page": 1, "limit": 20, "has_more": False}
    assert "runs" not in body["data"][0]
    assert body["data"][1]["run_count"] == 2
    assert body["data"][1]["summary"]["summary"] == "Ava said hi"
    assert {s["session_id"] for s in client.get("/sessions").json()["data"]} == {"s1", "s2", "s3"}
    first = client.get("/sessions", params={"limit": 2}).json()
    assert len(first["data"]) == 2
    assert first["meta"]["has_more"] is True
    assert (
        client.get("/sessions", params={"limit": 2, "page": 2}).json()["meta"]["has_more"] is False
    )

    one = client.get("/sessions/s1")
    assert one.status_code == 200
    session = one.json()
    assert (session["user_id"], session["agent_id"], session["run_count"]) == ("ava", "helper", 2)
    assert [r["input"] for r in session["runs"]] == ["hi", "how are you?"]
    assert session["runs"][1]["messages"] == [
        {"role": "user", "content": "how are you?"},
        {"role": "assistant", "content": "fine"},
    ]
    assert session["summary"] == {
        "summary": "Ava said hi",
        "topics": ["greeting"],
        "run_count": 2,
        "updated_at": session["summary"]["updated_at"],
        "last_run_id": None,  # set by noted's own updates
    }
    assert client.get("/sessions/s1", params={"user_id": "ava"}).json() == session
    assert client.get("/sessions/s1", params={"user_id": "bob"}).status_code == 404
    assert client.get("/sessions/nope").status_code == 404

    assert client.delete("/sessions/s1", params={"user_id": "bob"}).status_code == 404
    gone = client.delete("/sessions/s1")
    assert gone.status_code == 204
    assert gone.content == b""
    assert db.get_session("s1", None) is None
    assert client.get("/sessions/s1").status_code == 404
    assert client.delete("/sessions/s1").status_code == 404
    assert db.get_session("s2", "ava") is not None


def test_a_session_is_answered_with_a_page_of_its_runs(client: TestClient, db: SqliteDb) -> None:
    """GET /sessions/{id} answered every run of a session: 2,000 runs of 20 kB were
    40 MB in one answer. Now a page of runs, the newest first, 20 unless asked."""
    for i in range(45):
        db.append_run(RunResult(run_id=f"r{i:02d}", session_id="s", user_id="ava", input=str(i)))
    first = client.get("/sessions/s").json()
    assert [r["run_id"] for r in first["runs"]] == [f"r{i:02d}" for i in range(25, 45)]
    assert first["run_count"] == 45
    meta = {"page": 1, "limit": 20, "total_pages": 3, "total_count": 45}
    assert first["runs_meta"] == meta
    last = client.get("/sessions/s", params={"runs_page": 3}).json()
    assert [r["run_id"] for r in last["runs"]] == [f"r{i:02d}" for i in range(5)]
    assert last["runs_meta"]["page"] == 3
    ten = client.get("/sessions/s", params={"runs_limit": 10, "runs_page": 2}).json()
    assert [r["run_id"] for r in ten["runs"]] == [f"r{i:02d}" for i in range(25, 35)]
    assert client.get("/sessions/s", params={"runs_page": 9}).json()["runs"] == []
    for bad in ({"runs_limit": 101}, {"runs_limit": 0}, {"runs_page": 0}):
        assert client.get("/sessions/s", params=bad).status_code == 422


def test_ids_with_a_slash_are_reached_like_any_other(db: SqliteDb) -> None:
    # a session id chosen in a run and a memory id given to the Memory API may hold a "/":
    # both were listed, and their own routes answered 404 Not Found (the "%2F" arrives
    # decoded, and no route took a "/" within an id)
    agent = Agent(ScriptedModel(["Noted."]), db=db, agent_id="helper")
    Memory(db).add_user_memory(UserMemory("Ava packs light", memory_id="trips/1"), "ava")
    with LocalClient(create_app(db, agent=agent)) as client:
        body = {"message": "hi", "user_id": "ava", "session_id": "trips/2024", "stream": False}
        assert client.post("/agents/helper/runs", json=body).status_code == 200
        listed = client.get("/sessions", params={"user_id": "ava"}).json()["data"]
        assert [s["session_id"] for s in listed] == ["trips/2024"]
        session = f"/sessions/{quote('trips/2024', safe='')}"
        assert client.get(session).json()["runs"][0]["content"] == "Noted."
        memory, ava = f"/memories/{quote('trips/1', safe='')}", {"user_id": "ava"}
        assert client.get(memory, params=ava).json()["memory"] == "Ava packs light"
        changed = client.patch(memory, params=ava, json={"topics": ["travel"]})
        assert changed.json()["topics"] == ["travel"]
        events = client.get(f"{memory}/history", params=ava).json()
        assert [e["event"] for e in events] == ["add", "update"]
        for method, path, allowed in (
            ("PUT", memory, "DELETE, GET, HEAD, PATCH"),
            ("PUT", f"{memory}/history", "GET, HEAD"),
            ("PATCH", f"{memory}/history", "GET, HEAD"),  # no memory's id ends in "/history"
            ("DELETE", "/memories/some-id/history", "GET, HEAD"),
            ("PUT", session, "DELETE, GET, HEAD"),
        ):
            answer = client.request(method, path)
            assert (answer.status_code, answer.headers["allow"]) == (405, allowed), path
        assert client.delete(memory, params=ava).status_code == 204
        assert client.delete(session).status_code == 204
        assert client.get("/memories/trips%2F2", params=ava).json()["detail"] == "no such memory"
        assert client.get("/sessions/trips").json()["detail"] == "no such session"
        assert client.get("/memories/", follow_redirects=False).status_code == 307
    assert db.get_session("trips/2024", "ava") is None
    assert db.get_memory("trips/1", "ava") is None


def test_an_id_ending_in_history_is_reached_by_its_own_path(db: SqliteDb) -> None:
    # the memory "x/history", sent as /memories/x%2Fhistory, was read as the history of
    # the memory "x" (its GET answered x's events, its PATCH and DELETE 405), and its own
    # history as the history's history (404); a "%" in an id is taken as sent
    memory = Memory(db)
    for memory_id in ("x", "x/history", "x/history/history", "50%", "a%2Fb"):
        memory.add_user_memory(UserMemory(f"About {memory_id}", memory_id=memory_id), "ava")
    ava = {"user_id": "ava"}
    with live_server(create_app(db, embedder=None)) as url, httpx.Client(base_url=url) as client:
        for memory_id in ("x/history", "x/history/history", "50%", "a%2Fb", "x"):
            path = f"/memories/{quote(memory_id, safe='')}"
            assert client.get(path, params=ava).json()["memory"] == f"About {memory_id}"
            events = client.get(f"{path}/history", params=ava).json()
            assert [(e["memory_id"], e["event"]) for e in events] == [(memory_id, "add")]
            changed = client.patch(path, params=ava, json={"topics": ["kept"]})
            assert (changed.status_code, changed.json()["memory_id"]) == (200, memory_id)
            assert client.delete(path, params=ava).status_code == 204
            assert memory.get_user_memory(memory_id, "ava") is None, memory_id
        # a "/" sent bare still reads as before: the history of the memory before it
        memory.add_user_memory(UserMemory("Back", memory_id="x"), "ava")
        assert client.get("/memories/x/history", params=ava).json()[-1]["memory_id"] == "x"
        assert client.patch("/memories/x/history", params=ava, json={}).status_code == 405


def test_every_id_is_reached_with_its_id_in_the_query(db: SqliteDb) -> None:
    # the memories and sessions "." and ".." were listed but out of reach: a browser (and
    # httpx, as here) resolves them away in a path, even sent as %2E
    memory = Memory(db)
    for memory_id in (".", "..", "x/history"):
        memory.add_user_memory(UserMemory(f"About {memory_id}", memory_id=memory_id), "ava")
        db.append_run(RunResult(f"r{memory_id}", memory_id, "ava", input="hi"))
    with LocalClient(create_app(db, embedder=None)) as client:
        for memory_id in (".", "..", "x/history"):
            ava = {"user_id": "ava", "memory_id": memory_id}
            assert client.get("/memory", params=ava).json()["memory"] == f"About {memory_id}"
            changed = client.patch("/memory", params=ava, json={"topics": ["kept"]})
            assert changed.json()["topics"] == ["kept"], changed.text
            events = client.get("/memory_history", params=ava).json()
            assert [(e["memory_id"], e["event"]) for e in events] == [
                (memory_id, "add"),
                (memory_id, "update"),
            ]
            assert client.delete("/memory", params=ava).status_code == 204
            assert client.get("/memory", params=ava).json()["detail"] == "no such memory"
            session = {"session_id": memory_id}
            assert client.get("/session", params=session).json()["session_id"] == memory_id
            assert client.delete("/session", params=session).status_code == 204
            assert client.get("/session", params=session).json()["detail"] == "no such session"
        assert client.get("/memory", params={"memory_id": "."}).status_code == 400  # no user
        refused = client.put("/memory")
        assert (refused.status_code, refused.headers["allow"]) == (405, "DELETE, GET, HEAD, PATCH")
    assert memory.get_user_memories("ava") == []
    assert db.list_sessions(None) == []


def test_a_user_id_with_whitespace_around_it_takes_no_new_memories_or_runs(
    db: SqliteDb,
) -> None:
    # POST /memories stored " ava" as a user beside "ava"; now 422, as a run for it is,
    # while what is stored under it (imported) is still read, changed and deleted
    Memory(db).import_user_memories([UserMemory("Likes tea", memory_id="tea", user_id=" ava")])
    agent = Agent(ScriptedModel(["Hello"]), db=db, agent_id="helper")
    said = "user_id: must not begin or end with whitespace (a stored one is still read)"
    with LocalClient(create_app(db, embedder=None, agent=agent)) as client:
        for user in (" ava", "ava ", "\u3000ava"):
            added = client.post("/memories", json={"memory": "Likes jazz", "user_id": user})
            assert (added.status_code, added.json()["detail"]) == (422, said)
            body = {"message": "hi", "user_id": user, "stream": False}
            ran = client.post("/agents/helper/runs", json=body)
            assert (ran.status_code, ran.json()["detail"]) == (422, said)
        spaced = {"user_id": " ava"}
        listed = client.get("/memories", params=spaced).json()["data"]
        assert [m["memory"] for m in listed] == ["Likes tea"]
        changed = client.patch("/memories/tea", params=spaced, json={"memory": "Likes green tea"})
        assert changed.json()["memory"] == "Likes green tea"
        assert client.delete("/memories/tea", params=spaced).status_code == 204
    assert Memory(db).get_user_stats() == []
    assert db.list_sessions(None) == []


def test_an_agent_id_with_a_slash_is_run(db: SqliteDb) -> None:
    # /agents/team%2Fhelper/runs matched no route (404 Not Found): the agent was listed
    # by GET /agents but could not be run
    agents = [
        Agent(ScriptedModel(["From the team."]), db=db, agent_id="team/helper"),
        Agent(ScriptedModel(["Half of it."]), db=db, agent_id="50%"),
    ]
    body = {"message": "hi", "user_id": "ava", "stream": False}
    app = create_app(db, embedder=None, agent=agents)
    with live_server(app) as url, httpx.Client(base_url=url) as client:
        listed = [a["agent_id"] for a in client.get("/agents").json()]
        assert sorted(listed) == ["50%", "team/helper"]
        for agent_id, said in (("team/helper", "From the team."), ("50%", "Half of it.")):
            ran = client.post(f"/agents/{quote(agent_id, safe='')}/runs", json=body)
            assert (ran.status_code, ran.json()["content"]) == (200, said), ran.text
        missing = client.post("/agents/team%2Fother/runs", json=body)
        assert missing.json()["detail"] == "no agent 'team/other' on this server"


# -- service routes ---------------------------------------------------------------------------


def test_a_sessions_runs_show_their_token_counts_and_parts(
    client: TestClient, db: SqliteDb
) -> None:
    kept = run("s1", "ava", "hi", "hello", 1)
    kept.metrics = RunMetrics(
        model_calls=1,
        input_tokens=2000,
        output_tokens=300,
        cache_read_tokens=1500,
        cache_write_tokens=400,
        reasoning_tokens=250,
    )
    db.append_run(kept)

    [shown] = client.get("/sessions/s1").json()["runs"]

    metrics = shown["metrics"]
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (2000, 300)
    assert (metrics["cache_read_tokens"], metrics["cache_write_tokens"]) == (1500, 400)
    assert metrics["reasoning_tokens"] == 250


def test_health_schema_docs_and_page(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "version": "0.1.0",
        "auth": "open",
        "semantic_search": False,
    }
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/memories",
        "/memories/{memory_id}",
        "/memories/{memory_id}/history",
        "/memory_topics",
        "/user_memory_stats",
        "/sessions",
        "/sessions/{session_id}",
        "/health",
        "/ready",
        "/tokens",
    ):
        assert path in paths, path
    assert "/agents/{agent_id}/runs" not in paths  # no agent on this server
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "/openapi.json" in docs.text
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/agents").status_code == 404


def test_create_app_refuses_bad_settings(db: SqliteDb, tmp_path: Path) -> None:
    from noted.errors import UserError

    with pytest.raises(UserError, match="max_body_bytes"):
        create_app(db, max_body_bytes=10)
    with pytest.raises(UserError, match="not both"):
        create_app(db, memory=Memory(db))
    with pytest.raises(UserError, match="API key"):
        create_app(db, api_key="  ")
    with pytest.raises(UserError, match="32 characters"):
        create_app(db, api_key="k", token_secret="short")
    agent = Agent(ScriptedModel([]), agent_id="same")
    with pytest.raises(UserError, match="two agents"):
        create_app(db, agent=[agent, Agent(ScriptedModel([]), agent_id="same")])
    # a path opens a SQLite store
    with LocalClient(create_app(str(tmp_path / "by_path.db"))) as c:
        assert add(c, "by path")["memory"] == "by path"
    assert (tmp_path / "by_path.db").exists()


# -- agents -----------------------------------------------------------------------------------


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        kind, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
        events.append((kind, json.loads("\n".join(data))))
    return events


@pytest.fixture
def helper(db: SqliteDb) -> Agent:
    return Agent(
        ScriptedModel(["Hello there, Ava!", "Second answer", "Third answer"]),
        db=db,
        agent_id="helper",
        name="Helper",
        description="answers",
        add_history_to_context=True,
    )


def test_agent_run_streams_server_sent_events(db: SqliteDb, helper: Agent) -> None:
    with LocalClient(create_app(db, agent=helper)) as client:
        agents = client.get("/agents")
        assert agents.json() == [
            {"agent_id": "helper", "name": "Helper", "description": "answers", "model": "scripted"}
        ]
        r = client.post(
            "/agents/helper/runs", json={"message": "Hi!", "user_id": "ava", "session_id": "s1"}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        events = parse_sse(r.text)
        kinds = [k for k, _ in events]
        assert kinds[0] == "run_started"
        assert kinds[-1] == "run_completed"
        assert set(kinds[1:-1]) == {"content"}
        assert len(kinds) >= 4  # the answer arrives in pieces
        started, completed = events[0][1], events[-1][1]
        assert started["user_id"] == "ava"
        assert started["session_id"] == "s1"
        assert "".join(d["text"] for k, d in events if k == "content") == "Hello there, Ava!"
        assert completed["run_id"] == started["run_id"]
        assert completed["content"] == "Hello there, Ava!"
        assert completed["status"] == "completed"

        stored = db.get_session("s1", "ava")
        assert stored is not None
        assert [(x.run_id, x.input, x.content) for x in stored.runs] == [
            (started["run_id"], "Hi!", "Hello there, Ava!")
        ]
        assert client.get("/sessions/s1").json()["run_count"] == 1

        plain = client.post(
            "/agents/helper/runs",
            json={"message": "And now?", "user_id": "ava", "session_id": "s1", "stream": False},
        )
        assert plain.status_code == 200
        assert plain.headers["content-type"] == "application/json"
        result = plain.json()
        assert (result["content"], result["session_id"], result["user_id"]) == (
            "Second answer",
            "s1",
            "ava",
        )
        assert db.get_session("s1", "ava").run_count == 2  # type: ignore[union-attr]
        # the history of the session was replayed to the model
        last = helper.model.requests[-1].messages  # type: ignore[attr-defined]
        assert [m.content for m in last if m.role == "user"] == ["Hi!", "And now?"]

        default_user = client.post(
            "/agents/helper/runs", json={"message": "who am I?", "stream": False}
        )
        assert default_user.json()["user_id"] == "default"


def test_agent_run_refusals(db: SqliteDb, helper: Agent) -> None:
    with LocalClient(create_app(db, agent=helper)) as client:
        unknown = client.post("/agents/nobody/runs", json={"message": "hi"})
        assert unknown.status_code == 404
        assert "nobody" in unknown.json()["detail"]
        assert client.post("/agents/helper/runs", json={"message": " "}).status_code == 422
        assert client.post("/agents/helper/runs", json={"message": ""}).status_code == 422
        assert client.post("/agents/helper/runs", json={}).status_code == 422
        assert (
            client.post(
                "/agents/helper/runs", json={"message": "hi", "stream": "maybe"}
            ).status_code
            == 422
        )
        assert (
            client.post("/agents/helper/runs", json={"message": "hi", "tools": []}).status_code
            == 422
        )
        assert client.post("/agents/helper/runs", json={"message": "x" * 32_001}).status_code == 422
        for lax in ("yes", "1", 1, 0):
            body = {"message": "hi", "stream": lax}
            assert client.post("/agents/helper/runs", json=body).status_code == 422, lax
        nul = client.post("/agents/helper/runs", json={"message": "I like\x00 to ski"})
        assert nul.status_code == 400
        assert nul.json()["detail"] == "message must not contain NUL characters"
        db.append_run(run("bobs", "bob", "hi", "hey"))
        # the admin key running in a session of another user than the one it names
        clash = client.post(
            "/agents/helper/runs", json={"message": "hi", "user_id": "ava", "session_id": "bobs"}
        )
        assert clash.status_code == 409
        assert helper.model.call_count == 0  # type: ignore[attr-defined]
        assert db.get_session("bobs", "bob").run_count == 1  # type: ignore[union-attr]


def test_agent_model_failure(db: SqliteDb) -> None:
    empty = Agent(ScriptedModel([]), db=db, agent_id="empty")
    with LocalClient(create_app(db, agent=empty)) as client:
        plain = client.post(
            "/agents/empty/runs", json={"message": "hi", "user_id": "ava", "stream": False}
        )
        assert plain.status_code == 502
        assert plain.json()["detail"].startswith("the model failed")
        streamed = client.post(
            "/agents/empty/runs", json={"message": "hi", "user_id": "ava", "session_id": "s"}
        )
        assert streamed.status_code == 200
        kinds = [k for k, _ in parse_sse(streamed.text)]
        assert kinds == ["run_started", "error"]
        failed = db.get_session("s", "ava")
        assert failed is not None
        assert [r.status for r in failed.runs] == ["failed"]


def test_a_model_that_fails_some_other_way_gets_a_json_answer_or_an_error_event(
    db: SqliteDb,
) -> None:
    def broken(messages: list[Message], tools: object) -> str:
        raise RuntimeError("the custom provider broke")

    agent = Agent(FunctionModel(broken), db=db, agent_id="broken")
    with LocalClient(create_app(db, agent=agent), raise_server_exceptions=False) as client:
        plain = client.post("/agents/broken/runs", json={"message": "hi", "stream": False})
        assert plain.status_code == 500
        assert plain.json() == {"detail": "the server failed to answer: see its log"}
        assert plain.headers["x-content-type-options"] == "nosniff"
        streamed = client.post("/agents/broken/runs", json={"message": "hi", "session_id": "s"})
        events = parse_sse(streamed.text)
        assert [k for k, _ in events] == ["run_started", "error"]
        assert events[-1][1] == {"detail": "the run failed: see the server's log"}


class RunsRefused(SqliteDb):
    """A store that cannot keep runs (locked by another writer, say)."""

    def append_run(self, run: RunResult, *, existing: bool | str = False) -> bool:
        raise StoreError("/srv/secret/noted.db: still locked by another writer after 30 s")


def test_a_store_failing_mid_stream_tells_its_address_to_the_admin_only(tmp_path: Path) -> None:
    db = RunsRefused(tmp_path / "m.db")
    agent = Agent(ScriptedModel(["Hello."] * 2), db=db, agent_id="a")
    app = create_app(db, agent=agent, api_key="admin-key", token_secret="s" * 32)
    with LocalClient(app) as client:
        admin = {"Authorization": "Bearer admin-key"}
        token = client.post("/tokens", json={"user_id": "ava"}, headers=admin).json()["token"]
        details = []
        for headers in ({"Authorization": f"Bearer {token}"}, admin):
            r = client.post(
                "/agents/a/runs", json={"message": "hi", "user_id": "ava"}, headers=headers
            )
            kind, data = parse_sse(r.text)[-1]
            assert kind == "error"
            assert data["run"]["content"] == "Hello."  # answered, not saved: the caller's
            details.append(data["detail"])
    assert details[0] == (
        "the run was answered but not saved: the store cannot answer: its address and "
        "error are in the log"
    )
    assert "/srv/secret/noted.db" in details[1]


# what a misbehaving gateway may answer: the key it was sent, and a host behind it
GATEWAY_SAYS = {"error": {"message": "upstream said key sk-SECRET123 at db.internal:5432"}}


@pytest.mark.parametrize(("status", "kind"), [(500, "ModelServerError"), (400, "ModelHTTPError")])
def test_what_a_model_provider_answered_is_the_admins_to_read(
    tmp_path: Path, wire: WireServer, caplog: pytest.LogCaptureFixture, status: int, kind: str
) -> None:
    """A user token reads the kind of a model's failure, in a 502, in a stream's error
    event and in the failed run read back; the admin key reads the provider's answer, and
    so does the log."""
    db = SqliteDb(tmp_path / "m.db")
    model = model_for(OpenAIChat, "gpt-4o-mini", wire.url + "/v1", api_key="sk-SECRET123")
    agent = Agent(model, db=db, agent_id="a")
    app = create_app(db, agent=agent, api_key="admin-key", token_secret="s" * 32)
    db.append_run(replace(run("gone", "ava", "hi", ""), status="failed", error=CANCELLED_RUN_ERROR))
    with LocalClient(app) as client:
        admin = {"Authorization": "Bearer admin-key"}
        token = client.post("/tokens", json={"user_id": "ava"}, headers=admin).json()["token"]
        seen: dict[str, list[str]] = {}
        for who, headers in (("user", {"Authorization": f"Bearer {token}"}), ("admin", admin)):
            texts = seen.setdefault(who, [])
            for stream in (False, True):
                wire.script[:] = [Reply(GATEWAY_SAYS, status=status)] * FAST.max_attempts
                body = {"message": "hi", "user_id": "ava", "stream": stream}
                r = client.post("/agents/a/runs", json={**body, "session_id": who}, headers=headers)
                if stream:
                    kinds, data = zip(*parse_sse(r.text), strict=True)
                    assert kinds == ("run_started", "error")
                    texts.append(data[-1]["detail"])
                else:
                    assert r.status_code == 502
                    texts.append(r.json()["detail"])
            session = client.get(f"/sessions/{who}", params={"user_id": "ava"}, headers=headers)
            texts += [r["error"] for r in session.json()["runs"]]
            gone = client.get("/sessions/gone", params={"user_id": "ava"}, headers=headers)
            assert gone.json()["runs"][0]["error"] == CANCELLED_RUN_ERROR  # noted's own text
    hidden = f"the model failed: {kind}, its message is in the log"
    assert seen["user"] == [hidden, hidden, HIDDEN_RUN_ERROR, HIDDEN_RUN_ERROR]
    for text in seen["admin"]:
        assert "sk-SECRET123 at db.internal:5432" in text
    assert seen["admin"][0].startswith(f"the model failed: openai answered HTTP {status}: ")
    assert "sk-SECRET123 at db.internal:5432" in caplog.text  # the operator reads it
    stored = db.get_session("user", "ava")
    assert stored is not None
    assert all("sk-SECRET123" in (r.error or "") for r in stored.runs)  # kept as it was


def test_agent_stream_arrives_while_the_model_is_still_answering(db: SqliteDb) -> None:
    """Over real HTTP: the run_started event reaches the client before the model answers."""
    seen_start = threading.Event()

    async def slow(messages: list[Message], tools: object) -> str:
        for _ in range(200):
            if seen_start.is_set():
                return "answered after the client saw the start"
            await asyncio.sleep(0.05)
        return "timed out: the stream was buffered"

    agent = Agent(FunctionModel(slow), db=db, agent_id="slow")
    with live_server(create_app(db, agent=agent)) as url:
        body = {"message": "hi", "user_id": "ava", "session_id": "live"}
        with (
            httpx.Client(base_url=url, timeout=30) as http,
            http.stream("POST", "/agents/slow/runs", json=body) as r,
        ):
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            text = ""
            for chunk in r.iter_text():
                text += chunk
                if "event: run_started" in text and not seen_start.is_set():
                    seen_start.set()
    events = parse_sse(text)
    assert events[0][0] == "run_started"
    assert events[-1][0] == "run_completed"
    assert events[-1][1]["content"] == "answered after the client saw the start"
    assert db.get_session("live", "ava").run_count == 1  # type: ignore[union-attr]


def test_a_session_deleted_while_its_run_answers_stays_deleted(db: SqliteDb) -> None:
    """DELETE /sessions/{id} while POST /agents/{id}/runs of that session is answering: the
    run still answers its caller, and its save does not bring the conversation back."""
    held = HeldAnswer("and now?")
    agent = Agent(held.model, db=db, agent_id="helper")
    body = {"message": "and now?", "user_id": "ava", "session_id": "trip", "stream": False}
    answers: list[httpx.Response] = []
    with live_server(create_app(db, agent=agent)) as url, httpx.Client(base_url=url) as http:
        first = {**body, "message": "hello"}
        assert http.post("/agents/helper/runs", json=first, timeout=30).status_code == 200
        running = threading.Thread(
            target=lambda: answers.append(http.post("/agents/helper/runs", json=body, timeout=30))
        )
        running.start()
        assert held.asked.wait(30)
        assert http.delete("/sessions/trip", params={"user_id": "ava"}).status_code == 204
        held.release.set()
        running.join(30)
        [answer] = answers
        assert answer.status_code == 200, answer.text
        assert answer.json()["content"] == "Noted."
        assert http.get("/sessions/trip").status_code == 404
        assert http.get("/sessions").json()["data"] == []


def test_a_client_that_leaves_mid_stream(db: SqliteDb) -> None:
    """The run is kept as failed, and the server goes on answering."""
    release = threading.Event()

    async def slow(messages: list[Message], tools: object) -> str:
        for _ in range(200):
            if release.is_set():
                break
            await asyncio.sleep(0.02)
        return "too late"

    agent = Agent(FunctionModel(slow), db=db, agent_id="slow")
    with (
        live_server(create_app(db, agent=agent)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        body = {"message": "hi", "user_id": "ava", "session_id": "left"}
        with http.stream("POST", "/agents/slow/runs", json=body) as r:
            assert next(r.iter_text()).startswith("event: run_started")
        release.set()
        deadline = time.monotonic() + 10
        while db.get_session("left", "ava") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/health").status_code == 200
        session = db.get_session("left", "ava")
        assert session is not None
        assert [run.status for run in session.runs] == ["failed"]
        assert session.runs[0].error is not None
        assert session.runs[0].error.startswith("cancelled: the caller stopped the run")
        again = http.post("/agents/slow/runs", json={**body, "stream": False})
        assert again.status_code == 200
        assert again.json()["content"] == "too late"


# -- bad input --------------------------------------------------------------------------------


def post_raw(
    client: TestClient, body: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post("/memories", content=body, headers=headers)


def test_malformed_json_and_wrong_shapes(client: TestClient) -> None:
    for body in (b"{bad", b'{"memory": "x"', b'{"memory": "x",}', b"   ", b"\xff\xfe{"):
        r = post_raw(client, body)
        assert r.status_code in (400, 422), body
        assert "the request body is not valid JSON" in r.json()["detail"], (body, r.text)
    for depth in (100_000, 500_000):
        nested = post_raw(client, b'{"memory": ' + b"[" * depth + b"]" * depth + b"}")
        assert nested.status_code == 400
        assert nested.json()["detail"] == (
            "the request body is not valid JSON: "
            "it is nested too deeply (arrays or objects inside each other)"
        )
    assert "not UTF-8 text" in post_raw(client, b"\xff\xfe{").json()["detail"]
    huge = post_raw(client, b'{"memory": ' + b"9" * 5000 + b', "user_id": "ava"}')
    assert huge.status_code == 400
    assert huge.json()["detail"] == (
        "the request body is not valid JSON: it cannot be read "
        "(Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)"
    )
    for body in (b"[1, 2]", b"null", b'"text"', b"42"):
        r = post_raw(client, body)
        assert r.status_code == 422, body
        assert "JSON object" in r.json()["detail"], (body, r.text)
    missing = post_raw(client, b"")
    assert missing.status_code == 422
    assert "body" in missing.json()["detail"]
    for sent, said in (
        ("text/plain", "sent as text/plain"),
        ("text/plain; charset=utf-8", "sent as text/plain"),
        ("application/x-www-form-urlencoded", "sent as application/x-www-form-urlencoded"),
        (None, "sent without a Content-Type"),
    ):
        wrong_type = post_raw(client, b'{"memory": "x", "user_id": "ava"}', sent)
        assert wrong_type.status_code == 415, (sent, wrong_type.text)
        assert wrong_type.json() == {
            "detail": "the request body must be JSON, sent as Content-Type: application/json "
            f"(it was {said})"
        }
    for sent in ("application/json; charset=utf-8", "application/merge-patch+json"):
        taken = post_raw(client, b'{"memory": "x", "user_id": "ava"}', sent)
        assert taken.status_code == 201, (sent, taken.text)
        client.delete(f"/memories/{taken.json()['memory_id']}", params={"user_id": "ava"})
    empty_text = post_raw(client, b"", "text/plain")  # no body at all: still missing
    assert empty_text.status_code == 422 and "missing" in empty_text.json()["detail"]
    for body in (
        {"memory": 5},
        {"memory": ["x"]},
        {"memory": "x", "topics": "sport"},
        {"memory": "x", "topics": [1]},
        {"memory": "x", "user_id": 7},
        {"memory": "x", "input": {"a": 1}},
        {"memory": "x", "topics": ["t"] * 51},
        {"memory": "x", "user_id": ""},
        {"memory": "x", "user_id": "u" * 256},
    ):
        r = client.post("/memories", json=body)
        assert r.status_code == 422, body
        assert r.json()["errors"], body
    unknown = client.post("/memories", json={"memory": "x", "user_id": "ava", "memory_id": "mine"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "memory_id: Extra inputs are not permitted"
    assert (
        client.patch("/memories/x", params={"user_id": "ava"}, json={"text": "x"}).status_code
        == 422
    )
    assert (
        client.request("DELETE", "/memories", json={"ids": ["x"], "user_id": "ava"}).status_code
        == 422
    )
    assert client.get("/memories", params={"user_id": "ava"}).json()["data"] == []


def test_text_that_no_store_can_keep_is_refused(client: TestClient) -> None:
    for body in (
        {"memory": "a\x00b"},
        {"memory": "ok", "topics": ["a\x00"]},
        {"memory": "ok", "input": "\x00"},
        {"memory": "ok", "agent_id": "\x00"},
    ):
        r = client.post("/memories", json={"user_id": "ava", **body})
        assert r.status_code == 400, body
        assert "NUL" in r.json()["detail"]
    for raw in (
        rb'{"memory": "a\ud800b", "user_id": "ava"}',
        rb'{"memory": "ok", "topics": ["\udfff"], "user_id": "ava"}',
        rb'{"memory": "ok", "user_id": "\ud83d"}',
    ):
        r = post_raw(client, raw)
        assert r.status_code == 400, raw
        assert "Unicode" in r.json()["detail"], r.text
    assert client.get("/memories", params={"user_id": "a\x00"}).status_code == 400
    assert client.get("/memories/a%00b", params={"user_id": "ava"}).status_code == 400
    # a URL whose escapes are not UTF-8 reads as replacement characters, and finds nothing
    assert client.get("/memories?user_id=%ED%A0%80").json()["data"] == []
    assert client.get("/memories/%ED%A0%80?user_id=ava").status_code == 404
    assert client.get("/memories", params={"user_id": "ava"}).json()["data"] == []


@pytest.mark.parametrize(
    "text",
    [
        "Ava 🏔️ loves ⛷️ and 👩‍👧",
        "שלום, אבה אוהבת סקי",
        "مرحبا \u200fAva\u200f",  # right-to-left marks
        "e\u0301le\u0300ve Z\u0335\u0321a\u0336l\u0334g\u0338o",
        "\u200b\u200dzero width\ufeff",
        "\U0001d518\U0001d52b\U0001d526 \u210c",  # letters outside the BMP
    ],
)
def test_unicode_round_trips(client: TestClient, text: str) -> None:
    user = f"user-{text[:6]}".rstrip()  # a user id takes no whitespace around it
    created = client.post(
        "/memories", json={"memory": text, "user_id": user, "topics": [text[:10]]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["memory"] == text.strip()
    assert body["topics"] == [text[:10].strip()]
    assert body["user_id"] == user
    got = client.get(f"/memories/{body['memory_id']}", params={"user_id": user})
    assert got.json() == body
    listed = client.get("/memories", params={"user_id": user, "topics": text[:10].strip()})
    assert texts(listed) == [text.strip()]
    assert client.get("/memory_topics", params={"user_id": user}).json() == [text[:10].strip()]
    assert created.headers["content-type"] == "application/json"
    assert text.strip().encode() in created.content  # UTF-8 on the wire, not \u escapes


def test_ids_of_256_characters_and_empty_strings(client: TestClient) -> None:
    mid = add(client, "fact")["memory_id"]
    long = "m" * 256
    for method, path in (
        ("GET", f"/memories/{long}"),
        ("PATCH", f"/memories/{long}"),
        ("DELETE", f"/memories/{long}"),
        ("GET", f"/memories/{long}/history"),
        ("GET", f"/sessions/{long}"),
        ("DELETE", f"/sessions/{long}"),
    ):
        r = client.request(
            method,
            path,
            params={"user_id": "ava"},
            json={"memory": "y"} if method == "PATCH" else None,
        )
        assert r.status_code == 422, (method, path)
        assert "at most 255" in r.json()["detail"]
    assert client.get(f"/memories/{'m' * 255}", params={"user_id": "ava"}).status_code == 404
    for params in (
        {"user_id": ""},
        {"user_id": "u" * 256},
        {"team_id": ""},
        {"agent_id": "a" * 256},
    ):
        assert client.get("/memories", params=params).status_code == 422, params
    assert client.get(f"/memories/{mid}", params={"user_id": ""}).status_code == 422
    assert client.get(f"/memories/{mid}", params={"user_id": "u" * 256}).status_code == 422
    # empty topics filter nothing
    assert texts(client.get("/memories", params={"topics": ""})) == ["fact"]
    assert texts(client.get("/memories", params={"topics": " , "})) == ["fact"]
    assert client.get("/memories/%20", params={"user_id": "ava"}).status_code == 400
    assert client.get("/sessions/%20").status_code == 400
    assert client.get("/sessions/").status_code == 200  # redirected to the listing


def test_oversized_bodies_are_refused_before_they_are_read(db: SqliteDb) -> None:
    with LocalClient(create_app(db, max_body_bytes=4096)) as client:
        ok = client.post("/memories", json={"memory": "x" * 3000, "user_id": "ava"})
        assert ok.status_code == 201
        big = client.post("/memories", json={"memory": "x" * 5000, "user_id": "ava"})
        assert big.status_code == 413
        assert big.json() == {"detail": "the request body is larger than 4096 bytes"}

        def chunks() -> Iterator[bytes]:
            yield b'{"memory": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'", "user_id": "ava"}'

        chunked = client.post(
            "/memories", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        bulk = client.request(
            "DELETE", "/memories", json={"memory_ids": ["i" * 200] * 30, "user_id": "ava"}
        )
        assert bulk.status_code == 413
        assert client.get("/memories", params={"user_id": "ava"}).json()["meta"]["total_count"] == 1


def _raw_post(url: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """POST /memories with exactly these headers and body bytes, sent in one piece (a
    server that answers early then finds the whole request read, not a broken pipe)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        conn.connect()
        assert conn.sock is not None
        request = f"POST /memories HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n"
        conn.sock.sendall(request.encode() + body)
        response = http.client.HTTPResponse(conn.sock, method="POST")
        response.begin()
        return response.status, response.read()
    finally:
        conn.close()


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_oversized_bodies_over_real_http(db: SqliteDb) -> None:
    with live_server(create_app(db, max_body_bytes=4096)) as url:
        json_type = {"Content-Type": "application/json"}
        # a declared size over the limit is refused at once: the body is never sent
        status, body = _raw_post(url, {**json_type, "Content-Length": str(10**9)})
        assert status == 413
        assert json.loads(body) == {"detail": "the request body is larger than 4096 bytes"}
        # a chunked body (no Content-Length) is counted as it arrives
        chunked = {**json_type, "Transfer-Encoding": "chunked"}
        big = _chunked(b'{"memory": "', *[b"z" * 1000] * 6, b'", "user_id": "ava"}')
        status, body = _raw_post(url, chunked, big)
        assert status == 413
        assert json.loads(body) == {"detail": "the request body is larger than 4096 bytes"}
        small = _chunked(b'{"memory": "', b"z" * 1000, b'", "user_id": "ava"}')
        status, body = _raw_post(url, chunked, small)
        assert status == 201, body
        payload = json.dumps({"memory": "w" * 100, "user_id": "ava"}).encode()
        status, _ = _raw_post(url, {**json_type, "Content-Length": str(len(payload))}, payload)
        assert status == 201
        with httpx.Client(base_url=url) as http:
            assert (
                http.get("/memories", params={"user_id": "ava"}).json()["meta"]["total_count"] == 2
            )


# A sweep of odd inputs over every route: whatever comes in, the answer is never a 5xx.
ODD_VALUES = [
    "",
    " ",
    "\x00",
    "\ufffd",
    "💥",
    "a" * 300,
    "-1",
    "0",
    "null",
    "../..",
    "%00",
    "[]",
    "{}",
]


def test_no_input_gives_a_server_error(db: SqliteDb) -> None:
    echo = Agent(FunctionModel(lambda messages, tools: "ok"), db=db, agent_id="helper")
    with LocalClient(create_app(db, agent=echo), raise_server_exceptions=True) as client:
        mid = add(client, "fact", topics=["t"])["memory_id"]
        db.append_run(run("s1", "ava", "hi", "hello"))
        seen: set[int] = set()
        for value in ODD_VALUES:
            for params in (
                {"user_id": value},
                {"agent_id": value},
                {"team_id": value},
                {"topics": value},
                {"user_id": "ava", "search_content": value},
                {"page": value},
                {"limit": value},
                {"sort_by": value},
                {"sort_order": value},
            ):
                seen.add(client.get("/memories", params=params).status_code)
            segment = quote(value, safe="")
            for path in (
                f"/memories/{segment}",
                f"/memories/{segment}/history",
                f"/sessions/{segment}",
            ):
                seen.add(client.get(path, params={"user_id": "ava"}).status_code)
            seen.add(client.delete(f"/sessions/{segment}").status_code)
            seen.add(client.delete(f"/memories/{segment}", params={"user_id": "ava"}).status_code)
            seen.add(client.get("/memory_topics", params={"user_id": value}).status_code)
            seen.add(client.get("/user_memory_stats", params={"page": value}).status_code)
            seen.add(client.get("/sessions", params={"user_id": value, "limit": value}).status_code)
            for body in (
                {"memory": value, "user_id": "ava"},
                {"memory": "m", "user_id": value},
                {"memory": "m", "user_id": "ava", "topics": [value]},
            ):
                seen.add(client.post("/memories", json=body).status_code)
            seen.add(
                client.patch(
                    f"/memories/{mid}", params={"user_id": "ava"}, json={"topics": [value]}
                ).status_code
            )
            seen.add(
                client.request(
                    "DELETE", "/memories", json={"memory_ids": [value], "user_id": "ava"}
                ).status_code
            )
            seen.add(client.post("/tokens", json={"user_id": value}).status_code)
            seen.add(client.post(f"/agents/{segment}/runs", json={"message": "hi"}).status_code)
            seen.add(
                client.post(
                    "/agents/helper/runs",
                    json={"message": "hi", "session_id": value, "stream": False},
                ).status_code
            )
        assert max(seen) < 500, sorted(seen)
        assert {200, 400, 404, 422} <= seen


def _assert_store_down(r: httpx.Response, path: Path) -> None:
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert detail.startswith("the store cannot answer: ") and str(path) in detail, detail


def test_a_broken_database_file_answers_503_and_health_still_answers(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 500)
    with LocalClient(create_app(SqliteDb(junk)), raise_server_exceptions=True) as client:
        for path in ("/memories", "/memories?user_id=ava", "/user_memory_stats", "/sessions"):
            _assert_store_down(client.get(path), junk)
        _assert_store_down(client.post("/memories", json={"memory": "m", "user_id": "ava"}), junk)
        _assert_store_down(client.get("/ready"), junk)
        assert client.get("/health").json()["status"] == "ok"
    assert junk.read_bytes() == b"this is not a database" * 500  # nothing written over it


def test_ready_answers_once_the_store_answers(store: Store) -> None:
    with LocalClient(create_app(store), raise_server_exceptions=True) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        add(client, "fact")  # the probe's reads leave nothing behind
        assert texts(client.get("/memories", params={"user_id": "ava"})) == ["fact"]
        assert client.get("/sessions", params={"user_id": "ava"}).json()["data"] == []


@pytest.mark.parametrize("kind", ["postgres", "redis", "mongo"])
def test_ready_is_503_while_the_database_server_cannot_be_reached(kind: str) -> None:
    """/health says the process lives; /ready that its store answers (a port nobody
    listens on refuses the connection, as a stopped server's does)."""
    url = {
        "postgres": f"postgresql://noted@127.0.0.1:{free_port()}/noted",
        "redis": f"redis://127.0.0.1:{free_port()}/0",
        "mongo": f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500",
    }[kind]
    with LocalClient(create_app(open_store(url)), raise_server_exceptions=True) as client:
        answer = client.get("/ready")
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"].startswith("the store cannot answer: ")
        assert client.get("/health").json()["status"] == "ok"


def test_a_database_file_broken_while_serving_answers_503(tmp_path: Path) -> None:
    path = tmp_path / "good.db"
    store = SqliteDb(path)
    with LocalClient(create_app(store), raise_server_exceptions=True) as client:
        add(client, "fact", topics=["t"])
        assert texts(client.get("/memories", params={"user_id": "ava"})) == ["fact"]
        store.close()
        with path.open("r+b") as f:  # the header and the first pages overwritten
            f.write(b"\0" * 16384)
        for params in (
            {"user_id": "ava"},  # the plain listing, answered before the framework
            {"user_id": "ava", "limit": "5", "topics": "t"},
            {"user_id": "ava", "search_content": "fact"},
        ):
            _assert_store_down(client.get("/memories", params=params), path)
        _assert_store_down(client.get("/memory_topics"), path)
        _assert_store_down(client.post("/memories", json={"memory": "m", "user_id": "ava"}), path)


def test_405_lists_the_allowed_methods(client: TestClient) -> None:
    for method, path, allowed in (
        ("OPTIONS", "/memories", "DELETE, GET, HEAD, POST"),
        ("PUT", "/memories/some-id", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/memories/some-id/history", "GET, HEAD"),
        ("POST", "/sessions/s1", "DELETE, GET, HEAD"),
        ("DELETE", "/health", "GET, HEAD"),
        ("GET", "/tokens", "POST"),
    ):
        answer = client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["allow"] == allowed, (method, path)
        assert answer.json()["detail"] == f"{method} is not allowed here: use {allowed}"


def test_head_is_answered_as_get_without_the_body(db: SqliteDb) -> None:
    # a health check or uptime monitor asking with HEAD (curl -I) got 405 from every route
    memory_id = Memory(db).add_user_memory(UserMemory("Ava likes tea"), "ava")
    with live_server(create_app(db)) as url:
        for path in (
            "/health",
            "/ready",
            "/memories?user_id=ava",  # the plain listing, answered before the framework
            "/memories?user_id=ava&search_content=tea",
            f"/memories/{memory_id}?user_id=ava",
            f"/memories/{memory_id}/history?user_id=ava",
            "/",
            "/openapi.json",
        ):
            got, head = httpx.get(url + path), httpx.head(url + path)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers["content-length"] == str(len(got.content)), path
            assert (
                head.headers["content-security-policy"] == got.headers["content-security-policy"]
            ), path
        assert httpx.head(f"{url}/memories/nope?user_id=ava").status_code == 404
        refused = httpx.head(f"{url}/tokens")
        assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
        assert httpx.get(f"{url}/memories", params={"user_id": "ava"}).json()["data"]


def test_the_schema_states_what_the_admin_must_name(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for method, path in (
        ("get", "/memories/{memory_id}"),
        ("get", "/memories/{memory_id}/history"),
        ("delete", "/memories/{memory_id}"),
    ):
        operation = paths[path][method]
        user = next(p for p in operation["parameters"] if p["name"] == "user_id")
        assert user["required"] is True, path
        assert "admin key" in user["description"]
        assert "400" in operation["responses"]
    assert "user_id" in schema["components"]["schemas"]["BulkDelete"]["required"]
    assert "400" in paths["/memories"]["get"]["responses"]
    links = paths["/sessions"]["get"]["responses"]["200"]["links"]
    assert links["GetSession"]["parameters"]["session_id"] == "$response.body#/data/0/session_id"
    created = paths["/memories"]["post"]["responses"]["201"]["links"]
    assert set(created) == {"GetMemory", "ChangeMemory", "DeleteMemory"}
    text = schema["components"]["schemas"]["MemoryCreate"]["properties"]["memory"]
    assert "\\u0000" in text["pattern"]
    # an admin request without the user still answers 400, as documented
    assert client.get("/memories/some-id").status_code == 400
