"""Projects and their memberships. The project item carries `roles` (subject → role), the source every
authorization decision reads; membership items index "my projects" and are written in the same
transactions as `roles`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from pynamodb.attributes import (
    BooleanAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection, TableConnection
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.operand import Path
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from models.table import (
    INDEX_KEYS,
    TABLE_KEYS,
    ConditionNotMet,
    StratusItem,
    bounded_page,
    page_size,
    plain_map,
    raise_refusal,
)

MAX_MEMBERS = 50
WRITER_ROLES = ("owner", "editor")
_PROJECT_SK = "PROJECT"
# A purge reads keys only: a page of 250 keys stays far below Query's 1 MB page limit.
_PURGE_PAGE = 250
_BATCH_WRITE_LIMIT = 25


def project_key(project_id: str) -> str:
    return f"PROJECT#{project_id}"


def member_key(subject: str) -> str:
    return f"MEMBER#{subject}"


def my_projects_key(subject: str) -> str:
    return f"USER#{subject}#PROJECTS"


class Project(StratusItem, discriminator="Project"):
    """pk=PROJECT#<pid>, sk=PROJECT."""

    project_id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    created_by = UnicodeAttribute()
    archived = BooleanAttribute(default=False)
    roles = MapAttribute[str, str]()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # Who made the last change: the stream consumer's activity feed names them (a stream record has no
    # caller of its own).
    updated_by = UnicodeAttribute(null=True)
    # Managed explicitly (not PynamoDB's VersionAttribute, which resets the version on keys-only updates).
    version = NumberAttribute()

    def role_of(self, subject: str) -> str | None:
        role = plain_map(self.roles).get(subject)
        return str(role) if role else None

    def role_map(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in plain_map(self.roles).items()}


class Membership(StratusItem, discriminator="Membership"):
    """pk=PROJECT#<pid>, sk=MEMBER#<sub>; gsi1: USER#<sub>#PROJECTS / <joined at>#<pid>."""

    project_id = UnicodeAttribute()
    subject = UnicodeAttribute()
    role = UnicodeAttribute()
    project_name = UnicodeAttribute()
    archived = BooleanAttribute(default=False)
    joined_at = UTCDateTimeAttribute()
    # The project version `project_name` and `archived` were copied from: a copy is only ever replaced by a
    # newer one, so a refresh that arrives late never brings back an older name.
    project_version = NumberAttribute(null=True)


def role_path(subject: str) -> Path:
    """`roles.<subject>` in a condition or update expression (PynamoDB's stubs type map items as values)."""
    return cast(Path, Project.roles[subject])


def equals(attribute: Any, value: Any) -> Condition:
    """`attribute = value` as a Condition (the stubs type `==` on attributes as bool)."""
    return cast(Condition, attribute == value)


def _connection() -> Connection:
    return StratusItem._get_connection().connection


def membership_item(project: Project, subject: str, role: str, now: datetime) -> Membership:
    return Membership(
        project_key(project.project_id),
        member_key(subject),
        project_id=project.project_id,
        subject=subject,
        role=role,
        project_name=project.name,
        archived=project.archived,
        joined_at=now,
        gsi1pk=my_projects_key(subject),
        # Fixed width, so that the sort key orders moments as strings (isoformat drops a zero fraction).
        gsi1sk=f"{now.isoformat(timespec='microseconds')}#{project.project_id}",
        project_version=project.version,
    )


def create_project(project_id: str, name: str, description: str, owner: str) -> Project:
    """The project and its owner's membership, both conditional on not existing, in one transaction.
    Raises ConditionNotMet (an id collision), or a 503 when DynamoDB cancels it under load."""
    now = datetime.now(UTC)
    project = Project(
        project_key(project_id),
        _PROJECT_SK,
        project_id=project_id,
        name=name,
        description=description,
        created_by=owner,
        archived=False,
        roles={owner: "owner"},
        created_at=now,
        updated_at=now,
        version=1,
    )
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.save(project, condition=Project.pk.does_not_exist())
            transaction.save(
                membership_item(project, owner, "owner", now), condition=Membership.pk.does_not_exist()
            )
    except TransactWriteError as error:
        raise_refusal(error)
    return project


def get_project(project_id: str) -> Project | None:
    """Strongly consistent: the ETag a client reads is the version its next conditional write will find."""
    try:
        item = Project.get(project_key(project_id), _PROJECT_SK, consistent_read=True)
    except Project.DoesNotExist:
        return None
    return item if isinstance(item, Project) else None


