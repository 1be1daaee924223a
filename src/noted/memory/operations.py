"""What the memory manager's model may ask for, and how its answer is checked.

The model answers with JSON operations on numbered memories (the numbers it was shown,
never real ids). :func:`parse_operations` turns that answer into a plan of operations on
real ids, dropping, with a reason, every operation that is malformed, not allowed, names
a number that was not shown, or repeats what is already stored. It does no I/O.
:func:`operations_schema` is the answer's JSON schema for one call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from noted.errors import UserError
from noted.limits import MAX_PLAN_TOPICS
from noted.memory.answers import fold_keys, json_values, pick, shown_number
from noted.memory.salvage import merge_unchanged_update, retarget_example_update
from noted.schema import UserMemory, check_storable, check_topics

__all__ = [
    "FACTS_FIELD",
    "FACTS_FIELD_SCHEMA",
    "OPERATIONS_SCHEMA",
    "TOPICS_SCHEMA",
    "Operation",
    "Permissions",
    "Plan",
    "normalize",
    "number_memories",
    "operations_schema",
    "parse_operations",
    "says_false",
]

OpKind = Literal["add", "update", "delete", "clear"]

log = logging.getLogger("noted.memory")


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


TOPICS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "maxItems": 3,
    "description": "1-3 short lowercase topics",
}


def _operation_schema(kind: str, numbers: list[int]) -> dict[str, Any]:
    """One kind of operation: what its ``id`` and ``memory`` may be."""
    takes_id = kind in ("update", "delete")
    takes_text = kind in ("add", "update")
    return {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": [kind]},
            "id": (
                {
                    "type": "integer",
                    "enum": numbers,
                    "description": "the number of an existing memory",
                }
                if takes_id
                else {"type": "null"}
            ),
            "memory": (
                {"type": "string", "description": "one short fact about the user"}
                if takes_text
                else {"type": "null"}
            ),
            "topics": TOPICS_SCHEMA,
        },
        "required": ["op", "id", "memory", "topics"],
        "additionalProperties": False,
    }


FACTS_FIELD = "facts_about_the_user"
"""The answer's first field, when adding or updating is allowed: whether the conversation
states facts about the user at all. Answering it first, before any operation, is a
decision small models get right far more often than whether to write an operation; when
it is false, the answer's adds and updates are dropped (see :func:`parse_operations`)."""

FACTS_FIELD_SCHEMA: dict[str, Any] = {
    "type": "boolean",
    "description": (
        "whether the user states facts about themselves or their life; false for "
        "questions, requests for a task, small talk and instructions"
    ),
}


def operations_schema(
    shown: Mapping[int, UserMemory], permissions: Permissions, *, ask_facts: bool = True
) -> dict[str, Any]:
    """The answer's JSON schema for one call: first :data:`FACTS_FIELD` (when adding or
    updating is allowed, unless ``ask_facts`` is false), then the operations: only the
    permitted kinds that make sense (no update or delete when no memory is shown), ``id``
    one of the numbers shown (null for add and clear), ``memory`` a string for add and
    update (null otherwise).

    It keeps to the keywords both OpenAI's strict structured outputs and Gemini's response
    schemas accept (type, enum, properties, required, additionalProperties: false, items,
    anyOf, maxItems, description), so a grammar-constrained model cannot answer outside
    it. A non-empty ``memory`` cannot be said in that subset; :func:`parse_operations`
    drops an empty one.
    """
    numbers = sorted(shown)
    kinds = [k for k in permissions.kinds() if numbers or k not in ("update", "delete")]
    branches = [_operation_schema(kind, numbers) for kind in kinds]
    operations: dict[str, Any] = {"type": "array"}
    if not branches:  # nothing may be done: the only answer is an empty list
        operations["items"] = _operation_schema("add", numbers)
        operations["maxItems"] = 0
    else:
        operations["items"] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    properties: dict[str, Any] = {}
    if ask_facts and (permissions.add or permissions.update):
        properties[FACTS_FIELD] = FACTS_FIELD_SCHEMA
    properties["operations"] = operations
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


OPERATIONS_SCHEMA: dict[str, Any] = operations_schema({}, Permissions())
"""The schema with nothing shown and the default permissions (kept for callers that
used the former fixed schema)."""


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


_LIST_KEYS = ("operations", "memories", "actions", "ops")
"""The keys small models put an answer's operations under."""

