"""The stream consumer does what follows a committed change: fed the table's real stream records (read from
the stand-in with the DynamoDB Streams API, filtered as the event source mapping filters them) and the
`sam local generate-event dynamodb update` fixture. When the API's own follow-up of a committed write
fails, the API answers the success and the consumer repairs what is left; copies it writes never go back
to an older value."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client
from local.stream_poller import InvocationContext, deliver

import models
import stream
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.data.dynamodb_calls import recording_aws_calls
from tests.events import EVENTS
from tests.streams import Consumer
from tests.test_identity import bearer
from tests.test_transient_failures import refusal


@pytest.fixture
def consumer(aws_resources: LocalResources, app_environment: dict[str, str]) -> Consumer:
    return Consumer(aws_resources)


def _partition(project_id: str) -> list[str]:
    """The sort keys of every item in the project's partition, whatever its type."""
    page = models.table.StratusItem._get_connection().query(
        models.project.project_key(project_id), attributes_to_get=["sk"]
    )
    assert "LastEvaluatedKey" not in page
    return [item["sk"]["S"] for item in page["Items"]]


def _names(client: TestClient, user: dict[str, str]) -> list[str]:
    return [project["name"] for project in client.get("/projects", headers=bearer(user)).json()["items"]]


@contextmanager
def dynamodb_failing(
    operation: str, answer: Callable[[dict[str, Any]], Any], *, after: int = 0
) -> Iterator[list[str]]:
    """Inside the block, every `operation` call after the first `after` gets `answer(params)` (a
    response, or an error raised)."""
    failed: list[str] = []
    seen = 0

    def failing(call: AwsCall) -> Any:
        nonlocal seen
        if call.operation != operation:
            return call.proceed()
        seen += 1
        if seen <= after:
            return call.proceed()
        failed.append(call.operation)
        return answer(call.params)

    with intercepting_aws_calls(failing):
        yield failed


def _throttled(operation: str) -> Callable[[dict[str, Any]], Any]:
    def answer(params: dict[str, Any]) -> Any:
        raise refusal(operation)

    return answer


def _follow_up_warnings(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message", "").startswith("a follow-up write failed")]


def test_a_deleted_project_is_gone_at_once_and_the_consumer_purges_its_partition(
    consumer: Consumer, client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})
    task_ids = [
        client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": f"t{i}"}).json()[
            "id"
        ]
        for i in range(3)
    ]
    consumer.run()  # the feed of what happened so far: purged with the rest
    assert any(sk.startswith("ACTIVITY#") for sk in _partition(project_id))
    # An item of a type this code does not know (another version's, say) is purged too.
    aws_client("dynamodb", aws_resources.endpoint).put_item(
        TableName=aws_resources.table_name,
        Item={"pk": {"S": f"PROJECT#{project_id}"}, "sk": {"S": "LATER#1"}, "type": {"S": "Later"}},
    )

    assert client.delete(f"/projects/{project_id}", headers=bearer(owner)).status_code == 204

    # Unreachable at once, and gone from every member's list; the tasks wait for the consumer.
    assert client.get(f"/projects/{project_id}", headers=bearer(owner)).status_code == 404
    for task_id in task_ids:
        assert client.get(f"/tasks/{task_id}", headers=bearer(owner)).status_code == 404
    assert _names(client, owner) == _names(client, member) == []
    assert len([sk for sk in _partition(project_id) if sk.startswith("TASK#")]) == 3

    consumer.run()
    assert consumer.given_up == []
    assert _partition(project_id) == []


def test_a_rename_refreshes_the_members_project_list(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner = make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    # Renamed without the API's follow-up refresh of the membership copies.
    models.project.update_project(project_id, owner["sub"], {"name": "Orbit II"}, None)
    assert _names(client, owner) == ["Orbit"]
    consumer.run()
    assert consumer.given_up == []
    assert _names(client, owner) == ["Orbit II"]


def test_a_rename_whose_membership_refresh_fails_still_succeeds_and_the_stream_refreshes(
    consumer: Consumer,
    client: TestClient,
    make_user: Any,
    app_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})

    with dynamodb_failing("TransactWriteItems", _throttled("TransactWriteItems")) as failed:
        response = client.patch(f"/projects/{project_id}", headers=bearer(owner), json={"name": "Orbit II"})

    assert failed == ["TransactWriteItems"]
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Orbit II"
    assert [w["step"] for w in _follow_up_warnings(app_log)] == ["refresh memberships"]
    assert "FollowUpsLeftToStream" in capsys.readouterr().out  # the metric, as one EMF line
    assert _names(client, owner) == _names(client, member) == ["Orbit"]

    consumer.run()
    assert consumer.given_up == []
    assert _names(client, owner) == _names(client, member) == ["Orbit II"]


