"""The session routes: list a user's sessions, read one (its summary and a page of its
runs, newest first, with their messages), delete one. Why a run failed is the admin's to
read (see :mod:`noted.server.failures`)."""

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Response

from noted.db.sessions_core import SessionRead, session_pages
from noted.errors import NotFoundError
from noted.schema import check_id, require_id
from noted.server.auth import Principal
from noted.server.failures import run_error_for
from noted.server.memories import BY_QUERY, ID, Limit, PageNumber, UserQuery
from noted.server.responses import json_response, no_content, page_meta
from noted.server.schemas import (
    ERRORS,
    MAX_ID_CHARS,
    MAX_LIMIT,
    MAX_PAGE,
    SessionOut,
    SessionPage,
)
from noted.server.services import Services

__all__ = ["session_routes"]

SessionId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
RUNS_LIMIT: Final = 20
"""The runs of a session ``GET /sessions/{id}`` answers with when not asked for more."""
RunsPage = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE, description="A page of the session's runs: 1 holds the newest"),
]
RunsLimit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Runs per page, at most {MAX_LIMIT}")
]
SessionIdQuery = Annotated[
    str, Query(min_length=1, max_length=MAX_ID_CHARS, description="The session's id")
]


def session_routes(svc: Services) -> APIRouter:
    router = APIRouter(tags=["sessions"], responses=ERRORS)
    who = Depends(svc.principal)
    read_page = session_pages(svc.store)

    @router.get(
        "/sessions",
        summary="Sessions, most recently updated first (without their runs)",
        responses={200: {"model": SessionPage}},
    )
    def list_sessions(
        principal: Annotated[Principal, who],
        user_id: UserQuery = None,
        page: PageNumber = 1,
        limit: Limit = 20,
    ) -> Response:
        user = principal.scope(check_id("user_id", user_id))
        found = svc.store.list_sessions(user, limit=limit + 1, offset=(page - 1) * limit)
        return json_response(
            {
                "data": [s.to_dict(with_runs=False) for s in found[:limit]],
                "meta": {"page": page, "limit": limit, "has_more": len(found) > limit},
            }
        )

    @router.get(
        f"/sessions/{{session_id:{ID}}}",
        summary="A session with its summary and a page of its runs (the newest first)",
        description="`runs` holds the runs of page `runs_page` of `runs_limit` runs, "
        "counted from the newest (page 1: the newest runs), oldest first as a transcript "
        "reads; `runs_meta` says how many runs and pages there are.",
        responses={200: {"model": SessionOut}},
    )
    def get_session(
        principal: Annotated[Principal, who],
        session_id: SessionId,
        user_id: UserQuery = None,
        runs_page: RunsPage = 1,
        runs_limit: RunsLimit = RUNS_LIMIT,
    ) -> Response:
        return _read(read_page, principal, session_id, user_id, runs_page, runs_limit)

    @router.delete(f"/sessions/{{session_id:{ID}}}", status_code=204, summary="Delete a session")
    def delete_session(
        principal: Annotated[Principal, who],
        session_id: SessionId,
        user_id: UserQuery = None,
    ) -> Response:
        return _delete(svc, principal, session_id, user_id)

    @router.get(
        "/session",
        summary="A session with its summary and a page of its runs, its id in the query",
        description=BY_QUERY,
        responses={200: {"model": SessionOut}},
    )
    def get_session_by_query(
        principal: Annotated[Principal, who],
        session_id: SessionIdQuery,
        user_id: UserQuery = None,
        runs_page: RunsPage = 1,
        runs_limit: RunsLimit = RUNS_LIMIT,
    ) -> Response:
        return _read(read_page, principal, session_id, user_id, runs_page, runs_limit)

    @router.delete(
        "/session",
        status_code=204,
        summary="Delete a session, its id in the query",
        description=BY_QUERY,
    )
    def delete_session_by_query(
        principal: Annotated[Principal, who],
        session_id: SessionIdQuery,
        user_id: UserQuery = None,
    ) -> Response:
        return _delete(svc, principal, session_id, user_id)

    return router


def _read(
    read_page: SessionRead,
    principal: Principal,
    session_id: str,
    user_id: str | None,
    runs_page: int,
    runs_limit: int,
) -> Response:
    """The answer of a read of a session with a page of its runs, whichever form named it."""
    user = principal.scope(check_id("user_id", user_id))
    offset = (runs_page - 1) * runs_limit
    found = read_page(require_id("session_id", session_id), user, runs_limit, offset)
    if found is None:
        raise NotFoundError("no such session")
    data = found.to_dict()
    data["runs_meta"] = page_meta(runs_page, runs_limit, found.run_count)
    for run in data["runs"]:  # a failed run's error may hold a model provider's answer
        run["error"] = run_error_for(run["error"], principal.is_admin)
    return json_response(data)


def _delete(svc: Services, principal: Principal, session_id: str, user_id: str | None) -> Response:
    """The answer of a session's deletion, whichever form named it."""
    user = principal.scope(check_id("user_id", user_id))
    if not svc.store.delete_session(require_id("session_id", session_id), user):
        raise NotFoundError("no such session")
    return no_content()
