"""Tasks: members read, owners and editors write, assignees must be members; 404 for everyone else."""

from __future__ import annotations

from typing import Any

import models
from auth import Principal
from errors import Conflict, Forbidden, NotFound, PreconditionFailed, UnprocessableContent
from services.projects import visible_project

_NOT_FOUND = "No such task."
_ARCHIVED = "The project is archived: its tasks are read-only until it is unarchived."


def _task_key(task_id: str) -> tuple[str, str]:
    key = models.task.split_task_id(task_id)
    if key is None:
        raise NotFound(_NOT_FOUND)
    return key


def _explain_refusal(
    principal: Principal, project_id: str, suffix: str, expected: int | None, assignee: str | None = None
) -> Exception:
    """A task write was refused: read once (task and project together) to say why."""
    task, project = models.task.get_task_with_project(project_id, suffix)
    role = project.role_of(principal.subject) if project else None
    if task is None or project is None or role is None:
        return NotFound(_NOT_FOUND)
    if role not in models.project.WRITER_ROLES:
        return Forbidden("Viewers cannot change tasks.")
    if project.archived:
        return Conflict(_ARCHIVED)
    if assignee and project.role_of(assignee) is None:
        return UnprocessableContent("The assignee must be a member of the project.")
    if expected is not None and task.version != expected:
        return PreconditionFailed("The task changed since you read it; fetch it again.")
    return Conflict("The task changed concurrently; try again.")


def create_task(principal: Principal, project_id: str, fields: dict[str, Any]) -> models.task.Task:
    try:
        return models.task.create_task(project_id, principal.subject, fields)
    except models.table.ConditionNotMet:
        pass
    # The transaction was refused: read once to say why.
    project = models.project.get_project(project_id)
    role = project.role_of(principal.subject) if project else None
    if project is None or role is None:
        raise NotFound("No such project.")
    if role not in models.project.WRITER_ROLES:
        raise Forbidden("Viewers cannot change tasks.")
    if project.archived:
        raise Conflict(_ARCHIVED)
    if fields.get("assignee") and project.role_of(fields["assignee"]) is None:
        raise UnprocessableContent("The assignee must be a member of the project.")
    raise Conflict("The project changed concurrently; try again.")


def get_task(principal: Principal, task_id: str) -> models.task.Task:
    """One BatchGetItem: the task and its project's roles."""
    project_id, suffix = _task_key(task_id)
    task, project = models.task.get_task_with_project(project_id, suffix)
    if task is None or project is None or project.role_of(principal.subject) is None:
        raise NotFound(_NOT_FOUND)
    return task


def _writable(principal: Principal, project_id: str, assignee: str | None = None) -> None:
    """One consistent GetItem of the project: the caller writes here, the project is not archived (and
    the assignee is a member)."""
    project = models.project.get_project(project_id)
    role = project.role_of(principal.subject) if project else None
    if project is None or role is None:
        raise NotFound(_NOT_FOUND)
    if role not in models.project.WRITER_ROLES:
        raise Forbidden("Viewers cannot change tasks.")
    if project.archived:
        raise Conflict(_ARCHIVED)
    if assignee and project.role_of(assignee) is None:
        raise UnprocessableContent("The assignee must be a member of the project.")


def change_task(
    principal: Principal, task_id: str, changes: dict[str, Any], expected: int | None
) -> models.task.Task:
    """GetItem of the project (authorization), then one conditional UpdateItem returning the new task."""
    project_id, suffix = _task_key(task_id)
    _writable(principal, project_id, changes.get("assignee"))
    try:
        return models.task.update_task(project_id, suffix, changes, expected, principal.subject)
    except models.table.ConditionNotMet:
        raise _explain_refusal(principal, project_id, suffix, expected) from None


def delete_task(principal: Principal, task_id: str, expected: int | None) -> None:
    """One BatchGetItem (the task, and its project for authorization), then one transaction: the
    conditional delete and its tombstone (who deleted it, for the activity feed)."""
    project_id, suffix = _task_key(task_id)
    task, project = models.task.get_task_with_project(project_id, suffix)
    role = project.role_of(principal.subject) if project else None
    writable = project is not None and not project.archived and role in models.project.WRITER_ROLES
    if task is not None and writable and expected in (None, task.version):
        try:
            models.task.delete_task(project_id, suffix, expected, actor=principal.subject, title=task.title)
        except models.table.ConditionNotMet:
            pass
        else:
            return
    raise _explain_refusal(principal, project_id, suffix, expected)


def project_tasks(
    principal: Principal,
    project_id: str,
    *,
    sort: str,
    status: str | None,
    assignee: str | None,
    tag: str | None,
    limit: int,
    start_key: dict[str, Any] | None,
) -> tuple[list[models.task.Task], dict[str, Any] | None]:
    visible_project(principal, project_id)
    return models.task.list_project_tasks(
        project_id, sort=sort, status=status, assignee=assignee, tag=tag, limit=limit, start_key=start_key
    )


def my_tasks(
    principal: Principal, status: str | None, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[models.task.Task], dict[str, Any] | None]:
    """One Query of the caller's assignments, then one BatchGetItem of the page's projects: a task whose
    project no longer counts the caller as a member is left out (its unassignment may still be pending,
    and a deleted project's tasks wait for the purge). Such a page may be short; its cursor still moves on."""
    tasks, last_key = models.task.list_assigned_tasks(principal.subject, status, limit, start_key)
    member_of = models.project.projects_with_member(principal.subject, {task.project_id for task in tasks})
    return [task for task in tasks if task.project_id in member_of], last_key