OPERATION_FIELDS = {
    "op": ("op", "operation", "action", "type", "event"),
    "id": ("id", "memory_id", "number"),
    "memory": ("memory", "text", "content", "fact"),
    "topics": ("topics", "topic", "tags"),
}
"""An operation's fields, each with the names small models give it (in any case): an
answer's operations, and the facts of the two-call mode's first answer, are read by them."""

_KINDS = {
    "add": "add",
    "insert": "add",
    "create": "add",
    "new": "add",
    "update": "update",
    "modify": "update",
    "edit": "update",
    "change": "update",
    "replace": "update",
    "delete": "delete",
    "remove": "delete",
    "clear": "clear",
}
"""An operation's kind, by the names small models give it (in any case)."""

_NOTHING = frozenset(("none", "noop", "no-op", "no_op", "nothing", "skip", "keep"))
"""The kinds of an operation that says to do nothing (left out, as an empty answer is)."""


def _decode(text: str | None) -> tuple[list[Any] | None, bool]:
    """The answer's operations (None when it has none), and whether it says the
    conversation states facts about the user (true unless it says false).

    The answer is ``{"facts_about_the_user": ..., "operations": [...]}``, or what small
    models write instead: a list of operations, one operation alone, several objects one
    after another, the list under another key (``"memories"``) or keys in capitals."""
    try:
        values = json_values(text)
    except ValueError:
        return None, True
    items: list[Any] = []
    facts = True
    for value in values:
        if isinstance(value, list):
            items.extend(value)
            continue
        if not isinstance(value, dict):
            return None, True
        fields = fold_keys(value)
        if pick(fields, OPERATION_FIELDS["op"]) is not None:
            items.append(value)
            continue
        facts = facts and not says_false(fields.get(FACTS_FIELD))
        found = pick(fields, _LIST_KEYS)
        if isinstance(found, dict):
            found = [found]
        if found is None and not facts:
            found = []  # no facts and nothing to do: an empty list left out
        if not isinstance(found, list):
            return None, True
        items.extend(found)
    return items, facts


def _canonical(item: object, shown: Mapping[int, UserMemory]) -> object:
    """An operation as the rest of the checks read it: ``op``, ``id``, ``memory`` and
    ``topics`` under those names, the kind in lower case by its own name ("remove" is a
    delete), and the memory's number as a number ("#2", "memory 2", or the text of the
    memory shown as 2, are 2). None for an operation that says to do nothing; anything
    else is left as it is."""
    if not isinstance(item, dict):
        return item
    fields = fold_keys(item)
    canonical = {name: pick(fields, names) for name, names in OPERATION_FIELDS.items()}
    kind = canonical["op"]
    if isinstance(kind, str):
        word = kind.strip().casefold()
        if word in _NOTHING:
            return None
        canonical["op"] = _KINDS.get(word, kind)
    number = canonical["id"]
    if isinstance(number, list) and len(number) == 1:
        number = number[0]
    found = shown_number(number)
    if found is None and isinstance(number, str):
        named = [n for n, m in shown.items() if normalize(m.memory) == normalize(number)]
        found = named[0] if len(named) == 1 else None
    if found is not None:
        canonical["id"] = found
    if isinstance(canonical["topics"], str):
        canonical["topics"] = [canonical["topics"]]
    same = all(type(item.get(k)) is type(v) and item.get(k) == v for k, v in canonical.items())
    return item if same and set(item) <= set(OPERATION_FIELDS) else canonical


def says_false(value: object) -> bool:
    """Whether an answer's yes-or-no field says no: ``false``, or the text ``"false"`` or
    ``"no"`` small models write in its place."""
    if isinstance(value, str):
        return value.strip().casefold() in ("false", "no")
    return value is False


