"""The server's admin key and user tokens: who may call what, and a user token's walls.

A user token (a JWT whose ``sub`` is a user id) confines every request to that user's
memories and sessions: naming another user, or another user's memory or session id,
answers 404 and changes nothing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from conftest import server_url
from held_model import HeldAnswer
from live_server import LocalClient, live_server
from noted import (
    Agent,
    Memory,
    MemoryQuery,
    Message,
    RunResult,
    SessionSummary,
    SqliteDb,
    Store,
    UserMemory,
)
from noted.errors import UserError
from noted.server import create_app, issue_token
from noted.testing import ScriptedModel
from servers import Server

KEY = "admin-key-0123456789abcdef0123456789"
SECRET = "token-secret-" + "0123456789abcdef" * 4
ADMIN = {"Authorization": f"Bearer {KEY}"}
_tables = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTED_API_KEY", raising=False)
    monkeypatch.delenv("NOTED_TOKEN_SECRET", raising=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iss": "noted", "iat": now, "exp": now + 600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDb]:
    store = SqliteDb(tmp_path / "auth.db")
    yield store
    store.close()


@pytest.fixture
def client(db: SqliteDb) -> Iterator[TestClient]:
    with LocalClient(create_app(db, api_key=KEY, token_secret=SECRET)) as c:
        yield c


def user_token(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/tokens", json={"user_id": user}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


# Every route that reads or writes data, with a body where it takes one.
DATA_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/memories", None),
    ("GET", "/memories?user_id=ava&search_content=ski", None),
    ("POST", "/memories", {"memory": "x", "user_id": "ava"}),
    ("DELETE", "/memories", {"memory_ids": ["m1"], "user_id": "ava"}),
    ("GET", "/memories/m1?user_id=ava", None),
    ("PATCH", "/memories/m1?user_id=ava", {"memory": "changed"}),
    ("DELETE", "/memories/m1?user_id=ava", None),
    ("GET", "/memories/m1/history?user_id=ava", None),
    ("GET", "/memory_topics", None),
    ("GET", "/user_memory_stats", None),
    ("GET", "/sessions", None),
    ("GET", "/sessions/s1", None),
    ("DELETE", "/sessions/s1", None),
    ("GET", "/agents", None),
    ("POST", "/agents/helper/runs", {"message": "hi", "user_id": "ava", "stream": False}),
    ("POST", "/tokens", {"user_id": "ava"}),
]


@pytest.fixture
def keyed(db: SqliteDb) -> Iterator[TestClient]:
    """A server with the admin key (its token secret derived from the key) and an agent,
    holding one memory and one session of ava."""
    Memory(db).add_user_memory(UserMemory("Ava likes to ski", memory_id="m1"), "ava")
    db.append_run(
        RunResult(run_id="r1", session_id="s1", user_id="ava", input="hi", content="hello")
    )
    agent = Agent(ScriptedModel(["answer"]), db=db, agent_id="helper")
    with LocalClient(create_app(db, api_key=KEY, agent=agent)) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "body"), DATA_ROUTES, ids=[f"{m} {p}" for m, p, _ in DATA_ROUTES]
)
def test_every_data_route_needs_the_key(
    keyed: TestClient, db: SqliteDb, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = _everything(db)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"Authorization": "Bearer "},
        {"Authorization": f"bearer  {KEY[:-1]}"},
    ):
        r = keyed.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"]
    assert _everything(db) == before
    admin = keyed.request(method, path, json=body, headers=ADMIN)
    assert admin.status_code < 300, admin.text
    # the scheme is case-insensitive and surrounding blanks do not matter
    again = keyed.request(method, path, json=body, headers={"Authorization": f"bearer   {KEY}  "})
    assert again.status_code not in (401, 403)


def _everything(db: SqliteDb) -> tuple[Any, ...]:
    memories = [m.to_dict() for m in db.list_memories(MemoryQuery(user_id=None))]
    sessions = [s.to_dict() for s in db.list_sessions(None)]
    return memories, sessions


def test_service_routes_are_open(keyed: TestClient) -> None:
    health = keyed.get("/health")
    assert health.status_code == 200
    assert health.json()["auth"] == "api_key"
    assert keyed.get("/openapi.json").status_code == 200
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/").status_code == 200
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/memories"]["get"]["security"] == [{"HTTPBearer": []}]


def test_the_error_messages_say_what_is_wrong(keyed: TestClient) -> None:
    assert "missing credentials" in keyed.get("/sessions").json()["detail"]
    assert (
        "Bearer <key or token>"
        in keyed.get("/sessions", headers={"Authorization": "Token x"}).json()["detail"]
    )
    assert (
        keyed.get("/sessions", headers=bearer("nope")).json()["detail"]
        == "invalid API key or token"
    )


# -- tokens -----------------------------------------------------------------------------------


def test_tokens_are_issued_by_the_admin_only(client: TestClient) -> None:
    r = client.post("/tokens", json={"user_id": "alice", "expires_in": 120}, headers=ADMIN)
    assert r.status_code == 201
    body = r.json()
    assert (body["token_type"], body["user_id"], body["expires_in"]) == ("bearer", "alice", 120)
    decoded = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer="noted")
    assert decoded["sub"] == "alice"
    assert 115 <= decoded["exp"] - time.time() <= 121
    alice = bearer(body["token"])
    assert client.get("/memories", headers=alice).status_code == 200

    by_user = client.post("/tokens", json={"user_id": "bob"}, headers=alice)
    assert by_user.status_code == 403
    assert "admin" in by_user.json()["detail"]
    assert client.post("/tokens", json={"user_id": "alice"}, headers=alice).status_code == 403
    assert client.post("/tokens", json={"user_id": "bob"}).status_code == 401
    for bad in (
        {"user_id": ""},
        {"user_id": "u" * 256},
        {"user_id": "bob", "expires_in": 0},
        {"user_id": "bob", "expires_in": 365 * 24 * 3600 + 1},
        {"user_id": "bob", "expires_in": "soon"},
        {"user_id": "bob", "expires_in": "60"},
        {"user_id": "bob", "expires_in": True},
        {"user_id": "bob", "scope": "all"},
        {},
    ):
        assert client.post("/tokens", json=bad, headers=ADMIN).status_code == 422, bad
    assert client.post("/tokens", json={"user_id": " "}, headers=ADMIN).status_code == 400


def _forged() -> dict[str, str]:
    now = int(time.time())
    header, payload, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    other_payload = jwt.encode(claims(sub="bob"), "x" * 40, algorithm="HS256").split(".")[1]
    return {
        "expired": jwt.encode(claims(iat=now - 7200, exp=now - 3600), SECRET, algorithm="HS256"),
        "another secret": jwt.encode(
            claims(), "another-secret-0123456789abcdef012345", algorithm="HS256"
        ),
        "alg none": jwt.encode(claims(), None, algorithm="none"),
        "alg none, no signature": jwt.encode(claims(), None, algorithm="none").rstrip(".") + ".",
        "HS512": jwt.encode(claims(), SECRET, algorithm="HS512"),
        "another issuer": jwt.encode(claims(iss="someone"), SECRET, algorithm="HS256"),
        "no exp": jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        "no sub": jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
        "no iss": jwt.encode(claims(iss=None), SECRET, algorithm="HS256"),
        "empty sub": jwt.encode(claims(sub=""), SECRET, algorithm="HS256"),
        "blank sub": jwt.encode(claims(sub="  "), SECRET, algorithm="HS256"),
        "number sub": jwt.encode(claims(sub=7), SECRET, algorithm="HS256"),
        "NUL in sub": jwt.encode(claims(sub="a\x00b"), SECRET, algorithm="HS256"),
        "long sub": jwt.encode(claims(sub="u" * 256), SECRET, algorithm="HS256"),
        "swapped payload": f"{header}.{other_payload}.{signature}",
        "no signature": f"{header}.{payload}.",
        "malformed": "not.a.token",
        "two parts": f"{header}.{payload}",
        "garbage": "%%%%",
        "the secret itself": SECRET,
    }


FORGED = _forged()


@pytest.mark.parametrize("name", list(FORGED))
def test_tokens_that_are_refused(client: TestClient, db: SqliteDb, name: str) -> None:
    token = bearer(FORGED[name])
    for method, path, body in (
        ("GET", "/memories", None),  # the plain listing (answered before the routes)
        ("GET", "/memories?user_id=alice&page=1&page=1", None),
        ("GET", "/sessions", None),
        ("POST", "/memories", {"memory": "planted"}),
        ("POST", "/tokens", {"user_id": "alice"}),
    ):
        r = client.request(method, path, json=body, headers=token)
        assert r.status_code == 401, (name, path, r.text)
    assert db.list_memories(MemoryQuery(user_id=None)) == []
    if name == "expired":
        assert client.get("/sessions", headers=token).json()["detail"] == "the token has expired"


def test_a_revocation_before_the_first_day_of_the_calendar_revokes_nothing(
    client: TestClient,
) -> None:
    # 0001-01-01 at +14:00 is the last day of year 0 in UTC: the cutoff was written, then
    # telling it as a time failed and the admin got a 500
    alice = user_token(client, "alice")
    for before in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"):
        r = client.post(
            "/tokens/revocations", json={"user_id": "alice", "before": before}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        assert r.json()["revoked_before"] == "0001-01-01T00:00:00.000000+00:00"
    assert client.get("/memories", headers=alice).status_code == 200


def test_issue_token_and_secrets(db: SqliteDb) -> None:
    token = issue_token("alice", SECRET, expires_in=60)
    with LocalClient(create_app(db, api_key=KEY, token_secret=SECRET)) as c:
        assert (
            c.post("/memories", json={"memory": "mine"}, headers=bearer(token)).json()["user_id"]
            == "alice"
        )
    # a server whose secret is derived from its key does not take tokens signed otherwise
    with LocalClient(create_app(db, api_key=KEY)) as c:
        assert c.get("/memories", headers=bearer(token)).status_code == 401
        derived = user_token(c, "alice")
        assert c.get("/memories", headers=derived).json()["meta"]["total_count"] == 1
    with LocalClient(create_app(db, api_key="another-admin-key")) as c:
        assert c.get("/memories", headers=derived).status_code == 401
    with pytest.raises(UserError, match="32 characters"):
        issue_token("alice", "short")
    with pytest.raises(UserError, match="expires_in"):
        issue_token("alice", SECRET, expires_in=0)
    with pytest.raises(UserError, match="user_id"):
        issue_token("", SECRET)


def test_the_key_and_secret_come_from_the_environment(
    db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTED_API_KEY", KEY)
    monkeypatch.setenv("NOTED_TOKEN_SECRET", SECRET)
    with LocalClient(create_app(db)) as c:
        assert c.get("/memories").status_code == 401
        assert c.get("/memories", headers=ADMIN).status_code == 200
        token = issue_token("alice", SECRET)
        assert c.get("/memories", headers=bearer(token)).status_code == 200
    # an explicit argument wins over the environment
    with LocalClient(create_app(db, api_key="explicit-key")) as c:
        assert c.get("/memories", headers=ADMIN).status_code == 401
        assert c.get("/memories", headers=bearer("explicit-key")).status_code == 200


def test_an_open_server(db: SqliteDb) -> None:
    with LocalClient(create_app(db)) as c:
        assert c.get("/health").json()["auth"] == "open"
        assert c.get("/memories").status_code == 200
        refused = c.get("/memories", headers=bearer("some-token"))
        assert refused.status_code == 401
        assert "accepts no tokens" in refused.json()["detail"]
        assert c.post("/tokens", json={"user_id": "alice"}).status_code == 400
    # without a key but with a secret: no credentials is the admin, a token is its user
    Memory(db).add_user_memory(UserMemory("bob's", memory_id="b1"), "bob")
    with LocalClient(create_app(db, token_secret=SECRET)) as c:
        assert c.get("/memories").json()["meta"]["total_count"] == 1
        alice = bearer(issue_token("alice", SECRET))
        assert c.get("/memories", headers=alice).json()["data"] == []
        assert c.get("/memories/b1", params={"user_id": "bob"}, headers=alice).status_code == 404


# -- isolation ----------------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    store: Store
    agent: Agent
    alice: dict[str, str]
    ids: dict[str, str]


@pytest.fixture
def world(store: Store) -> Iterator[World]:
    """alice and bob, each with memories (one of bob's deleted) and a session with a
    summary, on every backend; requests come with alice's token."""
    memory = Memory(store)
    ids = {
        "am": memory.add_user_memory(UserMemory("Alice likes tea", topics=["drinks"]), "alice"),
        "bm": memory.add_user_memory(UserMemory("Bob's secret plan", topics=["secrets"]), "bob"),
        "bd": memory.add_user_memory(UserMemory("Bob's old secret", topics=["secrets"]), "bob"),
    }
    memory.replace_user_memory(
        ids["bm"], UserMemory("Bob's secret plan, revised", topics=["secrets"]), "bob"
    )
    assert memory.delete_user_memory(ids["bd"], "bob")
    for user, session in (("alice", "as"), ("bob", "bs")):
        store.append_run(
            RunResult(
                run_id=f"run-{session}",
                session_id=session,
                user_id=user,
                input="hello",
                content="hi",
                messages=[Message("user", "hello"), Message("assistant", "hi")],
            )
        )
        store.set_session_summary(
            session, user, SessionSummary(f"{user} said hello", ["greeting"], 1)
        )
    ids.update({"as": "as", "bs": "bs"})
    agent = Agent(ScriptedModel(["one", "two", "three"]), db=store, agent_id="helper")
    with LocalClient(create_app(store, api_key=KEY, token_secret=SECRET, agent=agent)) as client:
        yield World(client, store, agent, bearer(issue_token("alice", SECRET)), ids)


def snapshot(world: World, user: str) -> dict[str, Any]:
    """Everything a user has: memories, every memory's history (the deleted one's too),
    sessions with their runs and summary, topics."""
    store = world.store
    memories = sorted(
        (m.to_dict() for m in store.list_memories(MemoryQuery(user_id=user))),
        key=lambda m: m["memory_id"],
    )
    history = {
        mid: [e.to_dict() for e in store.get_memory_history(mid, user)]
        for mid in world.ids.values()
    }
    sessions = []
    for listed in store.list_sessions(user):
        whole = store.get_session(listed.session_id, user)
        assert whole is not None
        sessions.append(whole.to_dict())
    return {
        "memories": memories,
        "history": history,
        "sessions": sessions,
        "topics": store.get_topics(user),
    }


# What alice's token may not do to bob: each names bob, or one of bob's ids.
ATTACKS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("list bob's", "GET", "/memories?user_id=bob", None),
    ("list bob's (route)", "GET", "/memories?user_id=bob&page=1&page=1", None),
    ("list bob's topics", "GET", "/memories?user_id=bob&topics=secrets", None),
    ("search bob's", "GET", "/memories?user_id=bob&search_content=secret", None),
    ("create for bob", "POST", "/memories", {"memory": "planted", "user_id": "bob"}),
    ("get bob's memory", "GET", "/memories/{bm}", None),
    ("get bob's memory naming bob", "GET", "/memories/{bm}?user_id=bob", None),
    ("get own memory naming bob", "GET", "/memories/{am}?user_id=bob", None),
    ("update bob's memory", "PATCH", "/memories/{bm}", {"memory": "hacked"}),
    ("update bob's memory naming bob", "PATCH", "/memories/{bm}?user_id=bob", {"topics": ["x"]}),
    (
        "update bob's memory, bob in body",
        "PATCH",
        "/memories/{bm}",
        {"memory": "hacked", "user_id": "bob"},
    ),
    (
        "update own memory, bob in body",
        "PATCH",
        "/memories/{am}",
        {"memory": "hacked", "user_id": "bob"},
    ),
    ("update own memory naming bob", "PATCH", "/memories/{am}?user_id=bob", {"memory": "hacked"}),
    ("delete bob's memory", "DELETE", "/memories/{bm}", None),
    ("delete bob's memory naming bob", "DELETE", "/memories/{bm}?user_id=bob", None),
    ("bulk delete naming bob", "DELETE", "/memories", {"memory_ids": ["{bm}"], "user_id": "bob"}),
    (
        "bulk delete own naming bob",
        "DELETE",
        "/memories",
        {"memory_ids": ["{am}"], "user_id": "bob"},
    ),
    ("bob's history", "GET", "/memories/{bm}/history", None),
    ("bob's deleted memory's history", "GET", "/memories/{bd}/history", None),
    ("bob's history naming bob", "GET", "/memories/{bd}/history?user_id=bob", None),
    ("bob's topics", "GET", "/memory_topics?user_id=bob", None),
    ("bob's sessions", "GET", "/sessions?user_id=bob", None),
    ("bob's session", "GET", "/sessions/{bs}", None),
    ("bob's session naming bob", "GET", "/sessions/{bs}?user_id=bob", None),
    ("own session naming bob", "GET", "/sessions/{as}?user_id=bob", None),
    ("delete bob's session", "DELETE", "/sessions/{bs}", None),
    ("delete bob's session naming bob", "DELETE", "/sessions/{bs}?user_id=bob", None),
    (
        "run in bob's session",
        "POST",
        "/agents/helper/runs",
        {"message": "hi", "session_id": "{bs}"},
    ),
    (
        "run in bob's session, no stream",
        "POST",
        "/agents/helper/runs",
        {"message": "hi", "session_id": "{bs}", "stream": False},
    ),
    ("run as bob", "POST", "/agents/helper/runs", {"message": "hi", "user_id": "bob"}),
    (
        "run as bob, new session",
        "POST",
        "/agents/helper/runs",
        {"message": "hi", "user_id": "bob", "session_id": "new"},
    ),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def test_a_user_token_cannot_reach_another_user(world: World) -> None:
    """Every attack of ATTACKS, on every backend: 404, and nobody's data changed."""
    failures = []
    for name, method, path, body in ATTACKS:
        before = snapshot(world, "bob"), snapshot(world, "alice")
        r = world.client.request(
            method, _fill(path, world.ids), json=_fill(body, world.ids), headers=world.alice
        )
        if r.status_code != 404 or r.headers["content-type"] != "application/json":
            failures.append(f"{name}: {r.status_code} {r.text[:200]}")
        elif "bob" in r.text.lower():
            failures.append(f"{name}: the answer tells about bob: {r.text[:200]}")
        if (snapshot(world, "bob"), snapshot(world, "alice")) != before:
            failures.append(f"{name}: the data changed")
    assert failures == []
    assert world.agent.model.call_count == 0  # type: ignore[attr-defined]
    # the admin still sees bob's data whole
    assert world.store.get_session("bs", "bob") is not None
    assert world.store.get_memory(world.ids["bm"], "bob") is not None
    assert [e.event for e in world.store.get_memory_history(world.ids["bd"], "bob")] == [
        "add",
        "delete",
    ]


def test_what_a_user_token_sees_without_naming_anyone(world: World) -> None:
    client, alice, ids = world.client, world.alice, world.ids
    bob_before = snapshot(world, "bob")
    listed = client.get("/memories", headers=alice).json()
    assert [m["memory"] for m in listed["data"]] == ["Alice likes tea"]
    assert listed["meta"]["total_count"] == 1
    routed = client.get("/memories?page=1&page=1", headers=alice).json()
    assert routed == listed
    assert client.get("/memories", params={"user_id": "alice"}, headers=alice).json() == listed
    assert client.get("/memory_topics", headers=alice).json() == ["drinks"]
    assert [
        s["user_id"] for s in client.get("/user_memory_stats", headers=alice).json()["data"]
    ] == ["alice"]
    assert [s["session_id"] for s in client.get("/sessions", headers=alice).json()["data"]] == [
        "as"
    ]
    assert (
        client.get("/sessions/as", headers=alice).json()["summary"]["summary"] == "alice said hello"
    )
    found = client.get("/memories", params={"search_content": "tea"}, headers=alice).json()["data"]
    assert [m["memory"] for m in found] == ["Alice likes tea"]
    assert (
        client.get("/memories", params={"search_content": "secret"}, headers=alice).json()["data"]
        == []
    )

    created = client.post("/memories", json={"memory": "Alice skis"}, headers=alice)
    assert created.status_code == 201
    assert created.json()["user_id"] == "alice"
    new = created.json()["memory_id"]
    assert client.get(f"/memories/{new}", headers=alice).status_code == 200
    assert client.patch(f"/memories/{new}", json={"topics": ["sport"]}, headers=alice).json()[
        "topics"
    ] == ["sport"]
    assert (
        client.patch(
            f"/memories/{new}",
            json={"memory": "Alice skis a lot", "user_id": "alice"},
            headers=alice,
        ).status_code
        == 200
    )
    assert [e["event"] for e in client.get(f"/memories/{new}/history", headers=alice).json()] == [
        "add",
        "update",
        "update",
    ]
    # bob's ids in a bulk delete are not alice's: nothing of his is deleted
    mixed = client.request(
        "DELETE", "/memories", json={"memory_ids": [new, ids["bm"], ids["bd"]]}, headers=alice
    )
    assert mixed.json() == {"deleted": 1}
    bobs_only = client.request(
        "DELETE", "/memories", json={"memory_ids": [ids["bm"]]}, headers=alice
    )
    assert bobs_only.status_code == 200
    assert bobs_only.json() == {"deleted": 0}  # the same answer as for an id that does not exist
    assert client.delete(f"/memories/{ids['am']}", headers=alice).status_code == 204

    run = client.post("/agents/helper/runs", json={"message": "hi", "stream": False}, headers=alice)
    assert run.status_code == 200
    assert run.json()["user_id"] == "alice"
    streamed = client.post(
        "/agents/helper/runs", json={"message": "again", "session_id": "as"}, headers=alice
    )
    assert streamed.status_code == 200
    assert "event: run_completed" in streamed.text
    assert world.store.get_session("as", "alice").run_count == 2  # type: ignore[union-attr]
    assert client.delete("/sessions/as", headers=alice).status_code == 204
    assert snapshot(world, "bob") == bob_before


def test_a_session_another_user_opens_while_a_stream_answers_is_no_session(
    db: SqliteDb,
) -> None:
    """Bob's streamed run names a new session; while it answers, alice opens a session of
    that id. Bob's run is not saved in alice's session, and his stream ends as a run refused
    up front is answered: no such session, nothing about whose it is."""
    held = HeldAnswer("hello?")
    agent = Agent(held.model, db=db, agent_id="helper")
    app = create_app(db, api_key=KEY, token_secret=SECRET, agent=agent)
    alice = bearer(issue_token("alice", SECRET))
    bob = bearer(issue_token("bob", SECRET))
    streamed: list[str] = []

    def bobs_run(http: httpx.Client) -> None:
        body = {"message": "hello?", "session_id": "shared"}
        with http.stream("POST", "/agents/helper/runs", json=body, headers=bob) as r:
            assert r.status_code == 200
            streamed.append("".join(r.iter_text()))

    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        running = threading.Thread(target=bobs_run, args=(http,))
        running.start()
        assert held.asked.wait(30)
        first = {"message": "hi", "session_id": "shared", "stream": False}
        assert http.post("/agents/helper/runs", json=first, headers=alice).status_code == 200
        held.release.set()
        running.join(30)
    [text] = streamed
    last = text.strip().split("\n\n")[-1]
    assert last == 'event: error\ndata: {"detail": "no such session"}', text
    session = db.get_session("shared", "alice")
    assert session is not None
    assert [run.input for run in session.runs] == ["hi"]


@pytest.mark.parametrize(
    ("headers", "answered"),
    [
        ({"Host": "127.0.0.1:7777"}, True),
        ({"Host": "localhost"}, True),
        ({"Host": "[::1]:7777"}, True),
        ({"Host": "LOCALHOST:7777", "Origin": "http://localhost:5173"}, True),
        ({"Host": "attacker.example:7777"}, False),  # a name rebound to 127.0.0.1
        ({"Host": "127.0.0.1.attacker.example"}, False),
        ({"Host": "127.0.0.1:7777", "Origin": "http://attacker.example"}, False),
        ({"Host": "127.0.0.1:7777", "Origin": "null"}, False),
        ({"Host": "localhost@attacker.example"}, False),
    ],
)
def test_without_a_key_only_requests_for_this_machine_are_answered(
    db: SqliteDb, headers: dict[str, str], answered: bool
) -> None:
    """Without a key every request is the admin: a page whose name is made to resolve to
    127.0.0.1 (DNS rebinding) must not read the memories through it."""
    with LocalClient(create_app(db)) as c:
        for path in ("/memories", "/user_memory_stats", "/health", "/"):
            got = c.get(path, headers=headers)
            if answered:
                assert got.status_code == 200, (path, got.text)
            else:
                assert got.status_code == 421, (path, got.text)
                assert "set NOTED_API_KEY" in got.json()["detail"]
        refused = c.post("/memories", json={"memory": "m", "user_id": "ava"}, headers=headers)
        assert (refused.status_code == 201) == answered
    assert len(Memory(db=db).get_user_memories(user_id="ava")) == int(answered)


def test_with_a_key_any_name_is_served(db: SqliteDb) -> None:
    with LocalClient(create_app(db, api_key=KEY)) as c:
        got = c.get("/memories", headers={"Host": "memories.example.com", **ADMIN})
        assert got.status_code == 200, got.text
    with LocalClient(create_app(db, local_only=False)) as c:  # behind a proxy of its own
        assert c.get("/memories", headers={"Host": "memories.internal"}).status_code == 200


def test_only_the_admin_reads_where_a_failing_store_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 500)
    user = bearer(issue_token("ava", SECRET))
    with LocalClient(create_app(SqliteDb(junk), api_key=KEY, token_secret=SECRET)) as c:
        for headers, path in ((ADMIN, "/memories"), (user, "/memories"), ({}, "/ready")):
            got = c.get(path, headers=headers, params={"user_id": "ava"})
            assert got.status_code == 503, got.text
            detail = got.json()["detail"]
            assert detail.startswith("the store cannot answer: ")
            assert (str(junk) in detail) == (headers is ADMIN), detail
    assert str(junk) in caplog.text  # the operator reads it in the log


