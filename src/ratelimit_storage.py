"""Rate-limit counters in their own DynamoDB table: a `limits` storage registered as `dynamodb://<table>`.

Two ways of drawing on a window's budget, one item per key and window (`pk=RATELIMIT#<key>`,
`sk=WINDOW#<start>`, TTL `expires_at`):

- `incr` (limits' fixed-window strategy): one UpdateItem per request (ADD `hits`, ReturnValues=UPDATED_NEW).
- `lease` (ratelimit_leasing's strategy): one conditional UpdateItem hands a container a slice of the
  window's budget (ADD `leased` only while `leased + slice <= limit`), which it then spends locally.

Fixed windows, not a sliding-window counter: a sliding counter needs the previous window's count too and a
check before the increment, a read-modify-write per request. The price of fixed windows: a client can
spend its budget at the end of one window and again at the start of the next.

Windows are aligned to the epoch (a minute limit resets at every full minute) and each key gets one item
per window, so containers never race to reset a counter: the next window is simply another item. TTL deletes
old windows lazily, so reads ignore any window whose `expires_at` has passed.

Imported when the first limited request arrives, never at cold start (limits and botocore cost ~60 ms).
"""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

from limits.errors import ConfigurationError
from limits.storage import Storage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

COUNTER_PREFIX = "RATELIMIT#"
WINDOW_PREFIX = "WINDOW#"
_HITS = "hits"
_LEASED = "leased"
_EXPIRES_AT = "expires_at"
_NAMES = {"#hits": _HITS, "#expires_at": _EXPIRES_AT}
_LEASE_NAMES = {"#leased": _LEASED, "#expires_at": _EXPIRES_AT}


@dataclass(frozen=True, slots=True)
class Counted:
    """What this request's increment of `key` left in the table: the count and when its window ends."""

    key: str
    hits: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Lease:
    """The table's answer to a lease: `granted` tokens (the slice asked for, or 0 when less than that was
    left) and `leased`, the window's total handed out to every container once this lease is counted (on a
    refusal: as the table holds it)."""

    granted: int
    leased: int


# The increment's own answer, kept for the rest of the request: the rate-limit headers come from it rather
# than from limits' get_window_stats, which would cost two more reads (get and get_expiry).
_last_counted: ContextVar[Counted | None] = ContextVar("ratelimit_last_counted", default=None)


def counted_by_this_request(key: str) -> Counted | None:
    """The result of the latest `incr(key)` made in the current request (context), if any."""
    counted = _last_counted.get()
    return counted if counted is not None and counted.key == key else None


