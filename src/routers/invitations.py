"""Invitations: owners invite an email address; whoever signs in with that address verified accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from auth import CurrentUser
from dependencies import AppSettings, Cursors
from idempotency import IdempotencyKey, run_once
from pagination import Page, PageCursor, PageLimit, query_binding
from routers.common import READS, WRITES, Timestamp
from routers.fields import Email, InvitationId, ProjectId
from routers.schemas import MyProject, Role, Strict
from services import invitations

if TYPE_CHECKING:
    from models.invitation import Invitation

router = APIRouter(tags=["invitations"])

_SAME_ANSWER = (
    "The answer is the same whether or not the address belongs to an account: nobody learns who has one. "
    "The invitee joins by accepting while signed in with that address verified; an invitation expires "
    "after 7 days. Inviting an address that has a pending invitation answers that invitation."
)


class InvitationCreate(Strict):
    email: Email
    role: Role = "viewer"


class InvitationView(BaseModel):
    id: str
    project_id: str
    project_name: str = Field(description="The project's name when the invitation was made.")
    email: str
    role: Role
    invited_by: str = Field(description="The subject of the owner who invited.")
    created_at: Timestamp
    expires_at: Timestamp

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationView:
        assert invitation.expires_at is not None
        return cls(
            id=invitation.invitation_id,
            project_id=invitation.project_id,
            project_name=invitation.project_name,
            email=invitation.email,
            role=invitation.role,
            invited_by=invitation.invited_by,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
        )


@router.post(
    "/projects/{project_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationView,
    dependencies=WRITES,
    summary="Invite someone by email address (owners)",
    description=_SAME_ANSWER,
)
async def invite(
    project_id: ProjectId,
    body: InvitationCreate,
    user: CurrentUser,
    request: Request,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def produce() -> dict[str, object]:
        invitation = invitations.invite(user, project_id, body.email, body.role)
        return InvitationView.of(invitation).model_dump(mode="json")

    view = run_once(request, settings, user.subject, idempotency_key, body.model_dump(mode="json"), produce)
    return JSONResponse(view, status_code=status.HTTP_201_CREATED)


@router.get(
    "/projects/{project_id}/invitations",
    response_model=Page[InvitationView],
    dependencies=READS,
    summary="Pending invitations of a project (owners)",
)
async def list_project_invitations(project_id: ProjectId, user: CurrentUser) -> Page[InvitationView]:
    items = invitations.project_invitations(user, project_id)
    return Page[InvitationView](items=[InvitationView.of(item) for item in items])


@router.delete(
    "/projects/{project_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITES,
    summary="Revoke an invitation (owners)",
)
async def revoke_invitation(
    project_id: ProjectId, invitation_id: InvitationId, user: CurrentUser
) -> Response:
    invitations.revoke_invitation(user, project_id, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me/invitations",
    response_model=Page[InvitationView],
    dependencies=READS,
    summary="Invitations to my verified email address",
    description="Empty while your address is not verified. Expired invitations are left out, which may "
    "shorten a page.",
)
async def my_invitations(
    user: CurrentUser,
    settings: AppSettings,
    cursors: Cursors,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Page[InvitationView]:
    binding = query_binding(request.url.path, user.subject)
    items, last_key = invitations.my_invitations(user, settings, limit, cursors.decode(cursor, binding))
    return Page[InvitationView](
        items=[InvitationView.of(item) for item in items], next_cursor=cursors.encode(last_key, binding)
    )


@router.post(
    "/invitations/{invitation_id}/accept",
    response_model=MyProject,
    dependencies=WRITES,
    summary="Accept an invitation and join its project",
    description="Only while signed in with the invited address, verified; 404 otherwise.",
)
async def accept_invitation(
    invitation_id: InvitationId,
    user: CurrentUser,
    settings: AppSettings,
    request: Request,
    response: Response,
) -> MyProject:
    membership = invitations.accept(user, settings, invitation_id)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/projects/{membership.project_id}"
    return MyProject.of(membership)


@router.delete(
    "/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITES,
    summary="Decline an invitation",
)
async def decline_invitation(
    invitation_id: InvitationId, user: CurrentUser, settings: AppSettings
) -> Response:
    invitations.decline(user, settings, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