def update_project(
    project_id: str, actor: str, changes: dict[str, Any], expected_version: int | None
) -> Project:
    """One UpdateItem on the changed attributes, conditional on the actor being a writer (and on the version
    when given); returns the new item. Raises ConditionNotMet when refused."""
    project = Project(project_key(project_id), _PROJECT_SK)
    actions: list[Action] = [
        Project.updated_at.set(datetime.now(UTC)),
        Project.updated_by.set(actor),
        Project.version.add(1),
    ]
    actions += [getattr(Project, name).set(value) for name, value in changes.items()]
    condition: Condition = role_path(actor).is_in(*WRITER_ROLES)
    # An archived project is read-only until a change unarchives it (which may change other fields too).
    if changes.keys() - {"archived"} and changes.get("archived") is not False:
        condition &= equals(Project.archived, False)
    if expected_version is not None:
        condition &= equals(Project.version, expected_version)
    try:
        project.update(actions=actions, condition=condition)
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise ConditionNotMet from None
        raise
    return project


def refresh_memberships(project: Project, attempts: int = 3) -> None:
    """Copies the project's name and archived flag onto its membership items, each only if the copy there
    is older than this project version (one transaction; `attempts` at most).

    A membership whose copy is already as new (or gone) refuses its update and cancels the transaction;
    the next attempt leaves it out. Raises whatever else DynamoDB answered: the API logs it and the
    stream consumer repeats the refresh."""
    pending = list(project.role_map())
    version = int(project.version)
    for _ in range(attempts):
        if not pending:
            return
        try:
            _copy_summary(project, version, pending)
        except TransactWriteError as error:
            refused = refused_items(error, len(pending))
            pending = [subject for i, subject in enumerate(pending) if i not in refused]
        else:
            return


def _copy_summary(project: Project, version: int, subjects: list[str]) -> None:
    with TransactWrite(connection=_connection()) as transaction:
        for subject in subjects:
            transaction.update(
                Membership(project_key(project.project_id), member_key(subject)),
                actions=[
                    Membership.project_name.set(project.name),
                    Membership.archived.set(project.archived),
                    Membership.project_version.set(version),
                ],
                condition=_older_copy(version),
            )


def _older_copy(version: int) -> Condition:
    """The membership exists and holds a copy older than `version` (or one written before copies were
    versioned)."""
    older = cast(Condition, Membership.project_version < version)
    condition: Condition = Membership.pk.exists() & (Membership.project_version.does_not_exist() | older)
    return condition


def refused_items(error: TransactWriteError, count: int) -> set[int]:
    """The indexes of a cancelled transaction's items (of `count`) whose own condition failed. Raises the
    error when it was not such a refusal (throttling, a conflicting transaction): the caller's retry path
    handles those."""
    reasons = error.cancellation_reasons
    if error.cause_response_code != "TransactionCanceledException" or len(reasons) != count:
        raise error
    refused = {i for i, reason in enumerate(reasons) if reason and reason.code == "ConditionalCheckFailed"}
    if not refused:
        raise error
    return refused


def delete_project(project: Project, actor: str) -> None:
    """Deletes the project item and its memberships in one transaction (a project has at most
    MAX_MEMBERS), conditional on the actor owning it and the project still being the version read, so the
    memberships deleted are exactly its members. Everything else in its partition (tasks, activity) is
    left to the stream consumer's purge. Raises ConditionNotMet when refused."""
    condition: Condition = equals(role_path(actor), "owner") & equals(Project.version, project.version)
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.delete(Project(project_key(project.project_id), _PROJECT_SK), condition=condition)
            for subject in project.role_map():
                transaction.delete(Membership(project_key(project.project_id), member_key(subject)))
    except TransactWriteError as error:
        raise_refusal(error)


@dataclass(frozen=True)
class PurgeRound:
    deleted: int
    finished: bool


def purge_round(
    project_id: str, keep: frozenset[str], *, max_items: int, go_on: Callable[[], bool]
) -> PurgeRound:
    """Deletes up to `max_items` of what is left in a deleted project's partition, whatever its items are
    (tasks, activity, tombstones, checkpoints, items of types this code does not know), one
    BatchWriteItem per 25, except the items whose sort keys are in `keep` (the purge's own checkpoint).
    Asks `go_on()` before every BatchWriteItem and stops when it says no. `finished`: the partition held
    nothing more.

    Reads with the table's own connection: a query through the models would only see the item types
    this process has imported (PynamoDB filters on the discriminator). Idempotent: each round reads what
    is left, so a repeated round deletes nothing twice. Raises whatever DynamoDB answered."""
    table = StratusItem._get_connection()
    deleted = 0
    chunk: list[dict[str, Any]] = []

    def delete_chunk() -> bool:
        nonlocal deleted
        if not chunk:
            return True
        if not go_on():
            return False
        _delete_keys(table, chunk)
        deleted += len(chunk)
        chunk.clear()
        return True

    start: dict[str, Any] | None = None
    while True:
        page = table.query(
            project_key(project_id),
            attributes_to_get=["pk", "sk"],
            limit=_PURGE_PAGE,
            exclusive_start_key=start,
        )
        for key in page.get("Items", ()):
            if key["sk"]["S"] in keep:
                continue
            if deleted + len(chunk) == max_items:
                delete_chunk()
                return PurgeRound(deleted, finished=False)
            chunk.append(key)
            if len(chunk) == _BATCH_WRITE_LIMIT and not delete_chunk():
                return PurgeRound(deleted, finished=False)
        start = page.get("LastEvaluatedKey")
        if start is None:
            finished = delete_chunk()
            return PurgeRound(deleted, finished)


