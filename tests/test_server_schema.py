"""The server against its own OpenAPI schema: schemathesis generates requests for every
operation (valid ones and invalid ones), sends them over real HTTP, and checks that no
answer is a server error and every answer is documented: status code, content type,
headers and body.

Each operation runs a bounded, derandomized number of examples, with the admin key and
again with a user token (whose walls must not turn into server errors either).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from live_server import live_server
from noted import Agent, InMemoryDb, Memory, RunResult, SessionSummary, SqliteDb, UserMemory
from noted.db.jobs import jobs_for_run
from noted.models import Message, ToolCall
from noted.server import create_app, issue_token
from noted.server.responses import json_response
from noted.server.schemas import Health
from noted.sessions import RunMetrics, ToolExecution
from noted.testing import FunctionModel, ScriptedModel

KEY = "schema-admin-key-0123456789abcdef0123"
SECRET = "schema-token-secret-0123456789abcdef0123"
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


def _agent(db: Any) -> Agent:
    return Agent(FunctionModel(lambda messages, tools: "All right."), db=db, agent_id="helper")


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, whether it takes any input) of every documented operation."""
    paths = create_app(InMemoryDb(), agent=_agent(None)).openapi()["paths"]
    found = []
    for path, methods in paths.items():
        for method, operation in methods.items():
            takes = bool(
                operation.get("parameters")
                or operation.get("requestBody")
                or operation.get("security")
            )
            found.append((method.upper(), path, takes))
    return found


OPERATIONS = _operations()


