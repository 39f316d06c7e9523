"""The admin audit trail: who did what to whom, when, under which request id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import MapAttribute, UnicodeAttribute, UTCDateTimeAttribute

from models.table import StratusItem, plain_map

# Admin actions are rare, so one partition holds the trail in time order; kept for 400 days.
_PK = "AUDIT"
RETENTION = timedelta(days=400)


class AuditRecord(StratusItem, discriminator="AuditRecord"):
    """pk=AUDIT, sk=<iso time>#<request id>."""

    actor_subject = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    request_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    details = MapAttribute[str, Any](default=dict)

    def detail_values(self) -> dict[str, Any]:
        return plain_map(self.details)


def append_audit_record(
    actor_subject: str, action: str, target: str, request_id: str, details: dict[str, Any]
) -> AuditRecord:
    now = datetime.now(UTC)
    record = AuditRecord(
        _PK,
        f"{now.isoformat()}#{request_id}#{action}",
        actor_subject=actor_subject,
        action=action,
        target=target,
        request_id=request_id,
        at=now,
        details=details,
        expires_at=now + RETENTION,
    )
    record.save(condition=AuditRecord.sk.does_not_exist())
    return record


def list_audit_records(limit: int, start_key: dict[str, Any] | None) -> tuple[list[AuditRecord], Any]:
    """One Query page, newest first."""
    result = AuditRecord.query(
        _PK, scan_index_forward=False, limit=limit, last_evaluated_key=start_key, page_size=limit
    )
    items = list(result)
    return items, result.last_evaluated_key
