"""The stand-in's memory follows what the tables hold, not how often they were written: a long test run
must not leave it so big that every garbage collection stalls the DynamoDB calls of the tests after it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import boto3
import pytest
from local.resources import LocalResources
from local.standin import StandIn

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MIB = 1024 * 1024


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_transactions_leave_no_copies_of_the_table_behind(
    standin: StandIn, aws_resources: LocalResources
) -> None:
    """moto copies every table a transaction writes (stream included) to roll back with. Kept, those copies
    grow with the square of the writes: here 300 transactions of 2 KiB items would hold ~45,000 item
    copies (100+ MiB); the table itself holds 300 items and 300 stream records (~2 MiB)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=aws_resources.endpoint)
    partition = f"MEMORY#{uuid.uuid4().hex}"
    before = resident_bytes(standin.process.pid)
    for index in range(300):
        item = {"pk": {"S": partition}, "sk": {"S": f"ITEM#{index:04d}"}, "payload": {"S": "x" * 2048}}
        dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": aws_resources.table_name, "Item": item}}]
        )
    grown = resident_bytes(standin.process.pid) - before
    assert grown < 30 * MIB, f"the stand-in grew by {grown / MIB:.0f} MiB"
