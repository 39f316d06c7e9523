"""Tasks: members read, owners and editors write, assignees must be members; 404 for everyone else."""

from __future__ import annotations

from typing import Any

import models
from auth import Principal
from errors import Conflict, Forbidden, NotFound, PreconditionFailed, UnprocessableContent
from services.projects import visible_project

_NOT_FOUND = "No such task."


def _task_key(task_id: str) -> tuple[str, str]:
    key = models.task.split_task_id(task_id)
    if key is None:
        raise NotFound(_NOT_FOUND)
    return key


def _writable(
    project: models.project.Project | None, principal: Principal, not_found: str
) -> models.project.Project:
    role = project.role_of(principal.subject) if project else None
    if project is None or role is None:
        raise NotFound(not_found)
    if role not in models.project.WRITER_ROLES:
        raise Forbidden("Viewers cannot change tasks.")
    return project


def _explain_refusal(project_id: str, suffix: str, expected: int | None) -> Exception:
    """The task write was refused: gone (404) or changed since the caller read it (412)."""
    task, _ = models.task.get_task_with_project(project_id, suffix)
    if task is None:
        return NotFound(_NOT_FOUND)
    if expected is not None and task.version != expected:
        return PreconditionFailed("The task changed since you read it; fetch it again.")
    return Conflict("The task changed concurrently; try again.")


def create_task(principal: Principal, project_id: str, fields: dict[str, Any]) -> models.task.Task:
    try:
        return models.task.create_task(project_id, principal.subject, fields)
    except models.project.ConditionNotMet:
        pass
    # The transaction was refused: read once to say why.
    project = _writable(models.project.get_project(project_id), principal, "No such project.")
    if project.archived:
        raise Conflict("The project is archived: unarchive it to add tasks.")
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


def change_task(
    principal: Principal, task_id: str, changes: dict[str, Any], expected: int | None
) -> models.task.Task:
    project_id, suffix = _task_key(task_id)
    project = _writable(models.project.get_project(project_id), principal, _NOT_FOUND)
    assignee = changes.get("assignee")
    if assignee and project.role_of(assignee) is None:
        raise UnprocessableContent("The assignee must be a member of the project.")
    try:
        return models.task.update_task(project_id, suffix, changes, expected)
    except models.project.ConditionNotMet:
        raise _explain_refusal(project_id, suffix, expected) from None


def delete_task(principal: Principal, task_id: str, expected: int | None) -> None:
    project_id, suffix = _task_key(task_id)
    _writable(models.project.get_project(project_id), principal, _NOT_FOUND)
    try:
        models.task.delete_task(project_id, suffix, expected)
    except models.project.ConditionNotMet:
        raise _explain_refusal(project_id, suffix, expected) from None


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
    return models.task.list_assigned_tasks(principal.subject, status, limit, start_key)
