"""The memory routes: list, search, get, create, update, delete, topics, stats, history;
those about one memory also with its id in the query (``/memory?memory_id=``)."""

from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator
from starlette.convertors import Convertor, register_url_convertor

from noted._time import iso
from noted.db.base import MemoryQuery, SortField, SortOrder
from noted.errors import ConflictError, NotFoundError, UserError
from noted.limits import MAX_QUERY_CHARS, MAX_TOPICS
from noted.memory import DEFAULT_USER_ID
from noted.schema import UserMemory, check_id, check_storable, check_topics
from noted.server.auth import Principal
from noted.server.rawids import escaped, unescaped
from noted.server.responses import json_response, no_content, page_meta
from noted.server.schemas import (
    ERRORS,
    MAX_ID_CHARS,
    MAX_LIMIT,
    MAX_PAGE,
    BulkDelete,
    Deleted,
    Error,
    MemoryCreate,
    MemoryEventOut,
    MemoryOut,
    MemoryPage,
    MemoryUpdate,
    StatsPage,
    trimmed,
)
from noted.server.services import Services

__all__ = ["BY_QUERY", "ID", "MEMORY_ID", "memory_routes"]

SEARCH_RESULTS: Final = 500  # a search ranks at most this many memories; pages read into them


class _Id(Convertor[str]):
    """An id in a route's path, slashes and all. Ids are text the caller chose (a session
    id given to a run, a memory id given to the Memory API or kept by an import): a ``/``
    in one, sent as ``%2F``, reaches the routes as ``%2F`` still (see
    :class:`~noted.server.rawids.RawIds`), decoded here; sent bare, it reaches them as
    ``/``, which this parameter takes too."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return unescaped(value)

    def to_string(self, value: str) -> str:
        return escaped(value)


class _MemoryId(_Id):
    """A memory's id in its routes' paths: any id but one ending in a bare ``/history``,
    so that ``/memories/{id}/history`` is the history's path for every method (405 but for
    GET), never a memory's; the memory ``x/history`` is ``/memories/x%2Fhistory``."""

    regex = ".+(?<!/history)"


ID: Final = "noted_id"
"""The path convertor of ids: ``/sessions/{session_id:noted_id}``."""
MEMORY_ID: Final = "noted_memory_id"
"""The path convertor of memory ids: ``/memories/{memory_id:noted_memory_id}``."""
register_url_convertor(ID, _Id())
register_url_convertor(MEMORY_ID, _MemoryId())

UserQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID_CHARS, description="The memories' user"),
]
MemoryId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
UserIdPart = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Only the users whose id holds this text, in any case",
    ),
]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1 is the first page")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}")]


def topic_filter(values: list[str] | None) -> tuple[str, ...]:
    """``?topics=a&topics=b`` or ``?topics=a,b``. A value with commas is also taken whole,
    so that a topic with a comma in it can be asked for too."""
    topics: list[str] = []
    for value in values or ():
        parts = [part.strip() for part in value.split(",") if part.strip()]
        topics.extend([*parts, value.strip()] if len(parts) > 1 else parts)
    return tuple(check_topics(topics))


