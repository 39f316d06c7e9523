"""The one DynamoDB table of Stratus (single-table design) and how the models are bound to it.

Every entity is a subclass of `StratusItem` with its own discriminator; template.yaml declares the same
keys, indexes, TTL attribute and stream, and tests/test_template.py fails when the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from pynamodb.attributes import DiscriminatorAttribute, MapAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.constants import PAY_PER_REQUEST_BILLING_MODE, STREAM_NEW_AND_OLD_IMAGE
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from models import pending_binding
from settings import Settings

M = TypeVar("M", bound="StratusItem")


class Gsi1(GlobalSecondaryIndex["StratusItem"]):
    """Inverted lookups: an entity by its owner/member side (e.g. a user's projects)."""

    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class Gsi2(GlobalSecondaryIndex["StratusItem"]):
    """Second access path with its own sort order (e.g. tasks by assignee and due date)."""

    class Meta:
        index_name = "gsi2"
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class StratusItem(Model):
    """Base of every item in the table: generic keys, index keys, entity type and expiry."""

    class Meta:
        table_name = "stratus-dev"
        region = "us-east-1"
        billing_mode = PAY_PER_REQUEST_BILLING_MODE
        stream_view_type = STREAM_NEW_AND_OLD_IMAGE
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 2

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entity = DiscriminatorAttribute(attr_name="type")
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    # DynamoDB's TTL deletes lazily (up to ~48 h late): readers must still filter expired items.
    expires_at = TTLAttribute(null=True)

    gsi1 = Gsi1()
    gsi2 = Gsi2()


TABLE_KEYS = ("pk", "sk")
INDEX_KEYS = {"gsi1": ("pk", "sk", "gsi1pk", "gsi1sk"), "gsi2": ("pk", "sk", "gsi2pk", "gsi2sk")}


def page_of(
    results: Iterator[M], limit: int, key_names: tuple[str, ...]
) -> tuple[list[M], dict[str, Any] | None]:
    """Up to `limit` items and the key to resume after the last one (None when nothing follows).

    The query must ask for `limit + 1` items: the extra one proves there is a next page, so the last page
    never hands out a cursor to an empty page. PynamoDB keeps querying through filtered-out items until
    it has them, so filters never make a page short while data remains.
    """
    items: list[M] = []
    for item in results:
        if len(items) == limit:
            last = items[-1]
            return items, {name: {"S": getattr(last, name)} for name in key_names}
        items.append(item)
    return items, None


def plain_map(value: Any) -> dict[str, Any]:
    """A raw MapAttribute (or nothing) as a plain dict."""
    if value is None:
        return {}
    if isinstance(value, MapAttribute):
        return dict(value.as_dict())
    return dict(value)


def table_models() -> Iterator[type[StratusItem]]:
    """StratusItem and every entity model derived from it."""
    pending: list[type[StratusItem]] = [StratusItem]
    while pending:
        model = pending.pop()
        yield model
        pending.extend(model.__subclasses__())


def apply_binding(settings: Settings) -> None:
    """Point every model at the configured table, region and client limits.

    PynamoDB reads Meta when it first builds a connection, so this runs before the first request; the
    endpoint is not set here: botocore reads AWS_ENDPOINT_URL(_DYNAMODB) itself, as it does in production.
    """
    meta: Any = StratusItem.Meta
    wanted = {
        "table_name": settings.table_name,
        "region": settings.aws_region,
        "connect_timeout_seconds": settings.dynamodb_connect_timeout_seconds,
        "read_timeout_seconds": settings.dynamodb_read_timeout_seconds,
        "max_retry_attempts": settings.dynamodb_max_retry_attempts,
    }
    changed = any(getattr(meta, name, None) != value for name, value in wanted.items())
    for name, value in wanted.items():
        setattr(meta, name, value)
    if changed:
        # Connections are cached per class and reused across invocations of a warm container; one built
        # under other settings must not outlive them.
        for model in table_models():
            model._connection = None


_binding = pending_binding()
if _binding is not None:
    apply_binding(_binding)
