"""Tasks live in their project's partition (pk=PROJECT#<pid>, sk=TASK#<tid>); gsi1 indexes them by
assignee and due date, gsi2 by due date inside the project. Index keys depend on one field each, so
concurrent updates of different fields never leave an index entry inconsistent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from models.project import WRITER_ROLES, Project, equals, project_key, role_path
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


def update_task(project_id: str, suffix: str, changes: dict[str, Any], expected_version: int | None) -> Task:
    """One UpdateItem of the changed attributes, returning the new item (ALL_NEW). Raises ConditionNotMet
    when the task is gone or its version differs from `expected_version`.

    The caller's role was read just before from the project item. A transaction with a ConditionCheck on
    the project would close the one-round-trip window in which a just-removed member could still write,
    at the price of doubled write capacity and a second read for the answer (TransactWriteItems returns no
    item). A write admitted in that window is indistinguishable from one that arrived just before the
    removal, so the single UpdateItem is the better trade.
    """
    actions: list[Action] = [Task.updated_at.set(datetime.now(UTC)), Task.version.add(1)]
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


def delete_task(project_id: str, suffix: str, expected_version: int | None) -> None:
    """One DeleteItem, conditional on the task existing at the expected version."""
    try:
        Task(project_key(project_id), task_sort_key(suffix)).delete(condition=_exists_at(expected_version))
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise ConditionNotMet from None
        raise


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


def unassign_in_project(project_id: str, subject: str, *, from_partition: bool = False) -> None:
    """Clears `subject` as assignee of the project's tasks (after they leave the project).

    The API finds the tasks on the member's own index (gsi1: their assignments only). The stream consumer
    reads the project's partition instead: its role may query the table but none of its indexes.
    """
    tasks = (
        Task.query(
            project_key(project_id),
            Task.sk.startswith("TASK#"),
            filter_condition=equals(Task.assignee, subject),
        )
        if from_partition
        else Task.gsi1.query(assignee_key(subject), filter_condition=equals(Task.project_id, project_id))
    )
    for task in tasks:
        if not isinstance(task, Task):
            continue
        try:
            Task(task.pk, task.sk).update(
                actions=[Task.assignee.remove(), Task.gsi1pk.remove(), Task.version.add(1)],
                condition=equals(Task.assignee, subject),
            )
        except UpdateError as error:
            # Reassigned or deleted meanwhile: nothing left to clear.
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
