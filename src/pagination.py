"""Opaque, signed pagination cursors bound to the query that produced them.

A cursor is the store's position (DynamoDB's last evaluated key, a Cognito pagination token) plus a hash
of the query it belongs to (path, filters, caller), signed with HMAC-SHA256 under a key from Secrets
Manager. A tampered, foreign or mismatched cursor is a 400 problem; nothing else about it is revealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from errors import BadRequest

T = TypeVar("T")
_SIGNATURE_BYTES = 16
_MAX_CURSOR_LENGTH = 4096


class InvalidCursor(BadRequest):
    problem = "invalid-cursor"
    title = "Invalid cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


PageLimit = Annotated[
    int,
    Query(
        ge=1,
        le=100,
        description="Items per page at most (1-100). A filtered list may answer fewer, even none, with a "
        "`next_cursor`: keep following it until it is null.",
    ),
]
PageCursor = Annotated[
    str | None, Query(max_length=_MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page.")
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def _unb64(text: str) -> bytes:
    # urlsafe_b64decode silently skips characters outside the alphabet: refuse them instead.
    if not _BASE64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def query_binding(path: str, caller: str, **filters: Any) -> str:
    """What a cursor is valid for: the same path, the same filters, the same caller."""
    canonical = json.dumps({"path": path, "caller": caller, "filters": filters}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class CursorCodec:
    """Signs and checks cursors; the key comes lazily so a request that never pages never fetches it."""

    def __init__(self, signing_key: Callable[[], bytes]) -> None:
        self._signing_key = signing_key

    def encode(self, position: Any, binding: str) -> str | None:
        if position is None:
            return None
        payload = json.dumps({"p": position, "b": binding}, separators=(",", ":"), sort_keys=True).encode()
        signature = hmac.new(self._signing_key(), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return f"{_b64(payload)}.{_b64(signature)}"

    def decode(self, cursor: str | None, binding: str) -> Any:
        if cursor is None:
            return None
        invalid = InvalidCursor("The cursor is not valid for this query; start again without it.")
        try:
            payload_text, signature_text = cursor.split(".", 1)
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except ValueError:
            raise invalid from None
        expected = hmac.new(self._signing_key(), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        if not hmac.compare_digest(signature, expected):
            raise invalid
        try:
            decoded = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(decoded, dict) or decoded.get("b") != binding:
            raise invalid
        return decoded.get("p")
