"""A small rule-based model that plays every part the examples need, offline.

It answers the agent (using the memories in its system prompt), calls the memory tools
when it has them, and answers the memory manager, agentic search and session summary
requests in the JSON they ask for. It understands a handful of sentence shapes ("My name
is ...", "I like to ...", "I enjoy a, b and c", "I live in ...") and nothing more.
"""

from __future__ import annotations

import json
import re
from typing import Any

from noted.models import Message, ModelResponse, ToolCall, ToolDefinition
from noted.testing import FunctionModel

_STOP = {"what", "does", "user", "like", "likes", "with", "that", "this", "about", "have"}


def _title(text: str) -> str:
    return " ".join(w.capitalize() for w in text.split())


def facts(said: str) -> list[tuple[str, str]]:
    """(fact, topic) pairs stated in a user's message."""
    found: list[tuple[str, str]] = []
    name = re.search(r"(?i:\bmy name is) ((?:[A-Z][a-z]+)(?: [A-Z][a-z]+)?)", said)
    if name:
        found.append((f"User's name is {name.group(1)}", "name"))
    daughter = re.search(r"\bmy daughter's name is ([A-Z][a-z]+)", said, re.IGNORECASE)
    if daughter:
        found.append((f"User's daughter's name is {daughter.group(1)}", "family"))
    for verb, what in re.findall(r"\bI (like to|love|enjoy|like) ([^.!?]+)", said):
        items = [i.strip() for i in re.split(r",\s*(?:and\s+)?|\s+and\s+(?=[a-z]+ing\b)", what)]
        for item in items:
            if not item or item.lower().startswith(("i ", "i'm")):
                continue
            third = {"like to": "likes to", "love": "loves", "enjoy": "enjoys", "like": "likes"}
            found.append((f"User {third[verb]} {item}", "hobbies"))
    learning = re.search(r"\bI'm learning (\w+)", said)
    if learning:
        found.append((f"User is learning {learning.group(1)}", "learning"))
    passion = re.search(r"(\w+) has become a recent passion of mine", said)
    if passion:
        found.append((f"User has a recent passion for {passion.group(1).lower()}", "hobbies"))
    home = re.search(r"\bI live in ([a-z ]+?)(?:,|\.|$| where)", said, re.IGNORECASE)
    if home:
        found.append((f"User lives in {_title(home.group(1))}", "location"))
    return found


def _forget(said: str) -> bool:
    return bool(re.search(r"remove all existing memories|forget everything", said, re.I))


def _shown(listing: str, pattern: str) -> dict[int, str]:
    return {int(n): text for n, text in re.findall(pattern, listing, re.MULTILINE)}


def _user_turns(section: str) -> list[str]:
    """The user's messages of a quoted conversation ("user: ..." up to the next speaker)."""
    turns = re.split(r"^(user|assistant): ", section, flags=re.MULTILINE)
    return [
        text.strip() for who, text in zip(turns[1::2], turns[2::2], strict=True) if who == "user"
    ]


def _manager(prompt: str) -> str:
    existing = prompt.split("<existing_memories>")[1].split("</existing_memories>", maxsplit=1)[0]
    shown = _shown(existing, r"^(\d+)\. (.*?)(?: \(topics: .*\))?$")
    conversation = prompt.split("<conversation>")[1].split("</conversation>", maxsplit=1)[0]
    said = " ".join(_user_turns(conversation))
    ops: list[dict[str, Any]] = []
    if _forget(said):
        return json.dumps(
            {"operations": [{"op": "clear", "id": None, "memory": None, "topics": []}]}
        )
    for fact, topic in facts(said):
        if fact in shown.values():
            continue
        moved = [n for n, text in shown.items() if topic == "location" and "lives in" in text]
        op = {"op": "update", "id": moved[0]} if moved else {"op": "add", "id": None}
        ops.append({**op, "memory": fact, "topics": [topic]})
    return json.dumps({"operations": ops})