def memory_routes(svc: Services) -> APIRouter:
    router = APIRouter(tags=["memories"], responses=ERRORS)
    who = Depends(svc.principal)

    @router.get(
        "/memories",
        summary="List or search memories",
        responses={200: {"model": MemoryPage}},
    )
    async def list_memories(
        principal: Annotated[Principal, who],
        user_id: UserQuery = None,
        agent_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)] = None,
        team_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)] = None,
        topics: Annotated[
            list[str] | None,
            Query(
                max_length=MAX_TOPICS,
                description="Any of these topics (repeat, or comma-separated)",
            ),
        ] = None,
        search_content: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="Search text: results come best match first (needs a user)",
            ),
            BeforeValidator(trimmed),
        ] = None,
        search_type: Annotated[
            Literal["keyword", "semantic", "hybrid"] | None,
            Query(description="hybrid when the server has an embedder, else keyword"),
        ] = None,
        page: PageNumber = 1,
        limit: Limit = 20,
        sort_by: SortField = "updated_at",
        sort_order: SortOrder = "desc",
    ) -> Response:
        user = principal.scope(check_id("user_id", user_id))
        query = MemoryQuery(
            user_id=user,
            topics=topic_filter(topics),
            agent_id=check_id("agent_id", agent_id),
            team_id=check_id("team_id", team_id),
            sort_by=sort_by,
            sort_order=sort_order,
            limit=limit,
            offset=(page - 1) * limit,
        )
        if search_content is not None:
            if user is None:
                raise UserError("search_content needs a user_id: a search is within one user")
            method = search_type or ("hybrid" if svc.memory.index is not None else "keyword")
            # Hybrid's fusion reads as deep as its limit, so a page is read as the Python
            # API reads the same limit: the first page of 10 is search(limit=10). It ranks
            # every memory the filters keep (up to 500), which is how many it counts; when
            # it found fewer than it was asked for (memories not embedded yet are found by
            # their words only), what it found is all there is.
            hybrid = method == "hybrid"
            wanted = min(query.offset + limit, SEARCH_RESULTS) if hybrid else SEARCH_RESULTS
            found = await run_in_threadpool(
                svc.memory.search_user_memories,
                check_storable("search_content", search_content),  # as the schema says
                user,
                wanted,
                method,
                topics=query.topics,
                agent_id=query.agent_id,
                team_id=query.team_id,
            )
            total = len(found)
            if hybrid and len(found) == wanted:
                total = await run_in_threadpool(svc.store.count_memories, query)
            rows = [m.to_dict() for m in found[query.offset : query.offset + limit]]
            meta = page_meta(page, limit, min(total, SEARCH_RESULTS))
            return json_response({"data": rows, "meta": meta})
        if search_type is not None:
            raise UserError("search_type needs search_content")
        return json_response(await svc.read(memory_page, svc, query, page))

    @router.post(
        "/memories",
        status_code=201,
        summary="Create a memory",
        responses={201: {"model": MemoryOut}},
    )
    def create_memory(principal: Annotated[Principal, who], body: MemoryCreate) -> Response:
        user = principal.owner(body.user_id, default=DEFAULT_USER_ID)
        new = UserMemory(
            body.memory,
            topics=body.topics,
            agent_id=body.agent_id,
            team_id=body.team_id,
            input=body.input,
        )
        memory_id = svc.memory.add_user_memory(new, user)
        return json_response(_get(svc, memory_id, user).to_dict(), 201)

    # first, as the schema lists it: a 405's Allow is of the first path that fits
    @router.get(
        f"/memories/{{memory_id:{MEMORY_ID}}}/history",
        summary="A memory's recorded changes, oldest first",
        responses={200: {"model": list[MemoryEventOut]}},
    )
    def memory_history(
        principal: Annotated[Principal, who], memory_id: MemoryId, user_id: UserQuery = None
    ) -> Response:
        return _history(svc, principal, memory_id, user_id)

    @router.get(
        f"/memories/{{memory_id:{MEMORY_ID}}}",
        summary="Get a memory",
        responses={200: {"model": MemoryOut}},
    )
    def get_memory(
        principal: Annotated[Principal, who], memory_id: MemoryId, user_id: UserQuery = None
    ) -> Response:
        return json_response(_get(svc, memory_id, principal.owner(user_id)).to_dict())

    @router.patch(
        f"/memories/{{memory_id:{MEMORY_ID}}}",
        summary="Change a memory's text or topics",
        description=(
            "With `if_updated_at` (the memory's `updated_at` as last read), a memory that "
            "changed since is left as it is and answered with 409: two editors of one "
            "memory do not overwrite each other's changes unseen. The comparison is made "
            "just before the write, not in the same transaction: a write landing between "
            "the two is not caught."
        ),
        responses={
            200: {"model": MemoryOut},
            409: {"model": Error, "description": "The memory changed since if_updated_at"},
        },
    )
    def update_memory(
        principal: Annotated[Principal, who],
        memory_id: MemoryId,
        body: MemoryUpdate,
        user_id: UserQuery = None,
    ) -> Response:
        return _update(svc, principal, memory_id, body, user_id)

    @router.delete(
        f"/memories/{{memory_id:{MEMORY_ID}}}", status_code=204, summary="Delete a memory"
    )
    def delete_memory(
        principal: Annotated[Principal, who], memory_id: MemoryId, user_id: UserQuery = None
    ) -> Response:
        return _delete(svc, principal, memory_id, user_id)

    _routes_by_query(router, who, svc)

    @router.delete(
        "/memories",
        summary="Delete several memories of one user",
        responses={200: {"model": Deleted}},
    )
    def delete_memories(principal: Annotated[Principal, who], body: BulkDelete) -> Response:
        user = principal.owner(body.user_id)
        return json_response({"deleted": svc.memory.delete_user_memories(body.memory_ids, user)})

    @router.get(
        "/memory_topics",
        summary="The distinct topics of one user's memories, or of everyone's",
        responses={200: {"model": list[str]}},
    )
    def memory_topics(principal: Annotated[Principal, who], user_id: UserQuery = None) -> Response:
        return json_response(svc.store.get_topics(principal.scope(check_id("user_id", user_id))))

    @router.get(
        "/user_memory_stats",
        summary="Per-user memory count and last update, most recent first",
        responses={200: {"model": StatsPage}},
    )
    def user_memory_stats(
        principal: Annotated[Principal, who],
        page: PageNumber = 1,
        limit: Limit = 20,
        user_id_contains: UserIdPart = None,
    ) -> Response:
        found = svc.user_stats(principal.user_id, check_id("user_id_contains", user_id_contains))
        rows = [s.to_dict() for s in found[(page - 1) * limit : page * limit]]
        return json_response({"data": rows, "meta": page_meta(page, limit, len(found))})

    return router


BY_QUERY: Final = (
    "The same route with the id in the query, for every id: also `.` and `..`, which "
    "browsers and most HTTP libraries resolve away in a path, even percent-encoded."
)
MemoryIdQuery = Annotated[
    str, Query(min_length=1, max_length=MAX_ID_CHARS, description="The memory's id")
]


