"""OpenTelemetry spans for Stratus when `TRACING=otel`: one span per request, and `span()` for any step worth
timing on its own (the rate-limit check).

Deployed, the ADOT Lambda layer (template parameter Tracing) provides the OpenTelemetry SDK, the global
tracer provider exporting to X-Ray, the X-Ray propagator, the invocation's span (continuing API Gateway's
trace) and the botocore instrumentation: every DynamoDB, Cognito and Secrets Manager call becomes a child
of the request's span. FastAPI's own telemetry stays off (main.py): its request span records the raw path
(`/admin/users/<email>`) and would start from API Gateway's trace header beside the invocation's span
rather than under it.

Off (the default locally and in tests) the app never constructs RequestSpans, nothing here imports
OpenTelemetry, and `span()` returns one shared no-op context manager.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from observability import LAMBDA_TRACE_VARIABLE

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

TRACER_NAME = "stratus"
XRAY_HEADER = "X-Amzn-Trace-Id"
_PROPAGATED_HEADERS = {
    b"x-amzn-trace-id": XRAY_HEADER,
    b"traceparent": "traceparent",
    b"tracestate": "tracestate",
}


class _Enabled:
    # The tracer `span()` uses; None while tracing is off.
    tracer: Tracer | None = None


_NO_SPAN: AbstractContextManager[None] = nullcontext()

AttributeValue = str | bool | int | float


def span(name: str, **attributes: AttributeValue) -> AbstractContextManager[Any]:
    """A child span of the current one around a block (`with span("rate_limit.check", route_class="read"):`),
    or a no-op when tracing is off."""
    tracer = _Enabled.tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def _trace_headers(scope: Scope) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        header = _PROPAGATED_HEADERS.get(name.lower())
        if header is not None:
            carrier[header] = value.decode("latin-1")
    lambda_trace = os.environ.get(LAMBDA_TRACE_VARIABLE)
    if lambda_trace:
        carrier[XRAY_HEADER] = lambda_trace
    return carrier


class ActiveRequestSpan:
    """A request's span and the context token that made it current."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


class RequestSpans:
    """Starts and ends the span of each request (RequestContextMiddleware calls it when tracing is on)."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self._context = context
        self._propagate = propagate
        self._trace = trace
        self.tracer = trace.get_tracer(TRACER_NAME)
        _Enabled.tracer = self.tracer
        _instrument_botocore()

    def start(self, scope: Scope, request_id: str, lambda_context: Any) -> ActiveRequestSpan:
        """The request's span, made current: under the invocation's span when the Lambda instrumentation
        made one, else continuing the trace the request's headers (or Lambda's trace variable) carry."""
        trace = self._trace
        parent: Context = self._context.get_current()
        kind = trace.SpanKind.INTERNAL
        if not trace.get_current_span(parent).get_span_context().is_valid:
            parent = self._propagate.extract(_trace_headers(scope))
            kind = trace.SpanKind.SERVER
        attributes: dict[str, AttributeValue] = {
            "http.request.method": scope.get("method", ""),
            "stratus.request_id": request_id,
        }
        invocation_id = getattr(lambda_context, "aws_request_id", None)
        if isinstance(invocation_id, str):
            attributes["faas.invocation_id"] = invocation_id
        request_span = self.tracer.start_span(
            scope.get("method", "HTTP"), context=parent, kind=kind, attributes=attributes
        )
        token = self._context.attach(trace.set_span_in_context(request_span, parent))
        return ActiveRequestSpan(request_span, token)

    def finish(self, active: ActiveRequestSpan, route: str, status: int) -> None:
        """Names the span after the route template (never the raw path), records the status, ends it."""
        request_span = active.span
        request_span.update_name(route)
        _, _, template = route.partition(" ")
        if template:
            request_span.set_attribute("http.route", template)
        request_span.set_attribute("http.response.status_code", status)
        if status >= 500:
            request_span.set_status(self._trace.StatusCode.ERROR)
        request_span.end()
        self._context.detach(active.token)  # type: ignore[arg-type]


def _instrument_botocore() -> None:
    # The ADOT layer has instrumented botocore already; this covers an SDK installed without it.
    try:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    except ImportError:
        return
    instrumentor = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
