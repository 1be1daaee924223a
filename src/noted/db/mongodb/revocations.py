"""Token revocations kept by MongoDb (see :mod:`noted.db.revocations`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from noted.db.revocations import EVERYONE, SUFFIX, latest_cutoff, revocation_subject

__all__ = ["MongoRevocations"]


class _MongoLike(Protocol):
    memory_table: str

    def _db(self) -> AbstractContextManager[Any]: ...


class MongoRevocations:
    """:class:`TokenRevocations` for MongoDb."""

    def revoke_tokens(self: _MongoLike, user_id: str | None, before: float) -> float:
        from pymongo import ReturnDocument

        subject, cutoff = revocation_subject(user_id, before)
        with self._db() as c:
            found = c.memories.database[self.memory_table + SUFFIX].find_one_and_update(
                {"_id": subject},
                {"$max": {"before": cutoff}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return float(found["before"])

    def tokens_revoked_before(self: _MongoLike, user_id: str) -> float | None:
        with self._db() as c:
            found = c.memories.database[self.memory_table + SUFFIX].find(
                {"_id": {"$in": [user_id, EVERYONE]}}
            )
            return latest_cutoff(doc.get("before") for doc in found)
