"""Request bodies are JSON: anything else is refused with 415 before it is parsed or validated."""

from __future__ import annotations

from fastapi import Request

from errors import DomainError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnsupportedMediaType(DomainError):
    status = 415
    problem = "unsupported-media-type"
    title = "Unsupported media type"


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def require_json_body(request: Request) -> None:
    """App-wide dependency: a body sent with POST/PUT/PATCH must be declared as JSON."""
    if request.method not in _BODY_METHODS:
        return
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if content_type is None and not has_body:
        return
    if content_type is None or not _is_json(content_type):
        raise UnsupportedMediaType(
            f"Send the request body as application/json (got {content_type or 'no Content-Type'}).",
            headers={"Accept-Post": "application/json", "Accept-Patch": "application/json"},
        )
