"""The invocation's EMF line: one per request, through the Lambda handler with real API Gateway events, its
shape (namespace, dimensions, metric names and values), route templates instead of paths, bounded
dimension values, written when the request fails, and what a request adds through Powertools joining it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

import observability
from errors import TooManyRequests
from main import create_app, create_handler
from observability import DOMAIN_OUTCOMES, ROUTE_METRICS, count_refusal, metrics
from settings import Settings
from tests.events import LambdaContext, rest_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def emf_lines(output: str) -> list[dict[str, Any]]:
    """Every EMF object printed to stdout (lines with an `_aws` member)."""
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            parsed = json.loads(line)
            if "_aws" in parsed:
                lines.append(parsed)
    return lines


def directive_metrics(line: dict[str, Any]) -> dict[str, tuple[str, list[list[str]]]]:
    """Metric name -> (unit, dimension sets) over every directive of an EMF line, checking the EMF rules:
    one namespace, every metric's value and every dimension's value present as top-level members."""
    found: dict[str, tuple[str, list[list[str]]]] = {}
    for directive in line["_aws"]["CloudWatchMetrics"]:
        assert directive["Namespace"] == "Stratus"
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(line[dimension], str), dimension
                assert line[dimension], dimension
        for metric in directive["Metrics"]:
            assert metric["Name"] not in found, f"{metric['Name']} in two directives"
            # A number, or an array of numbers (how Powertools writes its values).
            value = line[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values, metric["Name"]
            assert all(isinstance(v, int | float) for v in values), metric["Name"]
            found[metric["Name"]] = (metric["Unit"], directive["Dimensions"])
    assert isinstance(line["_aws"]["Timestamp"], int)
    return found


@pytest.fixture(scope="module")
def observed_app(app_environment: dict[str, str]) -> FastAPI:
    app = create_app(Settings(access_log=False))

    @app.get("/_test/boom/{thing_id}")
    async def boom(thing_id: str) -> None:
        raise RuntimeError(f"failed for {thing_id}")

    @app.get("/_test/counted")
    async def counted() -> dict[str, str]:
        # What the rate limiter and the project follow-ups do today: add a metric, flush at once.
        metrics.add_metric(name="RateLimitStorageErrors", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        metrics.add_metric(name="FollowUpsLeftToStream", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        return {"ok": "yes"}

    @app.get("/_test/refused")
    async def refused() -> None:
        count_refusal("write")
        raise TooManyRequests("no", retry_after_seconds=3)

    @app.get("/_test/refused-unnamed")
    async def refused_unnamed() -> None:
        raise TooManyRequests("no", retry_after_seconds=3)

    return app


@pytest.fixture(scope="module")
def handler(observed_app: FastAPI) -> Handler:
    mangum = create_handler(observed_app)
    # The container's first request is its cold start: served here, so that tests see warm lines.
    mangum(rest_event("GET", "/health"), LambdaContext())
    return mangum


@pytest.fixture
def invoke(handler: Handler, capsys: pytest.CaptureFixture[str]) -> Callable[..., dict[str, Any]]:
    """Invokes the handler with a REST event; returns the invocation's only EMF line (and asserts it is)."""
    capsys.readouterr()

    def _invoke(method: str, path: str, **event: Any) -> dict[str, Any]:
        context = LambdaContext()
        response = handler(rest_event(method, path, **event), context)
        lines = emf_lines(capsys.readouterr().out)
        assert len(lines) == 1, lines
        headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
        lines[0]["_request_id_header"] = headers.get("x-request-id")
        lines[0]["_context"] = context
        return lines[0]

    return _invoke


def test_a_request_writes_one_emf_line_with_route_metrics(invoke: Callable[..., dict[str, Any]]) -> None:
    line = invoke("GET", "/health")
    found = directive_metrics(line)
    for name in ROUTE_METRICS:
        assert found[name][1] == [["service"], ["service", "route"]], name
    assert found["Latency"][0] == "Milliseconds"
    assert found["Requests"][0] == found["ClientErrors"][0] == found["ServerErrors"][0] == "Count"
    assert found["AuthenticationFailures"][1] == [["service"]]
    assert "ColdStart" not in found
    assert line["route"] == "GET /health"
    assert line["service"] == observability.SERVICE
    assert (line["Requests"], line["ClientErrors"], line["ServerErrors"], line["status"]) == (1, 0, 0, 200)
    assert 0 < line["Latency"] < 10_000
    assert line["request_id"] == line["_request_id_header"]
    assert line["function_request_id"] == line["_context"].aws_request_id


def test_the_route_is_the_template_never_the_path(invoke: Callable[..., dict[str, Any]]) -> None:
    line = invoke("GET", "/projects/some-project-id")
    assert line["route"] == "GET /projects/{project_id}"
    assert "some-project-id" not in json.dumps({k: v for k, v in line.items() if k != "_context"})
    assert (line["status"], line["ClientErrors"], line["AuthenticationFailures"]) == (401, 1, 1)
    assert line["problem"] == "unauthorized"


