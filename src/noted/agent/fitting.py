"""A run as an agent stores it: no larger than a session store keeps
(:data:`~noted.limits.MAX_RUN_BYTES`), the long texts of its tools, their results and the
arguments they were called with, cut to fit.

A tool may return more text than a model should read at once or a store keeps of a whole
run (a file, a web page, a query of many rows). The model reads at most
``max_tool_result_chars`` of it (:func:`shown_to_model`: its start and its end, a mark
between saying how much was left out); the caller's ``RunResult.tool_calls`` keep it whole;
the stored run, which history replays and
``get_session`` shows, keeps the start of each of the longest results, followed by a
:func:`cut_mark` saying how much was cut. A model may as well send a tool that much text
(the content of a file it writes): the stored run keeps the start of each of the longest
string values in its calls' arguments (in its assistant messages and its ``tool_calls``
alike, at any depth of the JSON object), followed by the mark of an argument; the
arguments stay JSON objects of the same keys and items (arguments that are not a JSON
object, kept as the model sent them, are cut as one text). Every such text, a result or an
argument, is cut to the same length, the longest that fits, so texts shorter than that are
kept whole. A run larger than the limit without those texts (a message or an answer that
large) is not cut: the store refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from noted._cut import cut_middle
from noted.errors import RunNotSavedError, RunTooLargeError, StoreError
from noted.limits import MAX_RUN_BYTES
from noted.models.types import Message, ToolCall
from noted.sessions import RunResult, ToolExecution, run_bytes

__all__ = [
    "answer_carried",
    "check_message_fits",
    "cut_mark",
    "fit_run",
    "fitted",
    "shown_to_model",
]

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
    left_out = len(result) - limit
    mark = (
        f"\n[... {left_out:,} characters of this tool result were left out: the model is "
        f"shown at most {limit:,} ...]\n"
    )
    return result if len(mark) >= left_out else cut_middle(result, limit, mark)


RESULT = "tool result"
"""What a result's :func:`cut_mark` says was cut from."""
ARGUMENT = "argument"
"""What the :func:`cut_mark` of a string value in a tool call's arguments says was cut from."""
ARGUMENTS = "tool call's arguments"
"""What the :func:`cut_mark` of arguments that are not a JSON object (a call's
``invalid_arguments``, kept as the model sent them) says was cut from."""


def cut_mark(cut: int, of: str = RESULT) -> str:
    """What follows the kept start of a text of a tool call (``of``: :data:`RESULT`,
    :data:`ARGUMENT` or :data:`ARGUMENTS`) that ``cut`` characters were cut from."""
    return (
        f"\n[{cut:,} more characters of this {of} were cut: a stored run keeps at "
        f"most {MAX_RUN_BYTES:,} bytes]"
    )


# the most a mark takes as JSON (the mark of a cut of 10**15 characters, its line break
# escaped), with room to spare
_LONGEST_MARK = max(len(cut_mark(10**15, of)) for of in (RESULT, ARGUMENT, ARGUMENTS)) + 8


def _cut(text: str, keep: int, of: str = RESULT) -> str:
    """``text`` cut to its first ``keep`` characters and the mark, when that is shorter."""
    if len(text) - keep <= _LONGEST_MARK:
        return text
    return text[:keep] + cut_mark(len(text) - keep, of)


# the characters of a text measured at once when its starts' sizes are made
_BLOCK = 4096


def _json_bytes(text: str) -> int:
    """The bytes ``text`` takes inside a JSON string of the run (as :func:`run_bytes`
    measures it: UTF-8, its quotes, backslashes and control characters escaped)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


class _Sized:
    """A text, how many ``times`` a run holds it, and the bytes of its starts (every
    ``_BLOCK`` characters), so the bytes of any start are measured in a block's time: a
    character takes 1 to 6 bytes (none, when each takes one byte, as ASCII without
    characters JSON escapes does)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.times = 1
        self.starts = [0]  # starts[i]: the bytes of text[: i * _BLOCK]
        for at in range(0, len(text), _BLOCK):
            self.starts.append(self.starts[-1] + _json_bytes(text[at : at + _BLOCK]))
        self.one_byte_each = self.starts[-1] == len(text)

    def saved(self, keep: int) -> int:
        """The bytes, at least, that cutting the text to ``keep`` characters saves (0 when
        :func:`_cut` leaves it whole), once."""
        if len(self.text) - keep <= _LONGEST_MARK:
            return 0
        if self.one_byte_each:
            start = keep
        else:
            block = keep // _BLOCK
            start = self.starts[block] + _json_bytes(self.text[block * _BLOCK : keep])
        return self.starts[-1] - start - _LONGEST_MARK


