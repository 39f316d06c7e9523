"""Per-request dependencies shared by routers: settings, request id, cursor codec."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pagination import CursorCodec
from settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def _cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


AppSettings = Annotated[Settings, Depends(_settings)]
RequestId = Annotated[str, Depends(_request_id)]
Cursors = Annotated[CursorCodec, Depends(_cursor_codec)]
