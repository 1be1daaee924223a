"""The few calls noted's own code makes for tracing.

While tracing is off (the default, and always without the optional packages) each hook is
one check of a module global and then the plain call: nothing is imported, allocated or
recorded. :func:`noted.tracing.instrument` sets ``active`` to the span maker of
:mod:`noted.tracing._spans`, and the hooks hand their work to it, except inside
OpenTelemetry's suppress-instrumentation flag (OpenInference's ``suppress_tracing()``):
there they make the plain call too. noted sets that flag itself only around the model's own
request, inside its LLM span, so that a provider SDK's instrumentor makes no second span.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from noted.models.base import ChatModel
    from noted.models.types import ModelDelta, ModelRequest, ModelResponse, ResponseBuilder
    from noted.sessions import RunResult
    from noted.tracing._spans import Spans

__all__ = [
    "agent_run",
    "carry",
    "complete",
    "considered",
    "continued",
    "detached",
    "resume",
    "stream",
    "traced",
    "traceparent",
]

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E")

# What a traced function is, as the span maker describes it (see _spans.RECORDERS).
Step = Literal[
    "tool",
    "mcp tool",
    "retriever",
    "extraction",
    "summary",
    "search",
    "create_memories",
    "embedding",
]
# Who makes a model call: names the LLM span.
Caller = Literal["agent", "memory manager", "session summary", "agentic search"]

active: Spans | None = None


def agent_run(agent: Any, run: RunResult, events: AsyncIterator[E]) -> AsyncIterator[E]:
    """The events of an agent's ``run``, inside an AGENT span while tracing is on (``run``
    is the run the events make: the span reads what a run that did not finish kept)."""
    spans = active
    if spans is None or spans.suppressed():
        return events
    return spans.agent_run(agent, run, events)


def complete(
    model: ChatModel, request: ModelRequest, caller: Caller
) -> Coroutine[Any, Any, ModelResponse]:
    """``model.acomplete(request)``, as an LLM span while tracing is on."""
    spans = active
    if spans is None or spans.suppressed():
        return model.acomplete(request)
    return spans.complete(model, request, caller)


def stream(
    model: ChatModel, request: ModelRequest, caller: Caller, answer: ResponseBuilder
) -> AsyncIterator[ModelDelta]:
    """``model.astream(request)``, as an LLM span while tracing is on. ``answer`` is the
    caller's own builder, to which it adds each delta before it asks for the next: the
    span's closing attributes are read from it when the stream ends (no delta is looked at
    twice)."""
    spans = active
    if spans is None or spans.suppressed():
        return model.astream(request)
    return spans.stream(model, request, caller, answer)


def carry(
    work: Callable[[], Coroutine[Any, Any, R]],
) -> Callable[[], Coroutine[Any, Any, R]]:
    """Work that runs later (after a run has returned), kept in the trace it was started
    from while tracing is on (and untraced when started with tracing suppressed)."""
    spans = active
    if spans is None:
        return work
    return spans.carry(work)


def continued(headers: Callable[[], Mapping[str, str]]) -> AbstractContextManager[None]:
    """Within: the trace context of an incoming request, read from the headers that
    ``headers()`` gives (called only while tracing is on), so that the spans made for the
    request join its caller's trace."""
    spans = active
    if spans is None or spans.suppressed():
        return nullcontext()
    return spans.continued(headers())


def traceparent() -> str | None:
    """The current trace context as a W3C ``traceparent`` string, to be kept with work
    that another process may run later (None while tracing is off; not sampled while
    tracing is suppressed, so that the work is not traced either)."""
    spans = active
    return None if spans is None else spans.traceparent()


def resume(
    traceparent: str | None,
    work: Callable[[], Coroutine[Any, Any, R]],
    *,
    session_id: str | None = None,
    user_id: str | None = None,
) -> Coroutine[Any, Any, R]:
    """``work()``, continuing the trace ``traceparent`` names while tracing is on; work with
    none (recorded while tracing was off, or by a run in no trace) is a trace of its own.
    Its spans that know no session or user of their own carry ``session_id`` and
    ``user_id`` (the run's), as the run's other spans do."""
    spans = active
    if spans is None:
        return work()
    return spans.resume(traceparent, work, session_id, user_id)


def detached(start: Callable[[], R]) -> R:
    """``start()`` in no trace while tracing is on: what it starts to run later (a drain of
    queued work, each piece in the trace it names) does not inherit the caller's."""
    spans = active
    if spans is None:
        return start()
    return spans.detached(start)


def considered(count: int) -> None:
    """How many memories a selection looked at (set on the current RETRIEVER span)."""
    spans = active
    if spans is not None and not spans.suppressed():
        spans.considered(count)


def _mark_coroutine_function(fn: Callable[..., Any]) -> None:
    """Let ``asyncio.iscoroutinefunction`` / ``inspect.iscoroutinefunction`` (3.12+) see a
    function that returns a coroutine as the async function it stands for."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12+
        mark(fn)
    else:
        fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


def traced(step: Step) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: calls of the function become spans (while tracing is on). For an
    async function the span's parent is the context of the caller that made the
    coroutine, so it stays right when the coroutine runs on another thread's loop."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        plain = fn  # not narrowed by the check below
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            def start(*args: P.args, **kwargs: P.kwargs) -> R:
                spans = active
                if spans is None or spans.suppressed():
                    return plain(*args, **kwargs)
                return cast("R", spans.call_async(step, fn, args, kwargs))

            _mark_coroutine_function(start)
            return start

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            spans = active
            if spans is None or spans.suppressed():
                return fn(*args, **kwargs)
            return spans.call(step, fn, args, kwargs)

        return call

    return decorate
