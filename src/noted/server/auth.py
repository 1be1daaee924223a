"""Who is asking: the admin API key, or a signed user token that confines a request to one user.

- ``NOTED_API_KEY`` (``Authorization: Bearer <key>``) is the admin: every user's data.
- A user token is a JWT (HS256) whose ``sub`` is a user_id. With it, every request is about
  that user only: naming another user, or another user's memory or session, answers 404.
  Tokens are signed with ``NOTED_TOKEN_SECRET``, or with a key derived from the API key.
  A token is refused when it has expired, when its lifetime is longer than a year, or when
  the store holds a revocation of its user's tokens (or everyone's) issued at or before it
  (see :mod:`noted.db.revocations`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from noted.db.revocations import TokenRevocations
from noted.errors import MissingDependencyError, NotFoundError, UserError
from noted.schema import require_id

try:
    import jwt
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise MissingDependencyError("noted's tokens need pyjwt: pip install 'noted[server]'") from exc

__all__ = ["Auth", "Principal", "Unauthorized", "issue_token"]

ALGORITHM: Final = "HS256"
ISSUER: Final = "noted"
MIN_SECRET_LENGTH: Final = 32
MAX_TOKEN_LIFETIME: Final = 365 * 24 * 3600
EARLIEST_CUTOFF: Final = datetime.min.replace(tzinfo=UTC).timestamp()
"""The earliest revocation cutoff (0001-01-01 UTC): an earlier time revokes no token either,
and is kept as this one, which can be told as a time."""


class Unauthorized(Exception):
    """No credentials, or credentials this server does not accept (answered with 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``user_id=None`` is the admin (every user), otherwise one user."""

    user_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.user_id is None

    def scope(self, user_id: str | None) -> str | None:
        """The user a request is about: a user token's own user (naming another one is
        NotFoundError, answered 404), or what the admin named (None: every user)."""
        if self.user_id is None:
            return user_id
        if user_id is not None and user_id != self.user_id:
            raise NotFoundError("not found")
        return self.user_id

    def owner(self, user_id: str | None, default: str | None = None) -> str:
        """Like :meth:`scope`, for requests about exactly one user."""
        user = self.scope(user_id) or default
        if user is None:
            raise UserError("user_id is required with the admin key: name the memory's user")
        return user


ADMIN: Final = Principal(None)


def derive_secret(api_key: str) -> str:
    """The token-signing secret used when only an API key is configured."""
    return hmac.new(api_key.encode(), b"noted user tokens", hashlib.sha256).hexdigest()


def _check_secret(secret: str) -> str:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise UserError(f"the token secret must be at least {MIN_SECRET_LENGTH} characters")
    return secret


def issue_token(user_id: str, secret: str, expires_in: int = 3600) -> str:
    """A signed token that lets its bearer reach ``user_id``'s memories and sessions only."""
    user = require_id("user_id", user_id)
    if type(expires_in) is not int or not 1 <= expires_in <= MAX_TOKEN_LIFETIME:
        raise UserError(f"expires_in must be 1..{MAX_TOKEN_LIFETIME} seconds, got {expires_in!r}")
    now = time.time()
    # issued-at as precisely as the clock tells it (a revocation's cutoff is too): a token
    # issued just after a revocation, in the same millisecond, is not caught by it
    claims = {"sub": user, "iss": ISSUER, "iat": now, "exp": int(now) + expires_in}
    return jwt.encode(claims, _check_secret(secret), algorithm=ALGORITHM)


