"""The admin audit trail: who did what to whom, when, under which request id, and how it ended.

A record is written before the action it describes ("requested") and settled after it ("succeeded" or
"failed"), so an action that happened is never missing from the trail.

The trail is append-only: settling writes an outcome item of its own next to the record (never an update
of it), and the app's role may not update or delete anything in the AUDIT partition (template.yaml,
ApiFunctionRole, AuditTrailIsAppendOnly). Records expire after AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pynamodb.attributes import MapAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PynamoDBException

from models import pending_binding
from models.table import TABLE_KEYS, StratusItem, plain_map

# Admin actions are rare, so one partition holds the trail in time order. template.yaml names it in the
# condition that keeps the app from changing it.
AUDIT_PARTITION = "AUDIT"
_PK = AUDIT_PARTITION
# An outcome's sort key is its record's plus this: it sorts right after the record (so right before it,
# newest first), and before any other record.
_OUTCOME_SUFFIX = "#outcome"
DEFAULT_RETENTION = timedelta(days=400)

Outcome = Literal["requested", "succeeded", "failed"]


class AuditTrailUnavailable(Exception):
    """The trail could not be written."""


class AuditRecord(StratusItem, discriminator="AuditRecord"):
    """pk=AUDIT, sk=<iso time>#<request id>#<action>."""

    actor_subject = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    request_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    details = MapAttribute[str, Any](default=dict)
    # Records from before outcomes were kept were written only after the action succeeded.
    outcome = UnicodeAttribute(null=True)

    def detail_values(self) -> dict[str, Any]:
        return plain_map(self.details)

    def outcome_value(self) -> Outcome:
        if self.outcome == "requested":
            return "requested"
        return "failed" if self.outcome == "failed" else "succeeded"


class AuditOutcome(StratusItem, discriminator="AuditOutcome"):
    """pk=AUDIT, sk=<record's sk>#outcome: how the action of that record ended, with its details."""

    outcome = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    details = MapAttribute[str, Any](default=dict)


def retention() -> timedelta:
    """How long records are kept: the bound settings' AUDIT_RETENTION_DAYS (parameter AuditRetentionDays)."""
    settings = pending_binding()
    return timedelta(days=settings.audit_retention_days) if settings is not None else DEFAULT_RETENTION


def append_audit_record(
    actor_subject: str, action: str, target: str, request_id: str, details: dict[str, Any]
) -> AuditRecord:
    """Records an action about to be taken; AuditTrailUnavailable when that cannot be done."""
    now = datetime.now(UTC)
    record = AuditRecord(
        _PK,
        # Fixed width, so that the sort key orders moments as strings (isoformat drops a zero fraction).
        f"{now.isoformat(timespec='microseconds')}#{request_id}#{action}",
        actor_subject=actor_subject,
        action=action,
        target=target,
        request_id=request_id,
        at=now,
        details=details,
        outcome="requested",
        expires_at=now + retention(),
    )
    try:
        record.save(condition=AuditRecord.sk.does_not_exist())
    except PynamoDBException as error:
        raise AuditTrailUnavailable from error
    return record


def settle_audit_record(record: AuditRecord, outcome: Outcome, details: dict[str, Any]) -> None:
    """Records how the action ended, with `details` added to the record's; AuditTrailUnavailable when that
    cannot be done. An item of its own: the record itself is never changed."""
    settled = {**record.detail_values(), **details}
    item = AuditOutcome(
        _PK,
        f"{record.sk}{_OUTCOME_SUFFIX}",
        outcome=outcome,
        at=datetime.now(UTC),
        details=settled,
        expires_at=record.expires_at,
    )
    try:
        item.save(condition=AuditOutcome.sk.does_not_exist())
    except PynamoDBException as error:
        raise AuditTrailUnavailable from error
    record.outcome = outcome
    record.details = settled


def list_audit_records(
    limit: int, start_key: dict[str, Any] | None
) -> tuple[list[AuditRecord], dict[str, Any] | None]:
    """One page of records, newest first, each with its outcome; the key to resume after it, or None when
    nothing follows.

    One Query over the partition: newest first, a record's outcome comes right before the record (records
    from before outcome items were settled in place and have none). Reading stops at the first record past
    the page, which proves a next page exists.
    """
    result = StratusItem.query(
        _PK, scan_index_forward=False, last_evaluated_key=start_key, page_size=2 * limit + 2
    )
    records: list[AuditRecord] = []
    outcome: AuditOutcome | None = None
    for item in result:
        if isinstance(item, AuditOutcome):
            outcome = item
            continue
        if not isinstance(item, AuditRecord):
            continue
        if len(records) == limit:
            last = records[-1]
            return records, {name: {"S": getattr(last, name)} for name in TABLE_KEYS}
        if outcome is not None and outcome.sk == f"{item.sk}{_OUTCOME_SUFFIX}":
            item.outcome = outcome.outcome
            item.details = {**item.detail_values(), **plain_map(outcome.details)}
        outcome = None
        records.append(item)
    return records, None