class Served:
    def __init__(self, url: str, ids: dict[str, str]) -> None:
        self.url = url
        self.ids = ids
        self.schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        self.admin = {"Authorization": f"Bearer {KEY}"}

    @property
    def user(self) -> dict[str, str]:
        """A token of ava's issued now (generated requests revoke tokens issued so far)."""
        return {"Authorization": f"Bearer {issue_token('ava', SECRET)}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = SqliteDb(tmp_path_factory.mktemp("schema") / "schema.db")
    memory = Memory(db)
    ids = {
        name: memory.add_user_memory(
            UserMemory(f"Ava's memory for {name}", topics=["t", name]), "ava"
        )
        for name in ("GET", "PATCH", "DELETE", "history")
    }
    memory.add_user_memory(UserMemory("Bob's memory", topics=["b"]), "bob")
    db.append_run(
        RunResult(run_id="r1", session_id="ava-session", user_id="ava", input="hi", content="hello")
    )
    db.set_session_summary("ava-session", "ava", SessionSummary("a greeting", ["hello"], 1))
    db.append_run(_every_shape_of_a_run())
    db.append_run(
        RunResult(run_id="r2", session_id="doomed", user_id="ava", input="bye", content="bye")
    )
    app = create_app(db, api_key=KEY, token_secret=SECRET, agent=_agent(db))
    with live_server(app) as url:
        yield Served(url, ids)
    db.close()


def _every_shape_of_a_run() -> RunResult:
    """A failed run with a tool call whose arguments were broken, a tool that failed, and
    every token count: the session's schema must document each field it has."""
    broken = ToolCall("lookup", {}, id="call-1", invalid_arguments="{not json")
    return RunResult(
        run_id="r-shapes",
        session_id="ava-session",
        user_id="ava",
        input="look it up",
        content="Part of an answer",
        messages=[
            Message("user", "look it up"),
            Message("assistant", None, tool_calls=[broken]),
            Message("tool", "lookup failed: no such thing", tool_call_id="call-1", name="lookup"),
            Message("assistant", "Part of an answer"),
        ],
        tool_calls=[ToolExecution("call-1", "lookup", {}, "lookup failed", error=True)],
        metrics=RunMetrics(2, 120, 30, 1.5, 1.2, 0.3, 1, 64, 8, 12),
        status="failed",
        error="the model failed: connection reset",
        stop_reason="error",
        model="scripted",
    )


def run_operation(
    schema: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    mode: schemathesis.GenerationMode,
    examples: int = EXAMPLES,
    **fixed: Any,
) -> dict[int, int]:
    """Send ``examples`` generated requests (the same ones every run) and check each
    answer; return how often each status came back."""
    operation = schema[path][method]
    statuses: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    check()
    return statuses


def _label(operation: tuple[str, str, bool]) -> str:
    return f"{operation[0]} {operation[1]}"


@pytest.mark.parametrize("who", ["admin", "user"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=_label)
def test_generated_requests_get_documented_answers(
    served: Served, operation: tuple[str, str, bool], who: str
) -> None:
    method, path, takes_input = operation
    headers = served.admin if who == "admin" else served.user
    fixed: dict[str, Any] = {}
    if path == "/agents/{agent_id}/runs":
        fixed["path_parameters"] = {"agent_id": "helper"}  # or nearly every case is a 404
    statuses = run_operation(served.schema, method, path, headers, POSITIVE, **fixed)
    if takes_input:
        statuses.update(run_operation(served.schema, method, path, headers, NEGATIVE, **fixed))
    assert max(statuses) < 500, statuses
    assert sum(statuses.values()) > 0


ID_ROUTES = [
    ("GET", "/memories/{memory_id}", "GET"),
    ("PATCH", "/memories/{memory_id}", "PATCH"),
    ("GET", "/memories/{memory_id}/history", "history"),
    ("DELETE", "/memories/{memory_id}", "DELETE"),
]


@pytest.mark.parametrize(
    ("method", "path", "name"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES]
)
def test_answers_about_a_memory_that_exists(
    served: Served, method: str, path: str, name: str
) -> None:
    """The same, for a memory of the user: its 200 (and 204) answers are checked too."""
    statuses = run_operation(
        served.schema,
        method,
        path,
        served.user,
        POSITIVE,
        examples=15,
        path_parameters={"memory_id": served.ids[name]},
        query={"user_id": "ava"},  # the token's user, which the schema asks for
    )
    assert max(statuses) < 500
    assert statuses.keys() & {200, 204}, statuses


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_answers_about_a_session_that_exists(served: Served, method: str) -> None:
    session = "ava-session" if method == "GET" else "doomed"
    statuses = run_operation(
        served.schema,
        method,
        "/sessions/{session_id}",
        served.admin,
        POSITIVE,
        examples=10,
        path_parameters={"session_id": session},
    )
    assert statuses.keys() & {200, 204}, statuses


def test_a_run_and_its_events_are_documented() -> None:
    spec = create_app(InMemoryDb(), agent=_agent(None)).openapi()
    answer = spec["paths"]["/agents/{agent_id}/runs"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/RunOut"}
    event = answer["text/event-stream"]["schema"]["properties"]["event"]
    assert set(event["enum"]) == {
        "run_started",
        "content",
        "tool_call_started",
        "tool_call_completed",
        "run_completed",
        "error",
    }
    runs = spec["components"]["schemas"]["SessionOut"]["properties"]["runs"]
    assert {"$ref": "#/components/schemas/RunOut"} in [o.get("items") for o in runs["anyOf"]]


def test_every_operation_is_run() -> None:
    labels = {_label(o) for o in OPERATIONS}
    assert {
        "GET /memories",
        "POST /memories",
        "DELETE /memories",
        "GET /memories/{memory_id}",
        "PATCH /memories/{memory_id}",
        "DELETE /memories/{memory_id}",
        "GET /memories/{memory_id}/history",
        "GET /memory",
        "PATCH /memory",
        "DELETE /memory",
        "GET /memory_history",
        "GET /memory_topics",
        "GET /user_memory_stats",
        "GET /sessions",
        "GET /sessions/{session_id}",
        "DELETE /sessions/{session_id}",
        "GET /session",
        "DELETE /session",
        "GET /agents",
        "POST /agents/{agent_id}/runs",
        "GET /health",
        "GET /ready",
        "POST /tokens",
        "POST /tokens/revocations",
        "GET /jobs",
        "POST /jobs/{job_id}/retry",
        "DELETE /jobs/{job_id}",
    } == labels


def test_answers_that_generation_rarely_meets_are_documented(tmp_path: Path) -> None:
    """Hand-made requests for the answers random data seldom gets: a session of another
    user (409 for the admin), a change made on a memory as it no longer is (409), a failing
    model (502), a user token asking for a token (403), a body over the limit (413),
    malformed JSON and text no store keeps (422, 400)."""
    db = SqliteDb(tmp_path / "rare.db")
    memory_id = Memory(db).add_user_memory(UserMemory("Ava likes tea"), "ava")
    db.append_run(
        RunResult(run_id="r1", session_id="bobs", user_id="bob", input="hi", content="yo")
    )
    failing = Agent(ScriptedModel([]), db=db, agent_id="failing")
    app = create_app(db, api_key=KEY, token_secret=SECRET, agent=failing, max_body_bytes=2048)
    admin = {"Authorization": f"Bearer {KEY}"}
    user = {"Authorization": f"Bearer {issue_token('ava', SECRET)}"}
    with live_server(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        runs = schema["/agents/{agent_id}/runs"]["POST"]
        memories = schema["/memories"]["POST"]
        cases = [
            (
                runs.Case(
                    path_parameters={"agent_id": "failing"},
                    body={"message": "hi", "user_id": "ava", "session_id": "bobs"},
                ),
                admin,
                409,
            ),
            (
                runs.Case(
                    path_parameters={"agent_id": "failing"},
                    body={"message": "hi", "user_id": "ava", "stream": False},
                ),
                admin,
                502,
            ),
            (
                runs.Case(
                    path_parameters={"agent_id": "failing"},
                    body={"message": "hi", "session_id": "bobs"},
                ),
                user,
                404,
            ),
            (schema["/tokens"]["POST"].Case(body={"user_id": "bob"}), user, 403),
            (memories.Case(body={"memory": "x" * 3000, "user_id": "ava"}), admin, 413),
            (memories.Case(body={"memory": "a\x00b", "user_id": "ava"}), admin, 400),
            (memories.Case(body={"memory": "x", "unknown": 1}), admin, 422),
            (
                schema["/memories/{memory_id}"]["PATCH"].Case(
                    path_parameters={"memory_id": memory_id},
                    query={"user_id": "ava"},
                    body={"memory": "Ava likes coffee", "if_updated_at": "2020-01-01T00:00:00Z"},
                ),
                admin,
                409,
            ),
        ]
        for case, headers, expected in cases:
            checks = CHECKS if expected < 500 else CHECKS[1:]  # a 502 is expected here
            response = case.call_and_validate(headers=headers, checks=checks, timeout=30)
            assert response.status_code == expected, (expected, response.text)
        # bodies that are not JSON at all
        for raw, expected in ((b"{bad", 422), (b'{"memory": "\\ud800"}', 400), (b"\xff", 400)):
            case = memories.Case(body=raw, media_type="application/json")
            response = case.call_and_validate(headers=admin, checks=CHECKS, timeout=30)
            assert response.status_code == expected, (raw, response.text)
        # a body sent as another type than JSON: 415, as each route with a body documents
        for path, method in (("/memories", "POST"), ("/memories/{memory_id}", "PATCH")):
            operation = schema[path][method]
            assert "415" in operation.definition.raw["responses"], (method, path)
        case = memories.Case(body="The user likes tea", media_type="text/plain")
        response = case.call_and_validate(headers=admin, checks=CHECKS, timeout=30)
        assert response.status_code == 415, response.text
    db.close()


def test_the_jobs_listing_is_documented(tmp_path: Path) -> None:
    """GET /jobs as the schema states it, field by field, for a job of each state (its
    answer had an empty schema, which any body fits, and its 403 none)."""
    db = SqliteDb(tmp_path / "jobs.db")
    runs = [
        RunResult(run_id=f"r{n}", session_id="s1", user_id="ava", input="hi", content="yo")
        for n in range(3)
    ]
    for run in runs:
        db.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=run.run_id == "r0"))
    failed = db.claim_job("worker-1", 60)
    assert failed is not None
    db.fail_job(failed, "the model is down", retry_in=None)
    waiting = db.claim_job("worker-1", 60)
    assert waiting is not None
    db.fail_job(waiting, "the model is down", retry_in=30)
    running = db.claim_job("worker-2", 60)
    assert running is not None
    db.store_plan(running, {"add": []})
    admin = {"Authorization": f"Bearer {KEY}"}
    user = {"Authorization": f"Bearer {issue_token('ava', SECRET)}"}
    with live_server(create_app(db, api_key=KEY, token_secret=SECRET)) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        spec = schema.raw_schema
        answer = spec["paths"]["/jobs"]["get"]["responses"]["200"]["content"]
        page = answer["application/json"]["schema"]
        assert page == {"$ref": "#/components/schemas/JobPage"}
        documented = set(spec["components"]["schemas"]["JobOut"]["properties"])
        listing = schema["/jobs"]["GET"]
        response = listing.Case().call_and_validate(headers=admin, checks=CHECKS, timeout=30)
        jobs = response.json()["data"]
        assert {(j["status"], j["plan_stored"]) for j in jobs} == {
            ("failed", False),
            ("pending", False),
            ("running", True),
        }
        assert all(set(job) == documented for job in jobs)
        refused = listing.Case().call_and_validate(headers=user, checks=CHECKS, timeout=30)
        assert refused.status_code == 403
    db.close()


# -- the checks catch what they are meant to ---------------------------------------------------


def _broken_app(tmp_path: Path, route: Callable[[FastAPI], None]) -> FastAPI:
    app = create_app(SqliteDb(tmp_path / "broken.db"))
    route(app)
    return app


def _wrong_body(app: FastAPI) -> None:
    @app.get("/broken", responses={200: {"model": Health}})
    def broken() -> Any:
        return json_response({"status": "not ok", "version": 1})


def _undocumented_status(app: FastAPI) -> None:
    @app.get("/broken", responses={200: {"model": Health}})
    def broken() -> Any:
        return json_response({"detail": "I am a teapot"}, 418)


def _server_error(app: FastAPI) -> None:
    @app.get("/broken", responses={200: {"model": Health}, 500: {"model": Health}})
    def broken() -> Any:
        raise RuntimeError("boom")


def _wrong_content_type(app: FastAPI) -> None:
    @app.get("/broken", responses={200: {"model": Health}})
    def broken() -> Any:
        from fastapi import Response

        return Response(b"ok", media_type="text/plain")


BROKEN = [
    (_wrong_body, "ST108"),  # the body does not match the schema
    (_undocumented_status, "ST103"),
    (_server_error, "ST101"),
    (_wrong_content_type, "ST105"),
]


@pytest.mark.parametrize(("route", "code"), BROKEN, ids=[r.__name__ for r, _ in BROKEN])
def test_the_checks_catch_a_broken_route(
    tmp_path: Path, route: Callable[[FastAPI], None], code: str
) -> None:
    with live_server(_broken_app(tmp_path, route)) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        with pytest.raises((Failure, FailureGroup)) as caught:
            run_operation(schema, "GET", "/broken", {}, POSITIVE, examples=3)
    error = caught.value
    failures = list(error.exceptions) if isinstance(error, FailureGroup) else [error]
    assert code in {f.code for f in failures}, failures


ROOT = Path(__file__).resolve().parent.parent


def test_schemathesis_run_with_every_check_finds_nothing(tmp_path: Path) -> None:
    """The contract as its users check it: ``schemathesis run --checks all`` (examples,
    coverage, fuzzing and stateful phases) with the admin key and the project's
    schemathesis.toml, a fixed seed and few examples per operation, so that it is
    repeatable and quick. The store holds sessions, so that the stateful phase can follow
    the link from ``GET /sessions`` to a session."""
    db = SqliteDb(tmp_path / "contract.db")
    memory = Memory(db)
    for user in ("ava", "bob"):
        memory.add_user_memory(UserMemory(f"{user} likes tea", topics=["drinks"]), user)
        db.append_run(
            RunResult(run_id=f"r-{user}", session_id=f"s-{user}", user_id=user, input="hi")
        )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        "--checks",
        "all",
        "--seed",
        "20",
        "--max-examples",
        "5",
        "--no-color",
        "-H",
        f"Authorization: Bearer {KEY}",
    ]
    try:
        with live_server(create_app(db, api_key=KEY, token_secret=SECRET)) as url:
            done = subprocess.run(
                [*command, f"{url}/openapi.json"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                cwd=tmp_path,  # where schemathesis keeps its cache
            )
    finally:
        db.close()
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-8000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ +{phase}", report), (phase, report[-4000:])
    assert not re.search(r"❌", report), report[-4000:]
    assert re.search(r"API Links: +[1-9]", report), report[-4000:]  # links were followed