def test_route_values_stay_bounded_whatever_the_paths(invoke: Callable[..., dict[str, Any]]) -> None:
    routes = set()
    for index in range(5):
        routes.add(invoke("GET", f"/no/such/path-{index}")["route"])
        routes.add(invoke("GET", f"/tasks/task-{index}")["route"])
        routes.add(invoke("PROPFIND", f"/tasks/task-{index}")["route"])
    assert routes == {"unmatched", "GET /tasks/{task_id}", "OTHER /tasks/{task_id}"}


def test_trpc_calls_share_one_route_whatever_the_procedures(invoke: Callable[..., dict[str, Any]]) -> None:
    routes = {
        invoke("GET", path)["route"]
        for path in ("/trpc/health", "/trpc/health,me.get", "/trpc/projects.nope", "/trpc/tasks.byId")
    }
    assert routes == {"GET /trpc/{procedures}"}


def test_requests_answered_before_routing_are_named_by_their_route(
    invoke: Callable[..., dict[str, Any]],
) -> None:
    # A 405, a CORS preflight and a body refused before any route ran.
    assert invoke("DELETE", "/health")["route"] == "DELETE /health"
    preflight = invoke(
        "OPTIONS",
        "/projects/p1",
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "GET"},
    )
    assert preflight["route"] == "OPTIONS /projects/{project_id}"
    refused = invoke("POST", "/projects", headers={"Content-Type": "text/plain"}, body="name=x")
    assert (refused["route"], refused["status"]) == ("POST /projects", 415)


def test_a_failing_request_still_writes_its_line(invoke: Callable[..., dict[str, Any]]) -> None:
    line = invoke("GET", "/_test/boom/b-42")
    directive_metrics(line)
    assert (line["status"], line["ServerErrors"], line["ClientErrors"]) == (500, 1, 0)
    assert line["problem"] == "internal-error"
    assert line["route"] == "GET /_test/boom/{thing_id}"


def test_metrics_flushed_during_a_request_join_its_line(invoke: Callable[..., dict[str, Any]]) -> None:
    line = invoke("GET", "/_test/counted")
    found = directive_metrics(line)
    # Powertools' own directive, with the one dimension the existing alarms match on.
    assert found["RateLimitStorageErrors"] == ("Count", [["service"]])
    assert found["FollowUpsLeftToStream"] == ("Count", [["service"]])
    assert line["RateLimitStorageErrors"] == [1.0]
    assert line["Requests"] == 1
    # Nothing is left over for the next request's line.
    assert "RateLimitStorageErrors" not in invoke("GET", "/health")


