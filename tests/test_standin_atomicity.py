"""The stand-in gives DynamoDB's per-operation atomicity: the app's concurrency guarantees (conditional
transactions above all) are only tested for real when concurrent calls cannot interleave inside one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from local.resources import LocalResources

THREADS = 8


def run_at_once(work: Callable[[int], Any]) -> list[Any]:
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(index: int) -> None:
        start.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.fixture(scope="module")
def dynamodb(aws_resources: LocalResources) -> Any:
    return boto3.client("dynamodb", endpoint_url=aws_resources.endpoint)


def test_conditional_transactions_on_one_item_admit_exactly_one_writer(
    dynamodb: Any, aws_resources: LocalResources
) -> None:
    """Each round, every thread tries to claim the same free slot with a transaction whose condition is
    that the slot is still free: exactly one claim per round may succeed."""
    rounds = 15
    for round_number in range(rounds):
        key = {"pk": {"S": "ATOMICITY#slot"}, "sk": {"S": f"ROUND#{round_number}"}}
        dynamodb.put_item(TableName=aws_resources.table_name, Item={**key, "holder": {"S": "-"}})

        def claim(index: int, key: dict[str, Any] = key, round_number: int = round_number) -> str:
            try:
                dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": aws_resources.table_name,
                                "Key": key,
                                "UpdateExpression": "SET holder = :me",
                                "ConditionExpression": "holder = :free",
                                "ExpressionAttributeValues": {":me": {"S": str(index)}, ":free": {"S": "-"}},
                            }
                        },
                        {
                            "Put": {
                                "TableName": aws_resources.table_name,
                                "Item": {
                                    "pk": {"S": "ATOMICITY#claim"},
                                    "sk": {"S": f"ROUND#{round_number}#{index}"},
                                },
                            }
                        },
                    ]
                )
            except ClientError as error:
                return str(error.response["Error"]["Code"])
            return "claimed"

        claims = run_at_once(claim)
        assert sorted(claims) == sorted(["claimed"] + ["TransactionCanceledException"] * (THREADS - 1)), (
            claims
        )
        written = dynamodb.query(
            TableName=aws_resources.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :round)",
            ExpressionAttributeValues={
                ":pk": {"S": "ATOMICITY#claim"},
                ":round": {"S": f"ROUND#{round_number}#"},
            },
            ConsistentRead=True,
        )["Items"]
        assert len(written) == 1, (round_number, written)


def test_a_transaction_is_applied_once_per_client_request_token(
    dynamodb: Any, aws_resources: LocalResources
) -> None:
    """As on DynamoDB: botocore's retry of a transaction whose first attempt landed (a read timeout) carries
    the same token and succeeds without writing again, instead of failing its own conditions."""
    key = {"pk": {"S": "IDEMPOTENT#item"}, "sk": {"S": "ONCE"}}

    def create(name: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": aws_resources.table_name,
                "Item": {**key, "name": {"S": name}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    token = "retried-after-a-timeout"
    dynamodb.transact_write_items(TransactItems=[create("first")], ClientRequestToken=token)
    dynamodb.transact_write_items(TransactItems=[create("first")], ClientRequestToken=token)
    item = dynamodb.get_item(TableName=aws_resources.table_name, Key=key, ConsistentRead=True)["Item"]
    assert item["name"] == {"S": "first"}
    with pytest.raises(ClientError) as other_items:
        dynamodb.transact_write_items(TransactItems=[create("second")], ClientRequestToken=token)
    assert other_items.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    # Without the token (or with a new one) it is a new call, and its condition refuses it.
    with pytest.raises(ClientError) as new_call:
        dynamodb.transact_write_items(TransactItems=[create("first")], ClientRequestToken="another-call")
    assert new_call.value.response["Error"]["Code"] == "TransactionCanceledException"
