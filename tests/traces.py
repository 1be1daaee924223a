"""What the tracing tests share: noted's spans (and any other instrumentor's) collected by the
OpenTelemetry SDK's in-memory exporter, with helpers to find them and read their attributes."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Traces:
    def __init__(self, limits: SpanLimits | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(span_limits=limits)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.spans]
        return found[0]

    def children(self, parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        return [
            s.name
            for s in sorted(self.spans, key=lambda s: s.start_time or 0)
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def of_kind(self, kind: str) -> list[ReadableSpan]:
        """The spans whose OpenInference span kind is ``kind`` (LLM, AGENT, TOOL, ...), in
        the order they started."""
        found = [s for s in self.spans if attrs(s).get("openinference.span.kind") == kind]
        return sorted(found, key=lambda s: s.start_time or 0)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
