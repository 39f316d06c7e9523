"""Projects and their members: who may see and change what, and the invariants (members are unique, at
most 50 per project, the last owner stays). Outsiders get 404 for everything, so ids cannot be probed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

import directory
import models
from auth import Principal
from errors import Conflict, Forbidden, NotFound, PreconditionFailed, UnprocessableContent
from observability import logger, metrics
from settings import Settings

Role = Literal["owner", "editor", "viewer"]
_NOT_FOUND = "No such project."


def _hidden() -> NotFound:
    return NotFound(_NOT_FOUND)


def visible_project(principal: Principal, project_id: str) -> models.project.Project:
    """The project if the caller is a member; 404 otherwise (one GetItem)."""
    project = models.project.get_project(project_id)
    if project is None or project.role_of(principal.subject) is None:
        raise _hidden()
    return project


def _explain_refusal(principal: Principal, project_id: str, expected: int | None, needed: str) -> Exception:
    """A conditional write was refused: read once to say why (404, 403, 412 or 409)."""
    project = models.project.get_project(project_id)
    role = project.role_of(principal.subject) if project else None
    if project is None or role is None:
        return _hidden()
    if needed == "owner" and role != "owner":
        return Forbidden("Only the project's owners may do this.")
    if needed == "writer" and role not in models.project.WRITER_ROLES:
        return Forbidden("Viewers cannot change the project.")
    if needed == "writer" and project.archived:
        return Conflict("The project is archived: unarchive it (send archived: false) to change it.")
    if expected is not None and project.version != expected:
        return PreconditionFailed("The project changed since you read it; fetch it again.")
    return Conflict("The project changed concurrently; try again.")


def _follow_up(step: str, project_id: str, work: Callable[[], object]) -> None:
    """Runs what follows a committed write. Its failure must not turn that write into an error answer (a
    client would retry what already happened): it is logged and counted, and the stream consumer
    (src/stream.py) repeats the step from the project item's change record."""
    try:
        work()
    except models.table.DataStoreError:
        logger.warning(
            "a follow-up write failed; the stream consumer repeats it",
            step=step,
            project_id=project_id,
            exc_info=True,
        )
        metrics.add_metric(name="FollowUpsLeftToStream", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()


def create_project(principal: Principal, name: str, description: str) -> models.project.Project:
    return models.project.create_project(models.ids.new_id(), name, description, principal.subject)


def change_project(
    principal: Principal, project_id: str, changes: dict[str, Any], expected: int | None
) -> models.project.Project:
    try:
        project = models.project.update_project(project_id, principal.subject, changes, expected)
    except models.table.ConditionNotMet:
        raise _explain_refusal(principal, project_id, expected, "writer") from None
    if {"name", "archived"} & changes.keys():
        _follow_up("refresh memberships", project_id, lambda: models.project.refresh_memberships(project))
    return project


def delete_project(principal: Principal, project_id: str, expected: int | None) -> None:
    """GetItem (authorization, the members) + one transaction deleting the project and its memberships:
    unreachable at once, gone from every member's list. The stream consumer purges the rest of its
    partition (tasks, activity) in bounded rounds, however large. A refusal reads once more to say why."""
    project = visible_project(principal, project_id)
    if project.role_of(principal.subject) == "owner" and expected in (None, project.version):
        try:
            models.project.delete_project(project, principal.subject)
        except models.table.ConditionNotMet:
            pass
        else:
            return
    raise _explain_refusal(principal, project_id, expected, "owner")


def my_projects(
    principal: Principal, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[models.project.Membership], dict[str, Any] | None]:
    return models.project.list_my_projects(principal.subject, limit, start_key)


def project_members(
    principal: Principal, project_id: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[models.project.Membership], dict[str, Any] | None]:
    visible_project(principal, project_id)
    return models.project.list_members(project_id, limit, start_key)


def _existing_user(settings: Settings, subject: str) -> str:
    # By `sub`, not username: a federated user's username (Google_...) is not their tokens' subject.
    # People are added by subject only: an email address is not proof of identity until its owner has
    # verified it, so bringing someone in by address goes through an invitation they accept.
    if directory.find_user_by_subject(settings.cognito_user_pool_id, subject) is None:
        raise UnprocessableContent("No such user.")
    return subject


def _change_role(
    principal: Principal, project: models.project.Project, member: str, new_role: Role | None, *, adding: bool
) -> models.project.Membership | None:
    """Checks the rules against the project already read, then one transaction (see change_roles)."""
    actor_role = project.role_of(principal.subject)
    leaving = new_role is None and member == principal.subject
    if actor_role != "owner" and not leaving:
        raise Forbidden("Only the project's owners change its members.")
    current = project.role_of(member)
    if adding and current is not None:
        raise Conflict("That user is already a member.")
    if not adding and current is None:
        raise NotFound("No such member.")
    after = project.role_map()
    if new_role is None:
        after.pop(member, None)
    else:
        after[member] = new_role
    if "owner" not in after.values():
        raise Conflict("A project keeps at least one owner: promote someone else first.")
    if adding and len(after) > models.project.MAX_MEMBERS:
        raise Conflict(f"A project has at most {models.project.MAX_MEMBERS} members.")
    try:
        membership = models.project.change_roles(
            project.project_id,
            principal.subject,
            member,
            new_role=new_role,
            current_role=current,
            project=project,
        )
    except models.table.ConditionNotMet:
        raise Conflict("The members changed concurrently; fetch the project and try again.") from None
    if new_role is None:
        _follow_up(
            "unassign a removed member",
            project.project_id,
            lambda: models.task.unassign_in_project(project.project_id, member),
        )
    return membership


def _written(membership: models.project.Membership | None) -> models.project.Membership:
    if membership is None:
        raise Conflict("The members changed concurrently; fetch the project and try again.")
    return membership


def add_member(
    principal: Principal,
    settings: Settings,
    project_id: str,
    subject: str,
    role: Role,
) -> models.project.Membership:
    """GetItem (authorization) + the directory lookup + one transaction."""
    project = visible_project(principal, project_id)
    # The caller's right first: who is a user of this pool is not for non-owners to learn.
    if project.role_of(principal.subject) != "owner":
        raise Forbidden("Only the project's owners change its members.")
    member = _existing_user(settings, subject)
    return _written(_change_role(principal, project, member, role, adding=True))


def change_member_role(
    principal: Principal, project_id: str, member: str, role: Role
) -> models.project.Membership:
    """GetItem (authorization, current role) + one transaction + GetItem of the membership for the answer."""
    project = visible_project(principal, project_id)
    return _written(_change_role(principal, project, member, role, adding=False))


def remove_member(principal: Principal, project_id: str, member: str) -> None:
    """GetItem + one transaction, then up to 25 of the member's tasks in the project are unassigned (one
    Query, one transaction); the stream consumer unassigns the rest, however many."""
    project = visible_project(principal, project_id)
    _change_role(principal, project, member, None, adding=False)
