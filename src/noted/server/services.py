"""What the routes share: the store, the Memory API over it, the auth, and the agents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from noted.agent import Agent
from noted.db.base import JsonListing, MemoryQuery, Store
from noted.memory import Memory
from noted.schema import UserStats
from noted.server.auth import Auth, Principal

__all__ = ["Services"]

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
    listing: JsonListing | None = field(init=False)  # the store, when it writes JSON listings

    def __post_init__(self) -> None:
        self.listing = self.store if isinstance(self.store, JsonListing) else None

    async def principal(
        self,
        request: Request,
        _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        """The caller of a request (a dependency of every data route)."""
        return await self.auth.authenticate_async(request.headers.get("authorization"))

    def user_stats(self, user_id: str | None) -> list[UserStats]:
        """Every user's stats for the admin; a user token sees its own user's only."""
        if user_id is None:
            return self.store.get_user_stats()
        query = MemoryQuery(user_id=user_id, limit=1)
        newest = self.store.list_memories(query)
        if not newest or newest[0].updated_at is None:
            return []
        return [UserStats(user_id, self.store.count_memories(query), newest[0].updated_at)]
