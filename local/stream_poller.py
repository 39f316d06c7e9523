"""Under `make dev`, the table's stream reaches the same consumer as in AWS: this process polls the
stand-in's DynamoDB Streams API (DescribeStream, GetShardIterator, GetRecords), keeps the records the
event source mapping's filters keep (stream.RECORD_FILTERS), and hands them to `stream.handler` in batches
shaped as Lambda delivers them, retrying from the first failed record as Lambda does. It runs beside the
API in its own process (requests never wait for it) until its parent goes away.

`python -m local.stream_poller --parent-pid PID` with the app's environment (TABLE_NAME, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.resources import aws_client

# As the template's event source mapping: records per batch, retries of a failing batch, and the time one
# invocation may take.
BATCH_SIZE = 50
MAX_RETRY_ATTEMPTS = 5
TIMEOUT_SECONDS = 120
_IDLE_SECONDS = 0.5

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _matches(pattern: Any, value: Any) -> bool:
    """An event filter pattern of the kind the template uses: nested objects ending in lists of exact
    values (the subset of Lambda's filter syntax stream.RECORD_FILTERS is written in)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            name in value and _matches(inner, value[name]) for name, inner in pattern.items()
        )
    if isinstance(pattern, list):
        return value in pattern
    raise ValueError(f"unsupported filter pattern: {pattern!r}")


def wanted(record: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    """Whether the event source mapping would deliver `record` (any filter matching it)."""
    return any(_matches(pattern, record) for pattern in filters)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record (as boto3 returns it) in the shape of a Lambda DynamoDB stream event record."""
    shaped = {**record, "eventSourceARN": stream_arn, "dynamodb": dict(record["dynamodb"])}
    moment = shaped["dynamodb"].get("ApproximateCreationDateTime")
    if isinstance(moment, datetime):
        shaped["dynamodb"]["ApproximateCreationDateTime"] = int(moment.timestamp())
    return shaped


@dataclass
class StreamReader:
    """Reads a table's stream shard by shard, from the oldest record (`TRIM_HORIZON`) or from now on
    (`LATEST`), and remembers where it stopped."""

    endpoint: str
    table_name: str
    start: str = "TRIM_HORIZON"
    _iterators: dict[str, str] = field(default_factory=dict)
    _arn: str = ""

    def _streams(self) -> Any:
        return aws_client("dynamodbstreams", self.endpoint)

    def open(self) -> None:
        """Takes the shards' iterators now (for `LATEST`: records written from this moment on)."""
        table = aws_client("dynamodb", self.endpoint).describe_table(TableName=self.table_name)["Table"]
        self._arn = table["LatestStreamArn"]
        streams = self._streams()
        for shard in streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard["ShardId"], ShardIteratorType=self.start
                )["ShardIterator"]

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The records written since the last read (up to `limit` per shard), in Lambda's shape."""
        if not self._iterators:
            self.open()
        streams = self._streams()
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            answer = streams.get_records(ShardIterator=iterator, Limit=limit)
            self._iterators[shard_id] = answer["NextShardIterator"]
            records += [lambda_record(record, self._arn) for record in answer["Records"]]
        return records

    def read_all(self) -> list[dict[str, Any]]:
        """Every record written since the last read."""
        records: list[dict[str, Any]] = []
        while batch := self.read():
            records += batch
        return records


class InvocationContext:
    """The part of a Lambda context the consumer reads: its time left runs down from `timeout_seconds`."""

    function_name = "stratus-stream"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratus-stream"

    def __init__(self, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self.aws_request_id = f"local-{time.monotonic_ns()}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def batches(records: list[dict[str, Any]], size: int = BATCH_SIZE) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def deliver(
    handler: Handler,
    batch: list[dict[str, Any]],
    *,
    context: Callable[[], Any] = InvocationContext,
    retry_attempts: int = MAX_RETRY_ATTEMPTS,
    pause: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Invokes the handler with one batch as Lambda does with ReportBatchItemFailures: after a partial
    failure it retries from the first failed record (and everything after it), at most `retry_attempts`
    times. Returns the records it gave up on (what the failure queue would describe)."""
    pending = batch
    for attempt in range(retry_attempts + 1):
        try:
            result = handler({"Records": pending}, context())
            failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        except Exception:  # a failed invocation: Lambda retries the whole batch
            failed = {record["dynamodb"]["SequenceNumber"] for record in pending}
        if not failed:
            return []
        first = next(i for i, record in enumerate(pending) if record["dynamodb"]["SequenceNumber"] in failed)
        pending = pending[first:]
        if attempt < retry_attempts:
            pause(min(2.0**attempt * 0.2, 5.0))
    return pending


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return os.getppid() == pid


def run(endpoint: str, table_name: str, parent_pid: int | None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    # Imported here: the consumer binds its models to the table named in the environment when imported.
    import stream

    reader = StreamReader(endpoint, table_name)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    def pause(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop and time.monotonic() < deadline:
            time.sleep(0.05)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stop and (parent_pid is None or _parent_alive(parent_pid)):
        try:
            records = [record for record in reader.read() if wanted(record, stream.RECORD_FILTERS)]
        except (BotoCoreError, ClientError) as error:
            # The stand-in stops first when Ctrl-C reaches the whole process group.
            print(f"stream: cannot read the stream ({error})", file=sys.stderr, flush=True)
            pause(1.0)
            continue
        for batch in batches(records):
            given_up = deliver(stream.handler, batch, pause=pause)
            if given_up and not stop:
                sequence = [record["dynamodb"]["SequenceNumber"] for record in given_up]
                print(
                    f"stream: gave up on {len(given_up)} record(s) {sequence[0]}..{sequence[-1]} after "
                    f"{MAX_RETRY_ATTEMPTS} retries (deployed, the failure queue would describe them)",
                    file=sys.stderr,
                    flush=True,
                )
        if not records:
            pause(_IDLE_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args()
    run(os.environ["AWS_ENDPOINT_URL"], os.environ["TABLE_NAME"], args.parent_pid)


if __name__ == "__main__":
    main()
