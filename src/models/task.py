"""Tasks live in their project's partition (pk=PROJECT#<pid>, sk=TASK#<tid>); gsi1 indexes them by
assignee and due date, gsi2 by due date inside the project. Index keys depend on one field each, so
concurrent updates of different fields never leave an index entry inconsistent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from models.project import WRITER_ROLES, Project, equals, project_key, refused_items, role_path
from models.table import (
    INDEX_KEYS,
    TABLE_KEYS,
    ConditionNotMet,
    StratusItem,
    bounded_page,
    page_size,
    raise_refusal,
)

NO_DUE_DATE = "9999-12-31"
TOMBSTONE_LIFETIME = timedelta(days=1)
# The unassignment after a member leaves: tasks per transaction (with the project's check, 26 items), and
# tasks looked at per Query page of the consumer's rounds.
UNASSIGN_BATCH = 25
UNASSIGN_PAGE = 200


def task_sort_key(task_suffix: str) -> str:
    return f"TASK#{task_suffix}"


def assignee_key(subject: str) -> str:
    return f"USER#{subject}#TASKS"


def due_key(project_id: str) -> str:
    return f"PROJECT#{project_id}#DUE"


def split_task_id(task_id: str) -> tuple[str, str] | None:
    project_id, dot, suffix = task_id.partition(".")
    return (project_id, suffix) if dot and project_id and suffix else None


class Task(StratusItem, discriminator="Task"):
    task_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    priority = UnicodeAttribute()
    assignee = UnicodeAttribute(null=True)
    due_date = UnicodeAttribute(null=True)
    tags = UnicodeSetAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # Who made the last change (absent: Stratus itself, e.g. the unassignment after a member left).
    updated_by = UnicodeAttribute(null=True)
    version = NumberAttribute()

    def tag_list(self) -> list[str]:
        return sorted(self.tags or ())


def _due(value: date | None) -> str:
    return value.isoformat() if value else NO_DUE_DATE


def create_task(project_id: str, actor: str, fields: dict[str, Any]) -> Task:
    """One transaction: the project allows the actor to write (and the assignee is a member, and the
    project is not archived), and the task is put without overwriting."""
    from models.ids import new_id

    suffix = new_id()
    now = datetime.now(UTC)
    due: date | None = fields.get("due_date")
    assignee: str | None = fields.get("assignee")
    task = Task(
        project_key(project_id),
        task_sort_key(suffix),
        task_id=f"{project_id}.{suffix}",
        project_id=project_id,
        title=fields["title"],
        description=fields.get("description", ""),
        status=fields.get("status", "todo"),
        priority=fields.get("priority", "medium"),
        assignee=assignee,
        due_date=due.isoformat() if due else None,
        tags=set(fields.get("tags") or ()) or None,
        created_by=actor,
        created_at=now,
        updated_at=now,
        version=1,
        gsi1pk=assignee_key(assignee) if assignee else None,
        gsi1sk=f"{_due(due)}#{project_id}.{suffix}",
        gsi2pk=due_key(project_id),
        gsi2sk=f"{_due(due)}#{suffix}",
    )
    condition = _writer_check(actor, assignee) & equals(Project.archived, False)
    _commit(
        lambda transaction: transaction.save(task, condition=Task.pk.does_not_exist()), project_id, condition
    )
    return task


def get_task_with_project(project_id: str, suffix: str) -> tuple[Task | None, Project | None]:
    """One BatchGetItem: the task and the project whose roles decide who may see it."""
    task: Task | None = None
    project: Project | None = None
    keys = [(project_key(project_id), task_sort_key(suffix)), (project_key(project_id), "PROJECT")]
    for item in StratusItem.batch_get(keys, consistent_read=True):
        if isinstance(item, Task):
            task = item
        elif isinstance(item, Project):
            project = item
    return task, project


def _writer_check(actor: str, assignee: str | None = None) -> Condition:
    """The project allows `actor` to write (and `assignee`, when given, is a member)."""
    condition: Condition = role_path(actor).is_in(*WRITER_ROLES)
    if assignee:
        condition &= role_path(assignee).exists()
    return condition


def _commit(write: Callable[[TransactWrite], None], project_id: str, condition: Condition) -> None:
    """One transaction: the project's roles allow it, and the task write (with its own condition)."""
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.condition_check(Project, project_key(project_id), "PROJECT", condition=condition)
            write(transaction)
    except TransactWriteError as error:
        raise_refusal(error)