class SlowRevocations(SqliteDb):
    """A store whose revocation read waits until released (a locked or distant store)."""

    entered: threading.Event
    release: threading.Event

    def tokens_revoked_before(self, user_id: str) -> float | None:
        self.entered.set()
        self.release.wait(10)
        return super().tokens_revoked_before(user_id)


def test_a_user_tokens_check_does_not_stall_the_other_requests(tmp_path: Path) -> None:
    # The check reads the store's revocations: on the event loop, one slow read froze every
    # connection, /health included, until it ended.
    db = SlowRevocations(tmp_path / "m.db")
    db.entered, db.release = threading.Event(), threading.Event()
    token = issue_token("ava", SECRET)
    with live_server(create_app(db, api_key=KEY, token_secret=SECRET)) as url:
        answers: list[int] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                httpx.get(
                    f"{url}/sessions", headers={"Authorization": f"Bearer {token}"}
                ).status_code
            )
        )
        waiting.start()
        assert db.entered.wait(10)  # the token's request reads the revocations
        started = time.monotonic()
        health = httpx.get(f"{url}/health", timeout=10)
        took = time.monotonic() - started
        db.release.set()
        waiting.join(10)
    assert health.status_code == 200 and took < 2, took
    assert answers == [200]


@pytest.mark.parametrize(
    ("locked", "path", "who"),
    [
        ("revocations", "/memories", "token"),  # the token's check
        ("memories", "/memories", "admin"),  # the listing answered before the framework
        ("memories", "/memories?user_id=ava&ordered=1", "admin"),  # and by the route
    ],
)
def test_a_listing_waiting_for_postgresql_does_not_stall_the_other_requests(
    servers: dict[str, Server | str], locked: str, path: str, who: str
) -> None:
    # A listing waits while PostgreSQL holds its table locked (a migration, VACUUM FULL):
    # read on the event loop, it froze every connection, /health included, until it ended.
    from psycopg import connect

    from noted.db.postgres import PostgresDb

    url = server_url(servers, "postgres")
    table = f"stall{next(_tables)}"
    db = PostgresDb(url, memory_table=table, session_table=f"{table}_sessions")
    app = create_app(db, api_key=KEY, token_secret=SECRET)
    headers = ADMIN if who == "admin" else bearer(issue_token("ava", SECRET))
    answers: list[int] = []
    try:
        Memory(db).add_user_memory(UserMemory("Ava likes to ski"), "ava")
        db.revoke_tokens("nobody", time.time())
        with live_server(app) as served, connect(url) as holder:
            name = table if locked == "memories" else f"{table}_revoked"
            holder.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            waiting = threading.Thread(
                target=lambda: answers.append(
                    httpx.get(f"{served}{path}", headers=headers, timeout=30).status_code
                )
            )
            waiting.start()
            time.sleep(0.5)  # the listing waits for the lock
            started = time.monotonic()
            health = httpx.get(f"{served}/health", timeout=10)
            took = time.monotonic() - started
            holder.rollback()
            waiting.join(30)
    finally:
        db.close()
    assert health.status_code == 200 and took < 2, took
    assert answers == [200]