def test_outside_a_request_a_flush_writes_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.add_metric(name="FollowUpsLeftToStream", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    (line,) = emf_lines(capsys.readouterr().out)
    assert directive_metrics(line)["FollowUpsLeftToStream"] == ("Count", [["service"]])


def test_rate_limit_refusals_are_counted_by_route_class(invoke: Callable[..., dict[str, Any]]) -> None:
    line = invoke("GET", "/_test/refused")
    found = directive_metrics(line)
    assert found["RateLimitRefusals"] == ("Count", [["service"], ["service", "route_class"]])
    assert (line["route_class"], line["RateLimitRefusals"], line["status"]) == ("write", 1, 429)
    unnamed = invoke("GET", "/_test/refused-unnamed")
    assert (unnamed["route_class"], unnamed["problem"]) == ("unclassified", "rate-limited")


def test_a_refusal_outside_a_request_is_written_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    count_refusal("read")
    (line,) = emf_lines(capsys.readouterr().out)
    assert line["route_class"] == "read"
    assert line["RateLimitRefusals"] == [1.0]


def test_the_cold_start_is_counted_once(
    app_environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = create_handler(create_app(Settings(access_log=False)))
    capsys.readouterr()
    fresh(rest_event("GET", "/health"), LambdaContext())
    fresh(rest_event("GET", "/health"), LambdaContext())
    first, second = emf_lines(capsys.readouterr().out)
    assert directive_metrics(first)["ColdStart"] == ("Count", [["service"]])
    assert first["ColdStart"] == 1
    assert "ColdStart" not in second


def test_request_metrics_off_writes_no_line(
    app_environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = create_handler(create_app(Settings(access_log=False, request_metrics=False)))
    capsys.readouterr()
    quiet(rest_event("GET", "/health"), LambdaContext())
    quiet(rest_event("GET", "/health"), LambdaContext())
    assert emf_lines(capsys.readouterr().out) == []


def test_an_authenticated_request_names_its_subject(
    invoke: Callable[..., dict[str, Any]], make_user: Any
) -> None:
    user = make_user()
    line = invoke("GET", "/me", headers={"Authorization": f"Bearer {user['access']}"})
    assert (line["status"], line["subject"]) == (200, user["sub"])
    assert user["email"] not in json.dumps({k: v for k, v in line.items() if k != "_context"})


def test_creating_a_project_counts_it(invoke: Callable[..., dict[str, Any]], make_user: Any) -> None:
    user = make_user()
    line = invoke(
        "POST",
        "/projects",
        headers={"Authorization": f"Bearer {user['access']}", "Content-Type": "application/json"},
        body={"name": "Counted"},
    )
    assert line["status"] == 201
    assert directive_metrics(line)["ProjectsCreated"] == ("Count", [["service"]])


def test_every_domain_outcome_names_a_route_of_the_app(observed_app: FastAPI) -> None:
    routes = {
        f"{method} {context.path_format}"
        for context in iter_route_contexts(observed_app.routes)
        for method in (context.methods or ())
    }
    for route, status in DOMAIN_OUTCOMES:
        assert route in routes, route
        assert 200 <= status < 300


# --- The line's two writers ---------------------------------------------------------------------------------
# Most requests take the common line, joined from cached parts; a cold start, a refusal, a domain outcome or
# metrics added through Powertools take the rich one, serialised by json. Both must say the same things.

LAMBDA_TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def written_line(capsys: pytest.CaptureFixture[str], **fields: Any) -> dict[str, Any]:
    capsys.readouterr()
    request: dict[str, Any] = {
        "route": "GET /projects/{project_id}",
        "status": 404,
        "latency_us": 1_234,
        "request_id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "subject": "7d8a7a4e-0000-4000-8000-0000000000aa",
        "function_request_id": "0b5f2f4e-1111-4111-8111-111111111111",
        "invocation": observability._Invocation(),
        "cold_start": False,
    }
    request.update(fields)
    observability.write_request_line(**request)
    (line,) = emf_lines(capsys.readouterr().out)
    return line


@pytest.mark.parametrize(
    ("latency_us", "latency_ms"),
    [(0, 0.0), (7, 0.007), (999, 0.999), (1_000, 1.0), (1_234, 1.234), (25_000_123, 25_000.123)],
)
def test_both_lines_write_the_latency_in_milliseconds_to_the_microsecond(
    capsys: pytest.CaptureFixture[str], latency_us: int, latency_ms: float
) -> None:
    common = written_line(capsys, latency_us=latency_us)
    rich = written_line(capsys, latency_us=latency_us, cold_start=True)
    assert common["Latency"] == rich["Latency"] == latency_ms


@pytest.mark.parametrize("status", [200, 401, 404, 429, 500, 503])
def test_the_common_line_says_what_the_rich_line_says(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_TRACE_HEADER)
    invocation = observability._Invocation()
    invocation.problem = "not-found"
    common = written_line(capsys, status=status, invocation=invocation)
    rich = written_line(capsys, status=status, invocation=invocation, cold_start=True)
    assert "ColdStart" not in common
    assert rich.pop("ColdStart") == 1
    common_aws, rich_aws = common.pop("_aws"), rich.pop("_aws")
    assert abs(common_aws["Timestamp"] - rich_aws["Timestamp"]) < 60_000
    assert (
        rich_aws["CloudWatchMetrics"][: len(common_aws["CloudWatchMetrics"])]
        == (common_aws["CloudWatchMetrics"])
    )
    assert common == rich
    assert (common["ClientErrors"], common["ServerErrors"]) == (int(400 <= status < 500), int(status >= 500))
    assert common["AuthenticationFailures"] == int(status == 401)


def test_the_line_names_the_invocations_xray_trace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda's runtime sets the invocation's trace header before each invocation; the line carries its root,
    # the id the X-Ray console looks traces up by.
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_TRACE_HEADER)
    assert written_line(capsys)["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert written_line(capsys, cold_start=True)["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-00000000-000000000000000000000001")
    assert written_line(capsys)["xray_trace_id"] == "1-00000000-000000000000000000000001"
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    assert "xray_trace_id" not in written_line(capsys)
    assert "xray_trace_id" not in written_line(capsys, cold_start=True)


def test_the_trace_id_is_read_as_os_environ_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The line reads the environment's own bytes (one step instead of os.environ's four frames): it must see
    # every change made through os.environ, decoded as os.environ decodes it.
    if os.name == "posix":
        assert observability._ENVIRONMENT_BYTES is not None
    for header, root in [
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0", "1-5759e988-bd862e3fe1be46a994272793"),
        ("Root=1-é-\udcff;Parent=1", "1-é-\udcff"),
        ("no-root-field", "no-root-field"),
        ("", None),
    ]:
        monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
        assert (
            observability.xray_trace_id()
            == root
            == (os.environ["_X_AMZN_TRACE_ID"].split(";", 1)[0].removeprefix("Root=") or None)
        )
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    assert observability.xray_trace_id() is None


def test_a_hostile_trace_header_cannot_break_the_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", 'Root=1-"}\n{"status":200;Parent=x')
    line = written_line(capsys)
    assert line["xray_trace_id"] == '1-"}\n{"status":200'
    assert line["status"] == 404
