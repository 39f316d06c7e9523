"""Tracing with OpenTelemetry: spans exported in memory for an authenticated DynamoDB request through the
Lambda handler (the pieces the ADOT layer installs when deployed: SDK provider, X-Ray propagator, botocore
instrumentation), their shape and nesting; and, with tracing off, nothing of OpenTelemetry loaded by us."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util._once import Once

import tracing
from main import create_app, create_handler
from settings import Settings
from tests.events import LambdaContext, rest_event

ROOT = Path(__file__).resolve().parent.parent
XRAY_TRACE = "1-5759e988-bd862e3fe1be46a994272793"
XRAY_PARENT = "53995c3f42cd8ad8"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """A global SDK provider exporting to memory, the X-Ray propagator and botocore instrumentation, as
    the ADOT layer sets them up; all undone afterwards (OpenTelemetry sets its global provider only once
    per process, so its private globals are restored the way opentelemetry-test-utils resets them)."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    saved = (trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER, propagate.get_global_textmap())
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(CompositePropagator([AwsXRayPropagator(), TraceContextTextMapPropagator()]))
    BotocoreInstrumentor().instrument(tracer_provider=provider)
    try:
        yield exported
    finally:
        BotocoreInstrumentor().uninstrument()
        tracing._Enabled.tracer = None
        trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER, textmap = saved
        propagate.set_global_textmap(textmap)
        provider.shutdown()


@pytest.fixture(scope="module")
def traced_handler(app_environment: dict[str, str], exporter: InMemorySpanExporter) -> Any:
    # Counters in DynamoDB too, as deployed: the rate-limit check is one more traced call.
    app = create_app(
        Settings(
            tracing="otel", rate_limit_storage_uri=app_environment["RATE_LIMIT_STORAGE_URI"], access_log=False
        )
    )

    @app.get("/_test/timed")
    async def timed() -> dict[str, str]:
        with tracing.span("rate_limit.check", route_class="read"):
            return {"ok": "yes"}

    return create_handler(app)


def spans_of_one_request(
    handler: Any, exporter: InMemorySpanExporter, event: dict[str, Any]
) -> list[ReadableSpan]:
    exporter.clear()
    response = handler(event, LambdaContext())
    assert response["statusCode"] < 500, response
    return list(exporter.get_finished_spans())