class Auth:
    """Checks ``Authorization`` headers. Without an API key every request is the admin
    (the server then listens on 127.0.0.1 only); user tokens are checked when a secret
    (given, or derived from the API key) exists."""

    def __init__(
        self,
        api_key: str | None = None,
        token_secret: str | None = None,
        revocations: TokenRevocations | None = None,
    ) -> None:
        if api_key is not None and not api_key.strip():
            raise UserError("the API key must not be empty")
        self.api_key = api_key
        secret = token_secret or (derive_secret(api_key) if api_key else None)
        self.token_secret = None if secret is None else _check_secret(secret)
        self.revocations = revocations

    def checking_revocations_of(self, store: object) -> Auth:
        """This Auth, refusing the tokens ``store`` keeps revoked, when it keeps them and
        this checks none yet (so every server of a store refuses what was revoked on it);
        else this Auth itself."""
        if self.revocations is not None or not isinstance(store, TokenRevocations):
            return self
        return Auth(self.api_key, self.token_secret, store)

    @property
    def open(self) -> bool:
        """Whether requests without credentials are let in (no API key)."""
        return self.api_key is None

    def issue(self, user_id: str, expires_in: int = 3600) -> str:
        if self.token_secret is None:
            raise UserError("user tokens need NOTED_TOKEN_SECRET or NOTED_API_KEY")
        return issue_token(user_id, self.token_secret, expires_in)

    def revoke(self, user_id: str | None, before: datetime | None = None) -> datetime:
        """Revoke ``user_id``'s tokens (None: everyone's) issued at or before ``before``
        (default, and at the latest: now, so that tokens issued later keep working).
        Returns the cutoff in force. A time before 0001-01-01 UTC (``0001-01-01T00:00:00+14:00``)
        revokes what that date does: nothing."""
        if self.revocations is None:
            raise UserError("this server's store keeps no token revocations")
        now = time.time()
        if before is None:
            cutoff = now
        elif not isinstance(before, datetime) or before.tzinfo is None:
            raise UserError(f"before must be a time with its UTC offset, got {before!r}")
        else:
            cutoff = min(max(before.timestamp(), EARLIEST_CUTOFF), now)
        kept = self.revocations.revoke_tokens(user_id, cutoff)
        return datetime.fromtimestamp(kept, UTC)

    async def authenticate_async(self, header: str | None) -> Principal:
        """:meth:`authenticate` from an event loop: in a worker thread when it reads the
        store (a user token's revocations; a locked or distant store must not stall every
        connection), else at once (the admin key, a server without revocations)."""
        if self._reads_store(header):
            return await asyncio.to_thread(self.authenticate, header)
        return self.authenticate(header)

    def _reads_store(self, header: str | None) -> bool:
        """Whether authenticating ``header`` reads the store: a token, not the admin key,
        on a server that keeps revocations."""
        if self.revocations is None or self.token_secret is None or header is None:
            return False
        return not self._is_api_key(header.partition(" ")[2].strip())

    def _is_api_key(self, credential: str) -> bool:
        return self.api_key is not None and hmac.compare_digest(
            credential.encode(), self.api_key.encode()
        )

    def authenticate(self, header: str | None) -> Principal:
        if header is None:
            if self.open:
                return ADMIN
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <key or token>'")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("the Authorization header must be 'Bearer <key or token>'")
        if self._is_api_key(credential):
            return ADMIN
        if self.token_secret is None:
            raise Unauthorized("this server accepts no tokens (no NOTED_TOKEN_SECRET is set)")
        return Principal(self._user_of(credential, self.token_secret))

    def _user_of(self, token: str, secret: str) -> str:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid API key or token") from None
        try:
            user = require_id("sub", claims["sub"])
        except UserError:
            raise Unauthorized("invalid token: its subject is not a user id") from None
        issued, expires = claims["iat"], claims["exp"]
        if not all(
            isinstance(t, int | float) and not isinstance(t, bool) for t in (issued, expires)
        ):
            raise Unauthorized("invalid token: its times are not numbers")
        if expires - issued > MAX_TOKEN_LIFETIME:
            raise Unauthorized(
                f"the token lives longer than this server allows ({MAX_TOKEN_LIFETIME} s): "
                "issue a new one"
            )
        if self.revocations is not None:
            cutoff = self.revocations.tokens_revoked_before(user)
            if cutoff is not None and issued <= cutoff:
                raise Unauthorized("the token has been revoked: ask for a new one")
        return user
