"""Liveness (no I/O) and readiness (reaches the table)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ratelimit import rate_limit
from services.health import check_readiness

router = APIRouter(prefix="/health", tags=["health"])


class HealthStatus(BaseModel):
    status: str


class ReadinessStatus(BaseModel):
    status: str
    table: str


# Routes are `async def` throughout: Lambda gives each container one request at a time, so a blocking
# DynamoDB call blocks nothing else and the route avoids the thread-pool hop a `def` route pays.
@router.get("", response_model=HealthStatus, summary="Liveness")
async def liveness() -> HealthStatus:
    return HealthStatus(status="ok")


# Readiness reaches the table, so it is limited (anonymous callers by address); liveness is free.
@router.get(
    "/ready",
    response_model=ReadinessStatus,
    summary="Readiness: the table answers",
    dependencies=[Depends(rate_limit("read"))],
)
async def readiness() -> ReadinessStatus:
    return ReadinessStatus(**check_readiness())
