"""``noted mcp --http`` and ``noted serve --mcp`` through the MCP SDK's own client over
streamable HTTP on 127.0.0.1: user tokens reach their own user only, whatever the
arguments; the admin key may name a user; the REST API reads what the tools wrote."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from conftest import server_url
from mcp_client import Connected, Loop, http, module_db
from noted import Memory, MemoryQuery, SqliteDb, UserMemory
from noted.cli import main
from noted.server.auth import Auth
from servers import Server, free_port
from test_server_cli import clean_env, serve

KEY = "mcp-admin-key-0123456789abcdef0123456789"
NOTED = str(Path(sys.executable).parent / "noted")
MCP_CALL = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDb]:
    yield from module_db(tmp_path_factory.mktemp("mcp-http"))


@pytest.fixture(scope="module")
def db_file(db: SqliteDb) -> Path:
    return Path(db.db_file)


@contextlib.contextmanager
def mcp_http(
    db_file: Path, *options: str, db: str | None = None, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``noted mcp --http`` process on a free port serving ``db_file`` (or the store
    ``db`` names, its log still beside ``db_file``), with ``env`` added to its
    environment, once it answers: the process and its endpoint. Killed on the way out if
    it still runs."""
    port = free_port()
    command = [NOTED, "mcp", "--http", "--port", str(port), "--db", db or str(db_file)]
    command += ["--embedder", "none", "--user", "house", *options]
    log = db_file.parent / "mcp-http.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env(NOTED_API_KEY=KEY, **env),
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(endpoint, json={}, timeout=2).status_code == 401:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, endpoint
    finally:
        process.kill()
        process.wait(20)


@pytest.fixture(scope="module")
def url(db_file: Path) -> Iterator[str]:
    """One ``noted mcp --http`` process for the module."""
    with mcp_http(db_file) as (process, endpoint):
        yield endpoint
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def token(user: str) -> str:
    return Auth(KEY).issue(user)


@pytest.fixture(scope="module")
def clients(url: str, loop: Loop) -> Iterator[dict[str, Connected]]:
    opened = {
        "ava": Connected(loop, http(url, token("ava"))),
        "bob": Connected(loop, http(url, token("bob"))),
        "admin": Connected(loop, http(url, KEY)),
    }
    yield opened
    for client in opened.values():
        client.close()


def everything(db: SqliteDb) -> list[dict[str, Any]]:
    return [m.to_dict() for m in db.list_memories(MemoryQuery(user_id=None))]


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "missing credentials"),
        ({"Authorization": "Bearer not-a-token"}, "invalid API key or token"),
        (
            {"Authorization": f"Bearer {Auth('another-key-0123456789abcdef0123').issue('ava')}"},
            "invalid",
        ),
    ],
)
def test_requests_without_accepted_credentials_get_401(
    url: str, headers: dict[str, str], says: str
) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer = httpx.post(url, json=call, headers={**MCP_CALL, **headers}, timeout=10)
    assert answer.status_code == 401
    assert says in answer.json()["detail"]


def test_over_http_the_tools_take_a_user_id(clients: dict[str, Connected]) -> None:
    client = clients["ava"]
    tools = client.loop.run(client.session.list_tools()).tools
    assert len(tools) == 7
    assert all("user_id" in t.input_schema["properties"] for t in tools)


def test_a_token_writes_and_reads_its_own_users_memories(
    clients: dict[str, Connected], db: SqliteDb
) -> None:
    ava = clients["ava"]
    added = ava.ok("add_memory", {"memory": "Ava plays the cello", "topics": ["music"]})
    stored = db.get_memory(added["id"], "ava")
    assert stored is not None and stored.memory == "Ava plays the cello"
    assert [e.actor for e in db.get_memory_history(added["id"], "ava")] == ["mcp"]
    assert ava.ok("add_memory", {"memory": "Ava lives in Oslo", "user_id": "ava"})["id"]
    found = ava.ok("search_memories", {"query": "cello"})["memories"]
    assert [m["id"] for m in found] == [added["id"]]
    assert len(ava.ok("list_memories")["memories"]) == 2
    assert ava.ok("get_memory", {"id": added["id"]})["memory"] == "Ava plays the cello"
    changed = ava.ok("update_memory", {"id": added["id"], "memory": "Ava plays the viola"})
    assert changed["memory"] == "Ava plays the viola" == db.get_memory(added["id"], "ava").memory  # type: ignore[union-attr]
    assert ava.ok("list_topics") == {"topics": ["music"]}
    assert ava.ok("delete_memory", {"id": added["id"]}) == {"deleted": added["id"]}
    assert db.get_memory(added["id"], "ava") is None


