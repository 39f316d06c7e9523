"""A project's activity feed: entries in the project's own partition, newest last in key order, written
only by the stream consumer (one transaction per stream record, keyed by the record's event id) and
expired by the table's TTL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from models.project import Project, project_key, refused_items
from models.table import TABLE_KEYS, StratusItem, bounded_page, page_size

_PREFIX = "ACTIVITY#"
# Above every moment written after the prefix ("2026-..."), so that a range up to it holds every entry.
_AFTER_EVERY_ENTRY = f"{_PREFIX}~"


def _moment(at: datetime) -> str:
    # Fixed width, so that sort keys order moments as strings (isoformat drops a zero fraction).
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_sort_key(at: datetime, event_id: str, index: int) -> str:
    """Ordered by when the change happened; the stream record's event id (and the entry's place among
    that record's entries) makes the key of a redelivered record the key of its first delivery."""
    return f"{_PREFIX}{_moment(at)}#{event_id}#{index}"


class Change(MapAttribute[str, Any]):
    """One field of a change: its value before and after (absent where the entry says only which field)."""

    field = UnicodeAttribute()
    before = JSONAttribute(null=True)
    after = JSONAttribute(null=True)


class Activity(StratusItem, discriminator="Activity"):
    """pk=PROJECT#<pid>, sk=ACTIVITY#<at>#<stream event id>#<n>; TTL expires_at (ActivityRetentionDays)."""

    project_id = UnicodeAttribute()
    action = UnicodeAttribute()
    # The subject who made the change; absent: Stratus itself (the unassignment after a member left).
    actor = UnicodeAttribute(null=True)
    at = UTCDateTimeAttribute()
    task_id = UnicodeAttribute(null=True)
    task_title = UnicodeAttribute(null=True)
    member = UnicodeAttribute(null=True)
    changes = ListAttribute[Change](of=Change, default=list)

    @property
    def entry_id(self) -> str:
        """The entry's id in responses: the key after the prefix (`<at>#<event id>#<n>`)."""
        return self.sk.removeprefix(_PREFIX)


def record(project_id: str, entries: list[Activity]) -> bool:
    """Writes one stream record's entries (one transaction): only if the project still exists, and only
    if the record was not written before (each put is conditional on its key being new). False when
    nothing was written for one of those reasons; raises whatever else DynamoDB answered."""
    if not entries:
        return False
    try:
        with TransactWrite(connection=StratusItem._get_connection().connection) as transaction:
            transaction.condition_check(
                Project, project_key(project_id), "PROJECT", condition=Project.pk.exists()
            )
            for entry in entries:
                transaction.save(entry, condition=Activity.pk.does_not_exist())
    except TransactWriteError as error:
        refused_items(error, len(entries) + 1)
        return False
    return True


def list_activity(
    project_id: str, since: datetime, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[Activity], dict[str, Any] | None]:
    """The project's entries from `since` on, newest first: one Query per page. Entries older than `since`
    (past their retention, not yet removed by TTL) are outside the key range, so no page is short for
    them."""
    results = Activity.query(
        project_key(project_id),
        Activity.sk.between(f"{_PREFIX}{_moment(since)}", _AFTER_EVERY_ENTRY),
        scan_index_forward=False,
        page_size=page_size(limit, filtered=False),
        last_evaluated_key=start_key,
    )
    return bounded_page(results, Activity, limit, TABLE_KEYS)
