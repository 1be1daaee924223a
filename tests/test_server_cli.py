"""``noted serve`` and ``noted token``: the server as a process, its refusals, its config file."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from noted import MemoryQuery, SqliteDb
from noted.cli import main
from noted.errors import UserError
from noted.server.auth import derive_secret
from noted.server.config import AgentConfig, build_agent, load_config
from servers import free_port

TESTS = Path(__file__).parent
KEY = "cli-admin-key-0123456789abcdef0123456789"

# `noted` with the offline example model registered as the provider "offline", the way a
# third-party provider registers (see tests/run_example.py).
WITH_OFFLINE_MODEL = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from example_model import example_model; "
    "from noted.models import register_provider; "
    "register_provider('offline', example_model); "
    "from noted.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTED_")}
    env.update(extra)
    return env


class Served:
    def __init__(self, process: subprocess.Popen[bytes], url: str, logs: Path) -> None:
        self.process = process
        self.url = url
        self.logs = logs

    def stdout(self) -> str:
        return (self.logs / "stdout").read_text()

    def stderr(self) -> str:
        return (self.logs / "stderr").read_text()


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
    port: int | None = None,
) -> Iterator[Served]:
    """``noted serve ARGS`` in its own process; yields once /health answers; stopped by
    its pid at the end whatever happened."""
    port = port or free_port()
    logs = tmp_path / f"serve-{port}"
    logs.mkdir()
    command = [*(launcher or [sys.executable, "-m", "noted.cli"]), "serve", *args]
    if "--config" not in args or "--port" in args:
        command += ["--port", str(port)]
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            env=env or clean_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its workers too are stopped at the end, by group
        )
    served = Served(process, f"http://127.0.0.1:{port}", logs)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"noted serve exited with {process.returncode}: {served.stderr()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"noted serve did not answer: {served.stderr()}")
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        # a killed parent leaves its workers (--workers N) serving: end the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def stop(served: Served, how: signal.Signals) -> None:
    """Signal the server and check that it shut down in order: uvicorn finishes the
    shutdown, then ends the process by the signal's default action (SIGTERM: status -15),
    as a process stopped by that signal does; SIGINT ends it with 0."""
    served.process.send_signal(how)
    code = served.process.wait(timeout=20)
    assert code == (0 if how == signal.SIGINT else -how), served.stderr()
    assert "Traceback" not in served.stderr()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, how: signal.Signals) -> None:
    db = tmp_path / "served.db"
    with serve(tmp_path, "--db", str(db), "--no-access-log") as served:
        health = httpx.get(f"{served.url}/health").json()
        assert health == {
            "status": "ok",
            "version": "0.1.0",
            "auth": "open",
            "semantic_search": True,  # the default embedder, loaded on the first search
        }
        page = httpx.get(f"{served.url}/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()
        assert httpx.get(f"{served.url}/docs").status_code == 200
        created = httpx.post(
            f"{served.url}/memories", json={"memory": "Ava likes tea", "user_id": "ava"}
        )
        assert created.status_code == 201
        stop(served, how)
        assert f"noted serving {db} at {served.url}/" in served.stdout()
        assert "NOTED_API_KEY is not set" in served.stderr()
        assert "Application shutdown complete" in served.stderr()
    with SqliteDb(db) as store:
        assert [m.memory for m in store.list_memories(MemoryQuery(user_id="ava"))] == [
            "Ava likes tea"
        ]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{served.url}/health", timeout=2)


def serve_publicly(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``noted serve --host 0.0.0.0`` with ``env``, which is expected to refuse to start."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "noted.cli",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200", **env),
        timeout=60,
        check=False,
    )


def test_serve_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    done = serve_publicly(tmp_path)
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr
    assert "NOTED_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("key", ["a", "x" * 31])
def test_serve_refuses_a_public_address_with_a_short_key(tmp_path: Path, key: str) -> None:
    done = serve_publicly(tmp_path, NOTED_API_KEY=key)
    assert done.returncode == 1, done.stderr
    assert f"with a {len(key)}-character NOTED_API_KEY" in done.stderr
    assert "at least 32 random characters" in done.stderr
    assert "secrets.token_urlsafe(32)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_short_key_is_accepted_on_loopback(tmp_path: Path) -> None:
    with serve(tmp_path, "--db", str(tmp_path / "x.db"), env=clean_env(NOTED_API_KEY="a")) as s:
        assert httpx.get(f"{s.url}/memories").status_code == 401
        assert httpx.get(f"{s.url}/memories", headers={"Authorization": "Bearer a"}).is_success


def token_for(user: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code = main(["token", user, *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.strip()


def test_token_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("NOTED_API_KEY", "NOTED_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTED_DB", str(tmp_path / "unused.db"))
    assert main(["token", "alice"]) == 1
    assert "user tokens need NOTED_TOKEN_SECRET or NOTED_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("NOTED_API_KEY", KEY)
    token = token_for("alice", capsys)
    assert token.count(".") == 2
    assert "\n" not in token
    data = json.loads(token_for("alice", capsys, "--expires-in", "60", "--json"))
    assert (data["user_id"], data["expires_in"]) == ("alice", 60)
    assert main(["token", "alice", "--expires-in", "0"]) == 1
    assert "expires_in" in capsys.readouterr().err
    monkeypatch.setenv("NOTED_TOKEN_SECRET", "short")
    assert main(["token", "alice"]) == 1
    assert "32 characters" in capsys.readouterr().err
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "99999"], ["serve", "--port", "0"], ["mcp", "--http", "--port", "-1"]],
)
def test_a_port_out_of_range_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"must be a port from 1 to 65535, got '{argv[-1]}'" in capsys.readouterr().err


def test_token_takes_its_user_as_an_argument_only(capsys: pytest.CaptureFixture[str]) -> None:
    """A token names its user itself: ``--user`` (which means nothing there) is not offered."""
    with pytest.raises(SystemExit):
        main(["token", "--help"])
    assert "--user" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["token", "alice", "--user", "bob"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --user bob" in capsys.readouterr().err


def test_a_keyed_server_takes_the_tokens_of_noted_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTED_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("NOTED_API_KEY", KEY)
    alice = {"Authorization": f"Bearer {token_for('alice', capsys)}"}
    admin = {"Authorization": f"Bearer {KEY}"}
    db = tmp_path / "keyed.db"
    with serve(
        tmp_path, "--db", str(db), "--log-level", "warning", env=clean_env(NOTED_API_KEY=KEY)
    ) as served:
        url = served.url
        assert httpx.get(f"{url}/health").json()["auth"] == "api_key"
        assert httpx.get(f"{url}/memories").status_code == 401
        assert (
            httpx.post(
                f"{url}/memories", json={"memory": "bob's", "user_id": "bob"}, headers=admin
            ).status_code
            == 201
        )
        mine = httpx.post(f"{url}/memories", json={"memory": "alice's"}, headers=alice)
        assert mine.status_code == 201
        assert mine.json()["user_id"] == "alice"
        listed = httpx.get(f"{url}/memories", headers=alice).json()
        assert [m["memory"] for m in listed["data"]] == ["alice's"]
        assert (
            httpx.get(f"{url}/memories", params={"user_id": "bob"}, headers=alice).status_code
            == 404
        )
        assert httpx.get(f"{url}/memories", headers=admin).json()["meta"]["total_count"] == 2
        assert (
            httpx.post(f"{url}/tokens", json={"user_id": "bob"}, headers=alice).status_code == 403
        )
        assert "NOTED_API_KEY is not set" not in served.stderr()
        stop(served, signal.SIGTERM)


def noted(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``noted`` command in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "noted.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200", **env),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_revoked_tokens_are_refused_by_every_worker(tmp_path: Path) -> None:
    db = str(tmp_path / "revoked.db")
    admin = {"Authorization": f"Bearer {KEY}"}
    env = clean_env(NOTED_API_KEY=KEY)
    with serve(tmp_path, "--db", db, "--workers", "2", "--no-access-log", env=env) as served:
        url = served.url

        def token(user: str) -> dict[str, str]:
            made = httpx.post(f"{url}/tokens", json={"user_id": user}, headers=admin)
            assert made.status_code == 201, made.text
            return {"Authorization": f"Bearer {made.json()['token']}"}

        def statuses(headers: dict[str, str]) -> set[int]:
            """Answers to the fast listing and to routes behind the framework, several
            times over so that both workers answer."""
            found = set()
            for _ in range(3):
                for path in ("/memories", "/memory_topics", "/sessions"):
                    found.add(httpx.get(f"{url}{path}", headers=headers).status_code)
            return found

        alice, bob = token("alice"), token("bob")
        assert statuses(alice) == statuses(bob) == {200}
        done = noted(tmp_path, "token", "--revoke", "alice", "--db", db)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("revoked alice's tokens issued at or before ")
        assert statuses(alice) == {401}
        refused = httpx.get(f"{url}/memories", headers=alice).json()
        assert refused["detail"] == "the token has been revoked: ask for a new one"
        assert statuses(bob) == {200}
        alice_again = token("alice")  # issued after the revocation
        assert statuses(alice_again) == {200}

        assert httpx.post(f"{url}/tokens/revocations", json={}, headers=bob).status_code == 403
        everyone = httpx.post(f"{url}/tokens/revocations", json={}, headers=admin)
        assert everyone.status_code == 201, everyone.text
        assert everyone.json()["user_id"] is None
        assert statuses(bob) == statuses(alice_again) == {401}
        assert statuses(admin) == {200}  # the admin key is no token
        carol = token("carol")
        assert statuses(carol) == {200}
        later = httpx.post(
            f"{url}/tokens/revocations",
            json={"user_id": "carol", "before": "2000-01-01T00:00:00Z"},
            headers=admin,
        )
        assert later.status_code == 201
        assert later.json()["revoked_before"] == "2000-01-01T00:00:00.000000+00:00"
        assert statuses(carol) == {200}  # an old cutoff catches no new token
        for bad in ({"before": 1_700_000_000}, {"before": "2020-01-01T00:00:00"}):
            answer = httpx.post(f"{url}/tokens/revocations", json=bad, headers=admin)
            assert answer.status_code == 422, (bad, answer.text)
        assert statuses(carol) == {200}
        future = httpx.post(
            f"{url}/tokens/revocations", json={"before": "2999-01-01T00:00:00Z"}, headers=admin
        )
        assert future.status_code == 201  # a later time is taken as now
        assert future.json()["revoked_before"] < "2999"
        assert statuses(carol) == {401}
        carol = token("carol")
        assert statuses(carol) == {200}
        everyone_cli = noted(tmp_path, "token", "--revoke-all", "--json", "--db", db)
        assert everyone_cli.returncode == 0, everyone_cli.stderr
        assert json.loads(everyone_cli.stdout)["user_id"] is None
        assert statuses(carol) == {401}


def test_a_token_living_longer_than_allowed_is_refused(tmp_path: Path) -> None:
    secret = derive_secret(KEY)
    now = int(time.time())

    def forged(lifetime: int) -> dict[str, str]:
        claims = {"sub": "alice", "iss": "noted", "iat": now - 10, "exp": now - 10 + lifetime}
        return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}

    env = clean_env(NOTED_API_KEY=KEY)
    with serve(tmp_path, "--db", str(tmp_path / "l.db"), "--no-access-log", env=env) as served:
        year = 365 * 24 * 3600
        assert httpx.get(f"{served.url}/memories", headers=forged(year)).status_code == 200
        for lifetime in (year + 1, 10 * year):
            refused = httpx.get(f"{served.url}/memories", headers=forged(lifetime))
            assert refused.status_code == 401
            assert "lives longer than this server allows" in refused.json()["detail"]


def test_token_command_refuses_unclear_requests(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTED_DB", str(tmp_path / "t.db"))
    for args in (
        [],
        ["alice", "--revoke", "bob"],
        ["--revoke", "bob", "--revoke-all"],
        ["alice", "--before", "2020-01-01"],
        ["--revoke", "bob", "--before", "yesterday"],
        ["--revoke", " "],
    ):
        assert main(["token", *args]) == 1, args
        assert "Traceback" not in capsys.readouterr().err
    assert main(["token", "--revoke", "bob", "--before", "2020-01-01T00:00:00"]) == 0
    assert "at or before 2020-01-01T00:00:00+00:00" in capsys.readouterr().out
    assert SqliteDb(tmp_path / "t.db").tokens_revoked_before("bob") == 1577836800.0


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_served_answers_carry_security_headers(tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {KEY}"}
    env = clean_env(NOTED_API_KEY=KEY)
    with serve(tmp_path, "--db", str(tmp_path / "h.db"), "--no-access-log", env=env) as served:
        url = served.url
        httpx.post(
            f"{url}/memories", json={"memory": "Ava likes tea", "user_id": "ava"}, headers=admin
        )
        answers = {
            "page": httpx.get(f"{url}/"),
            "script": httpx.get(f"{url}/static/app.js"),
            "docs": httpx.get(f"{url}/docs"),
            "docs script": httpx.get(f"{url}/docs/assets/swagger-ui-bundle.js"),
            "listing": httpx.get(f"{url}/memories", headers=admin),  # the fast path
            "search": httpx.get(
                f"{url}/memories", params={"user_id": "ava", "search_content": "tea"}, headers=admin
            ),
            "unauthorized": httpx.get(f"{url}/memories"),
            "not found": httpx.get(f"{url}/nowhere"),
            "invalid": httpx.get(f"{url}/memories", params={"limit": 0}, headers=admin),
            "health": httpx.get(f"{url}/health"),
            "schema": httpx.get(f"{url}/openapi.json"),
        }
    for name, answer in answers.items():
        for header, value in SECURITY_HEADERS.items():
            assert answer.headers.get(header) == value, (name, header, answer.headers)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], name
    assert [answers[n].status_code for n in ("listing", "search", "unauthorized", "invalid")] == [
        200,
        200,
        401,
        422,
    ]
    for name in ("page", "script"):
        policy = answers[name].headers["content-security-policy"]
        assert "script-src 'self';" in policy, policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "script-src 'self';" in answers["docs"].headers["content-security-policy"]
    for name in ("listing", "search", "health", "schema", "not found"):
        assert answers[name].headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
    assert "cdn" not in answers["docs"].text.lower()
    assert "SwaggerUIBundle" in answers["docs script"].text


def test_serve_with_a_config_file_and_an_agent(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "noted.toml").write_text(
        f"""
