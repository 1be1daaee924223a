"""Decoding the values found in other libraries' rows: JSON text (sometimes encoded
twice), Python literals, epoch seconds and timestamps; each failure names table and row."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from noted._json import decode_json as decoded_text
from noted.errors import UserError

__all__ = ["RowError", "decode_json", "time_zone", "timestamp"]


class RowError(UserError):
    """A row of the source could not be read; the message names the table and the row."""


def where(table: str, key: str, value: object) -> str:
    return f"table {table!r}, row {key}={value!r}"


def decode_json(
    value: object, at: str, column: str, *, literal: bool = False, nested: bool = True
) -> Any:
    """``value`` decoded from JSON text (with ``nested``, again while the result is JSON text
    of an object or list, as some versions stored it); with ``literal``, a Python literal is
    accepted too (Agno 1.x's SQLite rows)."""
    decoded = value
    for _ in range(3 if nested else 1):
        if not isinstance(decoded, str | bytes):
            return decoded
        text = decoded.decode() if isinstance(decoded, bytes) else decoded
        try:
            decoded = decoded_text(text)
        except ValueError:
            if not literal:
                raise RowError(
                    f"{at}: column {column!r} is not valid JSON: {text[:80]!r}"
                ) from None
            try:
                decoded = ast.literal_eval(text)
            except (ValueError, SyntaxError, RecursionError, MemoryError):  # nested too deep
                raise RowError(
                    f"{at}: column {column!r} is neither JSON nor a Python literal: {text[:80]!r}"
                ) from None
        if isinstance(decoded, str) and not decoded.lstrip().startswith(("{", "[", '"')):
            return decoded
    return decoded


def timestamp(
    value: object, at: str, column: str, *, naive: tzinfo | None = UTC
) -> datetime | None:
    """Epoch seconds (or milliseconds), an ISO 8601 or SQL text timestamp, or a datetime,
    as an aware UTC datetime. A naive value is in the time zone ``naive``: UTC (as SQL's
    ``CURRENT_TIMESTAMP`` gives it) unless told otherwise; None is this machine's local
    time (as Python's ``datetime.now()`` gives it)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 100_000_000_000 else value
        moment = datetime.fromtimestamp(seconds, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace(" ", "T", 1))
        except ValueError:
            raise RowError(f"{at}: column {column!r} is not a timestamp: {value!r}") from None
    else:
        raise RowError(f"{at}: column {column!r} is not a timestamp: {value!r}")
    if moment.tzinfo is None and naive is not None:
        moment = moment.replace(tzinfo=naive)
    try:
        return moment.astimezone(UTC)  # a naive one left: in local time
    except (OverflowError, ValueError, OSError):
        raise RowError(f"{at}: column {column!r} is not a timestamp: {value!r}") from None


def time_zone(name: str | tzinfo | None) -> tzinfo | None:
    """The time zone ``name`` names (an IANA name such as ``Europe/Paris``, or ``UTC``);
    None stays None (this machine's local time)."""
    if name is None or isinstance(name, tzinfo):
        return name
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"a time zone must be a name such as 'Europe/Paris', got {name!r}")
    if name.strip().upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown time zone {name!r} (give a name such as 'Europe/Paris')"
        ) from None
