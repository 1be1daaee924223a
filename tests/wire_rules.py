"""How the vendors' APIs validate the tool calls and results of a conversation, for the
wire server's ``check`` (see tests/wire.py): each function takes a recorded request and
gives the error reply the API answers it with (HTTP 400, the API's own words), or None.

The rules are the APIs' documented and observed ones for tool-call ids and pairing:

- Anthropic: a ``tool_use`` id matches ``^[a-zA-Z0-9_-]+$`` and is unique in the request;
  each ``tool_use`` has its ``tool_result`` in the next message, and each ``tool_result``
  its ``tool_use`` in the message before (consecutive turns of one role are one message).
- OpenAI Chat Completions: a tool call has an id of at most 40 characters; an assistant
  message with ``tool_calls`` is followed by a tool message for each of its ids, and a tool
  message answers a call of the assistant message before the tool messages.
- Gemini: a turn of function calls follows a user turn or a turn of function responses;
  the turn after it holds as many function responses as it holds calls, each naming one of
  its functions (and, when it carries an id, one of its calls' ids).
"""

from __future__ import annotations

import re
from typing import Any

from wire import Recorded, Reply

__all__ = ["anthropic_rules", "gemini_rules", "openai_rules"]

_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_OPENAI_ID_LENGTH = 40


# -- Anthropic -------------------------------------------------------------------------------


def anthropic_rules(sent: Recorded) -> Reply | None:
    body = sent.body if isinstance(sent.body, dict) else {}
    problem = _anthropic_problem(_merged(body.get("messages") or []))
    if problem is None:
        return None
    error = {"type": "invalid_request_error", "message": problem}
    return Reply({"type": "error", "error": error}, status=400)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def _merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of one role as one, as the API takes them."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1]["content"].extend(_blocks(message["content"]))
        else:
            turns.append({"role": message["role"], "content": _blocks(message["content"])})
    return turns


def _anthropic_problem(turns: list[dict[str, Any]]) -> str | None:
    seen: set[str] = set()
    for i, turn in enumerate(turns):
        for j, block in enumerate(turn["content"]):
            key = "id" if block["type"] == "tool_use" else "tool_use_id"
            if block["type"] in ("tool_use", "tool_result") and not _ANTHROPIC_ID.match(
                str(block.get(key) or "")
            ):
                return (
                    f"messages.{i}.content.{j}.{block['type']}.{key}: String should match "
                    "pattern '^[a-zA-Z0-9_-]+$'"
                )
            if block["type"] == "tool_use":
                if block["id"] in seen:
                    return f"messages.{i}.content.{j}: `tool_use` ids must be unique"
                seen.add(block["id"])
        problem = _unpaired(turns, i)
        if problem is not None:
            return problem
    return None


def _ids(turn: dict[str, Any] | None, kind: str, key: str) -> list[str]:
    blocks = turn["content"] if turn is not None else []
    return [b[key] for b in blocks if b["type"] == kind]


def _unpaired(turns: list[dict[str, Any]], i: int) -> str | None:
    turn = turns[i]
    if turn["role"] == "assistant":
        after = turns[i + 1] if i + 1 < len(turns) else None
        answered = set(_ids(after, "tool_result", "tool_use_id"))
        missing = [u for u in _ids(turn, "tool_use", "id") if u not in answered]
        if missing:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        return None
    before = turns[i - 1] if i else None
    asked = set(_ids(before, "tool_use", "id"))
    for j, block in enumerate(turn["content"]):
        if block["type"] == "tool_result" and block["tool_use_id"] not in asked:
            return (
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {block['tool_use_id']}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
    return None


# -- OpenAI ----------------------------------------------------------------------------------


def openai_rules(sent: Recorded) -> Reply | None:
    body = sent.body if isinstance(sent.body, dict) else {}
    problem = _openai_problem(body.get("messages") or [])
    if problem is None:
        return None
    error = {"message": problem, "type": "invalid_request_error", "param": None, "code": None}
    return Reply({"error": error}, status=400)


def _openai_problem(messages: list[dict[str, Any]]) -> str | None:
    asked: set[str] = set()  # the calls of the assistant message before these tool messages
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            if message.get("tool_call_id") not in asked:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            continue
        asked = set()
        calls = message.get("tool_calls") or [] if message["role"] == "assistant" else []
        for j, call in enumerate(calls):
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                return f"Missing required parameter: 'messages[{i}].tool_calls[{j}].id'."
            if len(call_id) > _OPENAI_ID_LENGTH:
                return (
                    f"Invalid 'messages[{i}].tool_calls[{j}].id': string too long. Expected a "
                    f"string with maximum length {_OPENAI_ID_LENGTH}, but got a string with "
                    f"length {len(call_id)} instead."
                )
            asked.add(call_id)
        answered = {m.get("tool_call_id") for m in _tool_run(messages, i + 1)}
        missing = [c["id"] for c in calls if c["id"] not in answered]
        if missing:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(missing)}"
            )
    return None


def _tool_run(messages: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """The tool messages from ``start`` up to the next message of another role."""
    run: list[dict[str, Any]] = []
    for message in messages[start:]:
        if message["role"] != "tool":
            break
        run.append(message)
    return run


# -- Gemini ----------------------------------------------------------------------------------


def gemini_rules(sent: Recorded) -> Reply | None:
    body = sent.body if isinstance(sent.body, dict) else {}
    problem = _gemini_problem(body.get("contents") or [])
    if problem is None:
        return None
    error = {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}
    return Reply({"error": error}, status=400)


def _parts(content: dict[str, Any] | None, kind: str) -> list[dict[str, Any]]:
    parts = content.get("parts") or [] if content is not None else []
    return [p[kind] for p in parts if kind in p]


def _gemini_problem(contents: list[dict[str, Any]]) -> str | None:
    for i, content in enumerate(contents):
        before = contents[i - 1] if i else None
        calls = _parts(content, "functionCall")
        if content.get("role") == "model" and calls:
            if before is None or before.get("role") != "user":
                return (
                    "Please ensure that function call turn comes immediately after a user "
                    "turn or after a function response turn."
                )
            continue
        responses = _parts(content, "functionResponse")
        if not responses:
            continue
        asked = _parts(before, "functionCall")
        names = {c.get("name") for c in asked}
        ids = {c.get("id") for c in asked if c.get("id")}
        unmatched = [
            r
            for r in responses
            if r.get("name") not in names or (r.get("id") and r["id"] not in ids)
        ]
        if len(responses) != len(asked) or unmatched:
            return (
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
    return None
