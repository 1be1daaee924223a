"""The checks of an Agent's options that take more than their type: counts, flags and
the scope of the memories it sees."""

from __future__ import annotations

from noted.errors import UserError
from noted.limits import MAX_PAGE

__all__ = ["check_count", "check_flag", "check_limit", "memory_scope_of"]


def check_count(name: str, value: object, minimum: int) -> int:
    """``value`` when it is an integer from ``minimum`` to 2**63 - 1, else a UserError."""
    if type(value) is not int or not minimum <= value <= MAX_PAGE:
        raise UserError(f"{name} must be an integer from {minimum} to 2**63 - 1, got {value!r}")
    return value


def check_limit(name: str, value: object) -> int | None:
    """``value`` when it is None (no limit) or a positive integer, else a UserError."""
    return None if value is None else check_count(name, value, 1)


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is True or False, else a UserError."""
    if type(value) is not bool:
        raise UserError(f"{name} must be True or False, got {value!r}")
    return value


def memory_scope_of(scope: object, agent_id: str | None) -> str | None:
    """The agent id whose memories alone (with those of no agent) the agent sees."""
    if scope not in ("user", "agent"):
        raise UserError(f"memory_scope must be 'user' or 'agent', got {scope!r}")
    if scope == "user":
        return None
    if agent_id is None:
        raise UserError("memory_scope='agent' needs an agent_id (or a name)")
    return agent_id
