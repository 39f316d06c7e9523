"""Request bodies are JSON: anything else is refused with 415 before it is parsed or validated."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from errors import UnsupportedMediaType, domain_error_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class JsonBodiesOnlyMiddleware:
    """A POST/PUT/PATCH that carries a body must declare it as JSON.

    A pure ASGI check rather than an app-wide dependency: requests without a body (most of them) pay
    two dictionary lookups instead of a dependency resolution.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            headers = Headers(scope=scope)
            content_type = headers.get("content-type")
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if (content_type is not None or has_body) and (
                content_type is None or not _is_json(content_type)
            ):
                error = UnsupportedMediaType(
                    f"Send the request body as application/json (got {content_type or 'no Content-Type'}).",
                    headers={"Accept-Post": "application/json", "Accept-Patch": "application/json"},
                )
                await domain_error_response(scope, error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