class DynamoDBStorage(Storage):
    """Fixed-window counters for `limits` in a DynamoDB table keyed by string `pk`/`sk`.

    The client is created on first use, once per container, with short timeouts and at most
    `max_attempts` attempts: a counter must never hold a request for long. The endpoint, region and
    credentials come from the standard AWS SDK environment (`AWS_ENDPOINT_URL` points it at a stand-in).
    """

    # limits finds storages by this list (its registry reads the class body), so it stays a plain list.
    STORAGE_SCHEME = ["dynamodb"]  # noqa: RUF012

    def __init__(
        self,
        uri: str,
        wrap_exceptions: bool = False,
        *,
        region_name: str = "",
        connect_timeout: float = 1.0,
        read_timeout: float = 1.0,
        max_attempts: int = 2,
        **options: float | str | bool,
    ) -> None:
        table_name = urlparse(uri).netloc
        if not table_name:
            raise ConfigurationError("the DynamoDB rate-limit storage needs a table: dynamodb://<table>")
        self.table_name = table_name
        self.region_name = region_name or None
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_attempts = int(max_attempts)
        self._client: DynamoDBClient | None = None
        self._client_lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError)

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._create_client()
        return self._client

    def _create_client(self) -> DynamoDBClient:
        # botocore alone: boto3 would add s3transfer (~90 ms) to the first limited request for nothing.
        from botocore.config import Config
        from botocore.session import get_session

        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
        )
        client = get_session().create_client("dynamodb", region_name=self.region_name, config=config)
        return cast("DynamoDBClient", client)

    @staticmethod
    def _partition(key: str) -> dict[str, Any]:
        return {"S": COUNTER_PREFIX + key}

    @classmethod
    def _item_key(cls, key: str, window_start: int) -> dict[str, Any]:
        # Zero-padded, so the newest window sorts last as a string too.
        return {"pk": cls._partition(key), "sk": {"S": f"{WINDOW_PREFIX}{window_start:012d}"}}

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Adds `amount` to the current window's counter and returns its new value: one UpdateItem."""
        period = max(1, int(expiry))
        window_start = int(time.time()) // period * period
        expires_at = window_start + period
        response = self.client.update_item(
            TableName=self.table_name,
            Key=self._item_key(key, window_start),
            # ADD is atomic and creates the item; every writer of this window computes the same expiry.
            UpdateExpression="ADD #hits :amount SET #expires_at = :expires_at",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":amount": {"N": str(amount)}, ":expires_at": {"N": str(expires_at)}},
            ReturnValues="UPDATED_NEW",
        )
        hits = int(response["Attributes"][_HITS]["N"])
        _last_counted.set(Counted(key=key, hits=hits, expires_at=expires_at))
        return hits

    def lease(self, key: str, window_start: int, period: int, limit: int, amount: int) -> Lease:
        """Takes `amount` tokens of the window's budget for this container, unless fewer than that are
        left: one conditional UpdateItem either way (a refusal returns the item as it stands, so the caller
        learns what is left without a second call).

        limits' storage API has no such call (its strategies make one storage call per hit, and only its
        moving-window `acquire_entry` sees the limit at all), hence this extension.
        """
        from botocore.exceptions import BotoCoreError, ClientError
        from limits.errors import StorageError

        if not 0 < amount <= limit:
            raise ValueError(f"a lease takes 1 to {limit} tokens, not {amount}")
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=self._item_key(key, window_start),
                UpdateExpression="ADD #leased :amount SET #expires_at = :expires_at",
                ConditionExpression="attribute_not_exists(#leased) OR #leased <= :most_before",
                ExpressionAttributeNames=_LEASE_NAMES,
                ExpressionAttributeValues={
                    ":amount": {"N": str(amount)},
                    ":most_before": {"N": str(limit - amount)},
                    ":expires_at": {"N": str(window_start + period)},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                if self.wrap_exceptions:
                    raise StorageError(error) from error
                raise
            found = cast("dict[str, Any]", error.response).get("Item") or {}
            # Without the item, the least the refusal proves: more than `limit - amount` are leased.
            leased = int(found[_LEASED]["N"]) if _LEASED in found else limit - amount + 1
            return Lease(granted=0, leased=leased)
        except BotoCoreError as error:
            if self.wrap_exceptions:
                raise StorageError(error) from error
            raise
        return Lease(granted=amount, leased=int(response["Attributes"][_LEASED]["N"]))

    def _current_window(self, key: str) -> tuple[int, int] | None:
        """(hits, expires_at) of the key's newest window, unless that window has already ended. A leased
        window counts what it has handed out (spent or not): the most its containers can have admitted."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :window)",
            ExpressionAttributeNames={**_NAMES, **_LEASE_NAMES},
            ExpressionAttributeValues={":pk": self._partition(key), ":window": {"S": WINDOW_PREFIX}},
            ProjectionExpression="#hits, #leased, #expires_at",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items") or []
        if not items:
            return None
        expires_at = int(items[0][_EXPIRES_AT]["N"])
        # TTL deletes up to ~48 h late: an ended window is an empty one.
        if expires_at <= time.time():
            return None
        counted = items[0].get(_HITS) or items[0].get(_LEASED) or {"N": "0"}
        return int(counted["N"]), expires_at

    def get(self, key: str) -> int:
        window = self._current_window(key)
        return window[0] if window else 0

    def get_expiry(self, key: str) -> float:
        window = self._current_window(key)
        return float(window[1]) if window else time.time()

    def check(self) -> bool:
        try:
            self.client.get_item(
                TableName=self.table_name,
                Key=self._item_key("storage-check", 0),
                ProjectionExpression="pk",
            )
        except self.base_exceptions:
            return False
        return True

    def clear(self, key: str) -> None:
        """Deletes every window of `key` (what an operator runs to lift a limit early)."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :window)",
            "ExpressionAttributeValues": {":pk": self._partition(key), ":window": {"S": WINDOW_PREFIX}},
            "ProjectionExpression": "pk, sk",
        }
        for item in self._pages(self.client.query, query):
            self.client.delete_item(TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]})

    def reset(self) -> int | None:
        """Deletes every counter in the table: a Scan, for tests and operators (the app's role may not
        allow Scan at all)."""
        scan: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": COUNTER_PREFIX}},
            "ProjectionExpression": "pk, sk",
        }
        deleted = 0
        for item in self._pages(self.client.scan, scan):
            self.client.delete_item(TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
            deleted += 1
        return deleted

    @staticmethod
    def _pages(operation: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            response = operation(**request)
            items.extend(response.get("Items") or [])
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return items
            request = {**request, "ExclusiveStartKey": last_key}
