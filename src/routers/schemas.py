"""Request and response bodies of the projects and tasks API."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from routers.common import Timestamp
from routers.fields import DueDate, MultiLine, OneLine, SubjectId, Tag

if TYPE_CHECKING:
    from models.project import Membership, Project
    from models.task import Task

Role = Literal["owner", "editor", "viewer"]
Status = Literal["todo", "doing", "done"]
Priority = Literal["low", "medium", "high", "urgent"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProjectCreate(Strict):
    name: OneLine = Field(min_length=1, max_length=100)
    description: MultiLine = Field(default="", max_length=2000)


class ProjectPatch(Strict):
    name: OneLine | None = Field(default=None, min_length=1, max_length=100)
    description: MultiLine | None = Field(default=None, max_length=2000)
    archived: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ProjectPatch:
        if not self.model_fields_set:
            raise ValueError("send at least one of name, description, archived")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ProjectView(BaseModel):
    id: str
    name: str
    description: str
    archived: bool
    my_role: Role
    members: int
    created_by: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, project: Project, viewer: str) -> ProjectView:
        roles = project.role_map()
        return cls(
            id=project.project_id,
            name=project.name,
            description=project.description or "",
            archived=bool(project.archived),
            my_role=roles[viewer],
            members=len(roles),
            created_by=project.created_by,
            created_at=project.created_at,
            updated_at=project.updated_at,
            version=int(project.version),
        )


class MyProject(BaseModel):
    id: str
    name: str
    archived: bool
    my_role: Role
    joined_at: Timestamp

    @classmethod
    def of(cls, membership: Membership) -> MyProject:
        return cls(
            id=membership.project_id,
            name=membership.project_name,
            archived=bool(membership.archived),
            my_role=membership.role,
            joined_at=membership.joined_at,
        )


class MemberAdd(Strict):
    subject: SubjectId = Field(
        description="The user's subject. To bring in someone by email address, invite them "
        "(`POST /projects/{project_id}/invitations`): they join once they accept with that verified address."
    )
    role: Role = "viewer"


class MemberRole(Strict):
    role: Role


class Member(BaseModel):
    subject: str
    role: Role
    joined_at: Timestamp

    @classmethod
    def of(cls, membership: Membership) -> Member:
        return cls(subject=membership.subject, role=membership.role, joined_at=membership.joined_at)


def _distinct_tags(tags: list[str] | None) -> list[str] | None:
    return None if tags is None else sorted(set(tags))


def _lower_tags(tags: object) -> object:
    # Tags compare case-insensitively: "Launch" is the tag "launch".
    if isinstance(tags, list):
        return [tag.strip().lower() if isinstance(tag, str) else tag for tag in tags]
    return tags


class TaskCreate(Strict):
    title: OneLine = Field(min_length=1, max_length=200)
    description: MultiLine = Field(default="", max_length=5000)
    status: Status = "todo"
    priority: Priority = "medium"
    assignee: SubjectId | None = None
    due_date: DueDate | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=10)

    _lower = field_validator("tags", mode="before")(lambda cls, value: _lower_tags(value))
    _tags = field_validator("tags")(lambda cls, value: _distinct_tags(value) or [])


class TaskPatch(Strict):
    title: OneLine | None = Field(default=None, min_length=1, max_length=200)
    description: MultiLine | None = Field(default=None, max_length=5000)
    status: Status | None = None
    priority: Priority | None = None
    assignee: SubjectId | None = Field(default=None, description="null to unassign")
    due_date: DueDate | None = Field(default=None, description="null to clear")
    tags: list[Tag] | None = Field(
        default=None, max_length=10, description="replaces the tags; [] or null clears"
    )

    _lower = field_validator("tags", mode="before")(lambda cls, value: _lower_tags(value))
    _tags = field_validator("tags")(lambda cls, value: _distinct_tags(value))

    @model_validator(mode="after")
    def _something_to_change(self) -> TaskPatch:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for name in self.model_fields_set - {"assignee", "due_date", "tags"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TaskView(BaseModel):
    id: str
    project_id: str
    title: str
    description: str
    status: Status
    priority: Priority
    assignee: str | None
    due_date: date | None
    tags: list[str]
    created_by: str
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls(
            id=task.task_id,
            project_id=task.project_id,
            title=task.title,
            description=task.description or "",
            status=task.status,
            priority=task.priority,
            assignee=task.assignee,
            due_date=date.fromisoformat(task.due_date) if task.due_date else None,
            tags=task.tag_list(),
            created_by=task.created_by,
            created_at=task.created_at,
            updated_at=task.updated_at,
            version=int(task.version),
        )
