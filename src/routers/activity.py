"""A project's activity feed: who did what and when, newest first (written by the stream consumer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from auth import CurrentUser
from dependencies import AppSettings, Cursors
from pagination import Page, PageCursor, PageLimit, query_binding
from routers.common import READS, Timestamp
from routers.fields import ProjectId
from services import activity

if TYPE_CHECKING:
    from models.activity import Activity

router = APIRouter(tags=["activity"])

Action = Literal[
    "project.created",
    "project.renamed",
    "project.archived",
    "project.unarchived",
    "project.updated",
    "member.added",
    "member.removed",
    "member.role_changed",
    "task.created",
    "task.updated",
    "task.deleted",
]
FieldValue = str | int | bool | list[str] | None


class FieldChange(BaseModel):
    """One field of a change. `from` and `to` are absent for fields shown without values (description)."""

    model_config = ConfigDict(populate_by_name=True)

    field: str = Field(examples=["status"])
    from_: FieldValue = Field(default=None, alias="from", examples=["todo"])
    to: FieldValue = Field(default=None, examples=["doing"])


class ActivityEntry(BaseModel):
    id: str
    at: Timestamp
    actor: str | None = Field(
        description="The subject who made the change; null: Stratus itself (a removed "
        "member's tasks unassigned)"
    )
    action: Action
    task_id: str | None = None
    task_title: str | None = None
    member: str | None = Field(default=None, description="The member a member.* entry is about")
    changes: list[FieldChange] = Field(default_factory=list)

    @classmethod
    def of(cls, entry: Activity) -> ActivityEntry:
        changes: list[Any] = list(entry.changes or [])
        return cls(
            id=entry.entry_id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            task_id=entry.task_id,
            task_title=entry.task_title,
            member=entry.member,
            changes=[FieldChange(field=c.field, from_=c.before, to=c.after) for c in changes],
        )


@router.get(
    "/projects/{project_id}/activity",
    response_model=Page[ActivityEntry],
    dependencies=READS,
    summary="What happened in a project, newest first",
    description="Members only. Entries appear within seconds of a change and are kept for the deployment's "
    "retention (ActivityRetentionDays).",
)
async def list_activity(
    project_id: ProjectId,
    user: CurrentUser,
    cursors: Cursors,
    settings: AppSettings,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Page[ActivityEntry]:
    binding = query_binding(request.url.path, user.subject)
    items, last_key = activity.project_activity(
        user, project_id, settings.activity_retention_days, limit, cursors.decode(cursor, binding)
    )
    return Page[ActivityEntry](
        items=[ActivityEntry.of(entry) for entry in items], next_cursor=cursors.encode(last_key, binding)
    )
