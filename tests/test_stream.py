"""The stream consumer finishes interrupted clean-ups: fed the table's real stream records (read from the
stand-in with GetRecords) and the `sam local generate-event dynamodb update` fixture."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

import models
import stream
from tests.events import EVENTS, LambdaContext
from tests.test_identity import bearer


def stream_records(resources: LocalResources) -> list[dict[str, Any]]:
    """Every record on the table's stream so far, shaped as Lambda delivers them."""
    table = aws_client("dynamodb", resources.endpoint).describe_table(TableName=resources.table_name)["Table"]
    arn = table["LatestStreamArn"]
    streams = aws_client("dynamodbstreams", resources.endpoint)
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            record["eventSourceARN"] = arn
            for key in ("ApproximateCreationDateTime",):
                value = record["dynamodb"].get(key)
                if value is not None and not isinstance(value, (int, float)):
                    record["dynamodb"][key] = int(value.timestamp())
            records.append(record)
    return records


@pytest.fixture
def project_with_tasks(client: TestClient, make_user: Any) -> tuple[dict[str, str], str, list[str]]:
    owner = make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    task_ids = [
        client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": f"t{i}"}).json()[
            "id"
        ]
        for i in range(3)
    ]
    return owner, project_id, task_ids


def test_a_removed_project_has_its_leftover_items_purged(
    client: TestClient,
    aws_resources: LocalResources,
    project_with_tasks: tuple[dict[str, str], str, list[str]],
) -> None:
    owner, project_id, _ = project_with_tasks
    # The API's own purge "did not happen": only the project item is deleted.
    models.project.delete_project(project_id, owner["sub"], None)
    leftovers = list(models.table.StratusItem.query(models.project.project_key(project_id)))
    assert len(leftovers) == 4  # three tasks and the owner's membership
    removal = [
        r
        for r in stream_records(aws_resources)
        if r["eventName"] == "REMOVE" and r["dynamodb"]["Keys"]["pk"]["S"] == f"PROJECT#{project_id}"
    ]
    assert len(removal) == 1
    result = stream.handler({"Records": removal}, LambdaContext())
    assert result == {"batchItemFailures": []}
    assert list(models.table.StratusItem.query(models.project.project_key(project_id))) == []


def test_a_rename_refreshes_the_members_project_list(
    client: TestClient,
    aws_resources: LocalResources,
    project_with_tasks: tuple[dict[str, str], str, list[str]],
) -> None:
    owner, project_id, _ = project_with_tasks
    # Renamed without the API's follow-up refresh of the membership copies.
    models.project.update_project(project_id, owner["sub"], {"name": "Orbit II"}, None)
    assert client.get("/projects", headers=bearer(owner)).json()["items"][0]["name"] == "Orbit"
    renames = [
        r
        for r in stream_records(aws_resources)
        if r["eventName"] == "MODIFY" and r["dynamodb"]["Keys"]["pk"]["S"] == f"PROJECT#{project_id}"
    ]
    assert renames
    assert stream.handler({"Records": renames}, LambdaContext()) == {"batchItemFailures": []}
    assert client.get("/projects", headers=bearer(owner)).json()["items"][0]["name"] == "Orbit II"


def test_records_of_other_items_are_ignored_and_a_failing_record_is_reported_alone(
    app_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = json.loads((EVENTS / "dynamodb-update.json").read_text())
    assert stream.handler(copy.deepcopy(fixture), LambdaContext()) == {"batchItemFailures": []}

    broken = copy.deepcopy(fixture)
    removal = broken["Records"][2]
    removal["dynamodb"]["OldImage"] = {"type": {"S": "Project"}, "project_id": {"S": "P1"}}

    def purge_fails(project_id: str) -> int:
        raise RuntimeError("throttled")

    monkeypatch.setattr(models.project, "purge_project_items", purge_fails)
    result = stream.handler(broken, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": removal["dynamodb"]["SequenceNumber"]}]}
