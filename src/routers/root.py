"""The API's front door: what it is and where its documentation lives."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

router = APIRouter(tags=["meta"])


class ApiIndex(BaseModel):
    name: str
    version: str
    docs: str
    redoc: str
    openapi: str


@router.get("/", response_model=ApiIndex, summary="API index")
async def index(request: Request) -> ApiIndex:
    root = request.scope.get("root_path", "")
    return ApiIndex(
        name=request.app.title,
        version=request.app.version,
        docs=f"{root}/docs",
        redoc=f"{root}/redoc",
        openapi=f"{root}{request.app.openapi_url}",
    )