def _search(prompt: str) -> str:
    listing = prompt.split("<memories>")[1].split("</memories>", maxsplit=1)[0]
    query = prompt.split("<query>")[1].split("</query>", maxsplit=1)[0]
    words = {w[:5] for w in re.findall(r"[a-z]{4,}", query.lower()) if w not in _STOP}
    picked = [
        n
        for n, text in _shown(listing, r"^(\d+)\. (.*)$").items()
        if words & {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower())}
    ]
    return json.dumps({"ids": picked})


def _summary(prompt: str) -> str:
    before = prompt.split("<summary>\n")[1].split("\n</summary>", maxsplit=1)[0]
    conversation = prompt.split("<conversation>")[1].split("</conversation>", maxsplit=1)[0]
    said = _user_turns(conversation)
    parts = ([] if before == "(none yet)" else [before]) + [f"User said: {s}" for s in said]
    return json.dumps({"summary": " ".join(parts), "topics": ["conversation"]})


def _known(system: str) -> list[str]:
    section = system.split("<memories_from_previous_interactions>")
    if len(section) < 2:
        return []
    body = section[1].split("</memories_from_previous_interactions>")[0]
    return re.findall(r"^(?:- |\[\d+\] )(.*)$", body, re.MULTILINE)


def _answer(said: str, known_facts: list[str], default: str) -> str:
    lowered = said.lower()
    if _forget(said):
        return "Done: I no longer remember anything about you."
    if "name" in lowered and "?" in said:
        names_known = [f for f in known_facts if "name is" in f]
        return f"From what I remember: {names_known[0]}." if names_known else "I don't know yet."
    if "?" in said and ("know about me" in lowered or "my hobbies" in lowered or "do i" in lowered):
        if not known_facts:
            return "I don't know anything about you yet."
        return "Here is what I remember: " + "; ".join(known_facts) + "."
    if "move" in lowered:
        home = [f for f in known_facts if "lives in" in f]
        where = home[0].removeprefix("User lives in ") if home else "where you are"
        return f"From {where}, Lake Tahoe and Sacramento are within a 4 hour drive."
    return default


def _tool_calls(system: str, said: str, names: set[str]) -> list[ToolCall]:
    known = {text: int(n) for n, text in re.findall(r"^\[(\d+)\] (.*)$", system, re.MULTILINE)}
    if _forget(said) and "clear_memories" in names:
        return [ToolCall("clear_memories", {})]
    calls: list[ToolCall] = []
    for fact, topic in facts(said):
        if fact in known:
            continue
        moved = [n for text, n in known.items() if topic == "location" and "lives in" in text]
        if moved:
            calls.append(ToolCall("update_memory", {"id": moved[0], "memory": fact}))
        else:
            calls.append(ToolCall("add_memory", {"memory": fact, "topics": [topic]}))
    return calls


def _agent(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
    system = messages[0].content or "" if messages[0].role == "system" else ""
    said = next(m.content or "" for m in reversed(messages) if m.role == "user")
    known_facts = _known(system)
    if messages[-1].role == "tool":
        written = [
            m.content.split("]: ", 1)[1]
            for m in messages
            if m.role == "tool" and m.content and "memory [" in m.content and "]: " in m.content
        ]
        return _answer(said, known_facts + written, "Got it, I will remember that.")
    if "add_memory" in {t.name for t in tools}:
        calls = _tool_calls(system, said, {t.name for t in tools})
        if calls:
            return ModelResponse(tool_calls=calls)
    return _answer(said, known_facts, "Nice to hear that!")


def reply(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
    first = messages[0].content or ""
    prompt = messages[-1].content or ""
    if first.startswith("You maintain the long-term memory"):
        return _manager(prompt)
    if first.startswith("You search the memories"):
        return _search(prompt)
    if first.startswith("You keep a running summary"):
        return _summary(prompt)
    return _agent(messages, tools)


def example_model(model_id: str = "examples") -> FunctionModel:
    return FunctionModel(reply, id=model_id)
