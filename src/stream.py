"""The table's stream consumer (a second Lambda function, `stream.handler`): it finishes what the API
started when an API invocation could not.

- A project item REMOVEd: every item left in its partition (tasks, memberships) is deleted. The API purges
  synchronously right after deleting the project; this makes the cleanup certain even when that
  invocation timed out half-way.
- A project's name or archived flag MODIFYed: the denormalized copies on its membership items ("my
  projects") are refreshed, the same repair for an interrupted rename.
- A member gone from a project's `roles`: their tasks in the project are unassigned, the same repair for
  a removal whose unassignment failed.

Both actions are idempotent, so stream redeliveries are harmless. Powertools' batch processor reports
failed records individually (ReportBatchItemFailures): one bad record never blocks the shard.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

import models
from models import bind_models
from observability import logger
from settings import get_settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
bind_models(get_settings())


def _string(image: dict[str, Any] | None, name: str) -> str | None:
    value = (image or {}).get(name)
    return value if isinstance(value, str) else None


def _roles(image: dict[str, Any]) -> dict[str, Any]:
    roles = image.get("roles")
    return roles if isinstance(roles, dict) else {}


def handle_record(record: DynamoDBRecord) -> None:
    change = record.dynamodb
    if change is None or record.event_name is None:
        return
    event = record.event_name.name
    old, new = change.old_image or {}, change.new_image or {}
    if event == "REMOVE" and _string(old, "type") == "Project":
        project_id = _string(old, "project_id")
        if project_id:
            removed = models.project.purge_project_items(project_id)
            logger.info("purged a deleted project's items", project_id=project_id, removed=removed)
        return
    if event != "MODIFY" or _string(new, "type") != "Project":
        return
    project_id = str(_string(new, "project_id"))
    summary_changed = (old.get("name"), old.get("archived")) != (new.get("name"), new.get("archived"))
    gone = set(_roles(old)) - set(_roles(new))
    if not summary_changed and not gone:
        return
    # The item as it is now, not as the record saw it: a late record must not undo later changes.
    project = models.project.get_project(project_id)
    if project is None:
        return
    if summary_changed:
        models.project.refresh_memberships(project)
    for subject in sorted(gone):
        # Re-added since: their current assignments are theirs again.
        if project.role_of(subject) is None:
            models.task.unassign_in_project(project_id, subject, from_partition=True)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream batch → partial batch response."""
    return dict(
        process_partial_response(
            event=event, record_handler=handle_record, processor=processor, context=context
        )
    )
