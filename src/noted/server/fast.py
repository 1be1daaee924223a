"""The hottest route, ``GET /memories`` without a search, answered before the framework.

Agents and the Memories page list a user's newest memories far more often than anything
else. When every parameter of such a request is plainly valid and its credentials check
out, this middleware answers it directly, with the very same body as the documented route
(:func:`noted.server.memories.memory_page` builds both). Anything else (a search, a
malformed value, an unknown parameter, missing credentials, a store error) goes on to the
documented route, which gives the full answer or the error.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from noted.db.base import SORT_FIELDS, SORT_ORDERS, MemoryQuery
from noted.errors import NotedError
from noted.limits import MAX_TOPICS
from noted.schema import check_id
from noted.server.auth import Unauthorized
from noted.server.headers import API_HEADERS
from noted.server.memories import memory_page, topic_filter
from noted.server.rawids import route_path
from noted.server.responses import json_bytes
from noted.server.schemas import MAX_ID_CHARS, MAX_LIMIT, MAX_PAGE
from noted.server.services import Services

__all__ = ["FastMemoryList"]

_IDS: Final = ("user_id", "agent_id", "team_id")
_KNOWN: Final = frozenset((*_IDS, "topics", "page", "limit", "sort_by", "sort_order"))
_HEADERS: Final = [(b"content-type", b"application/json"), *API_HEADERS]


def _number(value: str | None, default: int, top: int) -> int | None:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        return None
    number = int(value)
    return number if 1 <= number <= top else None


def _query(svc: Services, scope: Scope) -> tuple[MemoryQuery, int] | None:
    """The query of a plainly valid listing request, or None to leave it to the route."""
    try:
        pairs = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    single: dict[str, str] = {}
    topics: list[str] = []
    for key, value in pairs:
        if key not in _KNOWN:
            return None
        if key == "topics":
            topics.append(value)
        elif key in single:
            return None
        else:
            single[key] = value
    if len(topics) > MAX_TOPICS:
        return None
    page = _number(single.get("page"), 1, MAX_PAGE)
    limit = _number(single.get("limit"), 20, MAX_LIMIT)
    sort_by = single.get("sort_by", "updated_at")
    sort_order = single.get("sort_order", "desc")
    if page is None or limit is None or sort_by not in SORT_FIELDS or sort_order not in SORT_ORDERS:
        return None
    if any(not 1 <= len(single.get(name, "-")) <= MAX_ID_CHARS for name in _IDS):
        return None
    header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    try:
        principal = svc.auth.authenticate(None if header is None else header.decode("latin-1"))
        user = principal.scope(check_id("user_id", single.get("user_id")))
        query = MemoryQuery(
            user_id=user,
            topics=topic_filter(topics),
            agent_id=check_id("agent_id", single.get("agent_id")),
            team_id=check_id("team_id", single.get("team_id")),
            sort_by=sort_by,  # checked against SORT_FIELDS
            sort_order=sort_order,  # checked against SORT_ORDERS
            limit=limit,
            offset=(page - 1) * limit,
        )
    except (NotedError, Unauthorized):
        return None
    return query, page


def _answer(svc: Services, scope: Scope) -> bytes | None:
    """The body of a plainly valid listing request, or None to leave it to the route."""
    found = _query(svc, scope)  # a user token's check reads the store's revocations
    if found is None:
        return None
    try:
        return json_bytes(memory_page(svc, *found))
    except NotedError:
        return None  # the route answers it, with the error mapped to a status


class FastMemoryList:
    """ASGI middleware: answers plainly valid ``GET /memories`` listings itself."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.svc = services
        self.answered = 0  # how many requests this path answered itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listing = scope["type"] == "http" and scope["method"] == "GET"
        if listing and route_path(scope) == "/memories":  # under a mount prefix too
            body = await self.svc.read(_answer, self.svc, scope)
            if body is not None:
                self.answered += 1
                headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
