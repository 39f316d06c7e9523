"""ETag / If-Match: an item's version is its strong ETag (`"7"`); writes honour If-Match."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header

from errors import PreconditionFailed

_STRONG_ETAG = re.compile(r'^"(\d{1,18})"$')


def etag(version: int | float) -> str:
    return f'"{int(version)}"'


def expected_version(if_match: str | None) -> int | None:
    """The version a write must find, or None for an unconditional write (no header, or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _STRONG_ETAG.match(if_match.strip())
    if match is None:
        # Weak or malformed validators never match (RFC 9110: If-Match uses strong comparison).
        raise PreconditionFailed("If-Match must carry the strong ETag from a previous GET.")
    return int(match.group(1))


IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='The ETag from a GET (e.g. `"3"`); 412 when stale.')
]
