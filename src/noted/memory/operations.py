"""What the memory manager's model may ask for, and how its answer is checked.

The model answers with JSON operations on numbered memories (the numbers it was shown,
never real ids). :func:`parse_operations` turns that answer into a plan of operations on
real ids, dropping, with a reason, every operation that is malformed, not allowed, names
a number that was not shown, or repeats what is already stored. It does no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from noted.errors import UserError
from noted.memory.answers import load_json_answer
from noted.schema import UserMemory, check_topics

__all__ = [
    "OPERATIONS_SCHEMA",
    "Operation",
    "Permissions",
    "Plan",
    "normalize",
    "parse_operations",
]

OpKind = Literal["add", "update", "delete", "clear"]
MAX_TOPICS = 8

OPERATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "operations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "op": {"type": "string", "enum": ["add", "update", "delete", "clear"]},
                    "id": {
                        "type": ["integer", "null"],
                        "description": "the number of an existing memory (update, delete)",
                    },
                    "memory": {
                        "type": ["string", "null"],
                        "description": "one short fact about the user (add, update)",
                    },
                    "topics": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["op", "id", "memory", "topics"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["operations"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Permissions:
    add: bool = True
    update: bool = True
    delete: bool = False
    clear: bool = False

    def allows(self, kind: str) -> bool:
        return bool(getattr(self, kind, False))

    def kinds(self) -> list[str]:
        return [k for k in ("add", "update", "delete", "clear") if self.allows(k)]


@dataclass(frozen=True, slots=True)
class Operation:
    """One change on real memory ids (``memory_id`` is None for add and clear)."""

    kind: OpKind
    memory_id: str | None = None
    memory: str | None = None
    topics: tuple[str, ...] = ()


@dataclass(slots=True)
class Plan:
    operations: list[Operation] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """How two facts are compared: case, spacing and a final full stop do not count."""
    return _SPACE.sub(" ", text).strip().rstrip(".").casefold()


def _decode(text: str | None) -> list[Any] | None:
    try:
        data = load_json_answer(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("operations")
    return data if isinstance(data, list) else None


def _topics(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    cleaned = [t.strip().lower() for t in raw if isinstance(t, str) and t.strip()]
    try:
        return tuple(dict.fromkeys(check_topics(cleaned[:MAX_TOPICS])))
    except UserError:
        return ()


def _text(raw: object, max_length: int) -> str | None:
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    return text if 0 < len(text) <= max_length else None


def parse_operations(
    answer: str | None,
    shown: Mapping[int, UserMemory],
    permissions: Permissions,
    max_length: int,
) -> Plan:
    """The operations a model answer asks for, checked against what it was shown."""
    plan = Plan()
    items = _decode(answer)
    if items is None:
        plan.rejected.append(f"the answer is not JSON operations: {str(answer)[:200]!r}")
        return plan
    known = {normalize(m.memory) for m in shown.values()}
    touched: set[int] = set()
    for item in items:
        reason = _check(item, shown, permissions, max_length, known, touched, plan)
        if reason is not None:
            plan.rejected.append(f"{reason}: {json.dumps(item, ensure_ascii=False)[:200]}")
    if any(op.kind == "clear" for op in plan.operations):
        # Clearing makes updates and deletes moot; facts added with it are kept after it.
        plan.operations = [Operation("clear")] + [op for op in plan.operations if op.kind == "add"]
    return plan


def _check(
    item: object,
    shown: Mapping[int, UserMemory],
    permissions: Permissions,
    max_length: int,
    known: set[str],
    touched: set[int],
    plan: Plan,
) -> str | None:
    """Add the item to the plan, or say why not."""
    if not isinstance(item, dict):
        return "not an object"
    kind = item.get("op")
    if kind not in ("add", "update", "delete", "clear"):
        return "unknown operation"
    if not permissions.allows(kind):
        return f"'{kind}' is not allowed"
    if kind == "clear":
        plan.operations.append(Operation("clear"))
        return None
    if kind == "add":
        text = _text(item.get("memory"), max_length)
        if text is None:
            return f"memory text must be 1-{max_length} characters"
        if normalize(text) in known:
            return "already stored"
        known.add(normalize(text))
        plan.operations.append(Operation("add", None, text, _topics(item.get("topics"))))
        return None
    number = item.get("id")
    if type(number) is not int or number not in shown:
        return "names a memory that was not shown"
    if number in touched:
        return "names a memory already changed in this answer"
    current = shown[number]
    if kind == "delete":
        touched.add(number)
        plan.operations.append(Operation("delete", current.memory_id))
        return None
    text = _text(item.get("memory"), max_length)
    if text is None:
        return f"memory text must be 1-{max_length} characters"
    topics = _topics(item.get("topics")) or tuple(current.topics)
    if normalize(text) == normalize(current.memory) and list(topics) == list(current.topics):
        return "changes nothing"
    touched.add(number)
    known.add(normalize(text))
    plan.operations.append(Operation("update", current.memory_id, text, topics))
    return None


def number_memories(memories: Sequence[UserMemory]) -> dict[int, UserMemory]:
    """The short ids a prompt shows: 1..k in the given order."""
    return {i: m for i, m in enumerate(memories, start=1)}
