"""The one mapping from every error to an RFC 9457 problem+json response (the domain's error types live in
domain_errors.py and are re-exported here)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain_errors import (
    BadRequest,
    Conflict,
    ContentTooLarge,
    DomainError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableContent,
    UnsupportedMediaType,
)
from observability import logger, record_problem

# The domain's error types are defined FastAPI-free in domain_errors.py; callers import them from here too.
__all__ = [
    "DATA_STORE_RETRY_AFTER_SECONDS",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_BASE",
    "BadRequest",
    "Conflict",
    "ContentTooLarge",
    "DomainError",
    "Forbidden",
    "NotFound",
    "PreconditionFailed",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnhandledErrorMiddleware",
    "UnprocessableContent",
    "UnsupportedMediaType",
    "describe_validation_errors",
    "domain_error_response",
    "error_response",
    "install_error_handlers",
    "internal_error_response",
    "is_transient_aws_failure",
    "problem_response",
    "problem_type_of",
    "transient_failure_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:stratus:problem:"


_GENERIC_PROBLEMS: dict[int, str] = {
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "content-too-large",
    415: "unsupported-media-type",
    500: "internal-error",
}


def problem_response(
    request_scope: Scope,
    *,
    status: int,
    problem: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Build the problem+json body every error of the API shares."""
    # The request's EMF line and access line name the problem type (errors by type, without the detail).
    record_problem(problem)
    request_id = request_scope.get("state", {}).get("request_id", "")
    instance = request_scope.get("root_path", "") + _route_path(request_scope)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    body.update(extensions or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_CONTENT_TYPE
    )


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def domain_error_response(scope: Scope, error: DomainError) -> JSONResponse:
    """The problem a domain error stands for (also for middleware that answers before any route runs)."""
    return problem_response(
        scope,
        status=error.status,
        problem=error.problem,
        title=error.title,
        detail=error.detail,
        headers=error.headers,
        extensions=error.extensions,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(request.scope, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = _phrase(exc.status_code)
    detail = (
        exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else _default_detail(request, exc)
    )
    return problem_response(
        request.scope,
        status=exc.status_code,
        problem=_GENERIC_PROBLEMS.get(exc.status_code, phrase.lower().replace(" ", "-")),
        # Sentence case, like every domain error's title ("Not found", "Method not allowed").
        title=phrase[:1] + phrase[1:].lower(),
        detail=detail,
        headers=exc.headers,
    )


def _default_detail(request: Request, exc: StarletteHTTPException) -> str:
    if exc.status_code == 404:
        return f"No resource at {request.url.path}."
    if exc.status_code == 405:
        return f"{request.method} is not allowed here."
    return _phrase(exc.status_code) + "."


def describe_validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Every offending field with where it was (body, query, path, header); input values are never echoed."""
    described = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        field, message = ".".join(location[1:]), str(error.get("msg", ""))
        if error.get("type") == "json_invalid":
            # Pydantic puts the character offset where a field name would be.
            field, message = "", f"{message} at character {field}" if field else message
        described.append(
            {
                "location": location[0] if location else "",
                "field": field,
                "message": message,
                "type": error.get("type", ""),
            }
        )
    return described


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = describe_validation_errors(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        return problem_response(
            request.scope,
            status=HTTPStatus.BAD_REQUEST,
            problem="malformed-body",
            title="Malformed request body",
            detail="The request body is not valid JSON.",
            extensions={"errors": errors},
        )
    return problem_response(
        request.scope,
        status=422,
        problem="validation-error",
        title="Request validation failed",
        detail=f"{len(errors)} field(s) failed validation.",
        extensions={"errors": errors},
    )


# AWS answers that mean "try again shortly", whichever client (PynamoDB, boto3) raised them.
_RETRYABLE_AWS_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
DATA_STORE_RETRY_AFTER_SECONDS = 2


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps (`__cause__`, `__context__`, PynamoDB's `.cause`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "cause", None)
        pending.extend(
            [current.__cause__, current.__context__, wrapped if isinstance(wrapped, BaseException) else None]
        )


def is_transient_aws_failure(error: BaseException) -> bool:
    """Throttling, an AWS-side 5xx, a timeout or an unreachable endpoint: worth a retry, not a 500."""
    # Imported here, on the error path only: botocore costs cold-start time that /health never needs.
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    for cause in _causes(error):
        if isinstance(cause, (ConnectionError, HTTPClientError)):
            return True
        if isinstance(cause, ClientError):
            if cause.response.get("Error", {}).get("Code") in _RETRYABLE_AWS_CODES:
                return True
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if isinstance(status, int) and status >= 500:
                return True
    return False


def transient_failure_response(scope: Scope) -> JSONResponse:
    return problem_response(
        scope,
        status=HTTPStatus.SERVICE_UNAVAILABLE,
        problem="service-unavailable",
        title="Service unavailable",
        detail="A backing service is busy or unreachable; retry shortly.",
        headers={"Retry-After": str(DATA_STORE_RETRY_AFTER_SECONDS)},
    )


def problem_type_of(error: BaseException) -> str:
    """The problem type the caller is answered with for `error` (for records that name the outcome)."""
    if isinstance(error, DomainError):
        return error.problem
    return "service-unavailable" if is_transient_aws_failure(error) else "internal-error"


def error_response(scope: Scope, error: BaseException) -> JSONResponse:
    """503 for transient AWS failures, a bare 500 problem for anything else; nothing of either leaks."""
    if is_transient_aws_failure(error):
        logger.warning("a backing service failed transiently", exc_info=error)
        return transient_failure_response(scope)
    logger.error("unhandled error", exc_info=error)
    return internal_error_response(scope)


def internal_error_response(scope: Scope) -> JSONResponse:
    # Nothing of the exception reaches the client: no message, no traceback, no AWS error text.
    return problem_response(
        scope,
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        problem="internal-error",
        title="Internal server error",
        detail="The server failed to handle the request. Quote the request id when reporting it.",
    )


async def _unhandled_error(request: Request, exc: Exception) -> Response:
    return error_response(request.scope, exc)


class UnhandledErrorMiddleware:
    """Turns any exception that escapes the routes into a 500 problem.

    It sits inside CORSMiddleware (Starlette's own last-resort handler sits outside every middleware,
    so its 500s would carry no CORS headers and browsers would show a CORS error instead).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception as error:
            if response_started:
                logger.exception("error after the response started")
                raise
            await error_response(scope, error)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled_error)
