"""The activity feed end to end: writes over HTTP, the table's real stream records (read from the stand-in's
DynamoDB Streams API) fed to the consumer as Lambda delivers them, the feed read back over HTTP. Requests
pay nothing for it; redeliveries write nothing twice; a bad record fails alone."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from local.resources import LocalResources
from local.stream_poller import InvocationContext

import models
import stream
from models.activity import Activity
from tests.data.dynamodb_calls import recording_aws_calls
from tests.data.helpers import assert_problem, bearer
from tests.streams import Consumer

User = dict[str, str]


@pytest.fixture
def consumer(aws_resources: LocalResources, app_environment: dict[str, str]) -> Consumer:
    return Consumer(aws_resources)


def feed(client: TestClient, user: User, project_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every entry, following next_cursor page by page."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/projects/{project_id}/activity", headers=bearer(user), params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


def _project(client: TestClient, owner: User, name: str = "Orbit") -> str:
    response = client.post("/projects", headers=bearer(owner), json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def test_the_feed_tells_who_did_what_newest_first(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner, editor = make_user(), make_user()
    project_id = _project(client, owner)
    path = f"/projects/{project_id}"
    _ok(
        client.post(
            f"{path}/members", headers=bearer(owner), json={"subject": editor["sub"], "role": "editor"}
        ),
        201,
    )
    task = _ok(
        client.post(
            f"{path}/tasks", headers=bearer(editor), json={"title": "Write", "assignee": editor["sub"]}
        ),
        201,
    )
    _ok(
        client.patch(
            f"/tasks/{task['id']}", headers=bearer(editor), json={"status": "doing", "priority": "high"}
        )
    )
    _ok(client.patch(f"/tasks/{task['id']}", headers=bearer(editor), json={"description": "x" * 3000}))
    _ok(client.patch(path, headers=bearer(owner), json={"name": "Orbit II"}))
    _ok(client.patch(path, headers=bearer(owner), json={"archived": True}))
    _ok(client.patch(path, headers=bearer(owner), json={"archived": False}))
    _ok(client.patch(f"{path}/members/{editor['sub']}", headers=bearer(owner), json={"role": "viewer"}))
    _ok(client.delete(f"{path}/members/{editor['sub']}", headers=bearer(owner)), 204)
    gone = _ok(client.post(f"{path}/tasks", headers=bearer(owner), json={"title": "Scratch"}), 201)
    _ok(client.delete(f"/tasks/{gone['id']}", headers=bearer(owner)), 204)

    consumer.run()
    assert consumer.given_up == []
    entries = feed(client, owner, project_id)

    o, e = owner["sub"], editor["sub"]
    assert [(entry["action"], entry["actor"]) for entry in entries] == [
        ("task.deleted", o),
        ("task.created", o),
        # The removal's consequence, done by Stratus itself.
        ("task.updated", None),
        ("member.removed", o),
        ("member.role_changed", o),
        ("project.unarchived", o),
        ("project.archived", o),
        ("project.renamed", o),
        ("task.updated", e),
        ("task.updated", e),
        ("task.created", e),
        ("member.added", o),
        ("project.created", o),
    ]
    moments = [datetime.fromisoformat(entry["at"]) for entry in entries]
    assert moments == sorted(moments, reverse=True)
    by_action = {(entry["action"], tuple(c["field"] for c in entry["changes"])): entry for entry in entries}
    status = by_action[("task.updated", ("status", "priority"))]
    assert status["task_id"] == task["id"]
    assert status["task_title"] == "Write"
    assert status["changes"] == [
        {"field": "status", "from": "todo", "to": "doing"},
        {"field": "priority", "from": "medium", "to": "high"},
    ]
    # A description is named, not copied.
    assert by_action[("task.updated", ("description",))]["changes"] == [
        {"field": "description", "from": None, "to": None}
    ]
    assert by_action[("task.updated", ("assignee",))]["changes"] == [
        {"field": "assignee", "from": e, "to": None}
    ]
    assert by_action[("project.renamed", ("name",))]["changes"] == [
        {"field": "name", "from": "Orbit", "to": "Orbit II"}
    ]
    assert by_action[("project.archived", ("archived",))]["changes"] == [
        {"field": "archived", "from": False, "to": True}
    ]
    role_changed = by_action[("member.role_changed", ("role",))]
    assert role_changed["member"] == e
    assert role_changed["changes"] == [{"field": "role", "from": "editor", "to": "viewer"}]
    assert by_action[("member.removed", ("role",))]["changes"] == [
        {"field": "role", "from": "viewer", "to": None}
    ]
    deleted = by_action[("task.deleted", ())]
    assert (deleted["task_id"], deleted["task_title"]) == (gone["id"], "Scratch")
    assert len({entry["id"] for entry in entries}) == len(entries)

    # tRPC's projects.activity answers the same entries, field names included ("from", not "from_").
    trpc_entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"projectId": project_id, "limit": 5, **({"cursor": cursor} if cursor else {})}
        answer = client.get(
            "/trpc/projects.activity", headers=bearer(owner), params={"input": json.dumps(query)}
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()["result"]["data"]
        trpc_entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert trpc_entries == entries


def test_only_members_read_the_feed(consumer: Consumer, client: TestClient, make_user: Any) -> None:
    owner, member, outsider = make_user(), make_user(), make_user()
    project_id = _project(client, owner)
    _ok(
        client.post(
            f"/projects/{project_id}/members", headers=bearer(owner), json={"subject": member["sub"]}
        ),
        201,
    )
    consumer.run()
    assert len(feed(client, member, project_id)) == 2

    assert_problem(client.get(f"/projects/{project_id}/activity", headers=bearer(outsider)), 404, "not-found")
    _ok(client.delete(f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner)), 204)
    assert_problem(client.get(f"/projects/{project_id}/activity", headers=bearer(member)), 404, "not-found")
    assert_problem(client.get("/projects/01ARZ3NDEKTSV4RRFFQ69G5FAV/activity", headers=bearer(owner)), 404)
    assert_problem(client.get(f"/projects/{project_id}/activity"), 401)


def test_the_feed_pages_with_signed_cursors_bound_to_its_query(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner = make_user()
    project_id, other_id = _project(client, owner), _project(client, owner, "Other")
    for i in range(4):
        _ok(client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": f"t{i}"}), 201)
    consumer.run()

    whole = feed(client, owner, project_id, limit=100)
    assert len(whole) == 5
    assert feed(client, owner, project_id, limit=2) == whole
    first = client.get(f"/projects/{project_id}/activity", headers=bearer(owner), params={"limit": 2}).json()
    assert len(first["items"]) == 2
    payload, signature = first["next_cursor"].split(".")
    middle = len(payload) // 2  # every bit of a middle character counts (the last one's may be padding)
    flipped = "A" if payload[middle] != "A" else "B"
    tampered = f"{payload[:middle]}{flipped}{payload[middle + 1 :]}.{signature}"
    for path, cursor in [(project_id, tampered), (other_id, first["next_cursor"])]:
        response = client.get(f"/projects/{path}/activity", headers=bearer(owner), params={"cursor": cursor})
        assert_problem(response, 400, "invalid-cursor")
    last = client.get(f"/projects/{project_id}/activity", headers=bearer(owner), params={"limit": 5}).json()
    assert last["next_cursor"] is None


def test_redelivered_records_write_no_entry_twice(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner = make_user()
    project_id = _project(client, owner)
    task = _ok(client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t"}), 201)
    _ok(client.patch(f"/tasks/{task['id']}", headers=bearer(owner), json={"status": "done"}))
    records = consumer.records()

    consumer.deliver(records)
    once = feed(client, owner, project_id)
    consumer.deliver(records)
    consumer.deliver(list(reversed(records)))

    assert consumer.given_up == []
    assert [entry["action"] for entry in once] == ["task.updated", "task.created", "project.created"]
    assert feed(client, owner, project_id) == once


def test_a_bad_record_is_reported_alone_and_the_others_are_written(
    consumer: Consumer, client: TestClient, make_user: Any
) -> None:
    owner = make_user()
    project_id = _project(client, owner)
    task = _ok(client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t"}), 201)
    _ok(client.patch(f"/tasks/{task['id']}", headers=bearer(owner), json={"status": "done"}))
    records = consumer.records()
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "MODIFY"]
    bad = copy.deepcopy(records[1])
    del bad["dynamodb"]["NewImage"]["created_at"]  # a task image this consumer cannot read

    result = stream.handler({"Records": [records[0], bad, records[2]]}, InvocationContext())

    assert result == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}
    assert [entry["action"] for entry in feed(client, owner, project_id)] == [
        "task.updated",
        "project.created",
    ]


def test_requests_make_no_added_dynamodb_call(client: TestClient, make_user: Any) -> None:
    """No write costs more calls than before the feed existed (the counts below, as measured then); task
    deletion reads the task with its project in one BatchGetItem and deletes it with its tombstone in one
    transaction, instead of a GetItem and a DeleteItem. Reading the feed is one GetItem and one Query."""
    owner, member = make_user(), make_user()
    before_the_feed = {
        "create project": ["TransactWriteItems"],
        "rename project": ["UpdateItem", "TransactWriteItems"],
        "add member": ["GetItem", "TransactWriteItems"],
        "change role": ["GetItem", "TransactWriteItems", "GetItem"],
        "create task": ["TransactWriteItems"],
        "change task": ["GetItem", "UpdateItem"],
        "delete task": ["GetItem", "DeleteItem"],
        # Then one UpdateItem per task still assigned to the member.
        "remove member": ["GetItem", "TransactWriteItems", "Query"],
        # Then one BatchWriteItem per 25 items of the project's partition.
        "delete project": ["DeleteItem", "Query", "BatchWriteItem"],
    }
    made: dict[str, list[str]] = {}

    def cost(name: str, request: Any, status: int) -> Any:
        with recording_aws_calls() as calls:
            response = request()
        assert response.status_code == status, response.text
        made[name] = calls.operations()
        return response.json() if response.content else None

    project = cost(
        "create project", lambda: client.post("/projects", headers=bearer(owner), json={"name": "p"}), 201
    )
    path = f"/projects/{project['id']}"
    cost("rename project", lambda: client.patch(path, headers=bearer(owner), json={"name": "q"}), 200)
    cost(
        "add member",
        lambda: client.post(f"{path}/members", headers=bearer(owner), json={"subject": member["sub"]}),
        201,
    )
    cost(
        "change role",
        lambda: client.patch(
            f"{path}/members/{member['sub']}", headers=bearer(owner), json={"role": "editor"}
        ),
        200,
    )
    task = cost(
        "create task",
        lambda: client.post(
            f"{path}/tasks", headers=bearer(owner), json={"title": "t", "assignee": member["sub"]}
        ),
        201,
    )
    cost(
        "change task",
        lambda: client.patch(f"/tasks/{task['id']}", headers=bearer(owner), json={"status": "done"}),
        200,
    )
    cost("delete task", lambda: client.delete(f"/tasks/{task['id']}", headers=bearer(owner)), 204)
    cost(
        "remove member", lambda: client.delete(f"{path}/members/{member['sub']}", headers=bearer(owner)), 204
    )
    cost("read the feed", lambda: client.get(f"{path}/activity", headers=bearer(owner)), 200)
    cost("delete project", lambda: client.delete(path, headers=bearer(owner)), 204)

    assert made.pop("read the feed") == ["GetItem", "Query"]
    assert made == {
        **before_the_feed,
        "delete task": ["BatchGetItem", "TransactWriteItems"],
        "delete project": ["GetItem", "TransactWriteItems"],
    }


def test_entries_expire_after_the_retention_and_are_hidden_at_once(
    consumer: Consumer, client: TestClient, make_user: Any, app: FastAPI
) -> None:
    owner = make_user()
    project_id = _project(client, owner)
    task = _ok(client.post(f"/projects/{project_id}/tasks", headers=bearer(owner), json={"title": "t"}), 201)
    records = consumer.records()
    # The task's creation as if it happened beyond the retention (a record the consumer met late).
    retention = timedelta(days=app.state.settings.activity_retention_days)
    old = copy.deepcopy(records[1])
    old["eventID"] = "e" * 32
    long_ago = datetime.now(UTC) - retention - timedelta(hours=1)
    old["dynamodb"]["NewImage"]["created_at"] = {"S": long_ago.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")}

    consumer.deliver([*records, old])

    assert [entry["action"] for entry in feed(client, owner, project_id)] == [
        "task.created",
        "project.created",
    ]
    stored = list(Activity.query(models.project.project_key(project_id)))
    assert len(stored) == 3
    for entry in stored:
        # TTL attributes hold whole seconds.
        assert abs(entry.expires_at - (entry.at + retention)) < timedelta(seconds=1)
    assert min(entry.expires_at for entry in stored) < datetime.now(UTC)
    assert task["id"] in {entry.task_id for entry in stored}


def test_the_feed_is_documented_with_its_entry_model_and_problems(app: FastAPI) -> None:
    document = app.openapi()
    operation = document["paths"]["/projects/{project_id}/activity"]["get"]
    assert operation["operationId"] == "activity-list_activity"
    assert {"200", "400", "401", "403", "404", "429", "500", "503"} <= set(operation["responses"])
    for status, response in operation["responses"].items():
        if status != "200":
            assert "application/problem+json" in response["content"], status
    schema = document["components"]["schemas"]["ActivityEntry"]
    assert {"id", "at", "actor", "action", "changes"} <= set(schema["properties"])
    assert "task.deleted" in schema["properties"]["action"]["enum"]
    change = document["components"]["schemas"]["FieldChange"]
    assert {"field", "from", "to"} == set(change["properties"])
