"""`noted serve` stopped by SIGTERM while its agent streams answers: the runs under way get
the shutdown timeout to finish; one still answering then is stopped, kept as a failed run
with the text it had streamed, and its stream ends with an `error` event; the process
exits soon after, well inside a platform's grace period."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from noted import SqliteDb
from noted.db.base import MemoryQuery
from servers import free_port
from test_server_cli import clean_env, serve
from wire import SSE, Reply, WireServer

STOPPED = "cancelled: the server stopped before the run finished"
BOUND = 3  # --shutdown-timeout


def openai_words(word: str, count: int, every: float) -> SSE:
    """An OpenAI chat completion streamed a word every ``every`` seconds."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}

    words = [chunk({"content": f"{word}{n} "}) for n in range(count)]
    return SSE([*words, chunk({}, "stop"), "[DONE]"], every=every, hold=True)


@dataclass
class Stream:
    """A run's server-sent events as they arrive (read in a thread), with the time the
    stream ended (``None`` while it is open)."""

    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    ended: float | None = None
    failure: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def text(self) -> str:
        return "".join(str(data["text"]) for kind, data in self.events if kind == "content")


def _read(url: str, message: str, session: str, into: Stream) -> None:
    body = {"message": message, "user_id": "ava", "session_id": session}
    try:
        with httpx.stream("POST", url, json=body, timeout=90) as answer:
            kind = ""
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    into.events.append((kind, json.loads(line.removeprefix("data: "))))
    except httpx.HTTPError as exc:
        into.failure = exc
    finally:
        into.ended = time.monotonic()
        into.done.set()


def _start(url: str, message: str, session: str) -> Stream:
    stream = Stream()
    threading.Thread(target=_read, args=(url, message, session, stream), daemon=True).start()
    return stream


@dataclass
class Answer:
    """A run asked for whole (``stream`` false), in a thread: its status and body."""

    status: int | None = None
    body: object = None
    done: threading.Event = field(default_factory=threading.Event)


def _ask(url: str, message: str, session: str, into: Answer) -> None:
    body = {"message": message, "user_id": "ava", "session_id": session, "stream": False}
    try:
        answer = httpx.post(url, json=body, timeout=90)
        into.status, into.body = answer.status_code, answer.json()
    except httpx.HTTPError as exc:
        into.body = exc
    finally:
        into.done.set()


def _start_whole(url: str, message: str, session: str) -> Answer:
    answer = Answer()
    threading.Thread(target=_ask, args=(url, message, session, answer), daemon=True).start()
    return answer


