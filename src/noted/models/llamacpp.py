"""A GGUF model run in-process by llama.cpp, through ``llama-cpp-python``.

Nothing leaves the machine: :class:`LlamaCpp` loads the file on first use and answers on
a worker thread (one call at a time per model object; llama.cpp's context is not shared
between calls). A ``response_schema`` (the memory manager's operations, the summarizer's
summary) becomes a grammar, so the answer always parses as the schema says. Tools become
a grammar too: the model answers either ``{"answer": "..."}`` or
``{"tool": "<name>", "arguments": {...}}`` for one of the tools offered, which works on any
chat model, whether or not its template knows about tools.

Install the extra with ``pip install 'noted[local]'``; llama-cpp-python builds from source,
see docs/models.md for a portable build.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from noted.errors import ModelError, UserError
from noted.models._provider import import_sdk
from noted.models._turns import Turns
from noted.models.base import BaseChatModel, RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageDelta,
)

__all__ = ["LlamaCpp"]

T = TypeVar("T")
_ANSWER = "answer"
_GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file
# The start of a tool turn's answer in words, up to its string's opening quote
_ANSWER_START = re.compile(r'\s*\{\s*"answer"\s*:\s*(?=")')
_HIGH_SURROGATE = re.compile("[\ud800-\udbff]")  # the first half of a character
_Chunk = dict[str, Any]


class LlamaCpp(BaseChatModel):
    """A local GGUF chat model, run in-process by llama.cpp.

    A missing ``llama-cpp-python`` (the ``local`` extra) or model file is reported when
    the object is made; the file is loaded on the first call.

    ``model_path`` is the ``.gguf`` file; ``id`` defaults to its name. ``n_ctx`` is the
    context window in tokens, ``n_threads`` the CPU threads (llama.cpp's default when
    None). ``max_tokens`` caps each answer (a request's lower ``max_tokens`` wins);
    ``temperature=0`` is greedy decoding (the default, so answers are repeatable).
    ``chat_format`` overrides the chat template the file carries. ``seed`` fixes sampling
    when ``temperature > 0``.
    """

    provider = "llamacpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        id: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        seed: int = 0,
        chat_format: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(model_path, str | os.PathLike) or not str(model_path).strip():
            raise UserError(f"model_path must be the path of a .gguf file, got {model_path!r}")
        path = Path(model_path).expanduser()
        super().__init__(id or path.name, retry=retry)
        for name, value in (("n_ctx", n_ctx), ("max_tokens", max_tokens)):
            if type(value) is not int or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")
        if n_threads is not None and (type(n_threads) is not int or n_threads < 1):
            raise UserError(f"n_threads must be an integer >= 1 or None, got {n_threads!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise UserError(f"temperature must be a number, got {temperature!r}")
        if type(seed) is not int:
            raise UserError(f"seed must be an integer, got {seed!r}")
        _check_gguf(path)
        import_sdk("llama_cpp", extra="local", user="LlamaCpp", package="llama-cpp-python")
        self.model_path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_tokens = max_tokens
        self.temperature = float(temperature)
        self.seed = seed
        self.chat_format = chat_format
        self._llama: Any = None
        self._sdk: Any = None  # the llama_cpp module, once the model is loaded
        self._lock = Turns()  # one call (or load) at a time

    # -- the model -----------------------------------------------------------------------

    def _load(self) -> Any:
        """The loaded model (loaded on first use; call with the lock held)."""
        if self._llama is None:
            sdk = import_sdk(
                "llama_cpp", extra="local", user="LlamaCpp", package="llama-cpp-python"
            )
            try:
                self._llama = sdk.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=self.seed,
                    chat_format=self.chat_format,
                    verbose=False,
                )
            except ValueError as exc:  # llama.cpp could not read the file
                raise ModelError(
                    f"llamacpp could not load {str(self.model_path)!r}: {exc}"
                ) from exc
            self._sdk = sdk
        return self._llama

    def _begin(self, abort: _Abort) -> Any:
        """The loaded model, for a call that has not been cancelled (call with the lock
        held, on the worker thread): from now on a cancel aborts llama's next decode."""
        llama = self._load()
        if not abort.begin(self._sdk, llama):
            raise ModelError(f"llamacpp {self.id}: the call was cancelled before it ran")
        return llama

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        messages = _chat_messages(request.messages)
        params: dict[str, Any] = {
            "max_tokens": request.token_limit(self.max_tokens),
            "temperature": self.temperature,
            "seed": self.seed,
        }
        schema: dict[str, Any] | None = None
        if request.tools:
            schema = _tools_schema(request.tools)
            messages = _with_tools_prompt(messages, request.tools)
        elif request.response_schema is not None:
            schema = dict(request.response_schema)
        if schema is not None:
            params["response_format"] = {"type": "json_object", "schema": schema}
        params["messages"] = messages
        return params

    def _complete(self, params: dict[str, Any], abort: _Abort) -> dict[str, Any]:
        """A whole answer (on a worker thread, with the model held: lets it go)."""
        try:
            llama = self._begin(abort)
            result: dict[str, Any] = llama.create_chat_completion(**params)
        except ValueError as exc:  # the prompt does not fit the context window, ...
            raise ModelError(f"llamacpp {self.id} failed: {exc}") from exc
        except RuntimeError as exc:  # a decode failed: aborted after a cancel, or not
            raise abort.failure(exc) from exc
        finally:
            try:
                abort.end()
            finally:
                self._lock.release()
        return result

    # -- calls ---------------------------------------------------------------------------

    async def _send(self, request: ModelRequest) -> ModelResponse:
        params = self._params(request)
        abort = _Abort()
        await self._lock.acquire()
        try:
            answer = _in_thread(abort.quietly, self._complete, params, abort)
        except BaseException:  # no worker thread will run it: let the model go here
            self._lock.release()
            raise
        # A cancel stops the wait at once, and llama.cpp at its next decode (the one
        # running cannot be interrupted): the model is let go on the worker thread when
        # llama.cpp has stopped.
        try:
            result = await asyncio.shield(answer)
        except asyncio.CancelledError:
            abort.stop()
            raise
        if result is None:  # pragma: no cover - None only once cancelled (see quietly)
            raise ModelError(f"llamacpp {self.id}: the call was cancelled")
        choice = result["choices"][0]
        text = choice["message"].get("content")
        usage = result.get("usage") or {}
        response = ModelResponse(
            content=text,
            usage=Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            ),
            model=self.id,
            finish_reason=choice.get("finish_reason"),
        )
        if request.tools:
            response.content, response.tool_calls = _read_tool_answer(text, request.tools)
        return response

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        if request.tools:
            # The answer is JSON until it is whole: stream it as one text or tool call.
            response = await self._send(request)
            for index, call in enumerate(response.tool_calls):
                yield ToolCallDelta(index, call.id, call.name, call.arguments_json())
            if response.content:
                yield TextDelta(response.content)
            yield UsageDelta.of(response.usage, response.finish_reason, self.id)
            return
        params = self._params(request)
        abort = _Abort()
        await self._lock.acquire()
        stream = _Stream(self._lock.release, abort)
        pieces = 0
        prompt_tokens: int | None = None
        finish: str | None = None
        try:
            await stream.open(functools.partial(self._start_stream, params, abort))
            while (chunk := await stream.next()) is not None:
                if prompt_tokens is None:
                    # llama's chunks carry no counts; when the first one comes, the
                    # context holds the prompt's tokens (the first answer token is
                    # sampled, not yet decoded). Read between steps: llama is idle.
                    prompt_tokens = int(self._llama.n_tokens)
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                text = choice.get("delta", {}).get("content")
                if text:
                    pieces += 1
                    yield TextDelta(text)
        finally:
            # However the stream ends (its consumer stopped, a cancel, an error), llama's
            # stream is closed now, with the model held, after the step llama.cpp may
            # still be running (closing it during that step would fail); then the model
            # is let go.
            await stream.end()
        yield UsageDelta(prompt_tokens or 0, pieces, finish, self.id)

    def _start_stream(self, params: dict[str, Any], abort: _Abort) -> Iterator[_Chunk]:
        """The chunk iterator of a streamed completion (call with the lock held)."""
        llama = self._begin(abort)
        try:
            chunks: Iterator[_Chunk] = llama.create_chat_completion(**params, stream=True)
        except ValueError as exc:
            raise ModelError(f"llamacpp {self.id} failed: {exc}") from exc
        return chunks

    async def aclose(self) -> None:
        """Free the loaded model (it is loaded again on the next call)."""
        await self._lock.acquire()
        try:
            llama, self._llama = self._llama, None
        finally:
            self._lock.release()
        if llama is not None:
            llama.close()


