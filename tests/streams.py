"""Running the stream consumer as Lambda's event source mapping does, over the stand-in's real stream
records: read with DescribeStream/GetShardIterator/GetRecords, filtered by the mapping's filters, handed
to `stream.handler` in batches, failed records retried."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.resources import LocalResources
from local.stream_poller import BATCH_SIZE, InvocationContext, StreamReader, batches, deliver, wanted

import stream


@dataclass
class Consumer:
    """Reads the records written from its creation on (`LATEST`); `run()` delivers them, and the records
    the consumer's own writes add (checkpoints going on), until the stream is quiet."""

    resources: LocalResources
    batch_size: int = BATCH_SIZE
    context: Callable[[], Any] = InvocationContext
    delivered: list[list[dict[str, Any]]] = field(default_factory=list)
    given_up: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = StreamReader(self.resources.endpoint, self.resources.table_name, start="LATEST")
        self.reader.open()

    def records(self) -> list[dict[str, Any]]:
        """The records written since the last read that the event source mapping would deliver."""
        return [record for record in self.reader.read_all() if wanted(record, stream.RECORD_FILTERS)]

    def deliver(self, records: list[dict[str, Any]]) -> None:
        for batch in batches(records, self.batch_size):
            self.delivered.append(batch)
            self.given_up += deliver(
                stream.handler, batch, context=self.context, retry_attempts=0, pause=lambda _: None
            )

    def run(self, max_rounds: int = 100) -> int:
        """Delivers what the stream holds until it is quiet; returns how many invocations it took."""
        invocations = len(self.delivered)
        for _ in range(max_rounds):
            records = self.records()
            if not records:
                return len(self.delivered) - invocations
            self.deliver(records)
        raise AssertionError(f"the stream was not quiet after {max_rounds} rounds")