def _topics(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    cleaned = [t.strip().lower() for t in raw if isinstance(t, str) and t.strip()]
    try:
        return tuple(dict.fromkeys(check_topics(cleaned[:MAX_PLAN_TOPICS])))
    except UserError:
        return ()


def _text(raw: object, max_length: int) -> tuple[str | None, str]:
    """The operation's memory text, or None and why not: it is missing, empty, too long,
    or not storable (NUL characters, unpaired surrogates)."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not 0 < len(text) <= max_length:
        return None, f"memory text must be 1-{max_length} characters"
    try:
        return check_storable("memory text", text), ""
    except UserError as exc:
        return None, str(exc)


def _quoted(item: object) -> str:
    """An item of the answer as a rejection reason shows it (escaped where a text could
    not be written as UTF-8, so the reason itself can be stored and logged)."""
    text = json.dumps(item, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(item)
    return text[:200]


def _removed(
    items: list[Any], shown: Mapping[int, UserMemory], permissions: Permissions
) -> set[int]:
    """The numbers of the memories shown that the answer deletes (all of them when it
    clears): their texts do not count as already stored for its adds and updates."""
    if permissions.clear and any(isinstance(i, dict) and i.get("op") == "clear" for i in items):
        return set(shown)
    if not permissions.delete:
        return set()
    return {
        i["id"]
        for i in items
        if isinstance(i, dict) and i.get("op") == "delete" and type(i.get("id")) is int
    } & set(shown)


def parse_operations(
    answer: str | None,
    shown: Mapping[int, UserMemory],
    permissions: Permissions,
    max_length: int,
    *,
    salvage: bool = False,
    said: str = "",
) -> Plan:
    """The operations a model answer asks for, checked against what it was shown.

    With ``salvage`` (the memory manager's answers), mistakes small models make are
    mended rather than dropped, and logged: an ``update`` when no memory was shown
    (nothing matched, so the number it names does not exist) is taken as the ``add`` it
    clearly means; an update aimed at the prompt example's number, and an unchanged
    update beside the add of the new fact, are mended as :mod:`noted.memory.salvage`
    says (``said``, what the user said, tells a memory the user restated from one the
    new fact replaces).

    A fact counts as already stored when a memory shown states it, unless the answer
    deletes that memory (or clears them all).

    An answer whose :data:`FACTS_FIELD` is false says the conversation states no facts
    about the user: its adds and updates contradict it and are dropped, each with that
    reason (deletes and clears, which a request can ask for, are checked as usual).
    """
    plan = Plan()
    items, facts = _decode(answer)
    if items is None:
        plan.rejected.append(f"the answer is not JSON operations: {str(answer)[:200]!r}")
        return plan
    items = [c for c in (_canonical(i, shown) for i in items) if c is not None]
    if salvage and shown and permissions.update:
        items = merge_unchanged_update(retarget_example_update(items, shown), shown, said)
    gone = _removed(items, shown, permissions)
    known = {normalize(m.memory) for n, m in shown.items() if n not in gone}
    touched: set[int] = set()
    for item in items:
        if not facts and isinstance(item, dict) and item.get("op") in ("add", "update"):
            reason: str | None = f"the answer says {FACTS_FIELD} is false"
        else:
            reason = _check(item, shown, permissions, max_length, known, touched, plan, salvage)
        if reason is not None:
            plan.rejected.append(f"{reason}: {_quoted(item)}")
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
    salvage: bool,
) -> str | None:
    """Add the item to the plan, or say why not."""
    if not isinstance(item, dict):
        return "not an object"
    kind = item.get("op")
    if kind not in ("add", "update", "delete", "clear"):
        return "unknown operation"
    number = item.get("id")
    if (
        salvage
        and kind == "update"
        and not shown
        and permissions.add
        and type(number) in (int, type(None))
    ):
        # Nothing was shown, so there was nothing to update: the model meant a new fact.
        log.info("update of memory %r with none shown taken as an add", number)
        kind = "add"
    if not permissions.allows(kind):
        return f"'{kind}' is not allowed"
    if kind == "clear":
        plan.operations.append(Operation("clear"))
        return None
    if kind == "add":
        text, why = _text(item.get("memory"), max_length)
        if text is None:
            return why
        if normalize(text) in known:
            return "already stored"
        known.add(normalize(text))
        plan.operations.append(Operation("add", None, text, _topics(item.get("topics"))))
        return None
    if type(number) is not int or number not in shown:
        return "names a memory that was not shown"
    if number in touched:
        return "names a memory already changed in this answer"
    current = shown[number]
    if kind == "delete":
        touched.add(number)
        plan.operations.append(Operation("delete", current.memory_id))
        return None
    text, why = _text(item.get("memory"), max_length)
    if text is None:
        return why
    topics = _topics(item.get("topics")) or tuple(current.topics)
    if current.damaged is not None and not topics:  # kept, they would be lost unseen
        return "names a memory whose stored topics are damaged: give its topics"
    if normalize(text) == normalize(current.memory):
        if list(topics) == list(current.topics):
            return "changes nothing"
    elif normalize(text) in known:
        return "already stored as another memory"
    touched.add(number)
    known.add(normalize(text))
    plan.operations.append(Operation("update", current.memory_id, text, topics))
    return None


def number_memories(memories: Sequence[UserMemory], first: int = 1) -> dict[int, UserMemory]:
    """The short ids a prompt shows: ``first``, ``first + 1``, ... in the given order."""
    return {i: m for i, m in enumerate(memories, start=first)}
