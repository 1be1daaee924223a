"""What the routes share: the store, the Memory API over it, the auth, the agents, and the
runs they are answering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Final, ParamSpec, TypeVar

from fastapi import Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from noted.agent import Agent
from noted.db.base import JsonListing, MemoryQuery, Store
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb
from noted.memory import Memory
from noted.schema import UserStats
from noted.server.auth import Auth, Principal
from noted.server.stopping import OpenRuns

__all__ = ["LOCAL_STORES", "Services"]

P = ParamSpec("P")
T = TypeVar("T")

LOCAL_STORES: Final = (SqliteDb, InMemoryDb)
"""The stores read in this process (a file, or its memory), which the plain listing reads
on the event loop: a bounded, indexed read that waits for no lock. Any other store is read
over the network, where a read may wait for seconds (a table locked by a migration, a
server that went away): from a worker thread, so that it stalls no other request."""

BEARER = HTTPBearer(
    auto_error=False,
    description="NOTED_API_KEY (every user), or a user token (that user only)",
)


@dataclass(slots=True)
class Services:
    store: Store
    memory: Memory
    auth: Auth
    agents: dict[str, Agent] = field(default_factory=dict)
    runs: OpenRuns = field(default_factory=OpenRuns)  # the agent runs being answered
    listing: JsonListing | None = field(init=False)  # the store, when it writes JSON listings
    reads_inline: bool = field(init=False)  # a listing is read on the event loop (LOCAL_STORES)

    def __post_init__(self) -> None:
        self.listing = self.store if isinstance(self.store, JsonListing) else None
        self.reads_inline = isinstance(self.store, LOCAL_STORES)

    async def read(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(*args, **kwargs)``, a listing's reads of the store: at once when the store
        is read in this process, else in a worker thread (see :data:`LOCAL_STORES`)."""
        if self.reads_inline:
            return work(*args, **kwargs)
        return await run_in_threadpool(work, *args, **kwargs)

    async def principal(
        self,
        request: Request,
        _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        """The caller of a request (a dependency of every data route)."""
        return await self.auth.authenticate_async(request.headers.get("authorization"))

    def user_stats(self, user_id: str | None, id_part: str | None = None) -> list[UserStats]:
        """Every user's stats for the admin; a user token sees its own user's only. With
        ``id_part``, only the users whose id holds it, in any case."""
        found = self.store.get_user_stats() if user_id is None else self._own_stats(user_id)
        if id_part is None:
            return found
        needle = id_part.casefold()
        return [stats for stats in found if needle in stats.user_id.casefold()]

    def _own_stats(self, user_id: str) -> list[UserStats]:
        """One user's stats (none when the user has no memories)."""
        query = MemoryQuery(user_id=user_id, limit=1)
        newest = self.store.list_memories(query)
        if not newest or newest[0].updated_at is None:
            return []
        return [UserStats(user_id, self.store.count_memories(query), newest[0].updated_at)]