def test_an_older_refresh_arriving_after_a_newer_one_does_not_bring_the_old_name_back(
    client: TestClient, make_user: Any
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})
    client.patch(f"/projects/{project_id}", headers=bearer(owner), json={"name": "Orbit II"})
    older = models.project.get_project(project_id)  # version n, "Orbit II"
    client.patch(f"/projects/{project_id}", headers=bearer(owner), json={"name": "Orbit III"})
    assert older is not None
    assert _names(client, member) == ["Orbit III"]

    models.project.refresh_memberships(older)

    assert _names(client, owner) == _names(client, member) == ["Orbit III"]


def test_the_consumers_refresh_loses_the_race_to_a_newer_rename(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    """The consumer reads the project, a newer rename commits and refreshes, then the consumer writes
    what it read: the copy must keep the newer name."""
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})
    models.project.update_project(project_id, owner["sub"], {"name": "Orbit II"}, None)  # no refresh
    records = consumer.records()
    renamed_meanwhile = False

    def rename_after_the_consumers_read(call: AwsCall) -> Any:
        nonlocal renamed_meanwhile
        result = call.proceed()
        if call.operation == "GetItem" and not renamed_meanwhile:
            renamed_meanwhile = True
            response = client.patch(
                f"/projects/{project_id}", headers=bearer(owner), json={"name": "Orbit III"}
            )
            assert response.status_code == 200, response.text
        return result

    with intercepting_aws_calls(rename_after_the_consumers_read):
        consumer.deliver(records)

    assert renamed_meanwhile
    assert consumer.given_up == []
    assert _names(client, owner) == _names(client, member) == ["Orbit III"]


def test_a_member_added_before_a_rename_refreshes_gets_the_new_name(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    project = models.project.get_project(project_id)
    assert project is not None
    # The rename commits between the add's read and its transaction: the new membership copies the old name.
    models.project.update_project(project_id, owner["sub"], {"name": "Orbit II"}, None)
    models.project.change_roles(
        project_id, owner["sub"], member["sub"], new_role="viewer", current_role=None, project=project
    )
    assert _names(client, member) == ["Orbit"]
    consumer.run()
    assert _names(client, owner) == _names(client, member) == ["Orbit II"]


def test_removing_a_member_unassigns_a_bounded_number_at_once_and_the_consumer_the_rest(
    consumer: Consumer, client: TestClient, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small batch (25 deployed) keeps the test quick: the stand-in copies its tables on every transaction.
    monkeypatch.setattr(models.task, "UNASSIGN_BATCH", 3)
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(
        f"/projects/{project_id}/members",
        headers=bearer(owner),
        json={"subject": member["sub"], "role": "editor"},
    )
    batch = models.task.UNASSIGN_BATCH
    for i in range(batch + 2):
        response = client.post(
            f"/projects/{project_id}/tasks",
            headers=bearer(owner),
            json={"title": f"t{i}", "assignee": member["sub"]},
        )
        assert response.status_code == 201, response.text

    with recording_aws_calls() as calls:
        response = client.delete(f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner))
    assert response.status_code == 204, response.text
    assert calls.operations() == ["GetItem", "TransactWriteItems", "Query", "TransactWriteItems"]

    def assigned() -> int:
        tasks = client.get(f"/projects/{project_id}/tasks", headers=bearer(owner), params={"limit": 100})
        return sum(1 for task in tasks.json()["items"] if task["assignee"] == member["sub"])

    assert assigned() == 2
    consumer.run()
    assert consumer.given_up == []
    assert assigned() == 0


def test_a_removal_whose_unassignment_fails_still_succeeds_and_the_stream_unassigns(
    consumer: Consumer, client: TestClient, make_user: Any, app_log: io.StringIO
) -> None:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]})
    task = client.post(
        f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t", "assignee": member["sub"]}
    ).json()

    # The removal's own transaction goes through; the unassignment's is throttled.
    with dynamodb_failing("TransactWriteItems", _throttled("TransactWriteItems"), after=1) as failed:
        response = client.delete(f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner))

    assert failed
    assert response.status_code == 204, response.text
    assert [w["step"] for w in _follow_up_warnings(app_log)] == ["unassign a removed member"]
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] == member["sub"]
    assert client.get("/me/tasks", headers=bearer(member)).json()["items"] == []

    consumer.run()
    assert consumer.given_up == []
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] is None


