"""Reading a tool call's arguments: each one checked, with an error that says what is wrong.

Plain functions without I/O. A tool's JSON Schema tells a client what to send; these
checks make sure that what arrives is that, whatever the client sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from noted.errors import UserError
from noted.limits import MAX_TOPICS
from noted.schema import check_topics

__all__ = ["Arguments"]

MAX_LIMIT: Final = 100
_DIGITS_SHOWN: Final = 20  # a longer whole number in an error is said by its length


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: object) -> str:
    """``value`` as an error names it: a whole number of many digits by its length."""
    if type(value) is int and abs(value) >= 10**_DIGITS_SHOWN:
        return f"a number of {len(str(abs(value)))} digits"
    return repr(value)


class Arguments:
    """A tool call's arguments, read one by one against the names the tool takes."""

    def __init__(self, tool: str, given: Mapping[str, Any] | None, takes: tuple[str, ...]) -> None:
        if given is not None and not isinstance(given, Mapping):
            raise UserError(f"{tool}: the arguments must be a JSON object")
        self.tool = tool
        self.given: Mapping[str, Any] = given or {}
        unknown = sorted(set(self.given) - set(takes))
        if unknown:
            known = ", ".join(takes) or "no arguments"
            raise UserError(f"{tool}: unknown argument(s) {', '.join(unknown)}; it takes {known}")

    def _get(self, name: str, required: bool) -> Any:
        value = self.given.get(name)
        if value is None and required:
            raise UserError(f"{self.tool}: the argument {name!r} is required")
        return value

    def text(self, name: str, required: bool = True, longest: int | None = None) -> str | None:
        """A string with something in it besides white space (of at most ``longest``
        characters, when given)."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise UserError(f"{self.tool}: {name} must be a string, got {_kind(value)}")
        if not value.strip():
            raise UserError(f"{self.tool}: {name} must not be empty")
        if "\x00" in value:  # as the Memory API refuses it in what it stores
            raise UserError(f"{self.tool}: {name} must not contain NUL characters")
        if longest is not None and len(value) > longest:
            raise UserError(
                f"{self.tool}: {name} must be at most {longest} characters, got {len(value)}"
            )
        return value

    def required_text(self, name: str, longest: int | None = None) -> str:
        value = self.text(name, longest=longest)
        assert value is not None
        return value

    def topics(self, name: str = "topics") -> list[str] | None:
        """A list of topic strings, or None when not given."""
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise UserError(f"{self.tool}: {name} must be a list of strings, got {_kind(value)}")
        if len(value) > MAX_TOPICS:
            raise UserError(f"{self.tool}: {name} may hold at most {MAX_TOPICS}, got {len(value)}")
        for item in value:
            if not isinstance(item, str):
                raise UserError(f"{self.tool}: each of {name} must be a string, got {_kind(item)}")
        try:
            return check_topics(value)
        except UserError as exc:
            raise UserError(f"{self.tool}: {exc}") from None

    def limit(self, default: int, name: str = "limit") -> int:
        given = self._get(name, False)
        if given is None:
            return default
        value = int(given) if type(given) is float and given.is_integer() else given
        if type(value) is not int or not 1 <= value <= MAX_LIMIT:
            raise UserError(
                f"{self.tool}: {name} must be a whole number from 1 to {MAX_LIMIT}, "
                f"got {_shown(given)}"
            )
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self._get(name, False)
        if value is not None and (not isinstance(value, str) or value not in choices):
            raise UserError(
                f"{self.tool}: {name} must be one of {', '.join(choices)}, got {value!r}"
            )
        return value
