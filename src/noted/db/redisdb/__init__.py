"""RedisDb: memories and sessions in Redis hashes and sorted sets, written by Lua scripts."""

from noted.db.redisdb.store import RedisDb

__all__ = ["RedisDb"]