[server]
db = "from_config.db"
host = "127.0.0.1"
port = {port}
embedder = "none"

[agent]
model = "offline:examples"
agent_id = "assistant"
name = "Assistant"
instructions = "Be brief."
memory = "auto"
history = 2
"""
    )
    launcher = [sys.executable, "-c", WITH_OFFLINE_MODEL, str(TESTS)]
    with serve(
        tmp_path, "--config", "noted.toml", "--no-access-log", launcher=launcher, port=port
    ) as served:
        agents = httpx.get(f"{served.url}/agents").json()
        assert agents == [
            {"agent_id": "assistant", "name": "Assistant", "description": None, "model": "examples"}
        ]
        run = httpx.post(
            f"{served.url}/agents/assistant/runs",
            json={
                "message": "My name is Ava and I like to ski.",
                "user_id": "ava",
                "session_id": "s1",
                "stream": False,
            },
            timeout=30,
        )
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "completed"
        # the agent learns from each run (memory = "auto"), after it has answered
        deadline = time.monotonic() + 20
        learned: list[str] = []
        while "User's name is Ava" not in learned and time.monotonic() < deadline:
            time.sleep(0.1)
            listed = httpx.get(f"{served.url}/memories", params={"user_id": "ava"}).json()
            learned = [m["memory"] for m in listed["data"]]
        assert "User's name is Ava" in learned
        with httpx.stream(
            "POST",
            f"{served.url}/agents/assistant/runs",
            json={"message": "What is my name?", "user_id": "ava", "session_id": "s1"},
            timeout=30,
        ) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            text = "".join(streamed.iter_text())
        assert text.startswith("event: run_started")
        assert "event: run_completed" in text
        stop(served, signal.SIGINT)
        assert "noted serving from_config.db" in served.stdout()
    # the config's db, relative to where the server ran
    assert not (tmp_path / "noted.db").exists()
    with SqliteDb(tmp_path / "from_config.db") as store:
        session = store.get_session("s1", "ava")
        assert session is not None
        assert session.run_count == 2
        assert "User's name is Ava" in [
            m.memory for m in store.list_memories(MemoryQuery(user_id="ava"))
        ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'high'\n", "[server] port must be an integer, got 'high'"),
        ("[server]\nport = 99999\n", "[server] port must be from 1 to 65535, got 99999"),
        ("[server]\nportt = 1\n", "[server] has unknown keys: portt"),
        ("[servers]\n", "[top level] has unknown keys: servers"),
        ("server = 1\n", "must be tables"),
        ("[agent]\nagent_id = 'a'\n", "[agent] needs a model"),
        ("[agent]\nmodel = ''\n", "[agent] needs a model"),
        (
            "[agent]\nmodel = 'offline:x'\nmemory = 'always'\n",
            "memory must be one of auto, agentic, off",
        ),
        (
            "[agent]\nmodel = 'offline:x'\ninstructions = [1]\n",
            "instructions must be a string or a list of strings",
        ),
        (
            "[agent]\nmodel = 'offline:x'\nhistory = true\n",
            "[agent] history must be an integer, got True",
        ),
        ("[agent]\nmodel = 'offline:x'\ntools = []\n", "[agent] has unknown keys: tools"),
        ("[agent]\nmodel = 'offline:x'\nsummaries = 1\n", "summaries must be true or false, got 1"),
        ("[server]\ndb = 1\n", "[server] db must be a string, got 1"),
        (
            "[server]\nshutdown_timeout = 0\n",
            "[server] shutdown_timeout must be a positive number of seconds, got 0",
        ),
        ("[server]\nshutdown_timeout = 2.5\n", "shutdown_timeout must be an integer, got 2.5"),
        ("[server\n", "is not valid TOML"),
    ],
)
def test_bad_config_files_are_named_and_explained(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_config_loading_and_the_agent_it_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "noted.toml"
    path.write_text(
        "[server]\nembedder = 'local'\nshutdown_timeout = 10\n[agent]\nmodel = 'offline:x'\ninstructions = 'Be brief.'\n"
        "memory = 'agentic'\nsummaries = true\nhistory = 0\nmemory_dates = true\n"
    )
    config = load_config(path)
    assert (config.db, config.host, config.port, config.embedder) == (None, None, None, "local")
    assert config.shutdown_timeout == 10
    assert config.agent == AgentConfig(
        model="offline:x",
        instructions=["Be brief."],
        memory="agentic",
        summaries=True,
        history=0,
        memory_dates=True,
    )
    assert load_config(_write(tmp_path, "empty.toml", "")).agent is None

    from example_model import example_model
    from noted.models import register_provider

    register_provider("offline", example_model)
    with SqliteDb(tmp_path / "agent.db") as store:
        agent = build_agent(AgentConfig(model="offline:examples", agent_id="a", history=4), store)
        assert (agent.agent_id, agent.add_history_to_context, agent.num_history_runs) == (
            "a",
            True,
            4,
        )
        assert agent.model.id == "examples"
        assert agent.memory is not None and not agent.memory.dated
        dated = build_agent(AgentConfig(model="offline:examples", memory_dates=True), store)
        assert dated.memory is not None and dated.memory.dated
        quiet = build_agent(AgentConfig(model="offline:examples", memory="off", history=0), store)
        assert (quiet.add_history_to_context, quiet.memory) == (False, None)
        with pytest.raises(UserError, match="unknown model provider"):
            build_agent(AgentConfig(model="nowhere:model"), store)

    # noted serve names a config it cannot read, or a model it does not know, and exits 1
    monkeypatch.delenv("NOTED_API_KEY", raising=False)
    db = str(tmp_path / "cli.db")
    assert main(["serve", "--db", db, "--config", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read the config file" in capsys.readouterr().err
    assert (
        main(
            [
                "serve",
                "--db",
                db,
                "--config",
                str(_write(tmp_path, "m.toml", "[agent]\nmodel = 'nowhere:m'\n")),
            ]
        )
        == 1
    )
    assert "unknown model provider 'nowhere'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--db", db, "--workers", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_two_workers_take_concurrent_writers_and_lose_nothing(tmp_path: Path) -> None:
    """``noted serve --workers 2``: two processes over one SQLite file, written by eight
    clients at once (their own users, one shared user, and the same memory changed by all)."""
    db = tmp_path / "shared.db"
    writers, each = 8, 25
    with serve(tmp_path, "--db", str(db), "--no-access-log", "--workers", "2") as served:
        url = served.url
        shared = httpx.post(f"{url}/memories", json={"memory": "v0", "user_id": "shared"})
        assert shared.status_code == 201, shared.text
        shared_id = shared.json()["memory_id"]
        failures: list[str] = []

        def write(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for i in range(each):
                    for user in (f"writer-{n}", "shared"):
                        body = {"memory": f"writer {n} fact {i}", "user_id": user}
                        r = client.post("/memories", json=body)
                        if r.status_code != 201:
                            failures.append(f"POST {r.status_code} {r.text}")
                    r = client.patch(
                        f"/memories/{shared_id}",
                        params={"user_id": "shared"},
                        json={"memory": f"v {n}.{i}"},
                    )
                    if r.status_code != 200:
                        failures.append(f"PATCH {r.status_code} {r.text}")
                    r = client.get("/memories", params={"user_id": f"writer-{n}", "limit": 5})
                    if r.status_code != 200 or r.json()["meta"]["total_count"] != i + 1:
                        failures.append(f"GET {r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:5]
        stats = httpx.get(f"{url}/user_memory_stats", params={"limit": 100}).json()
        counts = {row["user_id"]: row["memory_count"] for row in stats["data"]}
        assert counts == {"shared": 1 + writers * each, **{f"writer-{n}": each for n in range(8)}}
        history = httpx.get(f"{url}/memories/{shared_id}/history", params={"user_id": "shared"})
        events = history.json()
        assert [e["event"] for e in events] == ["add"] + ["update"] * (writers * each)
        final = httpx.get(f"{url}/memories/{shared_id}", params={"user_id": "shared"}).json()
        # each change starts from the text the one before it left: none was lost
        for before, after in itertools.pairwise(events):
            assert after["old_memory"] == before["new_memory"]
        assert final["memory"] == events[-1]["new_memory"]
        served.process.send_signal(signal.SIGINT)
        assert served.process.wait(timeout=30) == 0, served.stderr()
        assert "Traceback" not in served.stderr()
    with SqliteDb(db) as store:
        texts = {m.memory for m in store.list_memories(MemoryQuery(user_id="shared"))}
        assert {f"writer {n} fact {i}" for n in range(writers) for i in range(each)} < texts
