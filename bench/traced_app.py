"""Cold-start subject for Tracing=otel: what the ADOT layer sets up before the app is imported (the
OpenTelemetry SDK with a batch span processor, the X-Ray propagator, botocore's instrumentation), then the
app with TRACING=otel. Spans are discarded instead of sent to X-Ray's daemon: the export is not start-up."""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


_provider = TracerProvider()
_provider.add_span_processor(BatchSpanProcessor(_Discard()))
trace.set_tracer_provider(_provider)
propagate.set_global_textmap(AwsXRayPropagator())
BotocoreInstrumentor().instrument()
os.environ["TRACING"] = "otel"

from main import handler  # noqa: E402

__all__ = ["handler"]