def _saved(texts: list[_Sized], keep: int) -> int:
    """The bytes, at least, that cutting ``texts`` to ``keep`` characters saves."""
    return sum(t.saved(keep) * t.times for t in texts)


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
    ``tool_calls`` and its tool messages alike) and long string values of its calls'
    arguments (in its ``tool_calls`` and its assistant messages alike) are cut to fit, or,
    when cutting them cannot make it fit, ``run`` as it is (the store refuses it)."""
    excess = run_bytes(run) - MAX_RUN_BYTES
    if excess <= 0:
        return run
    texts = _cuttable(run)
    keep = _longest_kept(texts, excess) if texts else None
    if keep is None:
        return run
    return dataclasses.replace(
        run,
        messages=[_cut_message(m, keep) for m in run.messages],
        tool_calls=[_cut_execution(e, keep) for e in run.tool_calls],
    )


def _tool_texts(run: RunResult) -> Iterator[str]:
    """The texts of the run's tool calls that a stored run may keep cut: each result and
    each string value of the arguments, as many times as the run holds them."""
    for execution in run.tool_calls:
        yield execution.result
        yield from _strings(execution.arguments)
    for message in run.messages:
        if message.role == "tool" and message.content:
            yield message.content
        for call in message.tool_calls:
            yield from _strings(call.arguments)
            if call.invalid_arguments is not None:
                yield call.invalid_arguments


def _strings(value: Any) -> Iterator[str]:
    """The string values in a tool call's arguments (or a value inside them), at any depth;
    not the keys, which are kept whole."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _cuttable(run: RunResult) -> list[_Sized]:
    """The run's tool texts long enough for a cut to shorten, each measured once however
    many times the run holds it (an argument is in a message and in ``tool_calls``)."""
    measured: dict[int, _Sized] = {}
    for text in _tool_texts(run):
        if len(text) <= _LONGEST_MARK:
            continue
        if id(text) in measured:
            measured[id(text)].times += 1
        else:
            measured[id(text)] = _Sized(text)
    return list(measured.values())


def _cut_message(message: Message, keep: int) -> Message:
    if message.role == "tool" and message.content:
        message = dataclasses.replace(message, content=_cut(message.content, keep))
    if message.tool_calls:
        calls = [_cut_call(c, keep) for c in message.tool_calls]
        message = dataclasses.replace(message, tool_calls=calls)
    return message


def _cut_call(call: ToolCall, keep: int) -> ToolCall:
    invalid = call.invalid_arguments
    return dataclasses.replace(
        call,
        arguments=_cut_arguments(call.arguments, keep),
        invalid_arguments=None if invalid is None else _cut(invalid, keep, ARGUMENTS),
    )


def _cut_execution(execution: ToolExecution, keep: int) -> ToolExecution:
    return dataclasses.replace(
        execution,
        arguments=_cut_arguments(execution.arguments, keep),
        result=_cut(execution.result, keep),
    )


def _cut_arguments(arguments: dict[str, Any], keep: int) -> dict[str, Any]:
    """A copy of a call's ``arguments`` whose string values, at any depth, are cut to
    ``keep`` characters (by :func:`_cut`); its keys, numbers and shape as they are."""
    return {key: _cut_value(value, keep) for key, value in arguments.items()}


def _cut_value(value: Any, keep: int) -> Any:
    if isinstance(value, str):
        return _cut(value, keep, ARGUMENT)
    if isinstance(value, dict):
        return {key: _cut_value(item, keep) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_value(item, keep) for item in value]
    return value


def _texts_length(run: RunResult) -> int:
    """The characters of the run's texts: its input, answer, messages and tools' results
    and arguments."""
    chars = len(run.input) + len(run.content or "")
    chars += sum(len(m.content or "") for m in run.messages if m.role != "tool")
    return chars + sum(len(text) for text in _tool_texts(run))


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


@contextlib.contextmanager
def answer_carried(run: RunResult) -> Iterator[None]:
    """Around the save of the answered ``run``: a store refusing it as too large
    (:class:`~noted.errors.RunTooLargeError`) or failing to save it
    (:class:`~noted.errors.RunNotSavedError`, the store's error chained) raises an error
    carrying the run, so the caller keeps the answer."""
    try:
        yield
    except RunTooLargeError as exc:
        exc.run = run
        raise
    except StoreError as exc:
        raise RunNotSavedError(run, exc) from exc
