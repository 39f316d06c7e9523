"""What follows a committed change, done by the stream consumer in bounded rounds: a deleted project's
partition purged, membership copies refreshed after a rename or (un)archiving, a removed member's tasks
unassigned. Work too long for one round leaves a checkpoint (models/checkpoint.py) whose own stream record
starts the next round, so no invocation runs long whatever the data size, and a redelivered record
repeats nothing twice.

Every step starts only while the invocation has `reserve_seconds` left: enough for the step's calls (3 at
most) and one checkpoint write, each taking at worst what the DynamoDB client limits allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

import models
from models import checkpoint as checkpoints
from observability import logger, metrics
from services.activity import TableChange
from settings import Settings

# Items a purge round deletes at most (40 BatchWriteItem calls and 4 Query pages of keys).
PURGE_ROUND_ITEMS = 1000
# Query pages (of models.task.UNASSIGN_PAGE tasks) an unassignment round reads at most.
UNASSIGN_ROUND_PAGES = 10
# The most calls a step makes between two looks at the clock, and the checkpoint write after the last.
_CALLS_PER_STEP = 3
_SAFETY_SECONDS = 5.0


class OutOfTime(Exception):
    """Too little of the invocation is left to start this record: it is reported as failed and retried."""


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def worst_call_seconds(settings: Settings) -> float:
    """The longest one DynamoDB call may take under the client's limits: every attempt connecting and
    reading up to its timeouts, with botocore's standard backoff (at most 1 s, 2 s, ... for throttling)
    between attempts."""
    attempts = 1 + settings.dynamodb_max_retry_attempts
    per_attempt = settings.dynamodb_connect_timeout_seconds + settings.dynamodb_read_timeout_seconds
    backoff = sum(min(2.0**attempt, 20.0) for attempt in range(attempts - 1))
    return attempts * per_attempt + backoff


def reserve_seconds(settings: Settings) -> float:
    return (_CALLS_PER_STEP + 1) * worst_call_seconds(settings) + _SAFETY_SECONDS


@dataclass(frozen=True)
class Deadline:
    """The invocation's clock: a step starts only while `reserve` seconds are left."""

    context: LambdaContextLike
    reserve: float

    def allows(self) -> bool:
        return self.context.get_remaining_time_in_millis() / 1000 >= self.reserve

    def require(self) -> None:
        if not self.allows():
            raise OutOfTime(f"less than {self.reserve:.0f} s of the invocation left")


def _count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def purge(project_id: str, deadline: Deadline, checkpoint: checkpoints.Checkpoint | None = None) -> None:
    """One round of a deleted project's purge; a checkpoint to go on from when more is left."""
    deadline.require()
    done = models.project.purge_round(
        project_id,
        frozenset({checkpoints.PURGE_SORT_KEY}),
        max_items=PURGE_ROUND_ITEMS,
        go_on=deadline.allows,
    )
    _count("PurgedItems", done.deleted)
    rounds = int(checkpoint.round) + 1 if checkpoint else 1
    total = done.deleted + (int(checkpoint.done) if checkpoint else 0)
    if done.finished:
        if checkpoint is not None:
            checkpoints.finish(checkpoint)
        _count("PurgesFinished")
        logger.info("purge finished", project_id=project_id, items=total, rounds=rounds)
        return
    if checkpoint is None:
        carried_on = checkpoints.start(project_id, checkpoints.PURGE_SORT_KEY, "purge", done=done.deleted)
    else:
        carried_on = checkpoints.advance(checkpoint, done=done.deleted, position=None)
    logger.info(
        "purge continues" if carried_on else "purge continues in another round",
        project_id=project_id,
        items=total,
        rounds=rounds,
    )


def unassign(
    project_id: str,
    subject: str,
    removal_version: int,
    deadline: Deadline,
    checkpoint: checkpoints.Checkpoint | None = None,
) -> None:
    """One round of clearing a removed member as assignee of the project's tasks; a checkpoint to go on
    from when more is left. Stops as soon as the member is back or the project is gone."""
    deadline.require()
    done = models.task.unassign_round(
        project_id,
        subject,
        checkpoint.start_key() if checkpoint else None,
        max_pages=UNASSIGN_ROUND_PAGES,
        go_on=deadline.allows,
    )
    _count("UnassignedTasks", done.cleared)
    if done.stopped or done.position is None:
        if checkpoint is not None:
            checkpoints.finish(checkpoint)
        if checkpoint is not None or done.cleared:
            logger.info(
                "unassignment finished",
                project_id=project_id,
                subject=subject,
                tasks=done.cleared + (int(checkpoint.done) if checkpoint else 0),
                stopped=done.stopped,
            )
        return
    if checkpoint is None:
        checkpoints.start(
            project_id,
            checkpoints.unassign_sort_key(subject, removal_version),
            "unassign",
            done=done.cleared,
            position=done.position,
            subject=subject,
        )
    else:
        checkpoints.advance(checkpoint, done=done.cleared, position=done.position)
    logger.info("unassignment continues", project_id=project_id, subject=subject, tasks=done.cleared)


def refresh(project_id: str, deadline: Deadline) -> None:
    """Copies the project's name and archived flag, as they are now, onto its memberships (GetItem and at
    most two transactions; copies never go back to an older version)."""
    deadline.require()
    project = models.project.get_project(project_id)
    if project is not None:
        models.project.refresh_memberships(project, attempts=2)


def _roles(image: dict[str, Any]) -> set[str]:
    roles = image.get("roles")
    return {str(subject) for subject in roles} if isinstance(roles, dict) else set()


def follow(change: TableChange, deadline: Deadline) -> None:
    """Whatever this change calls for: nothing for most."""
    old, new = change.old, change.new
    kind = change.item_type
    if kind == "Project" and change.event == "REMOVE":
        purge(str(old["project_id"]), deadline)
    elif kind == "Project" and change.event == "MODIFY":
        project_id = str(new["project_id"])
        if (old.get("name"), bool(old.get("archived"))) != (new.get("name"), bool(new.get("archived"))):
            refresh(project_id, deadline)
        for subject in sorted(_roles(old) - _roles(new)):
            unassign(project_id, subject, int(new["version"]), deadline)
    elif kind == "Checkpoint" and change.event in ("INSERT", "MODIFY"):
        checkpoint = checkpoints.from_image(new)
        if checkpoint.kind == "purge":
            purge(checkpoint.project_id, deadline, checkpoint)
        elif checkpoint.kind == "unassign" and checkpoint.subject:
            unassign(checkpoint.project_id, checkpoint.subject, 0, deadline, checkpoint)
