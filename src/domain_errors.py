"""The domain's error types: what services, models and the token checks raise, each with the problem it
stands for. FastAPI-free, so that functions without the app (the partner authorizer) raise the same
errors; src/errors.py maps them to problem+json responses and re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar


class DomainError(Exception):
    """An error the domain raises on purpose. Its status, problem type and title are all that errors.py needs
    to answer it: nothing else decides an error's HTTP outcome."""

    status: ClassVar[int] = HTTPStatus.BAD_REQUEST
    problem: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


class BadRequest(DomainError):
    status = HTTPStatus.BAD_REQUEST
    problem = "bad-request"
    title = "Bad request"


class Unauthorized(DomainError):
    status = HTTPStatus.UNAUTHORIZED
    problem = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        # RFC 6750: the challenge names the scheme and what was wrong, never why in detail.
        super().__init__(detail, headers={"WWW-Authenticate": f'Bearer error="{error}"'})


class Forbidden(DomainError):
    status = HTTPStatus.FORBIDDEN
    problem = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    status = HTTPStatus.NOT_FOUND
    problem = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = HTTPStatus.CONFLICT
    problem = "conflict"
    title = "Conflict"


class PreconditionFailed(DomainError):
    status = HTTPStatus.PRECONDITION_FAILED
    problem = "precondition-failed"
    title = "Precondition failed"


class UnsupportedMediaType(DomainError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    problem = "unsupported-media-type"
    title = "Unsupported media type"


class ContentTooLarge(DomainError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    problem = "content-too-large"
    title = "Content too large"


class UnprocessableContent(DomainError):
    status = 422
    problem = "unprocessable-content"
    title = "Unprocessable content"


class TooManyRequests(DomainError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    problem = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailable(DomainError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    problem = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})
