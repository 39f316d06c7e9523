"""Logging and metrics for the whole app (Powertools Logger and Metrics, created once) and the per-request
context: request id, one CloudWatch EMF line per invocation, the access log line, the request span."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_RAW = REQUEST_ID_HEADER.lower().encode("latin-1")
# Safe defaults for every response: no MIME sniffing, no referrer leaks, HTTPS only.
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]

# The stdlib's documented optimisation: no log line here prints thread or process details, so LogRecord
# need not look them up on every call (a few µs per line, on every request).
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False

# Mangum logs every request's raw path at INFO (`GET /Prod/admin/users/<email> 200`), and Lambda ships the
# root logger's INFO lines: the app's own lines name the route template instead.
logging.getLogger("mangum.http").setLevel(logging.WARNING)

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "stratus")
METRICS_NAMESPACE = "Stratus"

logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO"))


class _Invocation:
    """What one request adds to its EMF line besides status and latency."""

    __slots__ = ("problem", "refused_class")

    def __init__(self) -> None:
        self.problem: str | None = None
        self.refused_class: str | None = None


_invocation: ContextVar[_Invocation | None] = ContextVar("stratus_invocation", default=None)


class InvocationMetrics(Metrics):
    """Powertools Metrics whose flush waits, during a request, for the request's own EMF line: whatever
    the request adds (`add_metric` then `flush_metrics`, as anywhere else) joins that one line. Outside a
    request (the stream consumer, scripts) a flush writes at once, as Powertools always does. (Powertools
    keeps one metric set per process: Lambda serves one request at a time; under uvicorn, concurrent
    requests may carry each other's added metrics.)"""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if _invocation.get() is not None:
            return
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


# CloudWatch EMF metrics, created once per container; dimension `service` (the stack's name when deployed).
metrics = InvocationMetrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def record_problem(problem: str) -> None:
    """Names the problem type the current request is answered with (errors.py calls it for every problem)."""
    invocation = _invocation.get()
    if invocation is not None:
        invocation.problem = problem


def count_refusal(route_class: str) -> None:
    """Counts a rate-limit refusal of `route_class` (a route class of the limiter, a code constant: never a
    caller's key) in `RateLimitRefusals`, dimension `route_class`. During a request it joins the request's
    EMF line; without one it is written at once."""
    invocation = _invocation.get()
    if invocation is not None:
        invocation.refused_class = route_class
        return
    with single_metric(
        name="RateLimitRefusals", unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="route_class", value=route_class)


# --- The per-invocation EMF line ----------------------------------------------------------------------------
#
# Every request writes one line: EMF metrics (namespace Stratus) that double as the request's record in the
# function's log (request id, subject, status, problem type: what the saved Logs Insights queries read). The
# line is written by hand from constant parts: the same metrics through Powertools (add_metric per metric,
# add_dimensions, flush) took 14 times as long in one measurement here, as it validates each metric, formats
# its debug messages whether or not they are logged, and builds dicts to serialise. Powertools still
# serialises whatever else a request adds (the slow path, rare).

# Dimension values are bounded: a route is a route template of the app (`GET /projects/{project_id}`), never
# a raw path; requests that match no route share one value.
UNMATCHED_ROUTE = "unmatched"
# Where an endpoint that answers without FastAPI's router (tRPC) names its route template in the scope.
ROUTE_TEMPLATE_KEY = "stratus.route_template"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

ROUTE_METRICS = ("Requests", "Latency", "ClientErrors", "ServerErrors")
# Per-route metrics: by route and across routes.
_ROUTE_DIRECTIVE = {
    "Namespace": METRICS_NAMESPACE,
    "Dimensions": [["service"], ["service", "route"]],
    "Metrics": [
        {"Name": "Requests", "Unit": "Count"},
        {"Name": "Latency", "Unit": "Milliseconds"},
        {"Name": "ClientErrors", "Unit": "Count"},
        {"Name": "ServerErrors", "Unit": "Count"},
    ],
}
# Counted across routes only (each metric per route would be one more custom metric per route).
_SERVICE_DIRECTIVE = {
    "Namespace": METRICS_NAMESPACE,
    "Dimensions": [["service"]],
    "Metrics": [{"Name": "AuthenticationFailures", "Unit": "Count"}],
}
_COLD_START_DIRECTIVE = {
    "Namespace": METRICS_NAMESPACE,
    "Dimensions": [["service"]],
    "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
}
_REFUSAL_DIRECTIVE = {
    "Namespace": METRICS_NAMESPACE,
    "Dimensions": [["service"], ["service", "route_class"]],
    "Metrics": [{"Name": "RateLimitRefusals", "Unit": "Count"}],
}
# Outcomes worth counting on their own, read off the route and status (the routers stay free of metrics).
# An Idempotency-Key replay answers 201 again and counts again.
DOMAIN_OUTCOMES: dict[tuple[str, int], str] = {
    ("POST /projects", 201): "ProjectsCreated",
    ("POST /projects/{project_id}/tasks", 201): "TasksCreated",
    ("POST /api-keys", 201): "ApiKeysMinted",
}
# The problem type of a rate-limit refusal (errors.TooManyRequests); refusals whose class the limiter did
# not name are counted under this class.
RATE_LIMITED_PROBLEM = "rate-limited"
UNCLASSIFIED_REFUSAL = "unclassified"

# Every metric the invocation's line itself writes (the others come from Powertools' add_metric).
REQUEST_LINE_METRICS = frozenset(
    {
        *ROUTE_METRICS,
        "AuthenticationFailures",
        "ColdStart",
        "RateLimitRefusals",
        *DOMAIN_OUTCOMES.values(),
    }
)

_encode = json.encoder.encode_basestring_ascii
_COMPACT = (",", ":")
# The common line is joined from parts made once per route and once per status; what changes per request
# (time, latency, ids) goes between them. In a warm request every step here runs with cold caches and costs
# several times what it costs in a loop: fewer steps is what makes the line cheap (bench/run.py measures it).
_LINE_HEAD = '{"_aws":{"Timestamp":'
_LINE_DIRECTIVES = (
    ',"CloudWatchMetrics":['
    + json.dumps(_ROUTE_DIRECTIVE, separators=_COMPACT)
    + ","
    + json.dumps(_SERVICE_DIRECTIVE, separators=_COMPACT)
    + ']},"service":'
    + _encode(SERVICE)
    + ',"route":'
)
# Route -> the line from the directives to the latency's value (bounded like the routes themselves).
_ROUTE_PARTS: dict[str, str] = {}
# Status -> the line from after the latency to the request id's value.
_STATUS_PARTS: dict[int, str] = {}
# The latency in milliseconds with three decimals, written from integer microseconds: formatting a float
# was the line's most expensive step.
_MILLISECOND_FRACTIONS = tuple(f".{fraction:03d}" for fraction in range(1000))
# Lambda's own trace header for this invocation (its segment under API Gateway's), set per invocation.
LAMBDA_TRACE_VARIABLE = "_X_AMZN_TRACE_ID"


def _environment_bytes() -> dict[bytes, bytes] | None:
    # On POSIX, os.environ keeps the environment in a dict of bytes that every change to it goes through
    # (os.environb wraps the same dict). One look-up there is one step; os.environ.get walks four Python
    # frames (Mapping.get, __getitem__, the key's and the value's codecs), ~3 µs of a warm request here.
    # tests/test_observability.py checks that this dict follows os.environ; elsewhere, os.environ is read.
    data = getattr(os.environ, "_data", None) if os.name == "posix" else None
    return data if isinstance(data, dict) else None


_ENVIRONMENT_BYTES = _environment_bytes()
_TRACE_ENVIRONMENT_KEY = os.fsencode(LAMBDA_TRACE_VARIABLE)
# How os.environ decodes what it holds.
_FILESYSTEM_ENCODING = sys.getfilesystemencoding()


def _route_part(route: str) -> str:
    part = _ROUTE_PARTS[route] = f'{_LINE_DIRECTIVES}{_encode(route)},"Requests":1,"Latency":'
    return part


def _status_part(status: int) -> str:
    part = _STATUS_PARTS[status] = (
        f',"ClientErrors":{int(400 <= status < 500)},"ServerErrors":{int(status >= 500)},'
        f'"AuthenticationFailures":{int(status == 401)},"status":{status},"request_id":'
    )
    return part


def xray_trace_id() -> str | None:
    """The X-Ray trace id (`1-…`) of the current invocation: Lambda's runtime sets its trace header in the
    environment before each invocation (None elsewhere)."""
    # `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=…;Sampled=1`: the root comes first.
    if _ENVIRONMENT_BYTES is not None:
        raw = _ENVIRONMENT_BYTES.get(_TRACE_ENVIRONMENT_KEY)
        if not raw:
            return None
        return raw.split(b";", 1)[0].removeprefix(b"Root=").decode(_FILESYSTEM_ENCODING, "surrogateescape")
    header = os.environ.get(LAMBDA_TRACE_VARIABLE)
    return header.split(";", 1)[0].removeprefix("Root=") if header else None


def route_of(scope: Scope) -> str:
    """`METHOD /template` of the route that answered (or would have: a 405, a CORS preflight, a body refused
    before routing), else UNMATCHED_ROUTE. Never the raw path."""
    method = scope.get("method", "")
    if method not in _KNOWN_METHODS:
        method = "OTHER"
    route = scope.get("route")
    template = getattr(route, "path_format", None) if route is not None else scope.get(ROUTE_TEMPLATE_KEY)
    if template is None:
        template = _template_by_matching(scope, method)
        if template is None:
            return UNMATCHED_ROUTE
    return f"{method} {template}"


def _template_by_matching(scope: Scope, method: str) -> str | None:
    # Only for requests no route handled (rare): walk the app's routes as the router would.
    from fastapi.routing import iter_route_contexts

    app = scope.get("app")
    routes = getattr(app, "routes", None)
    if routes is None:
        return None
    path: str = scope.get("path", "")
    # A mount that matched moved its own prefix into root_path; app_root_path is the app's.
    root_path: str = scope.get("app_root_path", scope.get("root_path", ""))
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    partial: str | None = None
    for context in iter_route_contexts(routes):
        regex = getattr(context, "path_regex", None)
        if regex is None or not regex.match(path):
            continue
        template = context.path_format
        methods = context.methods
        if not methods or method in methods:
            return str(template)
        partial = partial or str(template)
    return partial


def _subject_of(scope: Scope) -> str | None:
    # The pseudonymous subject of the authenticated caller (never an email or a name).
    principal = scope.get("state", {}).get("principal")
    subject = getattr(principal, "subject", None)
    return subject if isinstance(subject, str) else None


def write_request_line(
    *,
    route: str,
    status: int,
    latency_us: int,
    request_id: str,
    subject: str | None,
    function_request_id: str | None,
    invocation: _Invocation,
    cold_start: bool,
) -> None:
    """Writes the invocation's one EMF line to stdout (the function's log, where CloudWatch reads EMF)."""
    problem = invocation.problem
    refused_class = invocation.refused_class
    if refused_class is None and problem == RATE_LIMITED_PROBLEM:
        refused_class = UNCLASSIFIED_REFUSAL
    domain_metric = DOMAIN_OUTCOMES.get((route, status)) if status == 201 else None
    if cold_start or refused_class or domain_metric or metrics.provider.metric_set:
        print(
            _rich_line(
                route,
                status,
                latency_us,
                request_id,
                subject,
                function_request_id,
                problem,
                refused_class,
                domain_metric,
                cold_start,
            )
        )
        return
    extra = ""
    if subject is not None:
        extra += ',"subject":' + _encode(subject)
    if problem is not None:
        extra += ',"problem":' + _encode(problem)
    if function_request_id is not None:
        extra += ',"function_request_id":' + _encode(function_request_id)
    trace_id = xray_trace_id()
    if trace_id:
        extra += ',"xray_trace_id":' + _encode(trace_id)
    # One write of the whole line (print would write the newline separately).
    sys.stdout.write(
        f"{_LINE_HEAD}{time.time_ns() // 1_000_000}{_ROUTE_PARTS.get(route) or _route_part(route)}"
        f"{latency_us // 1000}{_MILLISECOND_FRACTIONS[latency_us % 1000]}"
        f"{_STATUS_PARTS.get(status) or _status_part(status)}{_encode(request_id)}{extra}}}\n"
    )


def _rich_line(
    route: str,
    status: int,
    latency_us: int,
    request_id: str,
    subject: str | None,
    function_request_id: str | None,
    problem: str | None,
    refused_class: str | None,
    domain_metric: str | None,
    cold_start: bool,
) -> str:
    # The same line as the common one plus the rarer directives, and what Powertools collected (serialised by
    # Powertools: its units validated, its dimension `service`).
    line: dict[str, Any]
    directives: list[dict[str, Any]] = [_ROUTE_DIRECTIVE, _SERVICE_DIRECTIVE]
    if metrics.provider.metric_set:
        line = dict(metrics.serialize_metric_set())
        metrics.clear_metrics()
        directives += line["_aws"]["CloudWatchMetrics"]
    else:
        line = {}
    line["_aws"] = {"Timestamp": time.time_ns() // 1_000_000, "CloudWatchMetrics": directives}
    line.update(
        {
            "service": SERVICE,
            "route": route,
            "Requests": 1,
            "Latency": latency_us / 1000,
            "ClientErrors": int(400 <= status < 500),
            "ServerErrors": int(status >= 500),
            "AuthenticationFailures": int(status == 401),
            "status": status,
            "request_id": request_id,
        }
    )
    if cold_start:
        directives.append(_COLD_START_DIRECTIVE)
        line["ColdStart"] = 1
    if refused_class:
        directives.append(_REFUSAL_DIRECTIVE)
        line["route_class"] = refused_class
        line["RateLimitRefusals"] = 1
    if domain_metric:
        directives.append(
            {
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["service"]],
                "Metrics": [{"Name": domain_metric, "Unit": "Count"}],
            }
        )
        line[domain_metric] = 1
    for key, value in (
        ("subject", subject),
        ("problem", problem),
        ("function_request_id", function_request_id),
    ):
        if value is not None:
            line[key] = value
    trace_id = xray_trace_id()
    if trace_id:
        line["xray_trace_id"] = trace_id
    return json.dumps(line, separators=_COMPACT)


# --- Request context --------------------------------------------------------------------------------------


def request_id_of(scope: Scope) -> str:
    """API Gateway's own request id in Lambda (so logs and gateway access logs agree), a fresh one elsewhere."""
    event: dict[str, Any] | None = scope.get("aws.event")
    if event:
        request_id = (event.get("requestContext") or {}).get("requestId")
        if request_id:
            return str(request_id)
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Gives every request an id, puts it in every log line of that request and in the response headers,
    writes the invocation's EMF line (also when the request fails), the access log line, and, with tracing
    on, the request's span."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: bool = True,
        request_metrics: bool = True,
        tracing: bool = False,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.request_metrics = request_metrics
        self.cold_start = True
        self.lambda_keys_added = False
        self.request_spans: Any = None
        if tracing:
            # Imported only with tracing on: off, no OpenTelemetry SDK code is loaded or run.
            from tracing import RequestSpans

            self.request_spans = RequestSpans()

    def _describe_lambda_once(self, context: Any) -> None:
        # Once per container: the function's identity joins every later log line. (Cheaper per request than
        # Powertools' inject_lambda_context, which rebuilds these keys on every invocation.)
        logger.append_keys(
            function_name=getattr(context, "function_name", None),
            function_memory_size=getattr(context, "memory_limit_in_mb", None),
            function_arn=getattr(context, "invoked_function_arn", None),
        )
        self.lambda_keys_added = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        context = scope.get("aws.context")
        if context is not None and not self.lambda_keys_added:
            self._describe_lambda_once(context)
        cold_start, self.cold_start = self.cold_start, False
        logger.thread_safe_append_keys(request_id=request_id)
        invocation = _Invocation()
        invocation_token = _invocation.set(invocation)
        span = None if self.request_spans is None else self.request_spans.start(scope, request_id, context)
        started = time.perf_counter_ns()
        status = 500

        # Appended to the raw header list: no response sets these itself, so there is nothing to replace.
        added_headers = [(_REQUEST_ID_HEADER_RAW, request_id.encode("latin-1")), *_SECURITY_HEADERS]

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added_headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            latency_us = (time.perf_counter_ns() - started) // 1000
            route = route_of(scope)
            if span is not None:
                self.request_spans.finish(span, route, status)
            _invocation.reset(invocation_token)
            function_request_id = getattr(context, "aws_request_id", None)
            if self.request_metrics:
                write_request_line(
                    route=route,
                    status=status,
                    latency_us=latency_us,
                    request_id=request_id,
                    subject=_subject_of(scope),
                    function_request_id=function_request_id,
                    invocation=invocation,
                    cold_start=cold_start,
                )
            # Even with the access log off, the cold start and every server error still get their line.
            if self.access_log or cold_start or status >= 500:
                logger.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    latency_ms=round(latency_us / 1000, 2),
                    cold_start=cold_start,
                    subject=_subject_of(scope),
                    problem=invocation.problem,
                    function_request_id=function_request_id,
                )
            logger.thread_safe_remove_keys(["request_id"])
