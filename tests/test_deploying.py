"""One `noted serve --no-background` and two `noted worker` processes on one PostgreSQL:
turns through the REST API, one worker killed half-way, every turn's memory present
exactly once and in order per user, nothing left pending."""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

from conftest import server_url
from noted.db.base import MemoryQuery
from noted.db.jobs import JobStore
from noted.db.urls import open_store
from servers import Server, free_port
from test_server_cli import clean_env, serve
from turn_model import turn_model

TESTS = Path(__file__).parent
WITH_TURN_MODEL = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from turn_model import slow_turn_model, turn_model; "
    "from noted.models import register_provider; "
    "register_provider('turns', turn_model); "
    "register_provider('slow', slow_turn_model); "
    "from noted.cli import main; raise SystemExit(main(sys.argv[1:]))"
)
LAUNCHER = [sys.executable, "-c", WITH_TURN_MODEL, str(TESTS)]
WORKER_OPTIONS = ["--lease", "2", "--poll", "0.1"]
_databases = itertools.count()


def fresh_database(url: str) -> str:
    """A new, empty database on the test server; its URL."""
    name = f"deploy_{int(time.time())}_{next(_databases)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def worker(db: str, config: Path, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    with logs.open("wb") as err:
        process = subprocess.Popen(
            [*LAUNCHER, "worker", "--db", db, "--config", str(config), *WORKER_OPTIONS],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def run_turns(url: str, users: int, turns: int, halfway: threading.Event) -> list[str]:
    """Each user's turns in order (the users at once); the failures, if any."""
    failures: list[str] = []
    done = itertools.count(1)
    total = users * turns

    def user(u: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for t in range(turns):
                answer = client.post(
                    "/agents/assistant/runs",
                    json={
                        "message": f"turn {t:03d} of user {u:02d}",
                        "user_id": f"user{u:02d}",
                        "session_id": f"s{u:02d}",
                        "stream": False,
                    },
                )
                if answer.status_code != 200:
                    failures.append(answer.text)
                if next(done) == total // 2:
                    halfway.set()

    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def deploy_and_check(
    servers: dict[str, Server | str],
    tmp_path: Path,
    users: int,
    turns: int,
    kind: str = "postgres",
) -> dict[str, float]:
    """The scenario on a fresh store of ``kind`` ("postgres", or "sqlite": a file that
    the server and the workers share); its figures in seconds."""
    if kind == "sqlite":
        db = str(tmp_path / "deploy.db")
    else:
        db = fresh_database(server_url(servers, "postgres"))
    config = tmp_path / "noted.toml"
    config.write_text(
        '[agent]\nmodel = "turns:x"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    )
    port = free_port()
    started = time.monotonic()
    with (
        serve(
            tmp_path,
            "--db",
            db,
            "--config",
            str(config),
            "--no-background",
            "--no-access-log",
            "--port",
            str(port),
            launcher=LAUNCHER,
            port=port,
        ) as served,
        worker(db, config, tmp_path / "worker1.log") as first,
        worker(db, config, tmp_path / "worker2.log") as second,
    ):
        halfway = threading.Event()
        killer = threading.Thread(target=lambda: halfway.wait(120) and first.kill())
        killer.start()
        failures = run_turns(served.url, users, turns, halfway)
        killer.join()
        answered = time.monotonic()
        assert failures == []
        assert first.wait(10) == -signal.SIGKILL
        with open_store(db) as store:
            assert isinstance(store, JobStore)
            deadline = time.monotonic() + max(60.0, 0.2 * users * turns)
            while store.list_jobs(limit=None) and time.monotonic() < deadline:
                time.sleep(0.1)
            finished = time.monotonic()
            assert store.list_jobs(limit=None) == []  # nothing pending, nothing failed
            for u in range(users):
                memories = store.list_memories(
                    MemoryQuery(user_id=f"user{u:02d}", sort_by="created_at", sort_order="asc")
                )
                # every turn's memory exactly once, in the order of the turns
                assert [m.memory for m in memories] == [
                    f"User said: turn {t:03d} of user {u:02d}" for t in range(turns)
                ]
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, (tmp_path / "worker2.log").read_text()
    return {
        "turns": users * turns,
        "answered_s": answered - started,
        "all_memories_s": finished - started,
    }


def test_two_workers_one_killed_halfway_and_a_server_on_postgres(
    servers: dict[str, Server | str], tmp_path: Path
) -> None:
    figures = deploy_and_check(servers, tmp_path, users=10, turns=10)
    assert figures["turns"] == 100


def test_a_worker_takes_its_store_from_the_config_file(tmp_path: Path) -> None:
    # The server's config names the store; a worker started with the same file (and no
    # --db) takes its jobs from there, not from a new ./noted.db.
    from noted import Agent, SqliteDb
    from noted.agent.jobs import leave_jobs_to_workers

    shared = tmp_path / "shared.db"
    config = tmp_path / "noted.toml"
    config.write_text(
        f'[server]\ndb = "{shared}"\n\n'
        '[agent]\nmodel = "turns:x"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    )
    agent = Agent(
        turn_model("x"),
        db=SqliteDb(shared),
        agent_id="assistant",
        user_id="ava",
        enable_user_memories=True,
    )
    leave_jobs_to_workers(agent)
    agent.run("I keep bees")
    logs = tmp_path / "worker.log"
    with logs.open("wb") as err:
        process = subprocess.Popen(
            [*LAUNCHER, "worker", "--config", str(config), *WORKER_OPTIONS],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
        )
    try:
        with SqliteDb(shared) as store:
            deadline = time.monotonic() + 30
            while store.list_jobs(status=None) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert store.list_jobs(status=None) == [], logs.read_text()
            [learned] = store.list_memories(MemoryQuery(user_id="ava"))
            assert learned.memory == "User said: I keep bees"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, logs.read_text()
    assert not (tmp_path / "noted.db").exists()


def run_until_its_job_runs(url: str, db: str) -> None:
    """Ask the served agent "assistant" to answer a run for ava; return once the memory
    job the run left is being run."""
    from noted import SqliteDb

    run = httpx.post(
        f"{url}/agents/assistant/runs",
        json={"message": "I keep bees", "user_id": "ava", "stream": False},
        timeout=30,
    )
    assert run.status_code == 200, run.text
    with SqliteDb(db) as store:
        deadline = time.monotonic() + 10
        while [j.status for j in store.list_jobs(status=None)] != ["running"]:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.02)


def test_a_server_stopped_with_sigterm_finishes_the_job_it_runs(tmp_path: Path) -> None:
    # The memory manager takes two seconds; SIGTERM arrives while it thinks.
    from noted import SqliteDb

    db = str(tmp_path / "n.db")
    config = tmp_path / "noted.toml"
    config.write_text(
        '[agent]\nmodel = "slow:x"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    )
    port = free_port()
    with serve(
        tmp_path,
        "--db",
        db,
        "--config",
        str(config),
        "--embedder",
        "none",
        "--no-access-log",
        "--port",
        str(port),
        launcher=LAUNCHER,
        port=port,
    ) as served:
        run_until_its_job_runs(served.url, db)
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(30)
    with SqliteDb(db) as store:
        assert store.list_jobs(status=None) == []
        [learned] = store.list_memories(MemoryQuery(user_id="ava"))
        assert learned.memory == "User said: I keep bees"


def test_a_server_stopped_with_sigterm_leaves_a_job_past_its_shutdown_timeout(
    tmp_path: Path,
) -> None:
    # The memory manager takes two seconds; SIGTERM arrives as it starts, and the server
    # may take one: it exits then, leaving the job to the process that takes it over
    # when its lease runs out (a platform would have killed it, and the job, anyway).
    from noted import SqliteDb

    db = str(tmp_path / "n.db")
    config = tmp_path / "noted.toml"
    config.write_text(
        '[agent]\nmodel = "slow:x"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    )
    options = ("--db", db, "--config", str(config), "--embedder", "none", "--no-access-log")
    port = free_port()
    with serve(
        tmp_path,
        *options,
        "--shutdown-timeout",
        "1",
        "--port",
        str(port),
        launcher=LAUNCHER,
        port=port,
    ) as served:
        run_until_its_job_runs(served.url, db)
        served.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert served.process.wait(30) == -signal.SIGTERM, served.stderr()
        assert time.monotonic() - stopped_at < 1.8
        said = served.stderr()
        assert "background jobs still running after the shutdown timeout (1 s)" in said
        assert "Traceback" not in said
    with SqliteDb(db) as store:
        assert [j.status for j in store.list_jobs(status=None)] == ["running"]
        assert store.list_memories(MemoryQuery(user_id="ava")) == []


def test_a_worker_on_tables_of_a_newer_noted_stops_and_says_so(
    servers: dict[str, Server | str], tmp_path: Path
) -> None:
    # No job can be claimed on tables a newer noted made: the worker exits with the
    # reason, rather than logging it twice a second for ever.
    db = fresh_database(server_url(servers, "postgres"))
    with open_store(db) as store:
        assert isinstance(store, JobStore)
        assert store.list_jobs(limit=None) == []  # the tables made, at this noted's versions
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE noted_schema_versions SET version = 99 WHERE table_name = %s",
            ("noted_sessions",),
        )
    config = tmp_path / "noted.toml"
    config.write_text('[agent]\nmodel = "turns:x"\nagent_id = "assistant"\nmemory = "auto"\n')
    logs = tmp_path / "worker.log"
    with worker(db, config, logs) as process:
        assert process.wait(20) == 1, logs.read_text()
    said = logs.read_text()
    assert "table noted_sessions has schema version 99, newer than this noted knows" in said
    assert "upgrade noted" in said


def test_a_server_stopped_with_sigterm_leaves_its_waiting_jobs_for_the_next(
    tmp_path: Path,
) -> None:
    # Four turns wait for a memory manager that takes two seconds each: SIGTERM during the
    # first lets that one finish, and leaves the other three, untouched, to the next start.
    from noted import SqliteDb

    db = str(tmp_path / "n.db")
    config = tmp_path / "noted.toml"
    config.write_text(
        '[agent]\nmodel = "slow:x"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    )
    said = [f"I keep bees {n}" for n in range(4)]
    options = ("--db", db, "--config", str(config), "--embedder", "none", "--no-access-log")
    port = free_port()
    with serve(tmp_path, *options, "--port", str(port), launcher=LAUNCHER, port=port) as served:
        for message in said:
            run = httpx.post(
                f"{served.url}/agents/assistant/runs",
                json={"message": message, "user_id": "ava", "session_id": "s", "stream": False},
                timeout=30,
            )
            assert run.status_code == 200, run.text
        with SqliteDb(db) as store:
            deadline = time.monotonic() + 10
            while "running" not in [j.status for j in store.list_jobs(status=None)]:
                assert time.monotonic() < deadline, "no job started"
                time.sleep(0.02)
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(30) == -signal.SIGTERM, served.stderr()
        assert "Traceback" not in served.stderr()
    with SqliteDb(db) as store:
        assert [(j.status, j.said) for j in store.list_jobs(status=None)] == [
            ("pending", message) for message in said[1:]
        ]
        [learned] = store.list_memories(MemoryQuery(user_id="ava"))
        assert learned.memory == f"User said: {said[0]}"
    config.write_text(config.read_text().replace("slow:x", "turns:x"))
    port = free_port()
    with (
        serve(tmp_path, *options, "--port", str(port), launcher=LAUNCHER, port=port) as served,
        SqliteDb(db) as store,
    ):
        deadline = time.monotonic() + 30
        while store.list_jobs(status=None) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.list_jobs(status=None) == []
        memories = store.list_memories(
            MemoryQuery(user_id="ava", sort_by="created_at", sort_order="asc")
        )
        assert [m.memory for m in memories] == [f"User said: {message}" for message in said]
