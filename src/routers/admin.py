"""User administration and the audit trail (admin group only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field

from auth import CurrentUser, require_groups
from dependencies import AppSettings, Cursors, RequestId
from directory import DirectoryUser
from pagination import Page, PageCursor, PageLimit, query_binding
from ratelimit import rate_limit
from routers.common import Timestamp
from routers.fields import DirectoryUserRef as UserId
from services.admin import (
    AdminActions,
    ManagedGroup,
    audit_trail,
    confirm_live_admin,
    get_directory_user,
    list_directory_users,
)

if TYPE_CHECKING:
    from models.audit import AuditRecord


async def _live_admin(user: CurrentUser, settings: AppSettings) -> None:
    confirm_live_admin(user, settings)


# The token's groups first (no call: most refusals end there), then the budget, then the directory's word.
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[
        Depends(require_groups("admin")),
        Depends(rate_limit("expensive")),
        Depends(_live_admin),
    ],
)


class DirectoryUserInfo(BaseModel):
    id: str = Field(
        description="The directory's username: what these routes take (an email alias works too)."
    )
    subject: str | None = Field(description="The `sub` of the user's tokens: what owns their data.")
    email: str | None
    name: str | None
    enabled: bool
    status: str
    created_at: Timestamp | None
    groups: list[str] | None = Field(
        default=None,
        description="The user's groups on a single user's answer; null in lists, where Cognito's list "
        "gives no groups and fetching them would cost one more call per user.",
    )

    @classmethod
    def of(cls, user: DirectoryUser, with_groups: bool = False) -> DirectoryUserInfo:
        return cls(
            id=user.user_id,
            subject=user.subject,
            email=user.email,
            name=user.name,
            enabled=user.enabled,
            status=user.status,
            created_at=user.created_at,
            groups=list(user.groups) if with_groups else None,
        )


class AuditEntry(BaseModel):
    at: Timestamp
    actor: str
    action: str
    target: str = Field(description="The subject (`sub`) of the user acted on.")
    request_id: str
    outcome: Literal["requested", "succeeded", "failed"] = Field(
        description="requested (written before the action; its end is not known), succeeded or failed."
    )
    details: dict[str, Any]

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        return cls(
            at=record.at,
            actor=record.actor_subject,
            action=record.action,
            target=record.target,
            request_id=record.request_id,
            outcome=record.outcome_value(),
            details=record.detail_values(),
        )


async def _admin_actions(user: CurrentUser, settings: AppSettings, request_id: RequestId) -> AdminActions:
    return AdminActions(user, settings.cognito_user_pool_id, request_id)


Actions = Annotated[AdminActions, Depends(_admin_actions)]


@router.get("/users", response_model=Page[DirectoryUserInfo], summary="List users")
async def list_users(
    user: CurrentUser,
    settings: AppSettings,
    cursors: Cursors,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Page[DirectoryUserInfo]:
    binding = query_binding(request.url.path, user.subject, limit=limit)
    users, next_cursor = list_directory_users(settings.cognito_user_pool_id, limit, cursor, cursors, binding)
    return Page[DirectoryUserInfo](items=[DirectoryUserInfo.of(u) for u in users], next_cursor=next_cursor)


@router.get("/users/{user_id}", response_model=DirectoryUserInfo, summary="One user, with groups")
async def get_user(user_id: UserId, settings: AppSettings) -> DirectoryUserInfo:
    return DirectoryUserInfo.of(get_directory_user(settings.cognito_user_pool_id, user_id), with_groups=True)


@router.post("/users/{user_id}/disable", response_model=DirectoryUserInfo, summary="Disable a user")
async def disable_user(user_id: UserId, actions: Actions) -> DirectoryUserInfo:
    return DirectoryUserInfo.of(actions.set_enabled(user_id, enabled=False), with_groups=True)


@router.post("/users/{user_id}/enable", response_model=DirectoryUserInfo, summary="Enable a user")
async def enable_user(user_id: UserId, actions: Actions) -> DirectoryUserInfo:
    return DirectoryUserInfo.of(actions.set_enabled(user_id, enabled=True), with_groups=True)


@router.put("/users/{user_id}/groups/{group}", response_model=DirectoryUserInfo, summary="Add to a group")
async def add_to_group(user_id: UserId, group: ManagedGroup, actions: Actions) -> DirectoryUserInfo:
    return DirectoryUserInfo.of(actions.add_to_group(user_id, group), with_groups=True)


@router.delete(
    "/users/{user_id}/groups/{group}", response_model=DirectoryUserInfo, summary="Remove from a group"
)
async def remove_from_group(user_id: UserId, group: ManagedGroup, actions: Actions) -> DirectoryUserInfo:
    return DirectoryUserInfo.of(actions.remove_from_group(user_id, group), with_groups=True)


@router.post(
    "/users/{user_id}/sign-out", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out everywhere"
)
async def sign_out_everywhere(user_id: UserId, actions: Actions) -> Response:
    actions.sign_out_everywhere(user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=Page[AuditEntry], summary="The audit trail, newest first")
async def read_audit_trail(
    user: CurrentUser, cursors: Cursors, request: Request, limit: PageLimit = 20, cursor: PageCursor = None
) -> Page[AuditEntry]:
    binding = query_binding(request.url.path, user.subject, limit=limit)
    records, next_cursor = audit_trail(limit, cursor, cursors, binding)
    return Page[AuditEntry](items=[AuditEntry.of(r) for r in records], next_cursor=next_cursor)
