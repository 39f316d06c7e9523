"""Invitations: an owner invites an email address; the person who signs in with that address, verified,
accepts and joins. Nobody learns from an invitation whether an address has an account, and an address
someone merely claims (unverified) never brings them in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import models
from auth import Principal
from errors import Conflict, Forbidden, NotFound
from services.accounts import live_directory_entry
from services.projects import Role, visible_project
from settings import Settings

_NO_SUCH_INVITATION = "No such invitation."


def invite(principal: Principal, project_id: str, email: str, role: Role) -> models.invitation.Invitation:
    """Owners invite. The directory is not asked: the answer is the same for every address, known or not.
    An address already invited to the project gets the pending invitation back. One GetItem, one Query
    (the project's pending invitations, bounded) and one transaction."""
    project = visible_project(principal, project_id)
    if project.role_of(principal.subject) != "owner":
        raise Forbidden("Only the project's owners invite people.")
    now = datetime.now(UTC)
    pending = models.invitation.pending_invitations(project_id, now)
    for invitation in pending:
        if invitation.addressed_to(email):
            return invitation
    if len(pending) >= models.invitation.MAX_PENDING:
        raise Conflict(
            f"The project has {models.invitation.MAX_PENDING} pending invitations: revoke some or wait for "
            "them to be accepted or to expire."
        )
    try:
        return models.invitation.put_invitation(project, email, role, principal.subject)
    except models.table.ConditionNotMet:
        raise Forbidden("Only the project's owners invite people.") from None


def project_invitations(principal: Principal, project_id: str) -> list[models.invitation.Invitation]:
    """Owners see the pending invitations (at most MAX_PENDING), newest first."""
    project = visible_project(principal, project_id)
    if project.role_of(principal.subject) != "owner":
        raise Forbidden("Only the project's owners see its invitations.")
    pending = models.invitation.pending_invitations(project_id, datetime.now(UTC))
    return sorted(pending, key=lambda invitation: invitation.created_at, reverse=True)


def revoke_invitation(principal: Principal, project_id: str, invitation_id: str) -> None:
    project = visible_project(principal, project_id)
    if project.role_of(principal.subject) != "owner":
        raise Forbidden("Only the project's owners revoke invitations.")
    invitation = _invitation(invitation_id)
    if invitation is None or invitation.project_id != project_id:
        raise NotFound(_NO_SUCH_INVITATION)
    models.invitation.delete_invitation(invitation)


def _invitation(invitation_id: str) -> models.invitation.Invitation | None:
    key = models.invitation.split_invitation_id(invitation_id)
    if key is None:
        return None
    invitation = models.invitation.get_invitation(*key)
    return invitation if invitation is not None and invitation.is_pending(datetime.now(UTC)) else None


def _verified_email(principal: Principal, settings: Settings) -> str | None:
    """The caller's address as the directory has it now, if they verified it (one Cognito call)."""
    if principal.auth_method != "jwt" or principal.username is None:
        raise Forbidden("Invitations are for people signed in with their own account.")
    return live_directory_entry(principal, settings).verified_email


def my_invitations(
    principal: Principal, settings: Settings, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[models.invitation.Invitation], dict[str, Any] | None]:
    """Pending invitations to the caller's verified address, newest first; none without one. One Cognito
    call and one Query."""
    email = _verified_email(principal, settings)
    if email is None:
        return [], None
    items, last_key = models.invitation.list_invitations_for(email, limit, start_key)
    now = datetime.now(UTC)
    return [item for item in items if item.is_pending(now) and item.addressed_to(email)], last_key


def _addressed_invitation(
    principal: Principal, settings: Settings, invitation_id: str
) -> models.invitation.Invitation:
    """The pending invitation if it is addressed to the caller's verified address; 404 otherwise, the same
    answer as for no invitation at all."""
    email = _verified_email(principal, settings)
    invitation = _invitation(invitation_id)
    if email is None or invitation is None or not invitation.addressed_to(email):
        raise NotFound(_NO_SUCH_INVITATION)
    return invitation


def accept(principal: Principal, settings: Settings, invitation_id: str) -> models.project.Membership:
    """One Cognito call, two GetItems (invitation, project) and one transaction."""
    invitation = _addressed_invitation(principal, settings, invitation_id)
    project = models.project.get_project(invitation.project_id)
    if project is None or project.role_of(invitation.invited_by) != "owner":
        # The project is gone, or whoever invited may no longer bring people in.
        models.invitation.delete_invitation(invitation)
        raise NotFound(_NO_SUCH_INVITATION)
    if project.role_of(principal.subject) is not None:
        models.invitation.delete_invitation(invitation)
        raise Conflict("You are already a member of this project.")
    if len(project.role_map()) >= models.project.MAX_MEMBERS:
        raise Conflict(f"The project has {models.project.MAX_MEMBERS} members, the most allowed.")
    try:
        return models.invitation.accept_invitation(invitation, principal.subject, project)
    except models.table.ConditionNotMet:
        raise Conflict("The project or the invitation changed meanwhile; try again.") from None


def decline(principal: Principal, settings: Settings, invitation_id: str) -> None:
    invitation = _addressed_invitation(principal, settings, invitation_id)
    models.invitation.delete_invitation(invitation)
