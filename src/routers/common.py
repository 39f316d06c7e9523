"""What the routers share: the scope + rate-limit guards, the 201 answer of an idempotent create, and how
a moment is written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request, status
from fastapi.responses import JSONResponse
from pydantic import PlainSerializer, WithJsonSchema

from auth import require_scopes
from preconditions import etag
from ratelimit import rate_limit


def _fixed_width(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Every moment in a response: UTC, always with microseconds. Plain ISO 8601 drops the fraction on a whole
# second, and "…:19Z" then sorts after "…:19.034Z" for a client comparing strings.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_fixed_width, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-01-31T09:30:00.000000Z"}),
]

READS = [Depends(require_scopes("stratus/read")), Depends(rate_limit("read"))]
WRITES = [Depends(require_scopes("stratus/write")), Depends(rate_limit("write"))]


def created(request: Request, view: dict[str, Any], path: str) -> JSONResponse:
    """201 with Location (under the client's root path) and, for a versioned item, its ETag; the same for
    a replay."""
    headers = {"Location": f"{request.scope.get('root_path', '')}{path}"}
    if "version" in view:
        headers["ETag"] = etag(view["version"])
    return JSONResponse(view, status_code=status.HTTP_201_CREATED, headers=headers)


# Shown on the list routes whose reads are bounded (filters may skip most of what a read returns).
BOUNDED_PAGES = (
    "A page holds at most `limit` items. With filters, a request reads a bounded amount of data: a page "
    "may then hold fewer items (even none) while `next_cursor` is not null. Follow `next_cursor` until "
    "it is null to see every item."
)
