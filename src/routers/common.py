"""What the data routers share: the scope + rate-limit guards and the 201 answer of an idempotent create."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, status
from fastapi.responses import JSONResponse

from auth import require_scopes
from preconditions import etag
from ratelimit import rate_limit

READS = [Depends(require_scopes("stratus/read")), Depends(rate_limit("read"))]
WRITES = [Depends(require_scopes("stratus/write")), Depends(rate_limit("write"))]


def created(request: Request, view: dict[str, Any], path: str) -> JSONResponse:
    """201 with Location (under the client's root path) and the new item's ETag; the same for a replay."""
    headers = {"Location": f"{request.scope.get('root_path', '')}{path}", "ETag": etag(view["version"])}
    return JSONResponse(view, status_code=status.HTTP_201_CREATED, headers=headers)