def test_a_token_never_reaches_another_users_memories(
    clients: dict[str, Connected], db: SqliteDb
) -> None:
    ava, bob = clients["ava"], clients["bob"]
    secret = ava.ok("add_memory", {"memory": "Ava's PIN hint: her cat", "topics": ["private"]})
    before = everything(db)
    for name, arguments in [
        ("get_memory", {"id": secret["id"]}),
        ("update_memory", {"id": secret["id"], "memory": "hacked"}),
        ("delete_memory", {"id": secret["id"]}),
    ]:
        assert "no memory with id" in bob.error(name, arguments)
        message = bob.error(name, {**arguments, "user_id": "ava"})
        assert "a user token reaches only its own user's memories" in message
    for name, arguments in [
        ("search_memories", {"query": "PIN cat", "user_id": "ava"}),
        ("list_memories", {"user_id": "ava"}),
        ("list_topics", {"user_id": "ava"}),
        ("add_memory", {"memory": "planted", "user_id": "ava"}),
    ]:
        assert "a user token reaches only its own user's memories" in bob.error(name, arguments)
    assert bob.ok("search_memories", {"query": "PIN hint cat"}) == {"memories": []}
    assert "private" not in bob.ok("list_topics")["topics"]
    profile = bob.loop.run(bob.session.read_resource("noted://profile"))
    assert "PIN" not in profile.contents[0].text  # type: ignore[union-attr]
    assert everything(db) == before
    assert ava.ok("get_memory", {"id": secret["id"]})["memory"] == "Ava's PIN hint: her cat"


def test_the_admin_key_names_the_user(clients: dict[str, Connected], db: SqliteDb) -> None:
    admin = clients["admin"]
    for_bob = admin.ok("add_memory", {"memory": "Bob cycles to work", "user_id": "bob"})
    assert db.get_memory(for_bob["id"], "bob") is not None
    assert clients["bob"].ok("get_memory", {"id": for_bob["id"]})["memory"] == "Bob cycles to work"
    house = admin.ok("add_memory", {"memory": "The house default"})  # --user house
    assert db.get_memory(house["id"], "house") is not None
    assert "no memory with id" in admin.error("get_memory", {"id": for_bob["id"]})
    assert admin.ok("get_memory", {"id": for_bob["id"], "user_id": "bob"})["id"] == for_bob["id"]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"memory": ""}, "memory must not be empty"),
        ({"memory": "x" * 5001}, "the limit is 5000"),
        ({"memory": ["x"]}, "memory must be a string, got list"),
        ({"memory": "x", "user_id": 3}, "user_id must be a string, got int"),
        ({"memory": "x", "user_id": ""}, "user_id must not be empty"),
    ],
)
def test_bad_arguments_over_http_change_nothing(
    clients: dict[str, Connected], db: SqliteDb, arguments: dict[str, Any], says: str
) -> None:
    before = everything(db)
    assert says in clients["admin"].error("add_memory", arguments)
    assert everything(db) == before
    assert "topics" in clients["ava"].ok("list_topics")  # still serving


def test_reads_are_answered_while_a_write_waits_for_another_processs_lock(
    url: str, loop: Loop, db_file: Path
) -> None:
    cora = Connected(loop, http(url, token("cora")))
    cora.ok("add_memory", {"memory": "Cora collects stamps"})
    other = apsw.Connection(str(db_file))
    other.execute("BEGIN IMMEDIATE")  # another process writing at length
    try:
        waiting = threading.Thread(
            target=cora.ok, args=("add_memory", {"memory": "Cora has a cat"})
        )
        waiting.start()
        time.sleep(0.3)  # the add waits for the lock by now
        started = time.monotonic()
        listed = cora.ok("list_memories")["memories"]
        took = time.monotonic() - started
        assert waiting.is_alive(), "the add did not wait for the other writer"
    finally:
        other.execute("COMMIT")
        other.close()
    waiting.join(60)
    assert [m["memory"] for m in listed] == ["Cora collects stamps"]
    assert took < 5, f"the list waited {took:.1f} s behind the waiting add"
    assert len(cora.ok("list_memories")["memories"]) == 2
    cora.close()


def test_a_token_revoked_on_the_store_is_refused(url: str, db: SqliteDb) -> None:
    """As by every server of the store: noted mcp --http reads the revocations too."""
    issued = token("carol")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {
        "Authorization": f"Bearer {issued}",
        "Accept": "application/json, text/event-stream",
    }
    assert httpx.post(url, json=initialize, headers=headers, timeout=10).status_code == 200
    Auth(KEY, revocations=db).revoke("carol")
    refused = httpx.post(url, json=initialize, headers=headers, timeout=10)
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.text
    fresh = {**headers, "Authorization": f"Bearer {token('carol')}"}
    assert httpx.post(url, json=initialize, headers=fresh, timeout=10).status_code == 200


