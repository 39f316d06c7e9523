"""Checkpoints of the stream consumer's long clean-ups (a deleted project's purge, the unassignment after a
member left): each round of work ends by advancing its checkpoint, whose own stream record starts the next
round, until the work is done and the checkpoint deleted. Operators list them on gsi1 (`CHECKPOINTS`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError, PutError, UpdateError

from models.project import equals, project_key
from models.table import StratusItem

Kind = Literal["purge", "unassign"]
PURGE_SORT_KEY = "CHECKPOINT#PURGE"
# Every checkpoint of the table under one index key, oldest progress first: a stalled one sorts on top.
LISTING_KEY = "CHECKPOINTS"


def unassign_sort_key(subject: str, removal_version: int) -> str:
    """One checkpoint per removal: a member removed, added back and removed again gets a fresh one."""
    return f"CHECKPOINT#UNASSIGN#{subject}#{removal_version}"


class Checkpoint(StratusItem, discriminator="Checkpoint"):
    """pk=PROJECT#<pid>, sk=CHECKPOINT#PURGE | CHECKPOINT#UNASSIGN#<sub>#<removal version>;
    gsi1: CHECKPOINTS / <updated at>#<pid>#<kind>."""

    project_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    subject = UnicodeAttribute(null=True)
    # Rounds done so far; a round only advances the checkpoint it read, so a redelivered record of an
    # older round (or a second chain of records) stops instead of repeating the work forever.
    round = NumberAttribute()
    # Items deleted or tasks unassigned so far.
    done = NumberAttribute()
    # Where the next round starts (a DynamoDB key, JSON); absent: from the start.
    position = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()

    def start_key(self) -> dict[str, Any] | None:
        return json.loads(self.position) if self.position else None


def _listing_sort_key(now: datetime, project_id: str, kind: str) -> str:
    return f"{now.isoformat(timespec='microseconds')}#{project_id}#{kind}"


def start(
    project_id: str,
    sort_key: str,
    kind: Kind,
    *,
    done: int,
    position: dict[str, Any] | None = None,
    subject: str | None = None,
) -> bool:
    """Puts the checkpoint of round 1 unless it exists (one PutItem). False when it did: the chain of
    records it started carries on, and this one stops."""
    now = datetime.now(UTC)
    checkpoint = Checkpoint(
        project_key(project_id),
        sort_key,
        project_id=project_id,
        kind=kind,
        subject=subject,
        round=1,
        done=done,
        position=json.dumps(position) if position else None,
        started_at=now,
        updated_at=now,
        gsi1pk=LISTING_KEY,
        gsi1sk=_listing_sort_key(now, project_id, kind),
    )
    try:
        checkpoint.save(condition=Checkpoint.pk.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def advance(checkpoint: Checkpoint, *, done: int, position: dict[str, Any] | None) -> bool:
    """Records one more round (one UpdateItem), conditional on the checkpoint still being at the round
    read: its MODIFY record starts the next round. False when another round got there first."""
    now = datetime.now(UTC)
    target = Checkpoint(checkpoint.pk, checkpoint.sk)
    try:
        target.update(
            actions=[
                Checkpoint.round.add(1),
                Checkpoint.done.add(done),
                Checkpoint.position.set(json.dumps(position)) if position else Checkpoint.position.remove(),
                Checkpoint.updated_at.set(now),
                Checkpoint.gsi1sk.set(_listing_sort_key(now, checkpoint.project_id, checkpoint.kind)),
            ],
            condition=equals(Checkpoint.round, checkpoint.round),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def finish(checkpoint: Checkpoint) -> bool:
    """Deletes the checkpoint of a finished job (one DeleteItem), conditional on its round as read."""
    try:
        Checkpoint(checkpoint.pk, checkpoint.sk).delete(condition=equals(Checkpoint.round, checkpoint.round))
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def from_image(image: dict[str, Any]) -> Checkpoint:
    """The checkpoint a stream record's image describes (as Powertools deserialized it)."""
    return Checkpoint(
        image["pk"],
        image["sk"],
        project_id=str(image["project_id"]),
        kind=str(image["kind"]),
        subject=image.get("subject"),
        round=int(image["round"]),
        done=int(image.get("done", 0)),
        position=image.get("position"),
        started_at=Checkpoint.started_at.deserialize(image["started_at"]),
        updated_at=Checkpoint.updated_at.deserialize(image["updated_at"]),
    )
