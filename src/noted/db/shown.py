"""URLs (of databases, of model servers) as they may be printed: without their passwords."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["SECRET_OPTION", "safe_url", "split_userinfo", "url_secrets"]

# an option of a URL's query that holds a secret (password=, authMechanismProperties=, a
# model server's api-key= or key=, ...)
SECRET_OPTION = re.compile(
    r"([?&;][^=&;]*(?:pass|secret|token|key|mechanismproperties)[^=&;]*=)[^&;]*", re.I
)


def split_userinfo(url: str) -> tuple[str, str, str]:
    """(scheme and ``//``, user info, the rest) of a URL; empty user info when there is
    none."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    hosts_end = len(rest.split("/", 1)[0])
    at = rest.rfind("@", 0, hosts_end)
    if at < 0:
        return scheme + sep, "", rest
    return scheme + sep, rest[:at], rest[at + 1 :]


def safe_url(url: str) -> str:
    """The URL without its password (or other secret options), for messages and repr."""
    head, userinfo, rest = split_userinfo(url)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        head += f"{user}:***@" if colon else f"{user}@"
    return SECRET_OPTION.sub(r"\1***", head + rest)


def url_secrets(url: str) -> tuple[str, ...]:
    """The URL's password, as written and decoded, to keep out of error messages."""
    _, userinfo, _ = split_userinfo(url)
    password = userinfo.partition(":")[2]
    return tuple(s for s in dict.fromkeys((password, unquote(password))) if len(s) >= 3)