def test_noted_serve_mounts_the_mcp_server(tmp_path: Path, loop: Loop) -> None:
    with serve(tmp_path, "--mcp", "--db", "served.db", env=clean_env(NOTED_API_KEY=KEY)) as served:
        assert httpx.post(f"{served.url}/mcp", json={}, timeout=10).status_code == 401
        client = Connected(loop, http(f"{served.url}/mcp", token("ava")))
        try:
            added = client.ok("add_memory", {"memory": "Ava reads crime novels"})
        finally:
            client.close()
        auth = {"Authorization": f"Bearer {token('ava')}"}
        history = httpx.get(
            f"{served.url}/memories/{added['id']}/history", headers=auth, timeout=10
        )
        assert history.status_code == 200, history.text
        assert [e["actor"] for e in history.json()] == ["mcp"]
        other = {"Authorization": f"Bearer {token('bob')}"}
        assert httpx.get(f"{served.url}/memories/{added['id']}", headers=other).status_code == 404


BOUND = 2  # --shutdown-timeout


def _posted(endpoint: str, body: bytes, length: int, bearer: str = KEY) -> socket.socket:
    """A connection on which a request to ``endpoint`` was sent with ``bearer``, its
    headers saying ``length`` bytes of body and ``body`` sent (all of it, or the start of
    it, as from a client that stalled)."""
    address = httpx.URL(endpoint)
    sock = socket.create_connection((address.host, address.port or 80), timeout=30)
    head = (
        f"POST {address.path} HTTP/1.1\r\nHost: {address.host}:{address.port}\r\n"
        f"Authorization: Bearer {bearer}\r\nAccept: application/json, text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _answer_on(sock: socket.socket) -> str:
    """The whole HTTP answer sent on ``sock``, within 30 s; the socket is closed."""
    sock.settimeout(30)
    received = b""
    with sock:
        while not _whole(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received.decode()


def _whole(received: bytes) -> bool:
    """Whether ``received`` holds an HTTP answer's head and all the body it announces."""
    head, ended, body = received.partition(b"\r\n\r\n")
    lengths = [
        int(line.partition(b":")[2])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    return bool(ended and lengths) and len(body) >= lengths[0]


def _tool_call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return _message("tools/call", {"name": tool, "arguments": arguments})


def _message(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def _call(endpoint: str, tool: str, arguments: dict[str, Any], bearer: str = KEY) -> httpx.Response:
    return _sent(endpoint, _tool_call(tool, arguments), bearer)


def _sent(endpoint: str, message: dict[str, Any], bearer: str = KEY) -> httpx.Response:
    headers = {**MCP_CALL, "Authorization": f"Bearer {bearer}"}
    return httpx.post(endpoint, json=message, headers=headers, timeout=90)


@pytest.mark.parametrize("open_request", ["unfinished body", "call waiting for a lock"])
def test_sigterm_stops_noted_mcp_http_within_its_shutdown_timeout(
    tmp_path: Path, open_request: str
) -> None:
    """A request still open on SIGTERM (a client that stalled mid-body; a tool call
    waiting for another process's write lock, up to the store's 30 s busy timeout) gets
    the shutdown timeout, as under noted serve; then it is cancelled and the process
    exits, well inside a platform's grace period."""
    db_file = tmp_path / "stopping.db"
    bound = ["--shutdown-timeout", str(BOUND)]
    if open_request == "unfinished body":  # the bound from the config file
        (tmp_path / "noted.toml").write_text(f"[server]\nshutdown_timeout = {BOUND}\n")
        bound = ["--config", str(tmp_path / "noted.toml")]
    with mcp_http(db_file, *bound) as (process, endpoint):
        assert not _call(endpoint, "add_memory", {"memory": "Ava keeps bees"}).is_error
        other = apsw.Connection(str(db_file))
        opened: list[socket.socket] = []
        try:
            if open_request == "unfinished body":  # 20 bytes of 1,000
                opened.append(_posted(endpoint, b'{"jsonrpc": "2.0", ', 1000))
            else:
                other.execute("BEGIN IMMEDIATE")  # another process writing at length
                add = json.dumps(_tool_call("add_memory", {"memory": "Ava has a cat"}))
                opened.append(_posted(endpoint, add.encode(), len(add)))
            # answered once the server has read the request sent before it
            listed = _call(endpoint, "list_memories", {})
            assert listed.status_code == 200, listed.text
            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            code = process.wait(BOUND + 20)  # without a bound: never, or at the busy timeout
            exited = time.monotonic() - stopped_at
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
            for sock in opened:
                sock.close()
    assert code == -signal.SIGTERM
    assert BOUND - 0.5 < exited < BOUND + 10, exited


def test_noted_mcp_refuses_a_public_address_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTED_API_KEY", raising=False)
    code = main(["mcp", "--http", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")])
    assert code == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in capsys.readouterr().err


def _damage(db_file: Path, what: str) -> None:
    """A file with a memory of Ava's, then damaged: all of it, or the pages of the
    memories' table and its indexes only (the rest, its schema included, still read)."""
    with contextlib.closing(SqliteDb(db_file=str(db_file))) as store:
        Memory(store, embedder=None).add_user_memory(UserMemory("Ava keeps bees"), "ava")
    if what == "the file":
        db_file.write_bytes(b"this is not a database" * 500)
        return
    conn = apsw.Connection(str(db_file))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    sql = "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'noted_memories'"
    pages = [row[0] for row in conn.execute(sql)]
    conn.close()
    with db_file.open("r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(b"\xff" * size)


HIDDEN = "the store cannot answer: its address and error are in the log"


@pytest.mark.parametrize("damaged", ["the file", "the memories"])
def test_only_the_admin_reads_where_a_failing_store_is(tmp_path: Path, damaged: str) -> None:
    """As the REST API tells it: where the store is and what it said is the admin's (and
    the log's) to read; a user token reads the kind of failure only, in its tool's error
    or its profile's, or, when the store cannot tell whether the token was revoked,
    in a 503. A user token read the file's path, and its 503 was a bare 500."""
    db_file = tmp_path / "damaged.db"
    _damage(db_file, damaged)
    with mcp_http(db_file) as (process, endpoint):
        ava = token("ava")
        listed = _call(endpoint, "list_memories", {}, ava)
        profile = _sent(endpoint, _message("resources/read", {"uri": "noted://profile"}), ava)
        if damaged == "the file":
            for refused in (listed, profile):
                assert refused.status_code == 503, refused.text
                assert refused.json() == {"detail": HIDDEN}
        else:
            result = listed.json()["result"]
            assert result["isError"], result
            assert result["content"][0]["text"] == f"list_memories: {HIDDEN}"
            assert profile.json()["error"]["message"] == HIDDEN
            read = _sent(endpoint, _message("resources/read", {"uri": "noted://profile"}))
            assert str(db_file) in read.json()["error"]["message"]
        admin = _call(endpoint, "list_memories", {"user_id": "ava"}).json()["result"]
        said = admin["content"][0]["text"]
        assert admin["isError"] and said.startswith("list_memories: the store cannot answer: ")
        assert str(db_file) in said, said
        process.terminate()
        process.wait(20)
    assert str(db_file) in (tmp_path / "mcp-http.log").read_text()  # the operator's


def test_a_tool_calls_token_check_holds_up_no_other_request(
    tmp_path: Path, servers: dict[str, Server | str]
) -> None:
    """Each tool call checks its user token again, reading the store's revocations: on the
    event loop, a store that held that read (PostgreSQL with the table locked: a
    migration, VACUUM FULL) froze every other request, the admin's included, until the
    lock was let go."""
    from psycopg import connect

    from noted.db.postgres import PostgresDb

    url = server_url(servers, "postgres")
    table = f"mcpstall{time.monotonic_ns()}"
    tables = {"memory_table": table, "session_table": f"{table}_sessions"}
    with contextlib.closing(PostgresDb(url, **tables)) as store:
        Memory(store, embedder=None).add_user_memory(UserMemory("Ava keeps bees"), "ava")
        store.revoke_tokens("nobody", time.time())  # the revocations' table exists
    env = {"NOTED_MEMORY_TABLE": table, "NOTED_SESSION_TABLE": f"{table}_sessions"}
    with mcp_http(tmp_path / "unused.db", db=url, **env) as (_, endpoint), connect(url) as holder:
        body = json.dumps(_tool_call("list_memories", {})).encode()
        held = _posted(endpoint, body[:10], len(body), token("ava"))  # its token let in
        time.sleep(1)
        holder.execute(f'LOCK TABLE "{table}_revoked" IN ACCESS EXCLUSIVE MODE')
        try:
            held.sendall(body[10:])  # the call reads the revocations now, and waits
            time.sleep(0.5)
            started = time.monotonic()
            listed: httpx.Response | None = None
            with contextlib.suppress(httpx.TimeoutException):
                tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
                listed = httpx.post(
                    endpoint,
                    json=tools,
                    headers={**MCP_CALL, "Authorization": f"Bearer {KEY}"},
                    timeout=10,
                )
            took = time.monotonic() - started
        finally:
            holder.rollback()
        answer = _answer_on(held)
    assert listed is not None and took < 5, f"tools/list waited {took:.1f} s behind the check"
    assert listed.status_code == 200 and "add_memory" in listed.text
    assert answer.startswith("HTTP/1.1 200") and "Ava keeps bees" in answer, answer
