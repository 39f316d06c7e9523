"""Rate-limit counters in the app's DynamoDB table: a `limits` storage registered as `dynamodb://<table>`.

Fixed windows, not a sliding-window counter: limits' fixed-window strategy makes one `incr` per hit, and
that is one UpdateItem (ADD, ReturnValues=UPDATED_NEW), so a limited request costs exactly one DynamoDB call.
A sliding-window counter needs the previous window's count too and a check before the increment, which
is a read-modify-write (two calls, or a conditional retry) per request. The price of fixed windows: a
client can spend its budget at the end of one window and again at the start of the next.

Windows are aligned to the epoch (a minute limit resets at every full minute) and each key gets one item
per window (`pk=RATELIMIT#<key>`, `sk=WINDOW#<start>`), so containers never race to reset a counter: the
next window is simply another item. `expires_at` (epoch seconds) is the table's TTL attribute, which
deletes old windows; TTL runs lazily, so reads ignore any window whose `expires_at` has passed.

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
_EXPIRES_AT = "expires_at"
_NAMES = {"#hits": _HITS, "#expires_at": _EXPIRES_AT}


@dataclass(frozen=True, slots=True)
class Counted:
    """What this request's increment of `key` left in the table: the count and when its window ends."""

    key: str
    hits: int
    expires_at: int


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

    def _current_window(self, key: str) -> tuple[int, int] | None:
        """(hits, expires_at) of the key's newest window, unless that window has already ended."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :window)",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":pk": self._partition(key), ":window": {"S": WINDOW_PREFIX}},
            ProjectionExpression="#hits, #expires_at",
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
        return int(items[0][_HITS]["N"]), expires_at

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