def test_an_authenticated_db_request_is_one_trace_of_nested_spans(
    traced_handler: Any, exporter: InMemorySpanExporter, make_user: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    user = make_user()
    bearer = {"Authorization": f"Bearer {user['access']}"}
    created = traced_handler(
        rest_event(
            "POST", "/projects", headers={**bearer, "Content-Type": "application/json"}, body={"name": "T"}
        ),
        LambdaContext(),
    )
    project_id = json.loads(created["body"])["id"]
    trace_header = f"Root={XRAY_TRACE};Parent={XRAY_PARENT};Sampled=1"

    spans = spans_of_one_request(
        traced_handler,
        exporter,
        rest_event("GET", f"/projects/{project_id}", headers={**bearer, "X-Amzn-Trace-Id": trace_header}),
    )

    (request,) = [span for span in spans if span.kind is SpanKind.SERVER]
    (limit_check,) = [span for span in spans if span.name == "rate_limit.check"]
    calls = [span for span in spans if span not in (request, limit_check)]
    assert request.instrumentation_scope.name == limit_check.instrumentation_scope.name == tracing.TRACER_NAME
    assert request.name == "GET /projects/{project_id}"
    # The rate-limit check is a step of the request, with its route class.
    assert limit_check.parent is not None
    assert limit_check.parent.span_id == request.context.span_id
    assert dict(limit_check.attributes or {}) == {"route_class": "read"}
    assert request.kind is SpanKind.SERVER
    attributes = dict(request.attributes or {})
    assert attributes["http.route"] == "/projects/{project_id}"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    request_id = attributes["stratus.request_id"]
    assert isinstance(request_id, str)
    assert request_id in capsys.readouterr().out
    # API Gateway's trace continues: same trace id, the gateway's segment as parent.
    assert format(request.context.trace_id, "032x") == XRAY_TRACE[2:].replace("-", "")
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == XRAY_PARENT
    assert project_id not in json.dumps({**attributes, "name": request.name})
    # Every DynamoDB call of the request (the project; a lease of rate-limit budget when one is due) is
    # a span of that trace.
    operations = sorted(str((span.attributes or {}).get("rpc.method")) for span in calls)
    assert "GetItem" in operations or "BatchGetItem" in operations
    for call in calls:
        assert call.kind is SpanKind.CLIENT
        assert (call.attributes or {}).get("rpc.service") == "DynamoDB"
        assert call.context.trace_id == request.context.trace_id
        assert call.parent is not None
        # A lease of budget is made inside the rate-limit check; everything else directly in the request.
        assert call.parent.span_id in (request.context.span_id, limit_check.context.span_id)


def test_lambdas_trace_variable_wins_over_the_header(
    traced_handler: Any, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_trace = f"Root=1-5759e988-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", lambda_trace)
    (request,) = spans_of_one_request(
        traced_handler,
        exporter,
        rest_event("GET", "/health", headers={"X-Amzn-Trace-Id": f"Root={XRAY_TRACE}"}),
    )
    root = lambda_trace.split(";", maxsplit=1)[0].removeprefix("Root=1-").replace("-", "")
    assert format(request.context.trace_id, "032x") == root


def test_the_request_span_nests_under_the_invocations_span(
    traced_handler: Any, exporter: InMemorySpanExporter
) -> None:
    # The ADOT layer's Lambda instrumentation makes the invocation's span current before the app runs.
    invocation_tracer = trace.get_tracer("invocation")
    with invocation_tracer.start_as_current_span("invocation", kind=SpanKind.SERVER) as invocation:
        spans = spans_of_one_request(traced_handler, exporter, rest_event("GET", "/health"))
    (request,) = [span for span in spans if span.instrumentation_scope.name == tracing.TRACER_NAME]
    assert request.kind is SpanKind.INTERNAL
    assert request.parent is not None
    assert request.parent.span_id == invocation.get_span_context().span_id


def test_span_helper_times_a_step_inside_the_request(
    traced_handler: Any, exporter: InMemorySpanExporter
) -> None:
    spans = spans_of_one_request(traced_handler, exporter, rest_event("GET", "/_test/timed"))
    by_name = {span.name: span for span in spans}
    step, request = by_name["rate_limit.check"], by_name["GET /_test/timed"]
    assert (step.attributes or {}).get("route_class") == "read"
    assert step.parent is not None
    assert step.parent.span_id == request.context.span_id


def test_span_helper_is_a_no_op_while_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing._Enabled, "tracer", None)
    with tracing.span("anything", x=1) as step:
        assert step is None


# Runs in a fresh interpreter: the modules the app loads for a request with tracing off.
_IMPORTS_PROBE = """
import json, sys
import fastapi
by_fastapi = {m for m in sys.modules if m.startswith("opentelemetry")}
import main
from tests.events import LambdaContext, rest_event
response = main.handler(rest_event("GET", "/health"), LambdaContext())
loaded = {m for m in sys.modules if m.startswith("opentelemetry")}
print(json.dumps({"status": response["statusCode"], "by_fastapi": sorted(by_fastapi),
                  "loaded": sorted(loaded), "tracing": "tracing" in sys.modules}))
"""


def test_tracing_off_loads_no_opentelemetry_beyond_what_fastapi_imports() -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("TRACING", "_X_AMZN_TRACE_ID")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    finished = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    probe = json.loads(finished.stdout.strip().splitlines()[-1])
    assert probe["status"] == 200
    # FastAPI (>= 0.165) imports the OpenTelemetry API itself; the app adds not one module to that: no SDK,
    # no instrumentation, no propagator, not even src/tracing.py.
    assert probe["loaded"] == probe["by_fastapi"]
    assert not probe["tracing"]
    assert not any(
        name.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation")) for name in probe["loaded"]
    )
