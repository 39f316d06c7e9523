"""Request bodies are small, well-formed JSON: anything else is refused with a problem before a route
parses or validates it (415 for another media type, 413 for an oversized body, 400 for JSON that no
model could hold: not UTF-8, nested too deeply, or text that is not Unicode)."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errors import BadRequest, ContentTooLarge, UnsupportedMediaType, domain_error_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The largest body any operation needs is a task (a 5 000-character description, at most 4 bytes each).
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# No request model nests deeper than a few levels; Python's decoder would recurse far deeper first.
_MAX_NESTING = 32


class MalformedBody(BadRequest):
    problem = "malformed-body"
    title = "Malformed request body"


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _depth_and_text_problem(value: Any, depth: int = 0) -> str | None:
    """Why a decoded body cannot be stored or answered, or None. JSON escapes can name half of a UTF-16
    surrogate pair (`"\\ud800"`): Python decodes it into a string that no UTF-8 encoder (botocore's, the
    response's) accepts."""
    if depth > _MAX_NESTING:
        return f"The request body nests deeper than {_MAX_NESTING} levels."
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "The request body contains an unpaired UTF-16 surrogate escape."
        return None
    children: Any = value.items() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        pair = child if isinstance(value, dict) else (None, child)
        for part in pair:
            if part is not None and (problem := _depth_and_text_problem(part, depth + 1)):
                return problem
    return None


def _utf8(body: bytes) -> bool:
    """JSON between systems is UTF-8 (RFC 8259). Python's parser also reads UTF-16 and UTF-32, which a
    filter in front of the API (a WAF) reads as something else, and in which the escapes checked below
    hide; their NUL bytes give them away (a NUL byte is never part of UTF-8 JSON text)."""
    if b"\x00" in body:
        return False
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def body_problem(body: bytes) -> str | None:
    """Why a JSON body must be refused before any model sees it, or None (malformed JSON syntax is left
    to the route's own parser, which says where it broke)."""
    if not _utf8(body):
        return "The request body is not UTF-8 JSON text."
    # Only an escape can produce a lone surrogate, and only nesting can recurse: most bodies skip the walk.
    if b"\\u" not in body and body.count(b"[") + body.count(b"{") <= _MAX_NESTING:
        return None
    try:
        decoded = json.loads(body)
    except RecursionError:
        return f"The request body nests deeper than {_MAX_NESTING} levels."
    except ValueError:
        return None
    return _depth_and_text_problem(decoded)


class JsonBodiesOnlyMiddleware:
    """A POST/PUT/PATCH that carries a body must declare it as JSON, stay within `max_body_bytes` and hold
    JSON that a model can take.

    A pure ASGI check rather than an app-wide dependency: requests without a body (most of them) pay
    two dictionary lookups instead of a dependency resolution.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type")
        declared_length = headers.get("content-length", "0")
        has_body = declared_length != "0" or "transfer-encoding" in headers
        if not has_body and content_type is None:
            await self.app(scope, receive, send)
            return
        if content_type is None or not _is_json(content_type):
            error = UnsupportedMediaType(
                f"Send the request body as application/json (got {content_type or 'no Content-Type'}).",
                headers={"Accept-Post": "application/json", "Accept-Patch": "application/json"},
            )
            await domain_error_response(scope, error)(scope, receive, send)
            return
        if declared_length.isdigit() and int(declared_length) > self.max_body_bytes:
            await domain_error_response(scope, self._too_large())(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            await domain_error_response(scope, self._too_large())(scope, receive, send)
            return
        problem = body_problem(body)
        if problem is not None:
            await domain_error_response(scope, MalformedBody(problem))(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> ContentTooLarge:
        return ContentTooLarge(f"Request bodies are at most {self.max_body_bytes} bytes.")

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it outgrows the limit (whatever Content-Length claimed)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then whatever the server sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
