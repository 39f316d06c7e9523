"""The stream consumer finishes interrupted clean-ups: fed the table's real stream records (read from the
stand-in with GetRecords) and the `sam local generate-event dynamodb update` fixture. When the API's own
follow-up of a committed write fails, the API answers the success and the consumer repairs what is left."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

import models
import stream
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.events import EVENTS, LambdaContext
from tests.test_identity import bearer
from tests.test_transient_failures import refusal


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


def _records_of(resources: LocalResources, project_id: str, event_name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in stream_records(resources)
        if r["eventName"] == event_name and r["dynamodb"]["Keys"]["pk"]["S"] == f"PROJECT#{project_id}"
    ]


@contextmanager
def dynamodb_failing(operation: str, answer: Callable[[dict[str, Any]], Any]) -> Iterator[list[str]]:
    """Inside the block, every `operation` call gets `answer(params)` (a response, or an error raised)."""
    failed: list[str] = []

    def failing(call: AwsCall) -> Any:
        if call.operation != operation:
            return call.proceed()
        failed.append(call.operation)
        return answer(call.params)

    with intercepting_aws_calls(failing):
        yield failed


def _throttled(params: dict[str, Any], operation: str = "") -> Any:
    raise refusal(operation)


def _left_unprocessed(params: dict[str, Any]) -> dict[str, Any]:
    """BatchWriteItem under load: nothing written, everything handed back as unprocessed."""
    return {"UnprocessedItems": params["RequestItems"]}


def _follow_up_warnings(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message", "").startswith("a follow-up write failed")]


def test_a_rename_whose_membership_refresh_fails_still_succeeds_and_the_stream_refreshes(
    client: TestClient,
    aws_resources: LocalResources,
    make_user: Any,
    app_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})

    with dynamodb_failing(
        "TransactWriteItems", lambda params: _throttled(params, "TransactWriteItems")
    ) as failed:
        response = client.patch(f"/projects/{project_id}", headers=bearer(owner), json={"name": "Orbit II"})

    assert failed == ["TransactWriteItems"]
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Orbit II"
    assert [w["step"] for w in _follow_up_warnings(app_log)] == ["refresh memberships"]
    assert "FollowUpsLeftToStream" in capsys.readouterr().out  # the metric, as one EMF line
    for user in (owner, member):
        assert client.get("/projects", headers=bearer(user)).json()["items"][0]["name"] == "Orbit"

    records = _records_of(aws_resources, project_id, "MODIFY")
    assert stream.handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    for user in (owner, member):
        assert client.get("/projects", headers=bearer(user)).json()["items"][0]["name"] == "Orbit II"


def test_a_delete_whose_purge_fails_still_succeeds_and_the_stream_purges(
    client: TestClient,
    aws_resources: LocalResources,
    project_with_tasks: tuple[dict[str, str], str, list[str]],
    app_log: io.StringIO,
) -> None:
    owner, project_id, task_ids = project_with_tasks

    with dynamodb_failing("BatchWriteItem", _left_unprocessed) as failed:
        response = client.delete(f"/projects/{project_id}", headers=bearer(owner))

    assert failed
    assert response.status_code == 204, response.text
    assert [w["step"] for w in _follow_up_warnings(app_log)] == ["purge project items"]
    assert len(list(models.table.StratusItem.query(models.project.project_key(project_id)))) == 4
    # Until the purge, the leftovers are unreachable: the project and its tasks answer 404.
    assert client.get(f"/projects/{project_id}", headers=bearer(owner)).status_code == 404
    for task_id in task_ids:
        assert client.get(f"/tasks/{task_id}", headers=bearer(owner)).status_code == 404

    removal = _records_of(aws_resources, project_id, "REMOVE")
    assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in removal] == ["PROJECT"]
    assert stream.handler({"Records": removal}, LambdaContext()) == {"batchItemFailures": []}
    assert list(models.table.StratusItem.query(models.project.project_key(project_id))) == []
    assert client.get("/projects", headers=bearer(owner)).json()["items"] == []


def test_a_removal_whose_unassignment_fails_still_succeeds_and_the_stream_unassigns(
    client: TestClient, aws_resources: LocalResources, make_user: Any, app_log: io.StringIO
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})
    task = client.post(
        f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t", "assignee": member["sub"]}
    ).json()

    with dynamodb_failing("UpdateItem", lambda params: _throttled(params, "UpdateItem")) as failed:
        response = client.delete(f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner))

    assert failed
    assert response.status_code == 204, response.text
    assert [w["step"] for w in _follow_up_warnings(app_log)] == ["unassign a removed member"]
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] == member["sub"]
    assert client.get("/me/tasks", headers=bearer(member)).json()["items"] == []

    records = _records_of(aws_resources, project_id, "MODIFY")
    assert stream.handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] is None


def test_the_stream_leaves_the_tasks_of_a_member_who_came_back(
    client: TestClient, aws_resources: LocalResources, make_user: Any
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    members = f"/projects/{project_id}/members"
    client.post(members, headers=bearer(owner), json={"subject": member["sub"]})
    assert client.delete(f"{members}/{member['sub']}", headers=bearer(owner)).status_code == 204
    client.post(members, headers=bearer(owner), json={"subject": member["sub"], "role": "editor"})
    task = client.post(
        f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t", "assignee": member["sub"]}
    ).json()

    # The removal's record arrives late, after the member was added back and given a task.
    records = _records_of(aws_resources, project_id, "MODIFY")
    assert stream.handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] == member["sub"]


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
