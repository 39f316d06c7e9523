"""Personal API keys for scripts: the secret is shown once, at creation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from auth import CurrentUser
from dependencies import AppSettings, Cursors
from pagination import Page, PageCursor, PageLimit, query_binding
from ratelimit import rate_limit
from routers.common import READS, WRITES, Timestamp
from routers.fields import ApiKeyId as KeyId
from routers.fields import Moment, OneLine
from services.api_keys import (
    DEFAULT_LIFETIME,
    MAX_ACTIVE_KEYS,
    MAX_LIFETIME,
    issue_api_key,
    my_api_keys,
    revoke_my_api_key,
)

if TYPE_CHECKING:
    from models.api_key import ApiKey

router = APIRouter(prefix="/api-keys", tags=["api-keys"])

Scope = Literal["stratus/read", "stratus/write"]


class ApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: OneLine = Field(min_length=1, max_length=64)
    scopes: list[Scope] = Field(min_length=1, max_length=2)
    expires_at: Moment | None = Field(
        default=None,
        description=f"When the key stops working: within {MAX_LIFETIME.days} days; "
        f"{DEFAULT_LIFETIME.days} days from now when left out.",
    )


class ApiKeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: Timestamp
    expires_at: Timestamp
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None

    @classmethod
    def of(cls, item: ApiKey) -> ApiKeyInfo:
        return cls(
            id=item.key_id,
            name=item.name,
            prefix=item.display_prefix,
            scopes=sorted(item.scopes or ()),
            created_at=item.created_at,
            expires_at=item.ends_at(),
            revoked_at=item.revoked_at,
            last_used_at=item.last_used_at,
        )


class IssuedApiKey(ApiKeyInfo):
    secret: str = Field(description="Shown only in this response: store it now.")


# Minting a key reads the master secret and writes an item: the expensive class.
@router.post(
    "",
    response_model=IssuedApiKey,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    description=f"At most {MAX_ACTIVE_KEYS} active keys per person (409 beyond). A key stops working when "
    "it ends, when it is revoked, and when its owner is signed out everywhere, disabled or deleted.",
    dependencies=[Depends(rate_limit("expensive"))],
)
async def create_api_key(
    body: ApiKeyRequest, user: CurrentUser, settings: AppSettings, request: Request, response: Response
) -> IssuedApiKey:
    item, secret = issue_api_key(user, settings, body.name, set(body.scopes), body.expires_at)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/api-keys/{item.key_id}"
    response.headers["Cache-Control"] = "no-store"
    return IssuedApiKey(**ApiKeyInfo.of(item).model_dump(), secret=secret)


@router.get(
    "",
    response_model=Page[ApiKeyInfo],
    summary="My API keys (no secrets)",
    dependencies=READS,
)
async def list_my_api_keys(
    user: CurrentUser, cursors: Cursors, request: Request, limit: PageLimit = 20, cursor: PageCursor = None
) -> Page[ApiKeyInfo]:
    binding = query_binding(request.url.path, user.subject)
    items, next_cursor = my_api_keys(user, limit, cursor, cursors, binding)
    return Page[ApiKeyInfo](items=[ApiKeyInfo.of(item) for item in items], next_cursor=next_cursor)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke one of my API keys",
    dependencies=WRITES,
)
async def revoke_api_key(key_id: KeyId, user: CurrentUser) -> Response:
    revoke_my_api_key(user, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
