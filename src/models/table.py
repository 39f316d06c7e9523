"""The one DynamoDB table of Stratus (single-table design) and how the models are bound to it.

Every entity is a subclass of `StratusItem` with its own discriminator; template.yaml declares the same
keys, indexes, TTL attribute and stream, and tests/test_template.py fails when the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn, TypeVar

from pynamodb.attributes import DiscriminatorAttribute, MapAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.constants import PAY_PER_REQUEST_BILLING_MODE, STREAM_NEW_AND_OLD_IMAGE
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.pagination import ResultIterator

from models import pending_binding
from observability import logger
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


# A filtered list reads bigger pages (a rare match then costs fewer calls) and at most this many Query calls
# per request: the page may come back short, with a cursor where the read stopped.
FILTERED_PAGE_SIZE = 100
MAX_QUERY_CALLS = 10

# Cancellation reasons that say DynamoDB was busy, not that a condition refused: a retry may succeed.
_BUSY_CANCELLATIONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded", "TransactionConflict"}
)

# Whatever PynamoDB raises when DynamoDB refuses or fails a call (it wraps botocore's errors).
DataStoreError = PynamoDBException


class ConditionNotMet(Exception):
    """A conditional write was refused: the caller decides what that means (404, 403, 409, 412)."""


def raise_refusal(error: TransactWriteError) -> NoReturn:
    """Says why a transaction failed, from DynamoDB's cancellation reasons: ConditionNotMet when one of
    its conditions failed; a 503 (ServiceUnavailable, with Retry-After) when DynamoDB cancelled it for
    load (throttling, a conflicting transaction on the same items); the error itself otherwise."""
    if error.cause_response_code != "TransactionCanceledException":
        raise error
    reasons = {reason.code for reason in error.cancellation_reasons if reason is not None}
    # No reasons at all: nothing says it was load, and a refusal is the safe reading (409/412 say "retry").
    if "ConditionalCheckFailed" in reasons or not reasons:
        raise ConditionNotMet from None
    if reasons <= _BUSY_CANCELLATIONS:
        # Imported on the error path only: the stream function never needs the HTTP error types.
        from errors import DATA_STORE_RETRY_AFTER_SECONDS, ServiceUnavailable

        logger.warning("DynamoDB cancelled a transaction under load", reasons=sorted(reasons))
        raise ServiceUnavailable(
            "The data store is busy; retry shortly.", retry_after_seconds=DATA_STORE_RETRY_AFTER_SECONDS
        ) from error
    raise error


def page_size(limit: int, filtered: bool) -> int:
    """`limit + 1` items prove whether a next page exists; a filtered read takes bigger bites."""
    return max(limit + 1, FILTERED_PAGE_SIZE) if filtered else limit + 1


def page_of(
    results: Iterator[M], limit: int, key_names: tuple[str, ...]
) -> tuple[list[M], dict[str, Any] | None]:
    """Up to `limit` items and the key to resume after the last one (None when nothing follows).

    The query must ask for `limit + 1` items: the extra one proves there is a next page, so the last page
    never hands out a cursor to an empty page. For unfiltered reads only: PynamoDB keeps querying
    through filtered-out items until it has them, however many calls that takes (see bounded_page).
    """
    items: list[M] = []
    for item in results:
        if len(items) == limit:
            last = items[-1]
            return items, {name: {"S": getattr(last, name)} for name in key_names}
        items.append(item)
    return items, None


def bounded_page(
    results: ResultIterator[Any], model: type[M], limit: int, key_names: tuple[str, ...]
) -> tuple[list[M], dict[str, Any] | None]:
    """Up to `limit` items of `model` and the key to resume from (None when nothing follows).

    The query must ask for at least `limit + 1` items per page (see `page_size`): the extra one proves
    there is a next page, so the last page never hands out a cursor to an empty page. Filters may drop
    most of what a page read, so reading goes on page by page until `limit` items are found, but for at
    most MAX_QUERY_CALLS calls: then the items found so far come back with DynamoDB's own position, and a
    page may be short (even empty) although more follows.
    """
    pages = results.page_iter
    items: list[M] = []
    for _ in range(MAX_QUERY_CALLS):
        page = next(pages)
        for raw in page.get("Items", ()):
            item = StratusItem.from_raw_data(raw)
            if not isinstance(item, model):
                continue
            if len(items) == limit:
                last = items[-1]
                return items, {name: {"S": getattr(last, name)} for name in key_names}
            items.append(item)
        if pages.last_evaluated_key is None:
            return items, None
    return items, pages.last_evaluated_key


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
