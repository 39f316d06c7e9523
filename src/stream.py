"""The table's stream consumer (a second Lambda function, `stream.handler`): it writes the activity feed and
does what follows a committed change, in bounded rounds (src/services/followups.py).

- Every project, task and task-deletion change becomes entries of the project's activity feed (one
  transaction per record, keyed by the record's event id: a redelivery writes nothing twice).
- A project item REMOVEd: its partition (tasks, activity, tombstones) is purged, a bounded round per
  invocation, continued through a checkpoint item's own stream records.
- A project's name or archived flag MODIFYed: the copies on its membership items are refreshed (only ever
  with a newer version).
- A member gone from a project's `roles`: their tasks in the project are unassigned (bounded rounds too).

RECORD_FILTERS are the event source mapping's filters (template.yaml must say the same; the local stack
applies them too): only records that may call for work reach the function. Powertools' batch processor
reports failed records individually (ReportBatchItemFailures): one bad record never blocks the shard.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from models import bind_models
from observability import metrics
from services import followups
from services.activity import TableChange, record_change
from settings import get_settings

RECORD_FILTERS: list[dict[str, Any]] = [
    # A project deleted: its partition is purged.
    {"eventName": ["REMOVE"], "dynamodb": {"OldImage": {"type": {"S": ["Project"]}}}},
    # Changes the feed shows or that call for work, and checkpoints going on. Not: memberships, the feed's
    # own entries, rate-limit counters, task REMOVEs (a purge's thousands; a deletion's tombstone says it).
    {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"type": {"S": ["Project", "Task", "TaskDeletion", "Checkpoint"]}}},
    },
]

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
settings = get_settings()
bind_models(settings)
_RETENTION = timedelta(days=settings.activity_retention_days)
_RESERVE_SECONDS = followups.reserve_seconds(settings)


def handle_record(record: DynamoDBRecord, lambda_context: Any) -> None:
    stream_record = record.dynamodb
    if stream_record is None or record.event_name is None or record.event_id is None:
        return
    change = TableChange(
        event_id=record.event_id,
        event=record.event_name.name,
        old=stream_record.old_image or {},
        new=stream_record.new_image or {},
    )
    deadline = followups.Deadline(lambda_context, _RESERVE_SECONDS)
    deadline.require()
    record_change(change, _RETENTION)
    followups.follow(change, deadline)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream batch → partial batch response."""
    try:
        return dict(
            process_partial_response(
                event=event, record_handler=handle_record, processor=processor, context=context
            )
        )
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
