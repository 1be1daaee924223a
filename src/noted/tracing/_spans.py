"""The span maker behind the hooks, used only while tracing is on.

Context handling: noted runs its loop on a background thread and its run loop is an async
generator, so a span is never left attached across a ``yield``. The agent's span is
attached around each step of the run (and detached before the step's event is handed
out), the model stream's span around each delta, and work that runs after the run has
returned carries the run's trace as a W3C ``traceparent`` string.

Cost: a streamed run passes about ten events and as many deltas through these loops, so
they attach with a plain token set and reset (no context-manager object per step), test
the first token with a precomputed type tuple, and look at nothing else in a delta: the
model call's closing attributes are read once, when the stream ends, from the builder the
caller folds the deltas into anyway. Each span gets its attributes in two calls, at its
start and at its end (a third only when it has dropped some, see :func:`_dropped`): the SDK
checks every value it is given, so an attribute costs about as much there as it costs to
build.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from openinference.semconv.trace import SpanAttributes
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from noted._async import aclose
from noted.agent.events import ContentDelta, RunCompleted, RunStarted
from noted.models.base import ChatModel
from noted.models.types import (
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    TextDelta,
    ToolCallDelta,
)
from noted.tracing import _attributes as attrs
from noted.tracing._attributes import Attributes
from noted.tracing._hooks import Caller, Step
from noted.tracing._recorders import RECORDERS, Recorder
from noted.tracing._settings import REDACTED, TraceSettings

if TYPE_CHECKING:
    from noted.sessions import RunResult

__all__ = ["CarriedWork", "Spans"]

R = TypeVar("R")
E = TypeVar("E")

FIRST_TOKEN = "First Token Stream Event"
_PROPAGATOR = TraceContextTextMapPropagator()
_OK = Status(StatusCode.OK)
_LLM_NAMES: dict[str, str] = {
    "agent": "model call",
    "memory manager": "memory manager model call",
    "session summary": "session summary model call",
    "agentic search": "agentic search model call",
}
_MEMORY_CALLERS = frozenset(("memory manager", "agentic search"))
_TOKENS = (TextDelta, ToolCallDelta)  # what counts as the first token of a stream
_KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
_SESSION = SpanAttributes.SESSION_ID
_USER = SpanAttributes.USER_ID
# The session and user of the work a span belongs to, for the spans made inside it.
_IDS = otel_context.create_key("noted.tracing.ids")
_METADATA = SpanAttributes.METADATA
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_attach = otel_context.attach
_detach = otel_context.detach


def _failed(span: Span, exc: BaseException, hidden: bool = False) -> None:
    """Mark ``span`` as failed with ``exc``: status ERROR, and an ``exception`` event with
    its type, message and stack trace (OpenTelemetry's exception conventions), each
    bounded (see :func:`attrs.bounded`). ``hidden``: the message is ``__REDACTED__`` in all
    three (the privacy switches hide it)."""
    name = type(exc).__name__
    if hidden:
        span.record_exception(exc, attributes=_redacted(exc))
        span.set_status(Status(StatusCode.ERROR, f"{name}: {REDACTED}"))
        return
    # the stack trace holds the messages of the exceptions ``exc`` was raised from too,
    # formatted once here (given, the span does not format it again)
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = attrs.bounded(str(exc))
    span.record_exception(exc, attributes=_bounded(message, stack))
    span.set_status(Status(StatusCode.ERROR, f"{name}: {message}"))


def _bounded(message: str, stack: str) -> Attributes:
    """The exception event's message (bounded already) and stack trace, bounded: an
    exception's message, or that of one it was raised from, may quote all of a large text
    (a tool's input, a provider's answer)."""
    return {
        "exception.message": message,
        "exception.stacktrace": attrs.bounded(stack),
    }


def _redacted(exc: BaseException) -> Attributes:
    """The exception event's message and stack trace without the exception's message (nor
    those of the exceptions it was raised from): the frames and the type stay."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    stack = f"Traceback (most recent call last):\n{frames}" if frames else ""
    return {
        "exception.message": REDACTED,
        "exception.stacktrace": f"{stack}{type(exc).__qualname__}: {REDACTED}\n",
    }


def _dropped(span: Span) -> bool:
    """Whether ``span`` has dropped attributes: past its limit the SDK drops the oldest.
    What the span is (its kind, an LLM's model) is then set again at its end: set again,
    those attributes are the newest."""
    return bool(getattr(span, "dropped_attributes", 0))  # the SDK's spans count them


@contextmanager
def _recording(span: Span) -> Iterator[None]:
    """End ``span`` after the block, marked as failed when the block raises."""
    try:
        yield
    except BaseException as exc:
        _failed(span, exc)
        raise
    finally:
        span.end()


@contextmanager
def _attached(ctx: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def _context_of(traceparent: str | None) -> otel_context.Context:
    """The context work carrying ``traceparent`` runs in: that trace's, or with none an
    empty one (not the context it happens to be run from: a later run's, a drain's). A
    trace that is not sampled (a run whose tracing was suppressed, or that the sampler
    left out) is not traced further: the work runs with tracing suppressed."""
    if traceparent is None:
        return otel_context.Context()
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    parent = trace.get_current_span(ctx).get_span_context()
    if parent.is_valid and not parent.trace_flags.sampled:
        return otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, ctx)
    return ctx


def _inherited() -> Attributes:
    """The ``session.id`` and ``user.id`` of the span the current work belongs to (the
    run's, a memory extraction's), for a span made inside it that knows none of its own:
    Phoenix filters and groups spans by them, a model call or tool call included."""
    ids = otel_context.get_value(_IDS)
    return ids if isinstance(ids, dict) else {}


def _inside(
    span: Span, opening: Attributes, parent: otel_context.Context | None = None
) -> otel_context.Context:
    """The context of the work inside ``span``: the span as current, and the session and
    user of its ``opening`` attributes for the spans made there."""
    ctx = trace.set_span_in_context(span, parent)
    ids = {key: opening[key] for key in (_SESSION, _USER) if key in opening}
    return otel_context.set_value(_IDS, ids, ctx) if ids else ctx


def _unsampled() -> otel_context.Context:
    """The current trace (or a new one) marked as not sampled: how a traceparent says that
    the work continuing it is not to be traced."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        trace_id, span_id = current.trace_id, current.span_id
    else:
        trace_id, span_id = random.getrandbits(128) or 1, random.getrandbits(64) or 1
    parent = trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=_NOT_SAMPLED)
    return trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())


@dataclass(frozen=True, slots=True)
class _ContextAttributes:
    """Reads the OpenInference context attributes (``using_session``, ``using_user``,
    ``using_metadata``, ``using_tags``, ...) with OpenInference's ``read``. ``keys``, the
    context keys it reads (when its module names them), let a context that holds none of
    them go unread: a tenth of the cost, for each span."""

    read: Callable[[], Iterable[tuple[str, AttributeValue]]]
    keys: frozenset[str] | None

    def __call__(self) -> Attributes:
        keys = self.keys
        if keys is not None and keys.isdisjoint(otel_context.get_current()):
            return {}
        return dict(self.read())


def _context_reader() -> _ContextAttributes | None:
    """The reader of the context attributes, when openinference-instrumentation is
    installed (noted's tracing does not need it)."""
    try:
        from openinference.instrumentation import get_attributes_from_context
    except ImportError:
        return None
    module = sys.modules.get(get_attributes_from_context.__module__)
    keys: object = getattr(module, "CONTEXT_ATTRIBUTES", None)  # the keys the reader reads
    if isinstance(keys, tuple) and all(isinstance(key, str) for key in keys):
        return _ContextAttributes(get_attributes_from_context, frozenset(keys))
    return _ContextAttributes(get_attributes_from_context, None)  # read every time


def _with_context(context: Attributes, own: Attributes) -> tuple[Attributes, Attributes]:
    """A span's opening attributes, ``own`` with the context attributes ``context`` (see
    :func:`attrs.with_context`), and the context attributes its end sets again (with the
    metadata the opening merged), so that they are the span's last word whatever its
    closing attributes and its tracer (OpenInference's sets them after the opening)."""
    if not context:
        return own, context
    opening = attrs.with_context(context, own)
    if _METADATA in opening:
        context = {**context, _METADATA: opening[_METADATA]}
    return opening, context


@dataclass(frozen=True, slots=True)
class CarriedWork:
    """Work started inside a trace, to be run later: ``traceparent`` is the W3C trace
    context it continues (a plain string, so it can travel with the work; None: a trace of
    its own), and ``ids`` the ``session.id`` and ``user.id`` of the run it belongs to, for
    the spans made in it that know none of their own (see :func:`_inherited`)."""

    traceparent: str | None
    work: Callable[[], Coroutine[Any, Any, Any]]
    ids: Attributes = dataclasses.field(default_factory=dict)

    async def __call__(self) -> Any:
        ctx = _context_of(self.traceparent)
        if self.ids:
            ctx = otel_context.set_value(_IDS, dict(self.ids), ctx)
        with _attached(ctx):
            return await self.work()


def _ids(session_id: str | None, user_id: str | None) -> Attributes:
    """The ``session.id`` and ``user.id`` attributes of the ids that are given."""
    named = ((_SESSION, session_id), (_USER, user_id))
    return {key: value for key, value in named if value is not None}


@dataclass(frozen=True, slots=True)
class _Started:
    """A traced call's span, and what its end needs: the call's arguments, the span's
    identity (its kind: set last, see :func:`_dropped`), the context attributes it sets
    again (see :func:`_with_context`), its opening attributes (whose session and user the
    spans inside it inherit)."""

    span: Span
    bound: inspect.BoundArguments
    identity: Attributes
    context: Attributes
    opening: Attributes


class Spans:
    """Makes noted's spans with one tracer and one set of privacy settings."""

    def __init__(self, tracer: Tracer, settings: TraceSettings) -> None:
        self.tracer = tracer
        self.settings = settings
        # The memory manager's and agentic search's prompts and answers are memory texts.
        self._memory_calls = (
            dataclasses.replace(settings, hide_input_text=True, hide_output_text=True)
            if settings.hide_memories
            else settings
        )
        self._from_context = _context_reader()

    def _for(self, caller: Caller) -> TraceSettings:
        return self._memory_calls if caller in _MEMORY_CALLERS else self.settings

    def _context(self) -> Attributes:
        """The current context's OpenInference context attributes (none without
        openinference-instrumentation)."""
        reader = self._from_context
        return {} if reader is None else reader()

    # -- agent runs ----------------------------------------------------------------------

    def agent_run(self, agent: Any, run: RunResult, events: AsyncIterator[E]) -> AsyncIterator[E]:
        parent = otel_context.get_current()  # the caller's, before the run moves threads
        context = self._context()
        return self._agent_run(parent, context, agent, run, events)

    async def _agent_run(
        self,
        parent: otel_context.Context,
        context: Attributes,
        agent: Any,
        run: RunResult,
        events: AsyncIterator[E],
    ) -> AsyncIterator[E]:
        opening, context = _with_context(
            context,
            attrs.agent_opening(agent, run.input, run.user_id, run.session_id, self.settings),
        )
        span = self.tracer.start_span(
            f"{agent.name or 'Agent'}.run", context=parent, attributes=opening
        )
        ctx = _inside(span, opening, parent)
        run_id: str | None = None  # set with the closing attributes, in one call
        done = False  # the span ends with the run's last event: callers may stop there
        try:
            while True:
                token = _attach(ctx)
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                finally:
                    _detach(token)
                if type(event) is not ContentDelta:  # the deltas say nothing about the run
                    if isinstance(event, RunStarted):
                        run_id = event.run_id
                    elif isinstance(event, RunCompleted):
                        self._agent_done(span, event.result, context)
                        done = True
                        span.end()
                yield event
        except GeneratorExit:
            if not done:
                stopped: Attributes = {"noted.run.stopped": True}
                if run_id is not None:
                    stopped["noted.run.id"] = run_id
                span.set_attributes(stopped)
            raise
        except BaseException as exc:  # the run's, or one its consumer threw in (athrow)
            if not done:
                if run_id is not None:
                    span.set_attribute("noted.run.id", run_id)
                _failed(span, exc)
            raise
        finally:
            # however the run ends, its own stream is closed first (and with it its model
            # call's span), so the span ends once, after its children
            try:
                with _attached(ctx):
                    await aclose(events)  # nothing to do once it has ended by itself
            finally:
                if not done:
                    self._agent_unfinished(span, run, context)
                    span.end()

    def _agent_done(self, span: Span, run: RunResult, context: Attributes) -> None:
        span.set_attributes(attrs.with_context(context, attrs.agent_closing(run, self.settings)))
        span.set_status(_OK)

    def _agent_unfinished(self, span: Span, run: RunResult, context: Attributes) -> None:
        """A run stopped or failed before its end: the answer it kept in its session (the
        text streamed so far, which the user saw) is the span's output. Read once its
        stream is closed: the run keeps its failed turn as it closes."""
        if run.status == "failed" and run.content:
            shown = attrs.text_value("output", run.content, bool(self.settings.hide_outputs))
            span.set_attributes(attrs.with_context(context, shown))

    # -- model calls ---------------------------------------------------------------------

    def _llm_span(
        self, model: ChatModel, request: ModelRequest, caller: Caller, streamed: bool = False
    ) -> tuple[Span, Attributes]:
        """The LLM span, and the context attributes its end sets again."""
        own = attrs.llm_request(model, request, self._for(caller), _inherited())
        opening, context = _with_context(self._context(), own)
        if streamed:
            opening["noted.stream"] = True
        return self.tracer.start_span(_LLM_NAMES[caller], attributes=opening), context

    def _quiet(self, span: Span) -> otel_context.Context:
        """The span as current, with other instrumentation (a provider SDK's) suppressed
        inside it, so each model call shows once."""
        ctx = trace.set_span_in_context(span)
        return otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, ctx)

    def _llm_done(
        self,
        span: Span,
        model: ChatModel,
        response: ModelResponse,
        caller: Caller,
        context: Attributes,
        structured: bool,
    ) -> None:
        closing = attrs.llm_response(response, self._for(caller), structured)
        span.set_attributes(attrs.with_context(context, closing))
        if _dropped(span):
            span.set_attributes(attrs.llm_identity(model))
        span.set_status(_OK)

    async def complete(
        self, model: ChatModel, request: ModelRequest, caller: Caller
    ) -> ModelResponse:
        span, context = self._llm_span(model, request, caller)
        try:
            token = _attach(self._quiet(span))
            try:
                response = await model.acomplete(request)
            finally:
                _detach(token)
            structured = request.response_schema is not None
            self._llm_done(span, model, response, caller, context, structured)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()
        return response

    async def stream(
        self, model: ChatModel, request: ModelRequest, caller: Caller, answer: ResponseBuilder
    ) -> AsyncIterator[ModelDelta]:
        span, context = self._llm_span(model, request, caller, streamed=True)
        quiet = self._quiet(span)
        token = _attach(quiet)
        try:
            deltas = model.astream(request)
        finally:
            _detach(token)
        waiting = True  # for the first token
        try:
            while True:
                token = _attach(quiet)
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                finally:
                    _detach(token)
                if waiting and isinstance(delta, _TOKENS):
                    span.add_event(FIRST_TOKEN)
                    waiting = False
                yield delta
            # ``answer`` is the consumer's builder: it holds every delta by now
            structured = request.response_schema is not None
            self._llm_done(span, model, answer.build(), caller, context, structured)
        except GeneratorExit:
            stopped = self._llm_partial(answer, caller, context)
            stopped["noted.stream.stopped"] = True
            span.set_attributes(stopped)
            raise
        except BaseException as exc:  # the model's, or one the consumer threw in (athrow)
            partial = self._llm_partial(answer, caller, context)
            if partial:
                span.set_attributes(partial)
            _failed(span, exc)
            raise
        finally:
            try:
                token = _attach(quiet)
                try:
                    await aclose(deltas)  # nothing to do once it has ended by itself
                finally:
                    _detach(token)
            finally:
                span.end()

    def _llm_partial(
        self, answer: ResponseBuilder, caller: Caller, context: Attributes
    ) -> Attributes:
        """The answer streamed so far (``answer`` holds every delta handed out), for the
        span of a stream that stopped or failed before its end."""
        partial = attrs.llm_partial(answer.text(), self._for(caller))
        return attrs.with_context(context, partial) if partial else partial

    # -- background work -----------------------------------------------------------------

    def carry(self, work: Callable[[], Coroutine[Any, Any, R]]) -> CarriedWork:
        return CarriedWork(self.traceparent(), work, _inherited())

    def suppressed(self) -> bool:
        """Whether OpenTelemetry's suppress-instrumentation flag is set (as OpenInference's
        ``suppress_tracing()`` does, and noted around a model's own request)."""
        return bool(otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY))

    @contextmanager
    def continued(self, headers: Mapping[str, str]) -> Iterator[None]:
        """Within: the trace context a request's ``headers`` carry (by the propagators
        OpenTelemetry is configured with: W3C ``traceparent`` by default), unless a span is
        current already (an HTTP instrumentor's server span, which continues it itself)
        or the headers carry none."""
        if trace.get_current_span().get_span_context().is_valid:
            yield
            return
        ctx = propagate.extract(headers)
        if not trace.get_current_span(ctx).get_span_context().is_valid:
            yield
            return
        with _attached(ctx):
            yield

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, _unsampled() if self.suppressed() else None)
        return carrier.get("traceparent")

    async def resume(
        self,
        traceparent: str | None,
        work: Callable[[], Coroutine[Any, Any, R]],
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> R:
        result: R = await CarriedWork(traceparent, work, _ids(session_id, user_id))()
        return result

    def detached(self, start: Callable[[], R]) -> R:
        with _attached(otel_context.Context()):
            return start()

    def considered(self, count: int) -> None:
        trace.get_current_span().set_attribute("noted.memories.considered", count)

    # -- traced functions ----------------------------------------------------------------

    def _start(
        self, recorder: Recorder, fn: Callable[..., Any], args: Any, kwargs: Mapping[str, Any]
    ) -> _Started:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        name, own = recorder.start(bound.arguments, self.settings)
        ids = _inherited()
        opening, context = _with_context(self._context(), {**ids, **own} if ids else own)
        identity: Attributes = {_KIND: opening.pop(_KIND)}
        opening.update(identity)
        span = self.tracer.start_span(name, attributes=opening)
        return _Started(span, bound, identity, context, opening)

    def _end(self, recorder: Recorder, started: _Started, result: Any) -> None:
        span = started.span
        closing, error = recorder.end(started.bound.arguments, result, self.settings)
        # a retriever's documents may be many
        span.set_attributes(attrs.with_context(started.context, closing))
        if _dropped(span):
            span.set_attributes(started.identity)
        if error is None:
            span.set_status(_OK)
        else:
            _failed(span, error.error, error.hidden)

    def call(self, step: Step, fn: Callable[..., R], args: Any, kwargs: Mapping[str, Any]) -> R:
        recorder = RECORDERS[step]
        started = self._start(recorder, fn, args, kwargs)
        with _recording(started.span):
            with _attached(_inside(started.span, started.opening)):
                result = fn(*args, **kwargs)
            self._end(recorder, started, result)
        return result

    def call_async(
        self,
        step: Step,
        fn: Callable[..., Coroutine[Any, Any, R]],
        args: Any,
        kwargs: Mapping[str, Any],
    ) -> Coroutine[Any, Any, R]:
        parent = otel_context.get_current()  # the caller's, before the coroutine moves
        return self._call_async(parent, step, fn, args, kwargs)

    async def _call_async(
        self,
        parent: otel_context.Context,
        step: Step,
        fn: Callable[..., Coroutine[Any, Any, R]],
        args: Any,
        kwargs: Mapping[str, Any],
    ) -> R:
        with _attached(parent):
            recorder = RECORDERS[step]
            started = self._start(recorder, fn, args, kwargs)
        with _recording(started.span):
            with _attached(_inside(started.span, started.opening, parent)):
                result = await fn(*args, **kwargs)
            self._end(recorder, started, result)
        return result
