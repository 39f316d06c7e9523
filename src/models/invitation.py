"""Invitations to a project, addressed to an email address and accepted by the person who signs in with
that address verified. They live in the project's partition (a purge removes them with the project) and
are indexed by the invitee's address (case-folded) for "my invitations"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError, TransactWriteError
from pynamodb.expressions.condition import Condition, size
from pynamodb.transactions import TransactWrite

from models.project import MAX_MEMBERS, Membership, Project, equals, membership_item, project_key, role_path
from models.table import INDEX_KEYS, StratusItem, page_of, raise_refusal

INVITATION_LIFETIME = timedelta(days=7)
# Pending invitations per project: what one owner can leave open at a time.
MAX_PENDING = 50
_PREFIX = "INVITE#"


def invitation_sort_key(suffix: str) -> str:
    return f"{_PREFIX}{suffix}"


def invitee_key(email: str) -> str:
    """The index key of an address: case-folded, so Alice@Example.com and alice@example.com meet."""
    return f"INVITEE#{email.casefold()}"


def split_invitation_id(invitation_id: str) -> tuple[str, str] | None:
    project_id, dot, suffix = invitation_id.partition(".")
    return (project_id, suffix) if dot and project_id and suffix else None


class Invitation(StratusItem, discriminator="Invitation"):
    """pk=PROJECT#<pid>, sk=INVITE#<iid>; gsi1: INVITEE#<address, case-folded> / <created at>#<id>."""

    invitation_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    # The project's name when the invitation was made: the invitee cannot read the project yet.
    project_name = UnicodeAttribute()
    email = UnicodeAttribute()
    role = UnicodeAttribute()
    invited_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()

    def is_pending(self, now: datetime) -> bool:
        # TTL deletes lazily (up to ~48 h late): an expired invitation still on the table is not pending.
        return self.expires_at is not None and self.expires_at > now

    def addressed_to(self, email: str) -> bool:
        return self.email.casefold() == email.casefold()


def put_invitation(project: Project, email: str, role: str, invited_by: str) -> Invitation:
    """One transaction: the invitation, on the condition that the inviter still owns the project."""
    from models.ids import new_id

    suffix = new_id()
    now = datetime.now(UTC)
    invitation = Invitation(
        project_key(project.project_id),
        invitation_sort_key(suffix),
        invitation_id=f"{project.project_id}.{suffix}",
        project_id=project.project_id,
        project_name=project.name,
        email=email,
        role=role,
        invited_by=invited_by,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
        gsi1pk=invitee_key(email),
        gsi1sk=f"{now.isoformat(timespec='microseconds')}#{project.project_id}.{suffix}",
    )
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.condition_check(
                Project,
                project_key(project.project_id),
                "PROJECT",
                condition=equals(role_path(invited_by), "owner"),
            )
            transaction.save(invitation, condition=Invitation.pk.does_not_exist())
    except TransactWriteError as error:
        raise_refusal(error)
    return invitation


def pending_invitations(project_id: str, now: datetime) -> list[Invitation]:
    """Every pending invitation of the project: one Query, bounded (MAX_PENDING pending at most, and
    expired ones are read only until TTL removes them)."""
    results = Invitation.query(
        project_key(project_id),
        Invitation.sk.startswith(_PREFIX),
        consistent_read=True,
        page_size=MAX_PENDING + 1,
    )
    return [item for item in results if isinstance(item, Invitation) and item.is_pending(now)]


def get_invitation(project_id: str, suffix: str) -> Invitation | None:
    try:
        item = Invitation.get(project_key(project_id), invitation_sort_key(suffix), consistent_read=True)
    except Invitation.DoesNotExist:
        return None
    return item if isinstance(item, Invitation) else None


def list_invitations_for(
    email: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[Invitation], dict[str, Any] | None]:
    """Invitations addressed to `email`, newest first (one Query on gsi1; expired ones included: the
    caller filters)."""
    results = Invitation.gsi1.query(
        invitee_key(email),
        scan_index_forward=False,
        limit=limit + 1,
        page_size=limit + 1,
        last_evaluated_key=start_key,
    )
    return page_of((item for item in results if isinstance(item, Invitation)), limit, INDEX_KEYS["gsi1"])


def delete_invitation(invitation: Invitation) -> bool:
    """False when it was gone already."""
    try:
        Invitation(invitation.pk, invitation.sk).delete(condition=Invitation.pk.exists())
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def accept_invitation(invitation: Invitation, subject: str, project: Project) -> Membership:
    """One transaction: `subject` joins the project with the invitation's role, its membership item is
    written and the invitation is used up. Conditions: the invitation still exists, the inviter still owns
    the project, `subject` is not a member yet and the project has room. Raises ConditionNotMet."""
    now = datetime.now(UTC)
    condition: Condition = (
        equals(role_path(invitation.invited_by), "owner")
        & role_path(subject).does_not_exist()
        & (cast(Any, size(Project.roles)) < MAX_MEMBERS)
    )
    membership = membership_item(project, subject, invitation.role, now)
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.update(
                Project(project_key(project.project_id), "PROJECT"),
                actions=[
                    role_path(subject).set(invitation.role),
                    Project.updated_at.set(now),
                    Project.version.add(1),
                ],
                condition=condition,
            )
            transaction.save(membership, condition=Membership.pk.does_not_exist())
            transaction.delete(Invitation(invitation.pk, invitation.sk), condition=Invitation.pk.exists())
    except TransactWriteError as error:
        raise_refusal(error)
    return membership