def test_the_stream_leaves_the_tasks_of_a_member_who_came_back(
    consumer: Consumer, client: TestClient, make_user: Any
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
    consumer.run()
    assert consumer.given_up == []
    assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] == member["sub"]


def test_records_of_other_items_are_ignored_and_a_failing_record_is_reported_alone(
    app_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = json.loads((EVENTS / "dynamodb-update.json").read_text())
    assert stream.handler(copy.deepcopy(fixture), InvocationContext()) == {"batchItemFailures": []}

    broken = copy.deepcopy(fixture)
    removal = broken["Records"][2]
    removal["dynamodb"]["OldImage"] = {"type": {"S": "Project"}, "project_id": {"S": "P1"}}

    def purge_fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("throttled")

    monkeypatch.setattr(models.project, "purge_round", purge_fails)
    result = stream.handler(broken, InvocationContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": removal["dynamodb"]["SequenceNumber"]}]}


def test_with_too_little_time_left_no_record_starts_and_all_are_retried(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner = make_user()
    client.post("/projects", headers=bearer(owner), json={"name": "Orbit"})
    records = consumer.records()
    assert records
    reserve = stream.followups.reserve_seconds(stream.settings)

    with recording_aws_calls() as calls, pytest.raises(BatchProcessingError) as failure:
        stream.handler({"Records": records}, InvocationContext(timeout_seconds=reserve - 1))

    # Every record failed, so the invocation fails and Lambda retries the batch; nothing was started.
    assert len(failure.value.child_exceptions) == len(records)
    assert calls.operations() == []


def test_a_long_unassignment_goes_on_through_checkpoints_until_done(
    consumer: Consumer,
    client: TestClient,
    make_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    app_log: io.StringIO,
) -> None:
    """Rounds of one Query page of two tasks: five assigned tasks take several rounds, as a member with
    thousands of tasks does in rounds of 2 000."""
    monkeypatch.setattr(models.task, "UNASSIGN_BATCH", 1)
    monkeypatch.setattr(models.task, "UNASSIGN_PAGE", 2)
    monkeypatch.setattr(stream.followups, "UNASSIGN_ROUND_PAGES", 1)
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Orbit"}).json()["id"]
    client.post(
        f"/projects/{project_id}/members",
        headers=bearer(owner),
        json={"subject": member["sub"], "role": "editor"},
    )
    tasks = [
        client.post(
            f"/projects/{project_id}/tasks",
            headers=bearer(owner),
            json={"title": f"t{i}", "assignee": member["sub"]},
        ).json()
        for i in range(5)
    ]
    client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "unassigned"})
    assert (
        client.delete(f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner)).status_code
        == 204
    )

    rounds = consumer.run()

    assert consumer.given_up == []
    for task in tasks:
        assert client.get(f"/tasks/{task['id']}", headers=bearer(owner)).json()["assignee"] is None
    assert rounds >= 3
    assert not [sk for sk in _partition(project_id) if sk.startswith("CHECKPOINT#")]
    (finished,) = [
        json.loads(line)
        for line in app_log.getvalue().splitlines()
        if line.startswith("{") and json.loads(line).get("message") == "unassignment finished"
    ]
    assert (finished["subject"], finished["stopped"]) == (member["sub"], False)
    assert finished["tasks"] == 4  # the request cleared the first


def test_the_local_stack_retries_from_the_first_failed_record_as_lambda_does() -> None:
    records = [{"dynamodb": {"SequenceNumber": str(n)}} for n in range(1, 5)]
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        numbers = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        seen.append(numbers)
        # Record 2 fails twice, then succeeds; record 4 fails every time.
        failing = [n for n in numbers if n == "4" or (n == "2" and len(seen) <= 2)]
        return {"batchItemFailures": [{"itemIdentifier": n} for n in failing]}

    given_up = deliver(handler, records, retry_attempts=3, pause=lambda _: None)

    assert seen == [["1", "2", "3", "4"], ["2", "3", "4"], ["2", "3", "4"], ["4"]]
    assert given_up == [records[3]]
