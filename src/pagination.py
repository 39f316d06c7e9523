"""Opaque, signed pagination cursors bound to the query that produced them.

A cursor is the store's position (DynamoDB's last evaluated key, a Cognito pagination token) plus a hash
of the query it belongs to (path, filters, caller), signed with HMAC-SHA256 under a key of the app
secret's keyring, whose kid it carries: `<kid>.<payload>.<signature>`. A cursor made before keyrings
(`<payload>.<signature>`) was signed by the legacy key. A tampered, foreign or mismatched cursor, or one
whose key has been retired, is a 400 problem; nothing else about it is revealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Annotated, Any, Generic, Protocol, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app_keyring import KID_PATTERN, LEGACY_KID
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


class CursorKeys(Protocol):
    """Where a codec gets its keys (app_secrets.PurposeKeys in the app)."""

    def signing_key(self) -> tuple[str, bytes]:
        """The current kid and key."""
        ...

    def verification_key(self, kid: str) -> bytes | None:
        """The key of `kid`, or None when it has been retired (or never existed)."""
        ...


class CursorCodec:
    """Signs and checks cursors; keys come lazily so a request that never pages never fetches them."""

    def __init__(self, keys: CursorKeys) -> None:
        self._keys = keys

    def encode(self, position: Any, binding: str) -> str | None:
        if position is None:
            return None
        payload = json.dumps({"p": position, "b": binding}, separators=(",", ":"), sort_keys=True).encode()
        kid, key = self._keys.signing_key()
        signature = _signature(key, kid, payload)
        if kid == LEGACY_KID:
            # The format of cursors made before keyrings, which every older container still reads.
            return f"{_b64(payload)}.{_b64(signature)}"
        return f"{kid}.{_b64(payload)}.{_b64(signature)}"

    def decode(self, cursor: str | None, binding: str) -> Any:
        if cursor is None:
            return None
        invalid = InvalidCursor("The cursor is not valid for this query; start again without it.")
        parts = cursor.split(".")
        if len(parts) == 2:
            parts.insert(0, LEGACY_KID)
        if len(parts) != 3 or not KID_PATTERN.match(parts[0]):
            raise invalid
        kid, payload_text, signature_text = parts
        try:
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except ValueError:
            raise invalid from None
        key = self._keys.verification_key(kid)
        if key is None:
            raise InvalidCursor("The cursor is no longer valid; start again without it.")
        if not hmac.compare_digest(signature, _signature(key, kid, payload)):
            raise invalid
        try:
            decoded = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(decoded, dict) or decoded.get("b") != binding:
            raise invalid
        return decoded.get("p")


def _signature(key: bytes, kid: str, payload: bytes) -> bytes:
    # The kid is signed too; the legacy key signed the payload alone.
    signed = payload if kid == LEGACY_KID else kid.encode() + b"." + payload
    return hmac.new(key, signed, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
