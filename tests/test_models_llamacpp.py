"""LlamaCpp without a model file: its settings, errors, registry name and translations.

Most tests need llama-cpp-python (the ``local`` dependency group, built from source), so
they are marked ``local_model`` and run by ``make test-local`` with the runs on a real GGUF
model in test_local_model.py. The missing-extra test, the translation of tool turns, the
stream tests and the tests of calls taking turns on the model need neither: the last two
put a scripted ``llama_cpp`` module in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from noted import SqliteDb
from noted.errors import MissingDependencyError, UserError
from noted.memory.operations import Permissions, operations_schema
from noted.memory.summary import SUMMARY_SCHEMA
from noted.memory.two_calls import FACTS_SCHEMA
from noted.models import LlamaCpp, get_model
from noted.models.llamacpp import _chat_messages, _read_tool_answer, _tools_schema
from noted.models.types import (
    Message,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolDefinition,
    Usage,
    UsageDelta,
)
from noted.schema import UserMemory

WEATHER = ToolDefinition(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")  # only its existence is checked before the first call
    return path


@pytest.mark.local_model
def test_settings_are_checked_and_the_name_defaults_to_the_file(gguf: Path) -> None:
    model = LlamaCpp(gguf)
    assert model.id == "tiny.gguf"
    assert model.temperature == 0.0
    assert LlamaCpp(str(gguf), id="mine").id == "mine"
    for bad in ({"n_ctx": 0}, {"max_tokens": "9"}, {"n_threads": 0}, {"temperature": "hot"}):
        with pytest.raises(UserError):
            LlamaCpp(gguf, **bad)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="path of a .gguf file"):
        LlamaCpp("  ")


@pytest.mark.local_model
def test_a_requests_max_tokens_lowers_the_models(gguf: Path) -> None:
    ask = [Message("user", "hi")]
    assert LlamaCpp(gguf)._params(ModelRequest(ask))["max_tokens"] == 1024
    assert LlamaCpp(gguf)._params(ModelRequest(ask, max_tokens=200))["max_tokens"] == 200
    assert (
        LlamaCpp(gguf, max_tokens=100)._params(ModelRequest(ask, max_tokens=200))["max_tokens"]
        == 100
    )


def test_a_missing_file_or_extra_or_a_file_that_is_not_gguf_is_a_clear_error(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="no GGUF model file at .*missing.gguf"):
        LlamaCpp(tmp_path / "missing.gguf")
    for name, content in (("weights.bin", b"PK\x03\x04 a zip"), ("empty.gguf", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=f"'.*{name}' is not a GGUF model file"):
            LlamaCpp(tmp_path / name)
    (tmp_path / "models.gguf").mkdir()
    with pytest.raises(UserError, match="'.*models.gguf' is a directory, not a GGUF model file"):
        LlamaCpp(tmp_path / "models.gguf")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'noted\[local\]'"):
        LlamaCpp(gguf)


@pytest.mark.local_model
def test_a_model_string_names_the_file(gguf: Path) -> None:
    model = get_model(f"llamacpp:{gguf}")
    assert isinstance(model, LlamaCpp)
    assert model.model_path == gguf
    with pytest.raises(UserError, match="no GGUF model file"):
        get_model("llamacpp:/nowhere/model.gguf")


@pytest.mark.local_model
def test_the_manager_and_summarizer_schemas_compile_to_grammars() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    shown = {1: UserMemory("User lives in Lisbon", memory_id="m1")}
    every = Permissions(add=True, update=True, delete=True, clear=True)
    for schema in (
        operations_schema({}, Permissions()),
        operations_schema(shown, Permissions()),
        operations_schema(shown, every),
        operations_schema({}, Permissions(add=False)),
        operations_schema(shown, Permissions(), ask_facts=False),
        FACTS_SCHEMA,
        SUMMARY_SCHEMA,
        _tools_schema([WEATHER]),
    ):
        LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


def test_tool_turns_are_plain_chat_turns_and_answers_become_calls() -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="c1")
    turns = _chat_messages(
        [
            Message("system", "Be brief."),
            Message("user", "Weather in Oslo?"),
            Message("assistant", None, tool_calls=[call]),
            Message("tool", "4 C, rain", tool_call_id="c1", name="get_weather"),
        ]
    )
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert json.loads(turns[2]["content"]) == {"tool": "get_weather", "arguments": {"city": "Oslo"}}
    assert turns[3]["content"] == "Result of get_weather: 4 C, rain"

    text, calls = _read_tool_answer(
        '{"tool": "get_weather", "arguments": {"city": "Oslo"}}', [WEATHER]
    )
    assert text is None
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert _read_tool_answer('{"answer": "It rains."}', [WEATHER]) == ("It rains.", [])
    assert _read_tool_answer('{"answer": "cut sh', [WEATHER]) == ("cut sh", [])
    assert _read_tool_answer('{"tool": "rm_rf", "arguments": {}}', [WEATHER])[1] == []


# -- streams, with a scripted llama_cpp ------------------------------------------------------

ASK = ModelRequest([Message("user", "Count to three.")])


class ScriptedContext:
    """Stands in for a llama.cpp context: the abort callback set on it, if any."""

    def __init__(self) -> None:
        self.abort: Any = None


def set_abort_callback(ctx: ScriptedContext, callback: Any, data: object) -> None:
    """``llama_cpp.llama_set_abort_callback``: a NULL callback takes it off."""
    ctx.abort = callback if callback else None


class ScriptedLlama:
    """Stands in for ``llama_cpp.Llama``: answers ``words``, whole or streamed as
    llama-cpp-python's chat chunks, and notes how each stream ended and whether the model's
    lock was held then. It keeps every stream it made (so a stream is closed only by being
    closed, not by being dropped).

    Each word is one decode, which, as llama.cpp's, first asks the context's abort callback
    and fails (``RuntimeError``, as llama-cpp-python raises it) when that says abort; a
    decode that has begun runs to its end. With ``gate``, the second decode of each call
    waits for it after ``waiting`` is set. A stream gives a chunk every ``per_chunk`` words
    (llama-cpp-python holds text back while it could begin a stop word). ``started`` counts
    the calls made, ``decoded`` the words each call decoded, ``overlaps`` the times llama
    was entered while another call was inside it, ``callbacks`` each setting of the abort
    callback (set or taken off, and whether the model's lock was held then). Usage is
    reported as llama.cpp counts it: the prompt's tokens (here its words and 3 for the chat
    template) and the answer's.
    """

    def __init__(
        self,
        words: Sequence[str],
        gate: threading.Event | None = None,
        per_chunk: int = 1,
        finish: str = "stop",
    ) -> None:
        self.words = list(words)
        self.finish = finish
        self.gate = gate
        self.per_chunk = per_chunk
        self.ctx = ScriptedContext()
        self.waiting = threading.Event()
        self.held: Callable[[], bool] = lambda: False
        self.streams: list[Iterator[dict[str, Any]]] = []
        self.ends: list[tuple[str, bool]] = []
        self.decoded: list[int] = []
        self.callbacks: list[tuple[bool, bool]] = []
        self.started = 0
        self.overlaps = 0
        self.n_tokens = 0  # the tokens in the context, as llama's own attribute
        self._inside = 0
        self._count = threading.Lock()

    def set_abort_callback(self, ctx: ScriptedContext, callback: Any, data: object) -> None:
        assert ctx is self.ctx
        set_abort_callback(ctx, callback, data)
        self.callbacks.append((ctx.abort is not None, self.held()))

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        with self._count:
            self._inside += 1
            self.overlaps += self._inside > 1
        try:
            yield
        finally:
            with self._count:
                self._inside -= 1

    def _decode(self, index: int) -> None:
        if self.ctx.abort is not None and self.ctx.abort(None):
            raise RuntimeError("llama_decode returned 2")
        if index == 1 and self.gate is not None:
            self.waiting.set()
            assert self.gate.wait(10)

    def _usage(self, messages: list[dict[str, Any]]) -> dict[str, int]:
        prompt = sum(len(m["content"].split()) for m in messages) + 3
        return {"prompt_tokens": prompt, "completion_tokens": len(self.words)}

    def create_chat_completion(self, *, stream: bool = False, **params: Any) -> Any:
        assert params["messages"]
        with self._working():
            self.started += 1
            if stream:
                chunks = self._chunks(self._usage(params["messages"])["prompt_tokens"])
                self.streams.append(chunks)
                return chunks
            decoded = 0
            try:
                for index in range(len(self.words)):
                    self._decode(index)
                    decoded += 1
            finally:
                self.decoded.append(decoded)
        return {
            "choices": [
                {"message": {"content": "".join(self.words)}, "finish_reason": self.finish}
            ],
            "usage": self._usage(params["messages"]),
        }

    def _chunks(self, prompt: int) -> Iterator[dict[str, Any]]:
        decoded = 0
        try:
            for start in range(0, len(self.words), self.per_chunk):
                piece = self.words[start : start + self.per_chunk]
                with self._working():
                    for index in range(start, start + len(piece)):
                        # the prompt, then each answer token but the one just sampled
                        self.n_tokens = prompt + index
                        self._decode(index)
                        decoded += 1
                yield {"choices": [{"delta": {"content": "".join(piece)}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": self.finish}]}
        except GeneratorExit:
            self.ends.append(("closed", self.held()))
            raise
        except RuntimeError:
            self.ends.append(("aborted", self.held()))
            raise
        finally:
            self.decoded.append(decoded)
        self.ends.append(("ended", self.held()))

    def close(self) -> None:
        pass


def scripted_model(gguf: Path, monkeypatch: pytest.MonkeyPatch, llama: ScriptedLlama) -> LlamaCpp:
    sdk = types.ModuleType("llama_cpp")
    sdk.Llama = lambda **settings: llama  # type: ignore[attr-defined]
    sdk.ggml_abort_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)  # type: ignore[attr-defined]
    sdk.llama_set_abort_callback = llama.set_abort_callback  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", sdk)
    model = LlamaCpp(gguf)
    llama.held = model._lock.locked
    return model


def test_a_stream_stopped_early_closes_llamas_stream_before_it_returns(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llama = ScriptedLlama(["One", " two", " three"])
    model = scripted_model(gguf, monkeypatch, llama)

    async def first_only() -> object:
        stream = model.astream(ASK)
        first = await anext(stream)
        await stream.aclose()
        return first

    assert asyncio.run(first_only()) == TextDelta("One")
    assert llama.ends == [("closed", True)]  # closed with the model still held
    for delta in model.stream(ASK):  # the sync twin, stopped by a break
        assert delta == TextDelta("One")
        break
    assert llama.ends == [("closed", True)] * 2
    deltas = list(model.stream(ASK))  # the model was let go: a whole stream runs
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["One", " two", " three"]
    assert deltas[-1] == UsageDelta(6, 3, "stop", "tiny.gguf")
    assert llama.ends == [("closed", True)] * 2 + [("ended", True)]
    assert not model._lock.locked()


def test_a_stream_cancelled_while_llama_works_closes_it_after_that_step(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp's step cannot be interrupted: the stream waits for it to end, then closes
    llama's stream (closing it during the step would fail) and lets the model go."""
    gate = threading.Event()
    llama = ScriptedLlama(["One", " two", " three"], gate)
    model = scripted_model(gguf, monkeypatch, llama)

    async def cancel_in_step() -> None:
        task = asyncio.create_task(_drain(model.astream(ASK)))
        assert await asyncio.to_thread(llama.waiting.wait, 10)  # in the second step
        task.cancel()
        asyncio.get_running_loop().call_later(0.1, gate.set)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_in_step())
    assert llama.ends == [("closed", True)]
    assert not model._lock.locked()


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_a_reply_cut_off_at_the_token_limit_in_a_tool_turn_is_its_words_not_json(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """With tools the model answers ``{"answer": "..."}``; stopped at ``max_tokens``, that
    JSON is not whole: the reply is the words it had begun (its escapes read, one the
    limit split left out), not the JSON around them."""
    cut = ['{"answer": "Once upon a time,', "\\nthere was a dog named Max", "\\u00"]
    model = scripted_model(gguf, monkeypatch, ScriptedLlama(cut, finish="length"))
    ask = ModelRequest([Message("user", "Tell me a story.")], tools=[WEATHER], max_tokens=25)
    if kind == "complete":
        response = model.complete(ask)
        text, cut_short = response.content, response.cut_short
    else:
        deltas = list(model.stream(ask))
        text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
        usage = deltas[-1]
        cut_short = isinstance(usage, UsageDelta) and usage.finish_reason == "length"
    assert text == "Once upon a time,\nthere was a dog named Max"
    assert cut_short


# -- one call at a time, whatever is cancelled where ---------------------------------------


async def _answer(model: LlamaCpp, kind: str) -> str:
    """One call's text: a whole answer, or a stream's pieces."""
    if kind == "complete":
        return (await model.acomplete(ASK)).content or ""
    return "".join([d.text async for d in model.astream(ASK) if isinstance(d, TextDelta)])


def _run(model: LlamaCpp, llama: ScriptedLlama, scenario: Coroutine[Any, Any, None]) -> None:
    """Run ``scenario``. If it fails (a call that hung is cut short by its timeout), open the
    gate and let the model go until nothing waits for it, so that the failure is reported
    instead of the run blocking on worker threads that wait for the model forever."""

    async def guarded() -> None:
        try:
            await scenario
        except BaseException:
            if llama.gate is not None:
                llama.gate.set()
            for _ in range(40):
                if model._lock.locked():
                    model._lock.release()
                await asyncio.sleep(0.05)
            raise

    asyncio.run(guarded())


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_a_call_cancelled_while_it_waits_for_the_model_never_takes_it(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Cancelled while another call holds the model, a call neither keeps the model (every
    later call would wait forever) nor runs once the model is free."""
    gate = threading.Event()
    llama = ScriptedLlama(["One", " two"], gate)
    model = scripted_model(gguf, monkeypatch, llama)

    async def scenario() -> None:
        holder = asyncio.create_task(_answer(model, "stream"))
        assert await asyncio.to_thread(llama.waiting.wait, 10)  # it holds the model
        waiter = asyncio.create_task(_answer(model, kind))
        await asyncio.sleep(0.2)  # it waits for the model
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        assert await asyncio.wait_for(holder, 10) == "One two"
        assert await asyncio.wait_for(_answer(model, kind), 10) == "One two"

    _run(model, llama, scenario())
    assert llama.started == 2  # the holder and the last call: the cancelled one never ran
    assert llama.overlaps == 0
    assert not model._lock.locked()


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_a_call_cancelled_while_llama_works_keeps_the_model_until_llama_is_done(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """llama.cpp's step cannot be interrupted: however often the call is cancelled (here a
    second time while it waits for that step), the next call starts only after it."""
    gate = threading.Event()
    llama = ScriptedLlama(["One", " two"], gate)
    model = scripted_model(gguf, monkeypatch, llama)

    async def scenario() -> None:
        holder = asyncio.create_task(_answer(model, kind))
        assert await asyncio.to_thread(llama.waiting.wait, 10)  # llama works for it
        holder.cancel()
        await asyncio.sleep(0.1)
        holder.cancel()
        await asyncio.wait([holder])
        assert holder.cancelled()
        follower = asyncio.create_task(_answer(model, "stream"))
        await asyncio.sleep(0.2)
        assert llama.started == 1  # the follower waits for llama's step
        gate.set()
        assert await asyncio.wait_for(follower, 10) == "One two"

    _run(model, llama, scenario())
    assert llama.started == 2
    assert llama.overlaps == 0
    assert llama.ends[0] == (("closed", True) if kind == "stream" else ("ended", True))
    assert not model._lock.locked()


def test_a_whole_answer_reports_llamas_own_token_counts(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole answer's usage is what llama.cpp counted (the prompt as the chat template
    made it, the answer's tokens), not what noted could count from the text."""
    model = scripted_model(gguf, monkeypatch, ScriptedLlama(["One", " two", " three"]))
    response = model.complete(ASK)
    assert response.content == "One two three"
    assert response.usage == Usage(6, 3)  # "Count to three." and the template's 3


@pytest.mark.parametrize("per_chunk", [1, 2])
def test_a_stream_reports_the_prompts_tokens_as_llamas_context_held_them(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, per_chunk: int
) -> None:
    """llama's chunks carry no counts: a stream's input tokens are the context's when the
    first piece comes, the prompt's (and a token more for each one llama held back)."""
    llama = ScriptedLlama(["One", " two", " three", " four"], per_chunk=per_chunk)
    model = scripted_model(gguf, monkeypatch, llama)
    whole = model.complete(ASK).usage
    usage = [d for d in model.stream(ASK) if isinstance(d, UsageDelta)]
    assert llama.n_tokens == 6 + 3  # the context went on growing after the first piece
    assert usage == [
        UsageDelta(whole.input_tokens + per_chunk - 1, 4 // per_chunk, "stop", "tiny.gguf")
    ]


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_a_call_cancelled_while_llama_works_stops_llama_at_its_next_decode(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Cancelled while llama.cpp generates (here in its second decode of 200, a stream's
    first chunk being 100 words), the call sets llama.cpp's abort callback: the decode
    running ends, the next one fails, and the worker takes the callback off and lets the
    model go, once; the next call then runs in full."""
    gate = threading.Event()
    llama = ScriptedLlama(["word "] * 200, gate, per_chunk=100)
    model = scripted_model(gguf, monkeypatch, llama)

    async def scenario() -> None:
        holder = asyncio.create_task(_answer(model, kind))
        assert await asyncio.to_thread(llama.waiting.wait, 10)  # llama works for it
        holder.cancel()
        asyncio.get_running_loop().call_later(0.1, gate.set)  # the decode running ends
        await asyncio.wait([holder], timeout=10)
        assert holder.cancelled()
        follower = await asyncio.wait_for(_answer(model, "complete"), 10)
        assert follower == "word " * 200

    _run(model, llama, scenario())
    assert llama.decoded == [2, 200]  # the decode running when cancelled was the last
    assert llama.callbacks == [(True, True), (False, True)]  # both with the model held
    assert llama.ctx.abort is None
    assert (llama.started, llama.overlaps) == (2, 0)
    if kind == "stream":
        assert llama.ends == [("aborted", True)]
    assert not model._lock.locked()


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_a_call_that_ends_by_itself_never_sets_the_abort_callback(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    llama = ScriptedLlama(["One", " two"])
    model = scripted_model(gguf, monkeypatch, llama)
    assert asyncio.run(_answer(model, kind)) == "One two"
    assert llama.callbacks == []
    assert not model._lock.locked()


def test_calls_waiting_for_the_model_leave_the_worker_threads_to_the_call_holding_it(
    gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream holding the model needs a worker thread for each step; the calls waiting
    for the model hold none, however many they are (here more than the loop has)."""
    gate = threading.Event()
    llama = ScriptedLlama(["One", " two"], gate)
    model = scripted_model(gguf, monkeypatch, llama)

    async def scenario() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        holder = asyncio.create_task(_answer(model, "stream"))
        assert await asyncio.to_thread(llama.waiting.wait, 10)
        waiters = [asyncio.create_task(_answer(model, k)) for k in ("stream", "complete") * 2]
        await asyncio.sleep(0.2)
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(holder, *waiters), 10)
        assert answers == ["One two"] * 5

    _run(model, llama, scenario())
    assert (llama.started, llama.overlaps) == (5, 0)
    assert not model._lock.locked()


def test_calls_from_two_event_loops_take_turns(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync API runs on noted's own loop, an async caller on its own: the model passes
    from one to the other."""
    gate = threading.Event()
    llama = ScriptedLlama(["One", " two"], gate)
    model = scripted_model(gguf, monkeypatch, llama)
    texts: list[str] = []
    sync = threading.Thread(
        target=lambda: texts.extend(d.text for d in model.stream(ASK) if isinstance(d, TextDelta))
    )
    sync.start()

    async def scenario() -> None:
        assert await asyncio.to_thread(llama.waiting.wait, 10)
        follower = asyncio.create_task(_answer(model, "complete"))
        await asyncio.sleep(0.2)
        assert llama.started == 1
        gate.set()
        assert await asyncio.wait_for(follower, 10) == "One two"

    _run(model, llama, scenario())
    sync.join(10)
    assert texts == ["One", " two"]
    assert (llama.started, llama.overlaps) == (2, 0)
    assert not model._lock.locked()


@pytest.mark.parametrize("hand_over", ["pending", "done"])
def test_a_call_cancelled_as_the_model_is_handed_to_it_hands_it_on(
    gguf: Path, monkeypatch: pytest.MonkeyPatch, hand_over: str
) -> None:
    """The model is handed to the first waiter, which is cancelled before it runs (before
    or after the hand-over reached its loop): the next waiter gets the model."""
    model = scripted_model(gguf, monkeypatch, ScriptedLlama(["One"]))
    lock = model._lock

    async def scenario() -> None:
        await lock.acquire()
        first = asyncio.create_task(lock.acquire())
        second = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)  # both wait
        lock.release()
        if hand_over == "done":
            await asyncio.sleep(0)
            assert not first.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 5)
        assert lock.locked()
        lock.release()
        assert not lock.locked()
        with pytest.raises(RuntimeError, match="without a matching acquire"):
            lock.release()

    asyncio.run(scenario())


# -- a program ending while a memory update runs on the model ------------------------------

SLOW_UPDATE_SCRIPT = textwrap.dedent(
    """
    import ctypes, signal, sys, time, types
    from noted import Agent, SqliteDb

    # Ctrl-C interrupts, as at a terminal, even where the tests run with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from noted.models import LlamaCpp

    class Llama:
        \"\"\"Answers the chat at once; the memory manager's call (a response_format) is
        400 decodes of 50 ms, each asking the abort callback first, as llama.cpp's.\"\"\"

        def __init__(self, **settings):
            self.ctx, self.abort, self.n_tokens = self, None, 0

        def create_chat_completion(self, *, messages, response_format=None, **params):
            usage = {"prompt_tokens": 9, "completion_tokens": 1}
            if response_format is None:
                answer = {"message": {"content": "Noted."}, "finish_reason": "stop"}
                return {"choices": [answer], "usage": usage}
            for _ in range(400):
                if self.abort is not None and self.abort(None):
                    raise RuntimeError("llama_decode returned 2")
                time.sleep(0.05)
            raise AssertionError("the update was never stopped")

    def set_abort_callback(ctx, callback, data):
        ctx.abort = callback if callback else None

    sdk = types.ModuleType("llama_cpp")
    sdk.Llama = Llama
    sdk.ggml_abort_callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)
    sdk.llama_set_abort_callback = set_abort_callback
    sys.modules["llama_cpp"] = sdk
    agent = Agent(LlamaCpp(sys.argv[1]), db=SqliteDb(sys.argv[2]), enable_user_memories=True)
    agent.run("I like tea")
    print("answered", flush=True)
    """
)


def test_ctrl_c_at_exit_stops_a_memory_update_running_on_the_model(
    gguf: Path, tmp_path: Path
) -> None:
    """A program ending waits for its memory updates, and Ctrl-C stops the wait. The local
    model's call runs on a worker thread, which the interpreter waits for at exit: it was
    left running, so the program went on for the rest of the model's answer (minutes on a
    CPU) and then printed a traceback from the update it had stopped waiting for. Now the
    update is cancelled: llama.cpp stops at its next decode, the program ends at once, and
    the job is given back, due again, so nothing the turn said is lost."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    db = tmp_path / "m.db"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_UPDATE_SCRIPT, str(gguf), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stderr is not None
        while "waiting up to 60 s for 1 background task" not in child.stderr.readline():
            assert child.poll() is None, "it ended without waiting for the update"
        child.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, err = child.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        child.kill()
    assert "answered" in out
    assert "stopped unfinished" in err
    assert "Traceback" not in err
    assert took < 6, f"it ended {took:.1f} s after Ctrl-C"
    [job] = SqliteDb(db).list_jobs(status=None)
    assert (job.kind, job.status, job.error) == ("memory", "pending", "stopped before it finished")