def _delete_keys(table: TableConnection, keys: list[dict[str, Any]]) -> None:
    """One BatchWriteItem, and one more for what DynamoDB left unprocessed (under load); raises when
    something is still left (the caller's round is repeated later)."""
    for _ in range(2):
        answer = table.batch_write_item(delete_items=keys)
        unprocessed = answer.get("UnprocessedItems", {}).get(table.table_name, [])
        if not unprocessed:
            return
        keys = [request["DeleteRequest"]["Key"] for request in unprocessed]
    raise PutError(f"{len(keys)} deletions left unprocessed")


def _roles_condition(
    actor: str, member: str, current_role: str | None, owners_after: list[str], leaving: bool
) -> Condition:
    """The actor may change members (an owner, or the member leaving), the member's role is still what the
    decision saw, and every owner it counted on is still an owner: concurrent demotions cannot both win."""
    condition: Condition = role_path(actor).exists() if leaving else equals(role_path(actor), "owner")
    if current_role is None:
        condition &= role_path(member).does_not_exist()
    else:
        condition &= equals(role_path(member), current_role)
    for owner in owners_after:
        if owner != member:
            condition &= equals(role_path(owner), "owner")
    return condition


def change_roles(
    project_id: str,
    actor: str,
    member: str,
    *,
    new_role: str | None,
    current_role: str | None,
    project: Project,
) -> Membership | None:
    """Adds (current None), re-roles, or removes (new None) `member` in one transaction over the project's
    `roles` map and the membership item. Raises ConditionNotMet when anything changed meanwhile."""
    now = datetime.now(UTC)
    after = project.role_map()
    if new_role is None:
        after.pop(member, None)
    else:
        after[member] = new_role
    owners_after = [subject for subject, role in after.items() if role == "owner"]
    leaving = new_role is None and actor == member
    condition = _roles_condition(actor, member, current_role, owners_after, leaving)
    role_action = role_path(member).remove() if new_role is None else role_path(member).set(new_role)
    membership = Membership(project_key(project_id), member_key(member))
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.update(
                Project(project_key(project_id), _PROJECT_SK),
                actions=[
                    role_action,
                    Project.updated_at.set(now),
                    Project.updated_by.set(actor),
                    Project.version.add(1),
                ],
                condition=condition,
            )
            if new_role is None:
                transaction.delete(membership)
            elif current_role is None:
                transaction.save(
                    membership_item(project, member, new_role, now), condition=Membership.pk.does_not_exist()
                )
            else:
                transaction.update(
                    membership, actions=[Membership.role.set(new_role)], condition=Membership.pk.exists()
                )
    except TransactWriteError as error:
        raise_refusal(error)
    if new_role is None:
        return None
    if current_role is None:
        return membership_item(project, member, new_role, now)
    return get_membership(project_id, member)


def get_membership(project_id: str, subject: str) -> Membership | None:
    try:
        item = Membership.get(project_key(project_id), member_key(subject), consistent_read=True)
    except Membership.DoesNotExist:
        return None
    return item if isinstance(item, Membership) else None


def list_members(
    project_id: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[Membership], dict[str, Any] | None]:
    results = Membership.query(
        project_key(project_id),
        Membership.sk.startswith("MEMBER#"),
        page_size=page_size(limit, filtered=False),
        last_evaluated_key=start_key,
    )
    return bounded_page(results, Membership, limit, TABLE_KEYS)


def list_my_projects(
    subject: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[Membership], dict[str, Any] | None]:
    results = Membership.gsi1.query(
        my_projects_key(subject),
        scan_index_forward=False,
        page_size=page_size(limit, filtered=False),
        last_evaluated_key=start_key,
    )
    return bounded_page(results, Membership, limit, INDEX_KEYS["gsi1"])


def projects_with_member(subject: str, project_ids: set[str]) -> set[str]:
    """Which of these projects still count `subject` among their members (one BatchGetItem of up to 100
    project items, strongly consistent: a member removed a moment ago is no longer one)."""
    if not project_ids:
        return set()
    keys = [(project_key(project_id), _PROJECT_SK) for project_id in sorted(project_ids)]
    return {
        item.project_id
        for item in Project.batch_get(keys, consistent_read=True)
        if isinstance(item, Project) and item.role_of(subject) is not None
    }
