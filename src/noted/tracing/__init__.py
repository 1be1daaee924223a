"""OpenTelemetry tracing of agent runs, model calls, tool calls and memory work, with the
OpenInference semantic conventions (what Phoenix and other LLM observability tools read).

Off until turned on, and free while off. Turn it on with
``phoenix.otel.register(..., auto_instrument=True)`` (noted registers an
``openinference_instrumentor`` entry point), or with :func:`instrument`. Needs the
optional packages: ``pip install 'noted[tracing]'``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from noted.errors import UserError
from noted.tracing import _hooks
from noted.tracing._settings import TraceSettings

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["NotedInstrumentor", "TraceSettings", "instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()


def instrument(
    tracer_provider: TracerProvider | None = None, *, settings: TraceSettings | None = None
) -> None:
    """Trace noted from now on, with ``tracer_provider`` (the global one when None).
    ``settings`` hide values from spans; unset switches come from the environment
    (``OPENINFERENCE_HIDE_INPUTS``, ..., ``NOTED_TRACE_HIDE_MEMORIES``). Calling it again
    replaces the provider and settings."""
    from importlib import metadata  # not at import: noted's own import stays light

    try:
        from opentelemetry import trace

        from noted.tracing._spans import Spans
    except ModuleNotFoundError as exc:
        raise UserError(
            f"tracing needs the optional packages: pip install 'noted[tracing]' ({exc})"
        ) from exc
    except ImportError as exc:  # installed, but older than the names noted uses
        raise UserError(
            f"tracing needs newer packages than those installed: "
            f"pip install --upgrade 'noted[tracing]' ({exc})"
        ) from exc
    try:
        version = metadata.version("noted")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = None
    tracer = trace.get_tracer("noted", version, tracer_provider=tracer_provider)
    with _lock:
        _hooks.active = Spans(tracer, TraceSettings.resolve(settings))


def uninstrument() -> None:
    """Stop tracing noted (spans already started still end)."""
    with _lock:
        _hooks.active = None


def is_instrumented() -> bool:
    return _hooks.active is not None


_INSTRUMENT_KEYWORDS = frozenset(("tracer_provider", "config", "settings"))
# what every OpenTelemetry instrumentor's instrument() takes, and noted has no use for
_IGNORED_KEYWORDS = frozenset(("skip_dep_check", "raise_exception_on_conflict"))


class NotedInstrumentor:
    """The ``openinference_instrumentor`` entry point: what
    ``phoenix.otel.register(auto_instrument=True)`` loads and calls."""

    def instrument(self, **kwargs: Any) -> None:
        """:func:`instrument`, called as OpenInference instrumentors are: with
        ``tracer_provider`` and ``config`` (an OpenInference ``TraceConfig``, whose hide_*
        switches noted applies), or ``settings`` (noted's, whose set switches win over
        ``config``'s)."""
        unknown = sorted(set(kwargs) - _INSTRUMENT_KEYWORDS - _IGNORED_KEYWORDS)
        if unknown:
            raise UserError(
                f"NotedInstrumentor.instrument() takes tracer_provider, config and settings, "
                f"not {', '.join(unknown)}"
            )
        settings: TraceSettings | None = kwargs.get("settings")
        config = kwargs.get("config")
        if config is not None:
            settings = TraceSettings.from_config(config, settings)
        instrument(kwargs.get("tracer_provider"), settings=settings)

    def uninstrument(self, **kwargs: Any) -> None:
        uninstrument()

    def is_instrumented_by_opentelemetry(self) -> bool:
        return is_instrumented()
