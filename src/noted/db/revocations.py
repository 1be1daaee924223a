"""Revoked user tokens, kept in the store so that every worker and host of a server sees
a revocation at once.

A revocation is a cutoff time per subject: a user id, or everyone. A token of user ``u``
is revoked when it was issued at or before the later of ``u``'s cutoff and everyone's.
A cutoff only moves forward: revoking again with an earlier time changes nothing.

Each backend keeps the cutoffs next to its memories (its own `revocations` module),
created on the first revocation:

- SQLite and PostgreSQL: a table ``<memory_table>_revoked (subject, revoked_before)``;
- MongoDB: a collection ``<memory_table>_revoked`` of ``{_id: subject, before: t}``;
- Redis: a hash ``<memory_table>:revoked``, subject -> t;
- InMemoryDb: a dict (one process only).

The subject of "everyone" is the empty string, which no user id can be. Times are
seconds since the epoch (floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from noted.errors import UserError
from noted.schema import check_id

if TYPE_CHECKING:
    import threading

__all__ = [
    "EVERYONE",
    "InMemoryRevocations",
    "TokenRevocations",
]

EVERYONE: Final = ""
SUFFIX: Final = "_revoked"


@runtime_checkable
class TokenRevocations(Protocol):
    """A store that keeps token revocations (every noted backend does)."""

    def revoke_tokens(self, user_id: str | None, before: float) -> float:
        """Revoke the tokens of ``user_id`` (None: every user's) issued at or before
        ``before`` (seconds since the epoch). Returns the cutoff now in force, which is
        ``before`` or a later one already recorded."""
        ...

    def tokens_revoked_before(self, user_id: str) -> float | None:
        """The time at or before which ``user_id``'s tokens are revoked, or None."""
        ...


def revocation_subject(user_id: str | None, before: float) -> tuple[str, float]:
    subject = check_id("user_id", user_id)
    if isinstance(before, bool) or not isinstance(before, int | float) or not math.isfinite(before):
        raise UserError(f"before must be a time in seconds since the epoch, got {before!r}")
    return (EVERYONE if subject is None else subject), float(before)


def latest_cutoff(cutoffs: Iterable[Any]) -> float | None:
    found = [float(c) for c in cutoffs if c is not None]
    return max(found) if found else None


# -- in memory -------------------------------------------------------------------------------


class _InMemoryLike(Protocol):
    _lock: threading.Lock
    _revoked: dict[str, float]


class InMemoryRevocations:
    """:class:`TokenRevocations` for InMemoryDb (seen by this process only)."""

    def revoke_tokens(self: _InMemoryLike, user_id: str | None, before: float) -> float:
        subject, cutoff = revocation_subject(user_id, before)
        with self._lock:
            kept = self._revoked[subject] = max(cutoff, self._revoked.get(subject, cutoff))
        return kept

    def tokens_revoked_before(self: _InMemoryLike, user_id: str) -> float | None:
        with self._lock:
            return latest_cutoff(
                self._revoked.get(s) for s in (user_id, EVERYONE) if s in self._revoked
            )
