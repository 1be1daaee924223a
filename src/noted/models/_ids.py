"""Tool-call ids as a provider's API takes them.

A session may be begun with one provider and continued with another, and its history
holds the ids the first one gave its tool calls: a compatible server's ids may hold
characters Claude refuses (``functions.get_weather:0``), be longer than OpenAI allows
(vLLM's ``chatcmpl-tool-...`` are 46 characters) or repeat from one answer to the next
(``call_0``). :func:`wire_ids` gives the conversation to send with every id the API would
refuse replaced, and each result naming its call's new id. The replacement is made from the
id itself and how often it came before, so that the same history is sent the same way at
every call (a prompt cache keeps matching it); the ids stored in the session are not
changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from noted.models.types import Message, ToolCall

__all__ = ["ANTHROPIC_IDS", "OPENAI_IDS", "IdRule", "wire_ids"]


@dataclass(frozen=True, slots=True)
class IdRule:
    """What an API takes as a tool-call id: the characters allowed (a regular expression
    the whole id must match; None: any) and the longest (None: any length). Ids are unique
    in a conversation under every rule: a repeated id leaves a result's call unclear."""

    pattern: re.Pattern[str] | None = None
    max_length: int | None = None

    def takes(self, call_id: str) -> bool:
        if not call_id or (self.max_length is not None and len(call_id) > self.max_length):
            return False
        return self.pattern is None or self.pattern.fullmatch(call_id) is not None


# Anthropic's ``tool_use.id`` pattern
ANTHROPIC_IDS = IdRule(pattern=re.compile(r"[a-zA-Z0-9_-]+"))
# OpenAI's limit on ``tool_calls[].id``
OPENAI_IDS = IdRule(max_length=40)


def _replacement(call_id: str, seen: int) -> str:
    """The id sent for the ``seen``-th call (0: the first) of id ``call_id``."""
    digest = hashlib.sha256(f"{seen}\0{call_id}".encode()).hexdigest()
    return "call_" + digest[:24]


class _Ids:
    """The ids given so far, as the conversation is read in order."""

    def __init__(self, rule: IdRule) -> None:
        self.rule = rule
        self.used: set[str] = set()
        self.seen: dict[str, int] = {}  # an original id -> how many calls had it so far
        # the calls of the last assistant message: original id -> the ids sent for them
        self.asked: dict[str, deque[str]] = {}

    def call(self, call_id: str) -> str:
        count = self.seen.get(call_id, 0)
        self.seen[call_id] = count + 1
        sent = call_id
        if not self.rule.takes(call_id) or call_id in self.used:
            sent = _replacement(call_id, count)
            while sent in self.used:  # an id already in the conversation: never in practice
                count += 1
                sent = _replacement(call_id, count)
        self.used.add(sent)
        self.asked.setdefault(call_id, deque()).append(sent)
        return sent

    def result(self, call_id: str) -> str:
        """The id sent for the call a result names: its calls' ids, in order, when the
        answer had several calls of that id."""
        sent = self.asked.get(call_id)
        if sent:
            return sent.popleft() if len(sent) > 1 else sent[0]
        if self.rule.takes(call_id):
            return call_id
        return _replacement(call_id, -1)  # a result whose call is not in the conversation


def wire_ids(messages: Sequence[Message], rule: IdRule) -> list[Message]:
    """``messages`` with every tool-call id ``rule`` refuses, or repeats, replaced (and
    each tool result naming its call by the new id); the messages themselves are left as
    they are. A conversation whose ids all pass is given back unchanged."""
    ids = _Ids(rule)
    return [_sent(message, ids) for message in messages]


def _sent(message: Message, ids: _Ids) -> Message:
    """One message as it is sent, its ids as ``ids`` give them."""
    if message.role == "assistant" and message.tool_calls:
        ids.asked = {}
        calls = [_renamed(call, ids.call(call.id)) for call in message.tool_calls]
        if any(new is not old for new, old in zip(calls, message.tool_calls, strict=True)):
            return dataclasses.replace(message, tool_calls=calls)
    elif message.role == "tool" and message.tool_call_id is not None:
        answered = ids.result(message.tool_call_id)
        if answered != message.tool_call_id:
            return dataclasses.replace(message, tool_call_id=answered)
    return message


def _renamed(call: ToolCall, call_id: str) -> ToolCall:
    return call if call_id == call.id else dataclasses.replace(call, id=call_id)
