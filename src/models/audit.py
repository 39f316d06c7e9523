"""The admin audit trail: who did what to whom, when, under which request id, and how it ended.

A record is written before the action it describes ("requested") and settled after it ("succeeded" or
"failed"), so an action that happened is never missing from the trail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pynamodb.attributes import MapAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PynamoDBException

from models.table import TABLE_KEYS, StratusItem, page_of, plain_map

# Admin actions are rare, so one partition holds the trail in time order; kept for 400 days.
_PK = "AUDIT"
RETENTION = timedelta(days=400)

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
        expires_at=now + RETENTION,
    )
    try:
        record.save(condition=AuditRecord.sk.does_not_exist())
    except PynamoDBException as error:
        raise AuditTrailUnavailable from error
    return record


def settle_audit_record(record: AuditRecord, outcome: Outcome, details: dict[str, Any]) -> None:
    """Sets how the action ended and adds `details`; AuditTrailUnavailable when that cannot be done."""
    settled = {**record.detail_values(), **details}
    try:
        record.update(
            actions=[AuditRecord.outcome.set(outcome), AuditRecord.details.set(settled)],
            condition=AuditRecord.sk.exists(),
        )
    except PynamoDBException as error:
        raise AuditTrailUnavailable from error


def list_audit_records(
    limit: int, start_key: dict[str, Any] | None
) -> tuple[list[AuditRecord], dict[str, Any] | None]:
    """One page, newest first; the key to resume after it, or None when nothing follows."""
    result = AuditRecord.query(
        _PK, scan_index_forward=False, limit=limit + 1, page_size=limit + 1, last_evaluated_key=start_key
    )
    return page_of((r for r in result if isinstance(r, AuditRecord)), limit, TABLE_KEYS)
