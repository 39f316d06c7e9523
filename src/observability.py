"""Logging for the whole app (Powertools Logger, created once) and the per-request context: request id,
access log line, latency."""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger, Metrics
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

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "stratus"),
    level=os.environ.get("LOG_LEVEL", "INFO"),
)
# CloudWatch EMF metrics, created once per container. No handler-wide log_metrics decorator wraps the
# Mangum handler, so whoever adds a metric flushes it at once (one EMF line each).
metrics = Metrics(namespace="Stratus", service=os.environ.get("POWERTOOLS_SERVICE_NAME", "stratus"))


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
    and writes one access log line with route, status and latency."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self.cold_start = True
        self.lambda_keys_added = False

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
        started = time.perf_counter()
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
            # Even with the access log off, the cold start and every server error still get their line.
            if self.access_log or cold_start or status >= 500:
                self._log_request(scope, status, started, cold_start, context)
            logger.thread_safe_remove_keys(["request_id"])

    @staticmethod
    def _log_request(scope: Scope, status: int, started: float, cold_start: bool, context: Any) -> None:
        route = scope.get("route")
        logger.info(
            "request",
            method=scope["method"],
            path=scope["path"],
            route=getattr(route, "path", None),
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            cold_start=cold_start,
            function_request_id=getattr(context, "aws_request_id", None),
        )