def update_task(
    project_id: str, suffix: str, changes: dict[str, Any], expected_version: int | None, actor: str
) -> Task:
    """One UpdateItem of the changed attributes, returning the new item (ALL_NEW). Raises ConditionNotMet
    when the task is gone or its version differs from `expected_version`.

    The caller's role was read just before from the project item. A transaction with a ConditionCheck on
    the project would close the one-round-trip window in which a just-removed member could still write,
    at the price of doubled write capacity and a second read for the answer (TransactWriteItems returns no
    item). A write admitted in that window is indistinguishable from one that arrived just before the
    removal, so the single UpdateItem is the better trade.
    """
    actions: list[Action] = [
        Task.updated_at.set(datetime.now(UTC)),
        Task.updated_by.set(actor),
        Task.version.add(1),
    ]
    task_id = f"{project_id}.{suffix}"
    for name, value in changes.items():
        if name == "due_date":
            actions.append(Task.due_date.set(value.isoformat()) if value else Task.due_date.remove())
            actions.append(Task.gsi1sk.set(f"{_due(value)}#{task_id}"))
            actions.append(Task.gsi2sk.set(f"{_due(value)}#{suffix}"))
        elif name == "assignee":
            actions.append(Task.assignee.set(value) if value else Task.assignee.remove())
            actions.append(Task.gsi1pk.set(assignee_key(value)) if value else Task.gsi1pk.remove())
        elif name == "tags":
            actions.append(Task.tags.set(set(value)) if value else Task.tags.remove())
        else:
            actions.append(getattr(Task, name).set(value))
    task = Task(project_key(project_id), task_sort_key(suffix))
    try:
        task.update(actions=actions, condition=_exists_at(expected_version))
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise ConditionNotMet from None
        raise
    return task


class TaskDeletion(StratusItem, discriminator="TaskDeletion"):
    """pk=PROJECT#<pid>, sk=DELETED#<tid>: who deleted a task, written with the deletion (a REMOVE stream
    record names no caller). The stream consumer turns it into the activity entry; it expires after a day
    (the stream keeps records 24 hours)."""

    task_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    title = UnicodeAttribute()
    deleted_by = UnicodeAttribute()
    deleted_at = UTCDateTimeAttribute()


def delete_task(
    project_id: str, suffix: str, expected_version: int | None, *, actor: str, title: str
) -> None:
    """One transaction: the project still lets `actor` write and is not archived, the task deleted if it
    exists at the expected version, and its tombstone put. Raises ConditionNotMet when refused."""
    now = datetime.now(UTC)
    tombstone = TaskDeletion(
        project_key(project_id),
        f"DELETED#{suffix}",
        task_id=f"{project_id}.{suffix}",
        project_id=project_id,
        title=title,
        deleted_by=actor,
        deleted_at=now,
        expires_at=now + TOMBSTONE_LIFETIME,
    )
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.condition_check(
                Project,
                project_key(project_id),
                "PROJECT",
                condition=_writer_check(actor) & equals(Project.archived, False),
            )
            transaction.delete(
                Task(project_key(project_id), task_sort_key(suffix)), condition=_exists_at(expected_version)
            )
            transaction.save(tombstone)
    except TransactWriteError as error:
        raise_refusal(error)


def _exists_at(expected_version: int | None) -> Condition:
    condition: Condition = Task.pk.exists()
    if expected_version is not None:
        condition &= equals(Task.version, expected_version)
    return condition


def _filters(status: str | None, assignee: str | None, tag: str | None) -> Condition | None:
    condition: Condition | None = None
    for part in (
        equals(Task.status, status) if status else None,
        equals(Task.assignee, assignee) if assignee else None,
        Task.tags.contains(tag) if tag else None,
    ):
        if part is not None:
            condition = part if condition is None else condition & part
    return condition


def list_project_tasks(
    project_id: str,
    *,
    sort: str,
    status: str | None,
    assignee: str | None,
    tag: str | None,
    limit: int,
    start_key: dict[str, Any] | None,
) -> tuple[list[Task], dict[str, Any] | None]:
    """Query by creation (the table) or by due date (gsi2), filtered, until the page is full or the read
    reaches its bound (see bounded_page)."""
    filters = _filters(status, assignee, tag)
    common: dict[str, Any] = {
        "filter_condition": filters,
        "page_size": page_size(limit, filtered=filters is not None),
        "last_evaluated_key": start_key,
    }
    if sort == "due":
        by_due = Task.gsi2.query(due_key(project_id), **common)
        return bounded_page(by_due, Task, limit, INDEX_KEYS["gsi2"])
    by_creation = Task.query(project_key(project_id), Task.sk.startswith("TASK#"), **common)
    return bounded_page(by_creation, Task, limit, TABLE_KEYS)