def _check_gguf(path: Path) -> None:
    """Refuse what llama.cpp could not load as a model: a missing path, a directory, a
    file that cannot be read or that is not GGUF (whose first bytes are ``GGUF``)."""
    shown = repr(str(path))
    if path.is_dir():
        raise UserError(f"LlamaCpp: {shown} is a directory, not a GGUF model file")
    try:
        with path.open("rb") as file:
            magic = file.read(len(_GGUF_MAGIC))
    except FileNotFoundError:
        raise UserError(f"LlamaCpp: no GGUF model file at {shown}") from None
    except OSError as exc:
        raise UserError(f"LlamaCpp: cannot read {shown}: {exc.strerror or exc}") from None
    if magic != _GGUF_MAGIC:
        raise UserError(f"LlamaCpp: {shown} is not a GGUF model file (it does not begin with GGUF)")


def _in_thread(call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``call(*args)`` on a worker thread, in the caller's context. Not a task: when the
    loop shuts down and cancels its tasks, the call still runs."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, functools.partial(context.run, call, *args))


def _abort_now(data: object) -> bool:
    """llama.cpp's abort callback once a call is cancelled: abort the decode."""
    return True


class _Abort:
    """Stops llama.cpp's generation for one call when the call is cancelled.

    A decode cannot be interrupted once it runs, but llama.cpp asks the context's abort
    callback during each one: :meth:`stop` sets a callback that answers "abort", so the
    next decode fails (``llama_decode`` returns 2, raised by llama-cpp-python as
    ``RuntimeError``) and the generation ends there instead of running to ``max_tokens``.
    The callback is set only while the call runs on the model; :meth:`end`, called by the
    worker before it lets the model go, takes it off again, so later calls decode as
    usual. The lock orders a cancel (on the caller's loop) against the worker's start and
    end, so the callback is never left on a model another call holds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stopped = False
        self._on: tuple[Any, Any] | None = None  # (llama_cpp, model) while the call runs
        self._callback: Any = None  # the callback set on the context (kept alive there)

    def begin(self, sdk: Any, llama: Any) -> bool:
        """The call starts on ``llama`` (on the worker): False if it was cancelled."""
        with self._lock:
            if self.stopped:
                return False
            self._on = (sdk, llama)
            return True

    def stop(self) -> None:
        """The call is cancelled: abort llama.cpp's next decode if the call is running."""
        with self._lock:
            self.stopped = True
            if self._on is not None and self._callback is None:
                sdk, llama = self._on
                self._callback = sdk.ggml_abort_callback(_abort_now)
                sdk.llama_set_abort_callback(llama.ctx, self._callback, None)

    def end(self) -> None:
        """The call is over (on the worker, before the model is let go): the callback is
        taken off the context."""
        with self._lock:
            on, self._on = self._on, None
            if on is not None and self._callback is not None:
                sdk, llama = on
                sdk.llama_set_abort_callback(llama.ctx, sdk.ggml_abort_callback(), None)
                self._callback = None

    def quietly(self, call: Callable[..., T], *args: Any) -> T | None:
        """``call(*args)``, this call's work on the worker thread. Once the call is
        cancelled no one waits for that work: what it fails with then (the aborted decode)
        is dropped here, None returned. Raised, it was left on a future no one read, which
        asyncio reports with a traceback ("Future exception was never retrieved") when it
        is collected, as when the program ends after a Ctrl-C."""
        try:
            return call(*args)
        except Exception:
            if self.stopped:
                return None
            raise

    def failure(self, exc: RuntimeError) -> ModelError | RuntimeError:
        """What a failed decode raises: an abort after a cancel is a ModelError (no one
        waits for it); any other failure is raised as llama-cpp-python raised it."""
        if self.stopped:
            return ModelError("llamacpp: generation stopped after the call was cancelled")
        return exc


class _Stream:
    """The blocking llama.cpp calls of one streamed answer, made while it holds the model,
    one at a time on worker threads. A call the stream stopped waiting for (a cancel) runs
    on until llama.cpp's next decode, which ``abort`` makes fail. :meth:`end` then closes
    llama's chunk stream and lets the model go, on a worker thread too, so that both happen
    once, in that order, however often the stream is cancelled and wherever."""

    def __init__(self, let_go: Callable[[], None], abort: _Abort) -> None:
        self._let_go = let_go
        self._abort = abort
        self._busy = threading.Lock()  # held by the call running now
        self._ended = False
        self._chunks: Iterator[_Chunk] | None = None

    async def open(self, start: Callable[[], Iterator[_Chunk]]) -> None:
        def opened() -> None:
            self._chunks = start()

        await self._step(opened)

    async def next(self) -> _Chunk | None:
        return await self._step(self._next)

    def _next(self) -> _Chunk | None:
        return None if self._chunks is None else next(self._chunks, None)

    async def _step(self, call: Callable[[], T]) -> T | None:
        try:
            return await asyncio.shield(_in_thread(self._abort.quietly, self._locked, call))
        except asyncio.CancelledError:
            self._abort.stop()
            raise

    def _locked(self, call: Callable[[], T]) -> T:
        with self._busy:
            if self._ended:  # a step the stream stopped waiting for before it began
                raise ModelError("llamacpp: the stream has ended")
            try:
                return call()
            except RuntimeError as exc:  # a decode failed: aborted after a cancel, or not
                raise self._abort.failure(exc) from exc

    async def end(self) -> None:
        try:
            ending = _in_thread(self._end)
        except RuntimeError:  # no worker thread to be had (the loop is shutting down)
            self._end()
            return
        await asyncio.shield(ending)

    def _end(self) -> None:
        with self._busy:
            self._ended = True
            try:
                if self._chunks is not None:
                    _close(self._chunks)
            finally:
                try:
                    self._abort.end()
                finally:
                    self._let_go()


def _close(chunks: Iterator[_Chunk]) -> None:
    """Close llama's chunk generator (its ``finally`` blocks run now)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


# -- translation -------------------------------------------------------------------------


def _chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """noted's messages as plain chat turns any template accepts: a tool call is the
    assistant's JSON answer, a tool result a user turn that names the tool. An answer
    with several calls (another provider's, which calls tools in parallel) is shown as
    this model makes them, one call a turn, each followed by its result."""
    turns: list[dict[str, Any]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.role == "assistant" and message.tool_calls:
            results: list[Message] = []
            while index < len(messages) and messages[index].role == "tool":
                results.append(messages[index])
                index += 1
            turns.extend(_calls_and_results(message.tool_calls, results))
        elif message.role == "tool":
            turns.append(_result_turn(message.name or "the tool", message))
        else:
            turns.append({"role": message.role, "content": message.content or ""})
    return turns


def _calls_and_results(
    calls: Sequence[ToolCall], results: Sequence[Message]
) -> list[dict[str, Any]]:
    """The turns of one answer's tool calls and of the results that follow it: each call,
    then the result naming it (the first one left, when calls share an id); results that
    name none of the calls come after them."""
    left = list(results)
    turns: list[dict[str, Any]] = []
    for call in calls:
        turns.append(
            {
                "role": "assistant",
                "content": json.dumps({"tool": call.name, "arguments": call.arguments}),
            }
        )
        answered = next((i for i, r in enumerate(left) if r.tool_call_id == call.id), None)
        if answered is not None:
            turns.append(_result_turn(call.name, left.pop(answered)))
    turns.extend(_result_turn(result.name or "the tool", result) for result in left)
    return turns


def _result_turn(name: str, result: Message) -> dict[str, Any]:
    """A tool result as the user turn that gives it to the model."""
    return {"role": "user", "content": f"Result of {name}: {result.content or ''}"}


def _tools_schema(tools: Sequence[ToolDefinition]) -> dict[str, Any]:
    """An answer, or a call of one of the tools with arguments that fit its schema."""
    answer: dict[str, Any] = {"type": "string"}
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {_ANSWER: answer},
            "required": [_ANSWER],
            "additionalProperties": False,
        }
    ]
    for tool in tools:
        branches.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "enum": [tool.name]},
                    "arguments": dict(tool.parameters) or {"type": "object"},
                },
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": branches}


def _with_tools_prompt(
    messages: list[dict[str, Any]], tools: Sequence[ToolDefinition]
) -> list[dict[str, Any]]:
    listed = "\n".join(
        f"- {t.name}: {t.description} Arguments (JSON schema): {json.dumps(dict(t.parameters))}"
        for t in tools
    )
    guide = (
        "You can call these tools:\n"
        f"{listed}\n"
        'To call one, answer {"tool": "<name>", "arguments": {...}}. Otherwise answer '
        '{"answer": "<your reply to the user>"}.'
    )
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{guide}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": guide}, *messages]


def _read_tool_answer(
    text: str | None, tools: Sequence[ToolDefinition]
) -> tuple[str | None, list[ToolCall]]:
    """The reply text, or the tool call, a grammar-constrained tool turn holds."""
    try:
        data = json.loads(text or "")
    except ValueError:  # cut short (max_tokens): the reply begun, else what there is
        begun = _begun_answer(text or "")
        return (text if begun is None else begun), []
    if not isinstance(data, dict):
        return text, []
    name = data.get("tool")
    if isinstance(name, str) and name in {t.name for t in tools}:
        arguments = data.get("arguments")
        return None, [ToolCall.from_json_text(name, json.dumps(arguments))]
    answer = data.get(_ANSWER)
    return (answer if isinstance(answer, str) else text), []


def _begun_answer(text: str) -> str | None:
    """The reply a tool turn cut short at the token limit holds so far (``{"answer":
    "Once upon a ti`` is ``Once upon a ti``), None when it is not a reply in words. An
    escape the cut split (``\\u00``, half a surrogate pair) is left out."""
    start = _ANSWER_START.match(text)
    if start is None:
        return None
    quoted = text[start.end() :]
    with contextlib.suppress(ValueError):  # the string is whole, the object is not
        whole, _ = json.JSONDecoder().raw_decode(quoted)
        return whole if isinstance(whole, str) else None
    for cut in range(len(quoted), max(len(quoted) - 6, 0), -1):  # an escape is <= 6 long
        with contextlib.suppress(ValueError):
            begun: str = json.loads(quoted[:cut] + '"')
            return begun[:-1] if begun and _HIGH_SURROGATE.match(begun[-1]) else begun
    return None