def _wait_for(what: str, ready: object, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "--workers 2"])
def test_sigterm_stops_a_long_answer_after_the_shutdown_timeout(
    tmp_path: Path, wire: WireServer, workers: int
) -> None:
    # The model streams one answer for a minute, and another for two seconds; the second
    # starts just before SIGTERM; a third run, not streamed, waits a minute for its
    # answer. A server stopped only when every run has ended would outlast the platform's
    # grace period and be killed, losing them all.
    late = Reply(body={"choices": [{"message": {"content": "too late"}}]}, delay=60)
    wire.add(openai_words("word", 600, 0.1), late, openai_words("tale", 8, 0.25))
    db = str(tmp_path / "n.db")
    config = tmp_path / "noted.toml"
    agent = '[agent]\nmodel = "openai:m"\nagent_id = "assistant"\nmemory = "auto"\nhistory = 0\n'
    env = clean_env(OPENAI_BASE_URL=f"{wire.url}/v1", OPENAI_API_KEY="test-key")
    options = ["--db", db, "--config", str(config), "--embedder", "none", "--no-access-log"]
    options += ["--workers", str(workers)]
    if workers == 1:  # the bound from the option, or from the config file
        config.write_text(agent)
        options += ["--shutdown-timeout", str(BOUND)]
    else:
        config.write_text(f"[server]\nshutdown_timeout = {BOUND}\n{agent}")
    port = free_port()
    with serve(tmp_path, *options, "--port", str(port), env=env, port=port) as served:
        url = f"{served.url}/agents/assistant/runs"
        long = _start(url, "Tell me a long story", "long")
        _wait_for("the long answer did not start", lambda: long.text().count("word") >= 5)
        whole = _start_whole(url, "Tell me a whole story", "whole")
        _wait_for("the whole answer was not asked for", lambda: len(wire.requests) == 2)
        short = _start(url, "Tell me a short story", "short")
        _wait_for("the short answer did not start", lambda: "run_started" in short.kinds())
        served.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        # (uvicorn's supervisor of --workers exits with 0 once its workers have)
        code = served.process.wait(BOUND + 8)
        assert code == (-signal.SIGTERM if workers == 1 else 0), served.stderr()
        exited = time.monotonic() - stopped_at
        assert long.done.wait(5) and short.done.wait(5) and whole.done.wait(5)
        said = served.stderr()
        assert "Traceback" not in said, said
        stopping = "agent run(s) still answering after the shutdown timeout (3 s)"
        if workers == 1:
            assert f"stopping 2 {stopping}" in said
        else:  # the runs are spread over the workers
            assert said.count(stopping) in (1, 2)
    # the short answer finished as usual; the long one was stopped at the bound and said so
    assert short.failure is None and short.kinds()[-1] == "run_completed", short.events
    assert short.text() == " ".join(f"tale{n}" for n in range(8)) + " "
    assert long.failure is None, long.failure
    assert long.events[-1] == ("error", {"detail": STOPPED}), long.events[-3:]
    assert long.ended is not None
    assert BOUND - 0.5 < long.ended - stopped_at < BOUND + 1.5
    assert exited < BOUND + 2.5, exited
    assert (whole.status, whole.body) == (503, {"detail": STOPPED})
    shown = long.text()
    assert 20 < shown.count("word") < 200  # some seconds' worth, not the whole minute
    with SqliteDb(db) as store:
        [kept] = store.get_runs("long", "ava")
        assert (kept.status, kept.error) == ("failed", STOPPED)
        assert kept.content == shown  # the text the caller saw
        [cut] = store.get_runs("whole", "ava")
        assert (cut.status, cut.error, cut.content) == ("failed", STOPPED, None)
        [done] = store.get_runs("short", "ava")
        assert (done.status, done.content) == ("completed", short.text())
        # nothing is learned from the stopped run; the finished one's job waits for the
        # next process, as the server takes no job once it is stopping
        assert [(j.status, j.said) for j in store.list_jobs(status=None)] == [
            ("pending", "Tell me a short story")
        ]
        assert store.list_memories(MemoryQuery(user_id="ava")) == []


PLAIN_APP = """
from noted import Agent, SqliteDb
from noted.server import create_app

store = SqliteDb(db_file="n.db")
agent = Agent("openai:m", db=store, agent_id="assistant")
app = create_app(store, embedder=None, agent=agent, shutdown_timeout={bound})
"""


def test_an_app_under_plain_uvicorn_stops_its_runs_after_its_shutdown_timeout(
    tmp_path: Path, wire: WireServer
) -> None:
    """``create_app`` served by uvicorn itself, not ``noted serve`` (and without
    ``--timeout-graceful-shutdown``): on SIGTERM the app's own lifespan gives its runs
    ``shutdown_timeout`` seconds, then stops them as noted serve does; with no request
    left open, uvicorn exits instead of waiting for the minute-long answer."""
    wire.add(openai_words("word", 600, 0.1))
    (tmp_path / "served_app.py").write_text(PLAIN_APP.format(bound=BOUND))
    port = free_port()
    env = clean_env(OPENAI_BASE_URL=f"{wire.url}/v1", OPENAI_API_KEY="test-key")
    command = [sys.executable, "-m", "uvicorn", "served_app:app", "--port", str(port)]
    command += ["--app-dir", str(tmp_path), "--no-access-log"]
    logs = tmp_path / "uvicorn.log"
    with logs.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=tmp_path,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"uvicorn did not answer: {logs}", lambda: _healthy(base, process), 60)
        long = _start(f"{base}/agents/assistant/runs", "Tell me a long story", "long")
        _wait_for("the long answer did not start", lambda: long.text().count("word") >= 5)
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = process.wait(BOUND + 20)  # without a bound: when the answer ends, a minute on
        exited = time.monotonic() - stopped_at
    finally:
        process.kill()
        process.wait()
    assert code == -signal.SIGTERM, logs.read_text()
    assert long.done.wait(5) and long.failure is None, long.failure
    assert long.events[-1] == ("error", {"detail": STOPPED}), long.events[-3:]
    assert long.ended is not None
    assert BOUND - 0.5 < long.ended - stopped_at < BOUND + 10
    assert exited < BOUND + 12, exited
    with SqliteDb(str(tmp_path / "n.db")) as store:
        [kept] = store.get_runs("long", "ava")
        assert (kept.status, kept.error, kept.content) == ("failed", STOPPED, long.text())


def _healthy(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "uvicorn exited"
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
