"""Token revocations kept by RedisDb (see :mod:`noted.db.revocations`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

from noted.db.revocations import EVERYONE, latest_cutoff, revocation_subject

__all__ = ["RedisRevocations"]


_REDIS_MAX: Final = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local new = tonumber(ARGV[2])
if old == nil or old < new then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return ARGV[2]
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class _RedisLike(Protocol):
    memory_table: str
    _client: Any

    def _mapped_errors(self) -> AbstractContextManager[None]: ...


class RedisRevocations:
    """:class:`TokenRevocations` for RedisDb."""

    def revoke_tokens(self: _RedisLike, user_id: str | None, before: float) -> float:
        subject, cutoff = revocation_subject(user_id, before)
        key = self.memory_table + ":revoked"
        with self._mapped_errors():
            return float(self._client.eval(_REDIS_MAX, 1, key, subject, repr(cutoff)))

    def tokens_revoked_before(self: _RedisLike, user_id: str) -> float | None:
        with self._mapped_errors():
            found = self._client.hmget(self.memory_table + ":revoked", [user_id, EVERYONE])
        return latest_cutoff(value for value in found if value is not None)
