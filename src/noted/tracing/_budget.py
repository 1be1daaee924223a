"""The share of text a model call's span gives its messages: together at most
:data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` characters, the system prompt and the
newest messages first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from openinference.semconv.trace import MessageAttributes, ToolCallAttributes
from opentelemetry.util.types import AttributeValue

from noted._cut import cut_middle
from noted.limits import MAX_TRACE_MESSAGES_CHARS

if TYPE_CHECKING:
    from noted.models.types import Message

__all__ = ["share"]

_SMALLEST_CUT = 2_000
"""The fewest characters a text is cut to: with less room left, it is left out whole."""


def _order(count: int, messages: Sequence[Message]) -> list[int]:
    """The positions of ``messages`` in the order they get their share: a leading system
    prompt first (it holds the memories), then the newest to the oldest."""
    first = 1 if count and messages[0].role == "system" else 0
    return list(range(first)) + list(range(count - 1, first - 1, -1))


def _text_keys(base: str, message: Message) -> Iterator[str]:
    """The attribute names of ``message``'s texts: its content, its tool calls' arguments."""
    if message.content is not None:
        yield base + MessageAttributes.MESSAGE_CONTENT
    for j in range(len(message.tool_calls)):
        yield (
            f"{base}{MessageAttributes.MESSAGE_TOOL_CALLS}.{j}."
            f"{ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON}"
        )


def _cut(text: str, room: int) -> str:
    """``text`` cut to ``room`` characters, or a short note in its place when ``room`` is
    small (a newer text's mark says why)."""
    if room < _SMALLEST_CUT:
        return f"[... the {len(text):,} characters of this text were left out ...]"
    mark = (
        f"\n[... {len(text) - room:,} characters were left out of this text: a span holds "
        f"at most {MAX_TRACE_MESSAGES_CHARS:,} of its messages' texts, the system prompt "
        f"and the newest messages first ...]\n"
    )
    return cut_middle(text, room, mark)


def share(out: dict[str, AttributeValue], bases: Sequence[str], messages: Sequence[Message]) -> int:
    """Cut the texts of ``messages`` in ``out`` (``bases``: each message's attribute
    prefix) to :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` characters together, each
    kept whole while there is room, in :func:`_order`. Returns how many texts were cut
    or left out."""
    room = MAX_TRACE_MESSAGES_CHARS
    changed = 0
    for i in _order(min(len(bases), len(messages)), messages):
        for key in _text_keys(bases[i], messages[i]):
            text = out.get(key)
            if not isinstance(text, str):
                continue
            if len(text) > room:
                text = out[key] = _cut(text, room)
                changed += 1
            room = max(room - len(text), 0)
    return changed