def _routes_by_query(router: APIRouter, who: Any, svc: Services) -> None:
    """``/memory`` and ``/memory_history``: the routes about one memory, its id in the
    query (``?memory_id=``) rather than the path."""

    @router.get(
        "/memory",
        summary="Get a memory, its id in the query",
        description=BY_QUERY,
        responses={200: {"model": MemoryOut}},
    )
    def get_memory_by_query(
        principal: Annotated[Principal, who], memory_id: MemoryIdQuery, user_id: UserQuery = None
    ) -> Response:
        return json_response(_get(svc, memory_id, principal.owner(user_id)).to_dict())

    @router.patch(
        "/memory",
        summary="Change a memory's text or topics, its id in the query",
        description=BY_QUERY,
        responses={
            200: {"model": MemoryOut},
            409: {"model": Error, "description": "The memory changed since if_updated_at"},
        },
    )
    def update_memory_by_query(
        principal: Annotated[Principal, who],
        memory_id: MemoryIdQuery,
        body: MemoryUpdate,
        user_id: UserQuery = None,
    ) -> Response:
        return _update(svc, principal, memory_id, body, user_id)

    @router.delete(
        "/memory",
        status_code=204,
        summary="Delete a memory, its id in the query",
        description=BY_QUERY,
    )
    def delete_memory_by_query(
        principal: Annotated[Principal, who], memory_id: MemoryIdQuery, user_id: UserQuery = None
    ) -> Response:
        return _delete(svc, principal, memory_id, user_id)

    @router.get(
        "/memory_history",
        summary="A memory's recorded changes, oldest first, its id in the query",
        description=BY_QUERY,
        responses={200: {"model": list[MemoryEventOut]}},
    )
    def memory_history_by_query(
        principal: Annotated[Principal, who], memory_id: MemoryIdQuery, user_id: UserQuery = None
    ) -> Response:
        return _history(svc, principal, memory_id, user_id)


def _history(svc: Services, principal: Principal, memory_id: str, user_id: str | None) -> Response:
    """The answer of a memory's history, whichever form named it."""
    events = svc.memory.get_memory_history(check_id_(memory_id), principal.owner(user_id))
    if not events:
        raise NotFoundError("no such memory")
    return json_response([e.to_dict() for e in events])


def _update(
    svc: Services, principal: Principal, memory_id: str, body: MemoryUpdate, user_id: str | None
) -> Response:
    """The answer of a change of a memory, whichever form named it."""
    user = _named_owner(principal, user_id, body.user_id)
    if body.memory is None and body.topics is None:
        raise UserError("nothing to change: give memory and/or topics")
    if body.if_updated_at is not None:
        current = _get(svc, memory_id, user)
        if current.updated_at != body.if_updated_at:
            when = "" if current.updated_at is None else f" at {iso(current.updated_at)}"
            raise ConflictError(
                f"the memory changed since it was read (updated{when}): nothing was written"
            )
    try:
        stored = svc.memory.edit_user_memory(
            check_id_(memory_id), user, memory=body.memory, topics=body.topics
        )
    except NotFoundError:
        raise NotFoundError("no such memory") from None  # this API's 404, as _get's
    return json_response(stored.to_dict())


def _delete(svc: Services, principal: Principal, memory_id: str, user_id: str | None) -> Response:
    """The answer of a memory's deletion, whichever form named it."""
    if not svc.memory.delete_user_memory(check_id_(memory_id), principal.owner(user_id)):
        raise NotFoundError("no such memory")
    return no_content()


def memory_page(svc: Services, query: MemoryQuery, page: int) -> dict[str, Any]:
    """One page of a listing (no search) with its paging meta. A page is at most 100 rows
    read by index: the routes run it inline on a store read in this process, cheaper than
    a thread hop (see :meth:`Services.read`)."""
    assert query.limit is not None
    rows: Any
    if svc.listing is not None:
        written = svc.listing.list_memories_json(query)
        found = len(written)
        rows = orjson.Fragment("[" + ",".join(written) + "]")
    else:
        rows = [m.to_dict() for m in svc.store.list_memories(query)]
        found = len(rows)
    total = (
        found + query.offset
        if page == 1 and found < query.limit
        else svc.store.count_memories(query)
    )
    return {"data": rows, "meta": page_meta(page, query.limit, total)}


def _named_owner(principal: Principal, query: str | None, body: str | None) -> str:
    """The memory's user, named in the query or in the body (both: the same one)."""
    for named in (query, body):
        principal.scope(named)  # another user's name, with a user token: 404
    if query is not None and body is not None and query != body:
        raise UserError(f"user_id is {query!r} in the query but {body!r} in the body")
    return principal.owner(query if query is not None else body)


def check_id_(memory_id: str) -> str:
    checked = check_id("memory_id", memory_id)
    assert checked is not None  # a path parameter is never missing
    return checked


def _get(svc: Services, memory_id: str, user_id: str) -> UserMemory:
    found = svc.memory.get_user_memory(check_id_(memory_id), user_id)
    if found is None:
        raise NotFoundError("no such memory")
    return found
