"""A run as an agent stores it: no larger than a session store keeps
(:data:`~noted.limits.MAX_RUN_BYTES`), the results of its tools cut to fit.

A tool may return more text than a model should read at once or a store keeps of a whole
run (a file, a web page, a query of many rows). The model reads at most
``max_tool_result_chars`` of it (:func:`shown_to_model`: its start and its end, a mark
between saying how much was left out); the caller's ``RunResult.tool_calls`` keep it whole;
the stored run, which history replays and
``get_session`` shows, keeps the start of each of the longest results, followed by a
:func:`cut_mark` saying how much was cut. Every result is cut to the same length, the longest
that fits, so results shorter than that are kept whole. A run larger than the limit without
its tools' results (a message or an answer that large) is not cut: the store refuses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from noted.errors import RunTooLargeError
from noted.limits import MAX_RUN_BYTES
from noted.models.types import Message
from noted.sessions import RunResult, run_bytes

__all__ = ["check_message_fits", "cut_mark", "fit_run", "fitted", "shown_to_model"]

# a run whose texts hold fewer characters is measured on the event loop (some
# microseconds); a larger one in a worker thread, where its milliseconds hold up nothing
_MEASURED_INLINE = 64 * 1024


def shown_to_model(result: str, limit: int | None) -> str:
    """What the model reads of a tool's ``result``: all of it when it holds at most
    ``limit`` characters (or ``limit`` is None), else its first two thirds of ``limit`` and
    its last third (where a command's output says how it ended), a line between them saying
    how many characters were left out; all of it too when that line is no shorter than
    what it leaves out (the cut would be no shorter than the result)."""
    if limit is None or len(result) <= limit:
        return result
    head = limit * 2 // 3
    tail = limit - head
    left_out = len(result) - limit
    mark = (
        f"\n[... {left_out:,} characters of this tool result were left out: the model is "
        f"shown at most {limit:,} ...]\n"
    )
    if len(mark) >= left_out:
        return result
    return result[:head] + mark + (result[-tail:] if tail else "")


def cut_mark(cut: int) -> str:
    """What follows the kept start of a tool's result that ``cut`` characters were cut from."""
    return (
        f"\n[{cut:,} more characters of this tool result were cut: a stored run keeps at "
        f"most {MAX_RUN_BYTES:,} bytes]"
    )


# the most a mark takes as JSON (the mark of a cut of 10**15 characters, its line break
# escaped), with room to spare
_LONGEST_MARK = len(cut_mark(10**15)) + 8


def _cut(text: str, keep: int) -> str:
    """``text`` cut to its first ``keep`` characters and the mark, when that is shorter."""
    if len(text) - keep <= _LONGEST_MARK:
        return text
    return text[:keep] + cut_mark(len(text) - keep)


# the characters of a text measured at once when its starts' sizes are made
_BLOCK = 4096


def _json_bytes(text: str) -> int:
    """The bytes ``text`` takes inside a JSON string of the run (as :func:`run_bytes`
    measures it: UTF-8, its quotes, backslashes and control characters escaped)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


class _Sized:
    """A text and the bytes of its starts (every ``_BLOCK`` characters), so the bytes of
    any start are measured in a block's time: a character takes 1 to 6 bytes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]  # starts[i]: the bytes of text[: i * _BLOCK]
        for at in range(0, len(text), _BLOCK):
            self.starts.append(self.starts[-1] + _json_bytes(text[at : at + _BLOCK]))

    def saved(self, keep: int) -> int:
        """The bytes, at least, that cutting the text to ``keep`` characters saves (0 when
        :func:`_cut` leaves it whole)."""
        if len(self.text) - keep <= _LONGEST_MARK:
            return 0
        block = keep // _BLOCK
        start = self.starts[block] + _json_bytes(self.text[block * _BLOCK : keep])
        return self.starts[-1] - start - _LONGEST_MARK


def _saved(texts: list[_Sized], keep: int) -> int:
    """The bytes, at least, that cutting ``texts`` to ``keep`` characters saves."""
    return sum(t.saved(keep) for t in texts)


def _longest_kept(texts: list[_Sized], excess: int) -> int | None:
    """The longest length every text may keep for the cuts to save ``excess`` bytes (each
    saves at least a byte); None when even cutting them all to nothing would not."""
    if _saved(texts, 0) < excess:
        return None
    low, high = 0, max(len(t.text) for t in texts)  # _saved(low) >= excess: the largest
    while low < high:
        middle = (low + high + 1) // 2
        if _saved(texts, middle) >= excess:
            low = middle
        else:
            high = middle - 1
    return low


def fit_run(run: RunResult) -> RunResult:
    """``run`` itself when a store keeps it; otherwise a copy whose tools' results (in its
    ``tool_calls`` and its tool messages alike) are cut to fit, or, when cutting them
    cannot make it fit, ``run`` as it is (the store refuses it)."""
    excess = run_bytes(run) - MAX_RUN_BYTES
    if excess <= 0:
        return run
    texts = [_Sized(e.result) for e in run.tool_calls]
    texts += [_Sized(m.content) for m in run.messages if m.role == "tool" and m.content]
    keep = _longest_kept(texts, excess) if texts else None
    if keep is None:
        return run
    return dataclasses.replace(
        run,
        messages=[_cut_message(m, keep) for m in run.messages],
        tool_calls=[dataclasses.replace(e, result=_cut(e.result, keep)) for e in run.tool_calls],
    )


def _cut_message(message: Message, keep: int) -> Message:
    if message.role != "tool" or not message.content:
        return message
    return dataclasses.replace(message, content=_cut(message.content, keep))


def _texts_length(run: RunResult) -> int:
    """The characters of the run's texts: its input, answer, messages and tools' results."""
    chars = len(run.input) + len(run.content or "")
    chars += sum(len(m.content or "") for m in run.messages)
    return chars + sum(len(e.result) for e in run.tool_calls)


async def fitted(run: RunResult) -> RunResult:
    """:func:`fit_run` of ``run``, measured on the event loop when the run is small (a
    thread's hand-off costs several times the measuring) and in a worker thread when not."""
    if _texts_length(run) < _MEASURED_INLINE:
        return fit_run(run)
    return await asyncio.to_thread(fit_run, run)


def check_message_fits(message: str, user_id: str, session_id: str) -> None:
    """Refuse, before any model call, a message that alone makes a run larger than a
    session store keeps (:class:`~noted.errors.RunTooLargeError`): its run could never be
    kept. Measured only when the message is long enough to come near the limit."""
    if len(message) * 12 + 1024 < MAX_RUN_BYTES:  # twice, at most 6 JSON bytes a character
        return
    bare = RunResult(
        run_id="",
        session_id=session_id,
        user_id=user_id,
        input=message,
        messages=[Message("user", message)],
    )
    size = run_bytes(bare)
    if size > MAX_RUN_BYTES:
        raise RunTooLargeError(None, size, MAX_RUN_BYTES)
