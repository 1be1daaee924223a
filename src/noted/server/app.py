"""``create_app``: the FastAPI application behind ``noted serve``.

    from noted import SqliteDb
    from noted.server import create_app

    app = create_app(SqliteDb(db_file="noted.db"))   # uvicorn module:app

JSON routes for memories, sessions and agents, the Memories page at ``/``, and the OpenAPI
schema at ``/openapi.json`` (browsable at ``/docs``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from noted import __version__
from noted._time import iso
from noted.agent import Agent
from noted.db.base import Store
from noted.db.urls import open_store
from noted.errors import (
    ConflictError,
    DamagedMemoryError,
    ModelError,
    NotFoundError,
    RunTooLargeError,
    StoreError,
    UserError,
)
from noted.memory import Memory
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.retrieval.embedders import Embedder
from noted.server.agents import agent_id_of, agent_routes
from noted.server.auth import Auth, Unauthorized
from noted.server.docs import docs_routes
from noted.server.failures import failure_detail, log
from noted.server.fast import FastMemoryList
from noted.server.head import HeadAsGet
from noted.server.headers import SecurityHeaders
from noted.server.jobs import job_routes
from noted.server.limits import BodyLimit
from noted.server.local import LocalOnly
from noted.server.memories import memory_routes
from noted.server.openapi import amend_openapi
from noted.server.rawids import RawIds, route_path
from noted.server.responses import json_response
from noted.server.schemas import (
    ERRORS,
    Error,
    Health,
    Ready,
    RevocationOut,
    RevocationRequest,
    TokenOut,
    TokenRequest,
)
from noted.server.services import Services
from noted.server.sessions import session_routes
from noted.server.stopping import DEFAULT_SHUTDOWN_TIMEOUT, Shutdown, bounded
from noted.server.tracecontext import TraceContinued

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
STATIC: Final = resources.files("noted.server") / "static"
REPAIR: Final = "PATCH the memory with its topics to repair it, or DELETE it"
"""What the answer about a damaged memory says to do (see DamagedMemoryError)."""
Route = Callable[..., Response]


def _error(status: int, detail: str, *, allow: str | None = None, **extra: Any) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if allow is not None:
        headers = {"Allow": allow}
    return json_response({"detail": detail, **extra}, status, headers)


def _describe(error: dict[str, Any]) -> str:
    kind, loc = error.get("type"), tuple(error.get("loc", ()))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error") or "it cannot be parsed"
        at = f" (at character {loc[1]})" if len(loc) > 1 else ""
        return f"the request body is not valid JSON: {reason}{at}"
    if loc == ("body",):
        if kind == "missing":
            return "the request body is missing: send a JSON object"
        return "the request body must be a JSON object, sent as Content-Type: application/json"
    where = ".".join(str(part) for part in loc if part != "body") or "request"
    return f"{where}: {_reason(error)}"


def _reason(error: dict[str, Any]) -> str:
    """What is wrong with a field, in the words the API uses for it elsewhere."""
    kind = error.get("type")
    if kind == "string_unicode":
        return "must be valid Unicode text (it has an unpaired surrogate)"
    if kind == "string_too_short" and (error.get("ctx") or {}).get("min_length") == 1:
        return "must not be empty or blank"
    return str(error.get("msg", "invalid"))


def _unparsable(exc: HTTPException) -> str:
    """Why a body could not be parsed at all (the parser's own failure is the cause)."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "it is nested too deeply (arrays or objects inside each other)"
    if isinstance(cause, UnicodeDecodeError) or not isinstance(cause, ValueError):
        return "it is not UTF-8 text"
    return f"it cannot be read ({str(cause).split(';')[0]})"  # e.g. a number of 5,000 digits


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The documented methods of the route at ``path``, and HEAD with GET (a 405's
    ``Allow``): those of the first path of the schema that ``path`` fits, in the order the
    routes are tried. An id may hold a ``/`` (see :data:`~noted.server.memories.ID`):
    ``/memories/a/history`` is the history's path, tried first, and ``/memories/a/b`` a
    memory's."""
    for template, operations in app.openapi()["paths"].items():
        parts = re.split(r"(\{[^/}]+\})", template)
        pattern = "".join(".+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, path):
            methods = {method.upper() for method in operations}
            return sorted(methods | {"HEAD"} if "GET" in methods else methods)  # HeadAsGet
    return []


def _not_json(request: Request, errors: Sequence[Any]) -> str | None:
    """How a body the route did not read as JSON was sent (its media type, such as
    ``text/plain``, or that it had none), for a route that takes JSON: FastAPI reads a
    body as JSON only when sent as ``application/json`` (or ``application/*+json``), and
    otherwise validates its bytes, which fail the schema. None when the body was read
    (or there was none)."""
    unread = any(
        tuple(e.get("loc", ()))[:1] == ("body",) and isinstance(e.get("input"), bytes)
        for e in errors
    )
    if not unread:
        return None
    sent = request.headers.get("content-type", "").split(";", 1)[0].strip()
    return f"sent as {sent}" if sent else "sent without a Content-Type"


def _plain(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error without the offending input (which may be huge or not JSON)."""
    return {"loc": [str(p) for p in error.get("loc", ())], "msg": _reason(error)}


async def _from_admin(request: Request) -> bool:
    """Whether the request carries the admin's credentials (every request, without a key)."""
    svc: Services = request.app.state.noted
    try:
        caller = await svc.auth.authenticate_async(request.headers.get("authorization"))
        return caller.is_admin
    except (Unauthorized, StoreError):  # a user token's revocations are in the store
        return False


def _handlers(app: FastAPI) -> None:
    async def unauthorized(_: Request, exc: Exception) -> Response:
        return _error(401, str(exc))

    async def user_error(_: Request, exc: Exception) -> Response:
        return _error(400, str(exc))

    async def too_large(_: Request, exc: Exception) -> Response:
        # a run larger than a store keeps: asking again makes another such run
        return _error(413, str(exc))

    async def not_found(_: Request, exc: Exception) -> Response:
        return _error(404, str(exc) or "not found")

    async def conflict(_: Request, exc: Exception) -> Response:
        return _error(409, str(exc))

    async def failed(request: Request, exc: Exception) -> Response:
        # where the store is, and what a model's provider said, are the operator's to read
        assert isinstance(exc, StoreError | ModelError)
        status = 503 if isinstance(exc, StoreError) else 502
        where = f"{request.method} {request.url.path}"
        return _error(status, failure_detail(exc, await _from_admin(request), where))

    async def damaged(request: Request, exc: Exception) -> Response:
        # a memory of the caller's own that the store holds damaged: which, and how to
        # repair it, for whoever may read that memory (it says nothing of the store)
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(500, f"{exc}; {REPAIR}")

    async def unexpected(_: Request, exc: Exception) -> Response:
        # the error middleware logs the exception and its traceback after this answer
        return _error(500, "the server failed to answer: see its log")

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        found = exc.errors()
        sent = _not_json(request, found)
        if sent is not None:
            return _error(
                415,
                "the request body must be JSON, sent as Content-Type: application/json "
                f"(it was {sent})",
            )
        detail = "; ".join(_describe(e) for e in found) or "invalid request"
        # text no store can keep is a bad value (400), as a NUL character is
        unkeepable = bool(found) and all(e.get("type") == "string_unicode" for e in found)
        return _error(400 if unkeepable else 422, detail, errors=[_plain(e) for e in found])

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allowed = ", ".join(_allowed_methods(app, route_path(request.scope))) or (
                (exc.headers or {}).get("Allow", "")
            )
            return _error(
                405, f"{request.method} is not allowed here: use {allowed}", allow=allowed
            )
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return _error(400, f"the request body is not valid JSON: {_unparsable(exc)}")
        return await http_exception_handler(request, exc)

    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(RunTooLargeError, too_large)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(DamagedMemoryError, damaged)
    app.add_exception_handler(StoreError, failed)
    app.add_exception_handler(ModelError, failed)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class _NotedApp(FastAPI):
    """FastAPI with the plain listing answered first, before even Starlette's outermost
    error middleware (the fast path maps no errors: it leaves every failure to the route),
    and the security headers on every other answer (the fast path adds its own), each
    inside the trace context its headers carry while tracing is on, and a HEAD request
    answered as its GET is, without the body; without an API key, a request for another
    name than this machine's is refused before all of them."""

    def build_middleware_stack(self) -> ASGIApp:
        framework = SecurityHeaders(RawIds(super().build_middleware_stack()))
        traced = TraceContinued(FastMemoryList(framework, self.state.noted))
        served = HeadAsGet(traced, self.state.streams)
        # the names a request may give are checked before anything answers it
        return LocalOnly(served) if self.state.local_only else served


def _agents(agent: Agent | Sequence[Agent] | None) -> dict[str, Agent]:
    agents = [] if agent is None else [agent] if isinstance(agent, Agent) else list(agent)
    found: dict[str, Agent] = {}
    for each in agents:
        if not isinstance(each, Agent):
            raise UserError(f"agent must be an Agent, got {type(each).__name__}")
        agent_id = agent_id_of(each)
        if agent_id in found:
            raise UserError(f"two agents share the id {agent_id!r}: give each an agent_id")
        found[agent_id] = each
    return found


def create_app(
    db: Store | str | None = None,
    *,
    memory: Memory | None = None,
    embedder: Embedder | str | None = DEFAULT_EMBEDDER,
    agent: Agent | Sequence[Agent] | None = None,
    api_key: str | None = None,
    token_secret: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    mcp: bool = False,
    local_only: bool | None = None,
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
) -> FastAPI:
    """The noted server for a store (a store object, a URL or SQLite path for
    :func:`~noted.open_store`, or ``memory``'s store).

    ``api_key`` (default: ``$NOTED_API_KEY``) is required as ``Authorization: Bearer ...``
    on every data route when set. User tokens (``POST /tokens``, or
    :func:`~noted.server.issue_token`) are signed with ``token_secret`` (default:
    ``$NOTED_TOKEN_SECRET``, else derived from the API key). ``embedder`` (the local model by
    default, ``None`` for keyword search only) makes semantic and hybrid search available.
    ``agent`` (one or several) adds the run routes. ``mcp=True`` serves the MCP server at
    ``/mcp`` too (streamable HTTP, same credentials; needs the ``mcp`` extra).
    ``local_only`` (default: when there is no API key) answers 421 to requests whose
    ``Host`` or ``Origin`` is not 127.0.0.1, localhost or [::1] (DNS rebinding).
    Once SIGTERM or Ctrl-C comes (under an ASGI server that stops on them, such as
    uvicorn), the agent runs under way get ``shutdown_timeout`` seconds (default 25) to
    finish; then they are stopped and kept as failed runs, and their callers told.
    """
    if memory is None:
        store = open_store(db or "noted.db") if db is None or isinstance(db, str) else db
        memory = Memory(store, embedder=embedder)
    elif db is not None or embedder != DEFAULT_EMBEDDER:
        raise UserError("give either memory=... or db=... (and embedder=...), not both")
    if not isinstance(memory.db, Store):
        raise UserError(f"the server needs a store that keeps sessions too, got {memory.db!r}")
    if type(max_body_bytes) is not int or max_body_bytes < 1024:
        raise UserError(f"max_body_bytes must be an integer >= 1024, got {max_body_bytes!r}")
    if type(shutdown_timeout) is not int or shutdown_timeout < 1:
        raise UserError(f"shutdown_timeout must be a positive integer, got {shutdown_timeout!r}")
    auth = Auth(
        api_key if api_key is not None else os.environ.get("NOTED_API_KEY") or None,
        token_secret if token_secret is not None else os.environ.get("NOTED_TOKEN_SECRET") or None,
    ).checking_revocations_of(memory.db)
    svc = Services(memory.db, memory, auth, _agents(agent))
    app = _NotedApp(
        title="noted",
        version=__version__,
        summary="Long-term memory for LLM agents: user memories, sessions and agents over HTTP.",
        docs_url=None,  # served from the Swagger UI package by docs_routes, not a CDN
        redoc_url=None,
    )
    app.state.noted = svc
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    local = auth.open if local_only is None else local_only
    app.state.local_only = local
    _handlers(app)
    app.include_router(memory_routes(svc))
    app.include_router(session_routes(svc))
    app.include_router(job_routes(svc))
    if svc.agents:
        app.include_router(agent_routes(svc))
    _service_routes(app, svc)
    _page_routes(app)
    docs_routes(app)
    amend_openapi(app)
    app.state.streams = ()  # the paths whose GET opens a stream: HEAD is theirs to answer
    if mcp:
        from noted.mcp import create_server
        from noted.mcp.http import DEFAULT_PATH, mount_mcp

        mount_mcp(app, create_server(memory=memory, auth=auth), auth, local_only=local)
        app.state.streams = (DEFAULT_PATH,)
    shutdown = Shutdown(svc.runs, shutdown_timeout)
    app.state.shutdown = shutdown
    app.router.lifespan_context = bounded(shutdown, app.router.lifespan_context)
    return app


_PROBE = "noted-readiness-probe"  # an id no memory or session is given


def _service_routes(app: FastAPI, svc: Services) -> None:
    @app.get("/health", tags=["service"], summary="Liveness", responses={200: {"model": Health}})
    def health() -> Response:
        return json_response(
            {
                "status": "ok",
                "version": __version__,
                "auth": "open" if svc.auth.open else "api_key",
                "semantic_search": svc.memory.index is not None,
            }
        )

    @app.get(
        "/ready",
        tags=["service"],
        summary="Readiness: the store answers",
        responses={
            200: {"model": Ready},
            503: {"model": Error, "description": "The store cannot answer"},
        },
    )
    def ready() -> Response:
        # one read of each table by key: a StoreError is the 503 of every route
        svc.store.get_memory(_PROBE, _PROBE)
        svc.store.get_session(_PROBE, _PROBE)
        return json_response({"status": "ready"})

    def admin_post(
        path: str, summary: str, answer: type[BaseModel], what: str
    ) -> Callable[[Route], Route]:
        """A POST route for the admin key only (a user token gets 403)."""
        return app.post(
            path,
            tags=["service"],
            status_code=201,
            summary=f"{summary} (admin key only)",
            responses={
                201: {"model": answer},
                403: {"model": Error, "description": f"A user token cannot {what}"},
                **ERRORS,
            },
        )

    def refused(request: Request, what: str) -> Response | None:
        if svc.auth.authenticate(request.headers.get("authorization")).is_admin:
            return None
        return _error(403, f"only the admin key can {what}")

    @admin_post("/tokens", "Issue a user token", TokenOut, "issue tokens")
    def issue(request: Request, body: TokenRequest) -> Response:
        if (no := refused(request, "issue tokens")) is not None:
            return no
        token = svc.auth.issue(body.user_id, body.expires_in)
        return json_response(
            {
                "token": token,
                "token_type": "bearer",
                "user_id": body.user_id,
                "expires_in": body.expires_in,
            },
            201,
        )

    @admin_post(
        "/tokens/revocations",
        "Revoke one user's tokens, or everyone's, issued up to a time",
        RevocationOut,
        "revoke tokens",
    )
    def revoke(request: Request, body: RevocationRequest) -> Response:
        if (no := refused(request, "revoke tokens")) is not None:
            return no
        cutoff = svc.auth.revoke(body.user_id, body.before)
        return json_response({"user_id": body.user_id, "revoked_before": iso(cutoff)}, 201)


def _page_routes(app: FastAPI) -> None:
    index = (STATIC / "index.html").read_bytes() if (STATIC / "index.html").is_file() else b""

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(packages=[("noted.server", "static")]), name="static")