def list_assigned_tasks(
    subject: str, status: str | None, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[Task], dict[str, Any] | None]:
    """The caller's tasks across projects, soonest due first (undated last); bounded like the project lists."""
    filters = _filters(status, None, None)
    results = Task.gsi1.query(
        assignee_key(subject),
        filter_condition=filters,
        page_size=page_size(limit, filtered=filters is not None),
        last_evaluated_key=start_key,
    )
    return bounded_page(results, Task, limit, INDEX_KEYS["gsi1"])


def _unassign(project_id: str, subject: str, keys: list[tuple[str, str]]) -> set[int] | None:
    """One transaction: clears `subject` as assignee of the tasks at `keys` (each still assigned to them),
    provided the project exists and `subject` is not (again) one of its members. Returns None when the
    project refused (member back, or project gone), else the indexes of the tasks that refused (reassigned
    or deleted meanwhile; nothing was written then). Raises whatever else DynamoDB answered."""
    now = datetime.now(UTC)
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.condition_check(
                Project,
                project_key(project_id),
                "PROJECT",
                condition=Project.pk.exists() & role_path(subject).does_not_exist(),
            )
            for pk, sk in keys:
                transaction.update(
                    Task(pk, sk),
                    actions=[
                        Task.assignee.remove(),
                        Task.gsi1pk.remove(),
                        Task.updated_at.set(now),
                        Task.updated_by.remove(),
                        Task.version.add(1),
                    ],
                    condition=equals(Task.assignee, subject),
                )
    except TransactWriteError as error:
        refused = refused_items(error, len(keys) + 1)
        if 0 in refused:
            return None
        return {index - 1 for index in refused}
    return set()


def _unassign_batch(project_id: str, subject: str, keys: list[tuple[str, str]]) -> bool:
    """Clears `subject` on up to UNASSIGN_BATCH tasks. A task that refuses is no longer theirs (reassigned
    or deleted meanwhile) and is left out of the next attempt; three attempts at most. False when the
    project refused (the member is back, or the project is gone)."""
    for _ in range(3):
        refused = _unassign(project_id, subject, keys)
        if refused is None:
            return False
        keys = [key for index, key in enumerate(keys) if index not in refused]
        if not refused or not keys:
            return True
    raise ConditionNotMet


def unassign_in_project(project_id: str, subject: str) -> None:
    """After `subject` left the project, clears them as assignee of the tasks found on the first page of
    their own assignments (gsi1, UNASSIGN_BATCH evaluated): one Query and one transaction at most, so the
    request stays bounded. The stream consumer clears the rest (see unassign_round)."""
    results = Task.gsi1.query(
        assignee_key(subject),
        filter_condition=equals(Task.project_id, project_id),
        page_size=UNASSIGN_BATCH,
    )
    page = next(results.page_iter)
    keys = [(raw["pk"]["S"], raw["sk"]["S"]) for raw in page.get("Items", ())]
    if keys:
        _unassign(project_id, subject, keys)


@dataclass(frozen=True)
class UnassignRound:
    cleared: int
    # Where the next round starts (DynamoDB's key of the last task looked at); None when finished.
    position: dict[str, Any] | None
    # The member is back, or the project is gone: nothing is left to do.
    stopped: bool = False


def unassign_round(
    project_id: str,
    subject: str,
    position: dict[str, Any] | None,
    *,
    max_pages: int,
    go_on: Callable[[], bool],
) -> UnassignRound:
    """Clears `subject` as assignee in the project's partition from `position` on (the stream consumer's
    role reads the table, no index): up to `max_pages` Query pages of UNASSIGN_PAGE tasks, one transaction
    per UNASSIGN_BATCH matches. Asks `go_on()` before every call and stops when it says no; the position
    returned then resumes exactly after the last task cleared."""
    cleared = 0
    results = Task.query(
        project_key(project_id),
        Task.sk.startswith("TASK#"),
        filter_condition=equals(Task.assignee, subject),
        attributes_to_get=["pk", "sk"],
        page_size=UNASSIGN_PAGE,
        last_evaluated_key=position,
    )
    pages = results.page_iter
    for _ in range(max_pages):
        if not go_on():
            return UnassignRound(cleared, position)
        page = next(pages)
        keys = [(raw["pk"]["S"], raw["sk"]["S"]) for raw in page.get("Items", ())]
        for start in range(0, len(keys), UNASSIGN_BATCH):
            batch = keys[start : start + UNASSIGN_BATCH]
            if not go_on():
                return UnassignRound(cleared, position)
            if not _unassign_batch(project_id, subject, batch):
                return UnassignRound(cleared, None, stopped=True)
            cleared += len(batch)
            position = {"pk": {"S": batch[-1][0]}, "sk": {"S": batch[-1][1]}}
        position = pages.last_evaluated_key
        if position is None:
            return UnassignRound(cleared, None)
    return UnassignRound(cleared, position)
