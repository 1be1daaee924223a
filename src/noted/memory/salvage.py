"""Updates small models clearly mean but aim wrong, mended before the answer is checked.

Two habits of 1-2B models cost updates of changed facts (each mend is narrow, logged on
``noted.memory``, and only ever moves an operation between memories the model was shown):

- :func:`retarget_example_update`: the model names memory 1, the number in the prompt's
  update example, whatever memory the change is about ("I moved to Valencia, still at the
  bank": an update of 1, "User works at a bank", to "User lives in Valencia"). When memory 1
  is clearly unrelated to the new text and exactly one other memory shown states the same
  subject, the update goes to that one.
- :func:`merge_unchanged_update`: the model "updates" the old memory to its own text and
  adds the new fact beside it ("User eats meat every day" kept as it was, "User went vegan"
  added). When one add restates that memory's subject, it becomes the update, unless the
  user said the old fact again ("I still have my dog Rex, and I adopted a cat"): then
  the unchanged update keeps it on purpose.

Both work on the answer's raw items (the JSON objects) and the memories shown; the
operations they produce are checked like any other (see
:func:`noted.memory.operations.parse_operations`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from noted.schema import UserMemory

__all__ = [
    "EXAMPLE_UPDATE_NUMBER",
    "merge_unchanged_update",
    "retarget_example_update",
    "same_subject",
]

log = logging.getLogger("noted.memory")

EXAMPLE_UPDATE_NUMBER = 1
"""The memory number the prompt's update example changes, which small models copy."""

_WORD = re.compile(r"[a-z0-9][a-z0-9']*")
_OWNER = ("user", "user's", "the")


def _words(text: str) -> list[str]:
    words = _WORD.findall(text.casefold())
    while words and words[0] in _OWNER:
        words.pop(0)
    return words


def _stems(text: str) -> set[str]:
    """The content words (four letters or more, first four letters) of a memory."""
    return {w[:4] for w in _words(text) if len(w) >= 4}


def same_subject(new: str, old: str) -> bool:
    """Whether ``new`` states the subject of ``old`` with another value: after "User" they
    open with the same words, one of which at least has four letters, and then differ
    ("User lives in Valencia" / "User lives in Madrid"; "User's name is Sam" / "User's
    name is Ravi"; not "User has a cat" / "User has a dog", whose shared opening says
    nothing)."""
    a, b = _words(new), _words(old)
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    return a != b and any(len(w) >= 4 for w in a[:shared])


def _topics(item: Mapping[str, Any]) -> set[str]:
    raw = item.get("topics")
    return (
        {t.strip().casefold() for t in raw if isinstance(t, str)}
        if isinstance(raw, list)
        else set()
    )


def _related(item: Mapping[str, Any], memory: UserMemory) -> bool:
    """Whether the operation's text could be about ``memory``: a subject, a topic or a
    content word in common."""
    text = item.get("memory")
    if not isinstance(text, str):
        return True  # nothing to judge by: assume it is
    return (
        same_subject(text, memory.memory)
        or bool(_topics(item) & {t.casefold() for t in memory.topics})
        or bool(_stems(text) & _stems(memory.memory))
    )


def _matches(item: Mapping[str, Any], memory: UserMemory) -> bool:
    """Whether the operation's text is clearly about ``memory``'s subject: the same
    opening words, or a topic and a content word in common."""
    text = item.get("memory")
    if not isinstance(text, str):
        return False
    if same_subject(text, memory.memory):
        return True
    topics = _topics(item) & {t.casefold() for t in memory.topics}
    return bool(topics) and bool(_stems(text) & _stems(memory.memory))


def _named(items: list[Any]) -> list[object]:
    return [item.get("id") for item in items if isinstance(item, dict) and item.get("op") != "add"]


def retarget_example_update(items: list[Any], shown: Mapping[int, UserMemory]) -> list[Any]:
    """``items`` with an update of memory :data:`EXAMPLE_UPDATE_NUMBER` moved to the one
    other shown memory it is clearly about, when the memory it names is unrelated to its
    text and no other operation of the answer names that other memory."""
    first = shown.get(EXAMPLE_UPDATE_NUMBER)
    if first is None or len(shown) < 2:
        return items
    named = _named(items)
    result: list[Any] = []
    for item in items:
        target = None
        if (
            isinstance(item, dict)
            and item.get("op") == "update"
            and type(item.get("id")) is int
            and item.get("id") == EXAMPLE_UPDATE_NUMBER
            and not _related(item, first)
        ):
            found = [
                n
                for n, m in shown.items()
                if n != EXAMPLE_UPDATE_NUMBER and n not in named and _matches(item, m)
            ]
            target = found[0] if len(found) == 1 else None
        if target is None:
            result.append(item)
            continue
        log.info(
            "update of memory %d (%r) taken as an update of memory %d (%r): %r",
            EXAMPLE_UPDATE_NUMBER,
            first.memory,
            target,
            shown[target].memory,
            item.get("memory"),
        )
        result.append({**item, "id": target})
        named.append(target)
    return result


def _unchanged(item: object, shown: Mapping[int, UserMemory]) -> int | None:
    """The number of the memory an update names and leaves as it is, or None."""
    if not isinstance(item, dict) or item.get("op") != "update":
        return None
    number, text = item.get("id"), item.get("memory")
    if type(number) is not int or number not in shown or not isinstance(text, str):
        return None
    same = _WORD.findall(text.casefold()) == _WORD.findall(shown[number].memory.casefold())
    return number if same else None


def _restated(memory: UserMemory, said: str) -> bool:
    """Whether the user's words hold most of the memory's own (after "User", words of
    three letters or more): the user said it again ("I still have my dog Rex"), so an
    update leaving it as it is keeps it on purpose."""
    own = {w for w in _words(memory.memory) if len(w) >= 3}
    return bool(own) and 2 * len(own & set(_WORD.findall(said.casefold()))) > len(own)


def merge_unchanged_update(
    items: list[Any], shown: Mapping[int, UserMemory], said: str = ""
) -> list[Any]:
    """``items`` with an update that leaves its memory as it is and the one add that
    restates that memory's subject (the same opening words, or a topic or a content word
    in common) made into one update carrying the add's text and topics; only when the
    answer has exactly one such unchanged update, and the user (``said``) did not restate
    that memory."""
    unchanged = [
        (i, n) for i, item in enumerate(items) if (n := _unchanged(item, shown)) is not None
    ]
    if len(unchanged) != 1:
        return items
    position, number = unchanged[0]
    old = shown[number]
    if _restated(old, said):
        return items
    adds = [
        i
        for i, item in enumerate(items)
        if isinstance(item, dict)
        and item.get("op") == "add"
        and isinstance(item.get("memory"), str)
    ]
    about = [i for i in adds if _related(items[i], old)]
    if len(about) != 1:
        return items
    new = items[about[0]]
    log.info(
        "update leaving memory %d (%r) as it is, beside an add of %r, taken as its update",
        number,
        old.memory,
        new["memory"],
    )
    merged = {"op": "update", "id": number, "memory": new["memory"], "topics": new.get("topics")}
    return [merged if i == position else item for i, item in enumerate(items) if i != about[0]]
