"""The room a span gives a list of texts together: a model call's messages, a retriever's
documents, an embedding call's texts each share :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS`,
counted as UTF-8 bytes (what a span's size is made of: a character beyond ASCII takes 2 to
4 of them). The texts that come first keep theirs whole; the first that does not fit is cut
to the room left, and the others are left out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from openinference.semconv.trace import MessageAttributes, ToolCallAttributes
from opentelemetry.util.types import AttributeValue

from noted._cut import cut_middle
from noted.limits import MAX_TRACE_MESSAGES_CHARS

if TYPE_CHECKING:
    from noted.models.types import Message

__all__ = ["MAX_CHAR_BYTES", "Budget", "share", "utf8_size"]

_SMALLEST_CUT = 2_000
"""The fewest bytes a text is cut to: with less room left, it is left out whole."""

MAX_CHAR_BYTES = 4
"""The most UTF-8 bytes one character takes: texts of ``n`` characters take at most
``4 * n`` bytes, so under a quarter of a budget in characters needs no count of bytes."""


def utf8_size(text: str) -> int:
    """How many bytes ``text`` takes in UTF-8: its length when it is ASCII (which Python
    knows without reading it), else its encoding's length."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _left_out(text: str) -> str:
    """What stands in a span for a message's text no room was left for."""
    return f"[... the {len(text):,} characters of this text were left out ...]"


class Budget:
    """The bytes left for a span's list of texts, taken in the order they are kept in."""

    __slots__ = ("room", "why")

    def __init__(self, why: str, room: int = MAX_TRACE_MESSAGES_CHARS) -> None:
        self.room = room
        self.why = why  # what a cut text's mark says of the texts and their order

    def take(self, text: str) -> str | None:
        """``text`` whole when it fits in the room left, else cut to about that many bytes
        with a line saying how much was left out and why, or None when less than
        :data:`_SMALLEST_CUT` bytes are left (a later, shorter text may still fit). The
        room shrinks by what is kept."""
        size = utf8_size(text)
        if size <= self.room:
            self.room -= size
            return text
        if self.room < _SMALLEST_CUT:
            return None
        keep = self.room * len(text) // size  # characters: as many bytes on average
        mark = (
            f"\n[... {len(text) - keep:,} characters were left out of this text: a span "
            f"holds at most {MAX_TRACE_MESSAGES_CHARS:,} bytes of {self.why} ...]\n"
        )
        self.room = 0
        return cut_middle(text, keep, mark)

    def spend(self, size: int) -> None:
        """Count ``size`` more bytes kept (what goes with a text: a document's metadata)."""
        self.room = max(self.room - size, 0)


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


def share(
    out: dict[str, AttributeValue], bases: Sequence[str], messages: Sequence[Message]
) -> None:
    """Cut the texts of ``messages`` in ``out`` (``bases``: each message's attribute
    prefix) to :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` bytes together, each kept
    whole while there is room, in :func:`_order`; a text no room was left for is replaced
    by a line saying so."""
    budget = Budget("its messages' texts, the system prompt and the newest messages first")
    for i in _order(min(len(bases), len(messages)), messages):
        for key in _text_keys(bases[i], messages[i]):
            text = out.get(key)
            if not isinstance(text, str):
                continue
            kept = budget.take(text)
            if kept is not text:
                out[key] = _left_out(text) if kept is None else kept
