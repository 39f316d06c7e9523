"""Deleting a large project: the request does a bounded amount of work whatever the project's size, and the
stream consumer, run over the stand-in's real stream records as Lambda's event source mapping delivers
them, purges the partition in bounded rounds continued through a checkpoint, within its time, resumably,
and idempotently, leaving nothing behind."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client
from local.stream_poller import InvocationContext

import models
import stream
from models.checkpoint import PURGE_SORT_KEY
from services import followups
from tests.data.dynamodb_calls import recording_aws_calls
from tests.data.helpers import data_test_environment
from tests.streams import Consumer
from tests.test_identity import bearer

TASKS = 2000


def _seed_tasks(project_id: str, creator: str, count: int) -> None:
    """Tasks written straight to the table (80 BatchWriteItem calls): the stand-in copies its whole table on
    every transaction, so creating thousands over HTTP would take many minutes."""
    now = datetime.now(UTC)
    with models.task.Task.batch_write() as batch:
        for i in range(count):
            suffix = models.ids.new_id()
            batch.save(
                models.task.Task(
                    models.project.project_key(project_id),
                    models.task.task_sort_key(suffix),
                    task_id=f"{project_id}.{suffix}",
                    project_id=project_id,
                    title=f"task {i}",
                    status="todo",
                    priority="medium",
                    created_by=creator,
                    created_at=now,
                    updated_at=now,
                    version=1,
                    gsi2pk=models.task.due_key(project_id),
                    gsi2sk=f"{models.task.NO_DUE_DATE}#{suffix}",
                )
            )


def _partition(resources: LocalResources, project_id: str) -> list[str]:
    """The sort keys left in the project's partition, read with the plain DynamoDB API."""
    dynamodb = aws_client("dynamodb", resources.endpoint)
    keys: list[str] = []
    arguments: dict[str, Any] = {
        "TableName": resources.table_name,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": f"PROJECT#{project_id}"}},
        "ProjectionExpression": "sk",
    }
    while True:
        page = dynamodb.query(**arguments)
        keys += [item["sk"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return keys
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _lines(log: io.StringIO, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == message]


@pytest.fixture(scope="module")
def app_environment(app_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    # The stand-in answers a Query page of 250 items in over a second on this machine (it serializes
    # slowly): the data tests' patient client limits.
    with data_test_environment(app_environment) as environment:
        yield environment


Project = tuple[dict[str, str], dict[str, str], str, int]


def _project_with_tasks(resources: LocalResources, client: TestClient, make_user: Any, tasks: int) -> Project:
    """A project with a member, a few tasks made over HTTP and their activity, and `tasks` more tasks.
    Returns the owner, the member, the project's id and how many items its partition holds."""
    owner, member = make_user(), make_user()
    consumer = Consumer(resources)
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Big"}).json()["id"]
    path = f"/projects/{project_id}"
    client.post(f"{path}/members", headers=bearer(owner), json={"subject": member["sub"], "role": "editor"})
    for i in range(3):
        task = client.post(f"{path}/tasks", headers=bearer(member), json={"title": f"t{i}"}).json()
        client.patch(f"/tasks/{task['id']}", headers=bearer(member), json={"status": "doing"})
    consumer.run()
    made = len(_partition(resources, project_id))
    assert made == 3 + 3 + 8  # the project, its memberships, the tasks and their activity entries
    _seed_tasks(project_id, owner["sub"], tasks)
    return owner, member, project_id, made + tasks


def test_deleting_a_project_of_2000_tasks_costs_two_calls_and_the_consumer_leaves_nothing_behind(
    aws_resources: LocalResources, client: TestClient, make_user: Any, app_log: io.StringIO
) -> None:
    owner, member, project_id, items = _project_with_tasks(aws_resources, client, make_user, TASKS)
    consumer = Consumer(aws_resources)

    with recording_aws_calls() as calls:
        response = client.delete(f"/projects/{project_id}", headers=bearer(owner))

    assert response.status_code == 204, response.text
    # Whatever the project's size (before: one Query and 81 BatchWriteItem calls more for this one).
    assert calls.operations() == ["GetItem", "TransactWriteItems"]
    assert client.get(f"/projects/{project_id}", headers=bearer(member)).status_code == 404
    assert client.get("/projects", headers=bearer(member)).json()["items"] == []

    # Lambda's event source mapping, batch by batch, until the stream is quiet.
    calls_per_invocation: list[list[str]] = []
    purge_records: list[dict[str, Any]] = []
    while records := consumer.records():
        purge_records += records
        for start in range(0, len(records), consumer.batch_size):
            with recording_aws_calls() as calls:
                consumer.deliver(records[start : start + consumer.batch_size])
            calls_per_invocation.append(calls.operations())

    assert consumer.given_up == []
    assert _partition(aws_resources, project_id) == []
    # The project's REMOVE, then one checkpoint record per further round: INSERT, MODIFY..., no REMOVE
    # (a checkpoint's deletion is filtered out).
    left = items - 3  # the project and its two memberships went at once
    rounds = -(-left // followups.PURGE_ROUND_ITEMS)
    assert [r["eventName"] for r in purge_records] == ["REMOVE"] + ["INSERT"] + ["MODIFY"] * (rounds - 2)
    assert [line["rounds"] for line in _lines(app_log, "purge continues")] == list(range(1, rounds))
    (finished,) = _lines(app_log, "purge finished")
    assert (finished["project_id"], finished["items"], finished["rounds"]) == (project_id, left, rounds)
    # Every invocation: a few Query pages and one BatchWriteItem per 25 items of its round, a checkpoint.
    for operations in calls_per_invocation:
        assert set(operations) <= {"Query", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"}
        assert operations.count("BatchWriteItem") <= followups.PURGE_ROUND_ITEMS // 25
        assert len(operations) <= followups.PURGE_ROUND_ITEMS // 25 + followups.PURGE_ROUND_ITEMS // 250 + 2

    # Lambda may deliver any of these again: nothing is written, no record follows.
    with recording_aws_calls() as calls:
        consumer.deliver(purge_records)
    assert consumer.given_up == []
    assert set(calls.operations()) <= {"Query", "DeleteItem"}
    assert consumer.records() == []
    assert _partition(aws_resources, project_id) == []


class RunningOutOfTime(InvocationContext):
    """An invocation whose clock shows plenty of time for the first `looks` looks, then too little."""

    def __init__(self, looks: int) -> None:
        super().__init__()
        self.looks = looks

    def get_remaining_time_in_millis(self) -> int:
        self.looks -= 1
        if self.looks >= 0:
            return 120_000
        return int(stream.followups.reserve_seconds(stream.settings) * 1000) - 1


@pytest.fixture
def small_rounds(monkeypatch: pytest.MonkeyPatch) -> int:
    """Rounds of 50 items: a few hundred items then take several rounds, as 2 000 do in rounds of 1 000."""
    monkeypatch.setattr(followups, "PURGE_ROUND_ITEMS", 50)
    return 50


def test_a_round_the_clock_cuts_short_leaves_a_checkpoint_that_carries_on(
    aws_resources: LocalResources, client: TestClient, make_user: Any, small_rounds: int, app_log: io.StringIO
) -> None:
    owner, _, project_id, items = _project_with_tasks(aws_resources, client, make_user, 200)
    consumer = Consumer(aws_resources)
    client.delete(f"/projects/{project_id}", headers=bearer(owner))
    (removal,) = consumer.records()

    # The record and its purge start (two looks), then one batch of 25 goes before the clock says stop.
    result = stream.handler({"Records": [removal]}, RunningOutOfTime(looks=3))

    assert result == {"batchItemFailures": []}
    left = _partition(aws_resources, project_id)
    assert len(left) == items - 3 - 25 + 1  # and the checkpoint
    checkpoint = models.checkpoint.Checkpoint.get(models.project.project_key(project_id), PURGE_SORT_KEY)
    assert (checkpoint.round, checkpoint.done) == (1, 25)

    consumer.run()
    assert consumer.given_up == []
    assert _partition(aws_resources, project_id) == []
    assert _lines(app_log, "purge finished")[0]["items"] == items - 3


def test_a_purge_whose_records_were_lost_resumes_when_its_checkpoint_is_touched(
    aws_resources: LocalResources, client: TestClient, make_user: Any, small_rounds: int
) -> None:
    owner, _, project_id, _ = _project_with_tasks(aws_resources, client, make_user, 200)
    consumer = Consumer(aws_resources)
    client.delete(f"/projects/{project_id}", headers=bearer(owner))
    consumer.deliver(consumer.records())
    # The checkpoint's record never arrives (the consumer gave up on it; the stream dropped it).
    assert [r["eventName"] for r in consumer.records()] == ["INSERT"]
    assert PURGE_SORT_KEY in _partition(aws_resources, project_id)

    # docs/operations.md: touching the checkpoint makes a record that carries the purge on.
    aws_client("dynamodb", aws_resources.endpoint).update_item(
        TableName=aws_resources.table_name,
        Key={"pk": {"S": f"PROJECT#{project_id}"}, "sk": {"S": PURGE_SORT_KEY}},
        UpdateExpression="SET nudged_at = :now",
        ExpressionAttributeValues={":now": {"S": datetime.now(UTC).isoformat()}},
    )
    consumer.run()

    assert consumer.given_up == []
    assert _partition(aws_resources, project_id) == []
