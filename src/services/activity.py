"""What a project's activity feed says: the entries one table change makes (read from a stream record's old
and new images by the stream consumer, never on the request path), and reading the feed (members only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UTCDateTimeAttribute

from models import activity

if TYPE_CHECKING:
    from auth import Principal

# Fields whose values an entry shows; a description may be long, so an entry only says it changed.
_TASK_FIELDS = ("title", "status", "priority", "assignee", "due_date", "tags", "description")
_VALUELESS = frozenset({"description"})
_MOMENT = UTCDateTimeAttribute()


@dataclass(frozen=True)
class TableChange:
    """One stream record: INSERT, MODIFY or REMOVE of an item, with its images as Powertools reads them."""

    event_id: str
    event: str
    old: dict[str, Any]
    new: dict[str, Any]

    @property
    def item_type(self) -> str | None:
        value = (self.new or self.old).get("type")
        return value if isinstance(value, str) else None


@dataclass
class _Draft:
    action: str
    actor: str | None
    at: datetime
    task_id: str | None = None
    task_title: str | None = None
    member: str | None = None
    changes: list[activity.Change] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """An image's value as JSON: numbers as ints, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, (set, frozenset)):
        return sorted(str(item) for item in value)
    return value


def _change(name: str, before: Any, after: Any) -> activity.Change:
    if name in _VALUELESS:
        return activity.Change(field=name)  # type: ignore[no-untyped-call]
    return activity.Change(field=name, before=_plain(before), after=_plain(after))  # type: ignore[no-untyped-call]


def _moment(image: dict[str, Any], name: str) -> datetime:
    moment: datetime = _MOMENT.deserialize(image[name])  # type: ignore[no-untyped-call]
    return moment


def _roles(image: dict[str, Any]) -> dict[str, str]:
    roles = image.get("roles")
    return {str(k): str(v) for k, v in roles.items()} if isinstance(roles, dict) else {}


def _actor(image: dict[str, Any], name: str = "updated_by") -> str | None:
    value = image.get(name)
    return value if isinstance(value, str) else None


def _project_drafts(change: TableChange) -> list[_Draft]:
    old, new = change.old, change.new
    if change.event == "INSERT":
        return [
            _Draft(
                "project.created",
                _actor(new, "created_by"),
                _moment(new, "created_at"),
                changes=[_change("name", None, new.get("name"))],
            )
        ]
    if change.event != "MODIFY":
        return []
    actor, at = _actor(new), _moment(new, "updated_at")
    drafts: list[_Draft] = []
    if old.get("name") != new.get("name"):
        drafts.append(
            _Draft("project.renamed", actor, at, changes=[_change("name", old.get("name"), new.get("name"))])
        )
    if bool(old.get("archived")) != bool(new.get("archived")):
        action = "project.archived" if new.get("archived") else "project.unarchived"
        drafts.append(
            _Draft(
                action,
                actor,
                at,
                changes=[_change("archived", bool(old.get("archived")), bool(new.get("archived")))],
            )
        )
    if (old.get("description") or "") != (new.get("description") or ""):
        drafts.append(_Draft("project.updated", actor, at, changes=[_change("description", None, None)]))
    before, after = _roles(old), _roles(new)
    for subject in sorted(before.keys() | after.keys()):
        was, now = before.get(subject), after.get(subject)
        if was == now:
            continue
        action = "member.added" if was is None else "member.removed" if now is None else "member.role_changed"
        drafts.append(_Draft(action, actor, at, member=subject, changes=[_change("role", was, now)]))
    return drafts


def _task_drafts(change: TableChange) -> list[_Draft]:
    old, new = change.old, change.new
    if change.event == "INSERT":
        return [
            _Draft(
                "task.created",
                _actor(new, "created_by"),
                _moment(new, "created_at"),
                task_id=new.get("task_id"),
                task_title=new.get("title"),
            )
        ]
    if change.event != "MODIFY":
        return []
    changes = [
        _change(name, old.get(name), new.get(name))
        for name in _TASK_FIELDS
        if _plain(old.get(name)) != _plain(new.get(name))
    ]
    if not changes:
        return []
    return [
        _Draft(
            "task.updated",
            _actor(new),
            _moment(new, "updated_at"),
            task_id=new.get("task_id"),
            task_title=new.get("title"),
            changes=changes,
        )
    ]


def _deletion_drafts(change: TableChange) -> list[_Draft]:
    new = change.new
    if change.event != "INSERT":
        return []
    return [
        _Draft(
            "task.deleted",
            _actor(new, "deleted_by"),
            _moment(new, "deleted_at"),
            task_id=new.get("task_id"),
            task_title=new.get("title"),
        )
    ]


_DESCRIBERS = {"Project": _project_drafts, "Task": _task_drafts, "TaskDeletion": _deletion_drafts}


def entries_of(change: TableChange, retention: timedelta) -> tuple[str, list[activity.Activity]]:
    """The project a change belongs to and the feed entries it makes (none for what the feed does not
    show: memberships, checkpoints, the feed itself, a purge's deletions)."""
    describe = _DESCRIBERS.get(change.item_type or "")
    image = change.new or change.old
    project_id = image.get("project_id")
    if describe is None or not isinstance(project_id, str):
        return "", []
    entries = [
        activity.Activity(
            image["pk"],
            activity.entry_sort_key(draft.at, change.event_id, index),
            project_id=project_id,
            action=draft.action,
            actor=draft.actor,
            at=draft.at,
            task_id=draft.task_id,
            task_title=draft.task_title,
            member=draft.member,
            changes=draft.changes,
            expires_at=draft.at + retention,
        )
        for index, draft in enumerate(describe(change))
    ]
    return project_id, entries


def record_change(change: TableChange, retention: timedelta) -> bool:
    """Writes the entries of one change (one transaction, none when it makes none). False when nothing was
    written: it makes no entry, the project is gone, or this record was written before (a redelivery)."""
    project_id, entries = entries_of(change, retention)
    return activity.record(project_id, entries) if entries else False


def project_activity(
    principal: Principal, project_id: str, retention_days: int, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[activity.Activity], dict[str, Any] | None]:
    """GetItem (members only: 404 otherwise) + one Query per page, newest first; entries past the
    retention are not read (the table's TTL removes them lazily)."""
    # Imported here: the stream consumer imports this module for entries_of and never needs the API's
    # authorization (and its imports: Cognito, the error types).
    from services.projects import visible_project

    visible_project(principal, project_id)
    since = datetime.now(UTC) - timedelta(days=retention_days)
    return activity.list_activity(project_id, since, limit, start_key)
