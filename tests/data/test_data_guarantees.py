"""What the data layer guarantees, proven against the stand-in over HTTP: DynamoDB calls per request and
no Scan ever; who may do what to whom (the isolation matrix); idempotent POSTs; no lost updates under
concurrency; and pagination that returns every item exactly once, in order, with cursors that only work
for the query, the caller and the filters that produced them.

The 250-task data set is built by the first test that needs it, before the table holds anything else:
the stand-in copies the whole table (and its stream) on every transaction, so the bigger the table the
slower each write. No test depends on another's leftovers.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.data.dynamodb_calls import CallRecorder
from tests.data.helpers import (
    Team,
    User,
    add_member,
    all_items,
    assert_problem,
    bearer,
    make_team,
    new_project,
    new_task,
    run_together,
    unique,
    walk_pages,
)


def own_client(app: FastAPI) -> TestClient:
    """A TestClient for one thread: each has its own event loop, so requests from threads overlap for
    real (one shared client would run the blocking route bodies one after another on its single loop)."""
    return TestClient(app, raise_server_exceptions=False)


# Pagination over 250 tasks

TASK_COUNT = 250
STATUSES = ("todo", "doing", "done")
# A tag only a few tasks carry, far apart: the first, one in the middle and the last two.
RARE = {0, 131, 248, 249}


def _spec(i: int) -> dict[str, Any]:
    return {
        "title": f"task-{i:03d}",
        "status": STATUSES[i % 3],
        "tags": (["x"] if i % 5 == 4 else []) + (["rare"] if i in RARE else []),
        # Every fourth task is undated; the others fall on 45 dates, so many share a date.
        "due_date": None if i % 4 == 0 else (date(2030, 1, 1) + timedelta(days=(i * 7) % 45)).isoformat(),
    }


class Backlog:
    def __init__(self, client: TestClient, owner: User, peer: User) -> None:
        self.owner, self.peer = owner, peer
        self.project = new_project(client, owner, name=unique("backlog"))
        self.path = f"/projects/{self.project['id']}/tasks"
        add_member(client, owner, self.project["id"], peer, "viewer")
        self.tasks = [new_task(client, owner, self.project["id"], **_spec(i)) for i in range(TASK_COUNT)]
        self.other_project = new_project(client, owner, name=unique("other"))
        for i in range(3):
            new_task(client, owner, self.other_project["id"], **_spec(i))

    def ids(self, predicate: Callable[[dict[str, Any]], bool] = lambda task: True) -> list[str]:
        return [task["id"] for task in self.tasks if predicate(task)]

    def ids_by_due(self, predicate: Callable[[dict[str, Any]], bool] = lambda task: True) -> list[str]:
        chosen = [task for task in self.tasks if predicate(task)]
        chosen.sort(key=lambda task: (task["due_date"] or "9999-12-31", task["id"]))
        return [task["id"] for task in chosen]

    def first_page(self, client: TestClient, user: User | None = None, **params: Any) -> dict[str, Any]:
        response = client.get(self.path, headers=bearer(user or self.owner), params={"limit": 10, **params})
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        assert page["next_cursor"]
        return page


@pytest.fixture(scope="module")
def backlog(client: TestClient, make_user: Any) -> Backlog:
    return Backlog(client, make_user(), make_user())


def _ids(pages: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in all_items(pages)]


def _assert_full_pages(pages: list[dict[str, Any]], limit: int, total: int) -> None:
    """Every page but the last is full, the last holds the rest (never empty), and only it has no cursor."""
    sizes = [len(page["items"]) for page in pages]
    expected = [limit] * (total // limit) + ([total % limit] if total % limit else [])
    assert sizes == (expected or [0])
    assert [page["next_cursor"] is None for page in pages] == [False] * (len(pages) - 1) + [True]


@pytest.mark.parametrize("limit", [100, 37, 50, 7])
def test_every_task_exactly_once_in_creation_order(client: TestClient, backlog: Backlog, limit: int) -> None:
    pages = walk_pages(client, backlog.owner, backlog.path, limit=limit)
    assert _ids(pages) == backlog.ids()
    _assert_full_pages(pages, limit, TASK_COUNT)


@pytest.mark.parametrize("limit", [100, 37, 25])
def test_every_task_exactly_once_by_due_date(client: TestClient, backlog: Backlog, limit: int) -> None:
    pages = walk_pages(client, backlog.owner, backlog.path, sort="due", limit=limit)
    assert _ids(pages) == backlog.ids_by_due()
    _assert_full_pages(pages, limit, TASK_COUNT)
    undated = [item["due_date"] is None for item in all_items(pages)]
    assert undated == sorted(undated), "undated tasks come last"


def test_the_page_size_may_change_between_pages(client: TestClient, backlog: Backlog) -> None:
    first = backlog.first_page(client, limit=100)
    second = client.get(
        backlog.path, headers=bearer(backlog.owner), params={"limit": 37, "cursor": first["next_cursor"]}
    ).json()
    assert _ids([first, second]) == backlog.ids()[:137]


@pytest.mark.parametrize(
    ("params", "predicate"),
    [
        ({"tag": "x"}, lambda task: "x" in task["tags"]),
        ({"status": "done"}, lambda task: task["status"] == "done"),
        ({"status": "todo", "tag": "x"}, lambda task: task["status"] == "todo" and "x" in task["tags"]),
    ],
)
@pytest.mark.parametrize("sort", ["created", "due"])
def test_filtered_pages_are_full_until_the_last(
    client: TestClient, backlog: Backlog, params: dict[str, str], predicate: Callable[..., bool], sort: str
) -> None:
    pages = walk_pages(client, backlog.owner, backlog.path, sort=sort, limit=10, **params)
    expected = backlog.ids(predicate) if sort == "created" else backlog.ids_by_due(predicate)
    assert len(expected) >= 10
    assert _ids(pages) == expected
    _assert_full_pages(pages, 10, len(expected))


def _rare(task: dict[str, Any]) -> bool:
    return "rare" in task["tags"]


@pytest.mark.parametrize("sort", ["created", "due"])
def test_a_rare_filter_reads_a_bounded_amount_per_request_and_misses_nothing(
    client: TestClient, aws_calls: CallRecorder, backlog: Backlog, monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    """A filter that matches little of a big partition: every request stops after the capped number of
    Query calls and answers what it found (maybe nothing) with a cursor; the cursors still lead to every
    match exactly once, in order."""
    import models.table

    cap = 3
    monkeypatch.setattr(models.table, "MAX_QUERY_CALLS", cap)
    monkeypatch.setattr(models.table, "FILTERED_PAGE_SIZE", 20)
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 10, "sort": sort, "tag": "rare", **({"cursor": cursor} if cursor else {})}
        with aws_calls.during() as made:
            response = client.get(backlog.path, headers=bearer(backlog.owner), params=params)
        assert response.status_code == 200, response.text
        assert made.count("Query") <= cap, made
        assert len(made) <= cap + 1, made
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 100
    expected = backlog.ids(_rare) if sort == "created" else backlog.ids_by_due(_rare)
    assert len(expected) == len(RARE)
    assert _ids(pages) == expected
    # Reading 250 tasks 60 at a time takes several requests, some of which find nothing.
    assert len(pages) >= TASK_COUNT // (cap * 20)
    assert any(page["items"] == [] and page["next_cursor"] for page in pages)


def _flipped(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def _tamper(cursor: str, how: str) -> str:
    payload, signature = cursor.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    position = decoded["p"]["sk"]["S"]
    # Another last character, whatever the random last character of the id was.
    decoded["p"]["sk"]["S"] = position[:-1] + ("1" if position.endswith("0") else "0")
    forged = (
        base64.urlsafe_b64encode(json.dumps(decoded, separators=(",", ":")).encode()).rstrip(b"=").decode()
    )
    return {
        "payload flipped": f"{_flipped(payload, 10)}.{signature}",
        "signature flipped": f"{payload}.{_flipped(signature, 3)}",
        "position forged": f"{forged}.{signature}",
        "signature dropped": payload,
        "signature truncated": f"{payload}.{signature[:-2]}",
        "payload truncated": f"{payload[:-4]}.{signature}",
        "junk appended": f"{cursor}!!!!",
        "empty": "",
        "garbage": "not-a-cursor",
        "dots": "..",
        "non-ascii": "é.é",
    }[how]


TAMPERINGS = [
    "payload flipped",
    "signature flipped",
    "position forged",
    "signature dropped",
    "signature truncated",
    "payload truncated",
    "junk appended",
    "empty",
    "garbage",
    "dots",
    "non-ascii",
]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_cursor_is_a_400_problem(client: TestClient, backlog: Backlog, how: str) -> None:
    cursor = backlog.first_page(client)["next_cursor"]
    tampered = _tamper(cursor, how)
    assert tampered != cursor
    response = client.get(
        backlog.path, headers=bearer(backlog.owner), params={"limit": 10, "cursor": tampered}
    )
    assert_problem(response, 400, "invalid-cursor")


def test_another_users_cursor_is_a_400_problem(client: TestClient, backlog: Backlog) -> None:
    cursor = backlog.first_page(client)["next_cursor"]
    response = client.get(backlog.path, headers=bearer(backlog.peer), params={"limit": 10, "cursor": cursor})
    body = assert_problem(response, 400, "invalid-cursor")
    assert backlog.tasks[10]["title"] not in json.dumps(body)
    # The peer's own cursor for the same query works.
    own = backlog.first_page(client, backlog.peer)["next_cursor"]
    assert (
        client.get(
            backlog.path, headers=bearer(backlog.peer), params={"limit": 10, "cursor": own}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("made_with", "used_with"),
    [
        ({"sort": "created"}, {"sort": "due"}),
        ({"sort": "due"}, {"sort": "created"}),
        ({"tag": "x"}, {}),
        ({}, {"tag": "x"}),
        ({"tag": "x"}, {"tag": "y"}),
        ({"status": "todo"}, {"status": "done"}),
        ({"status": "todo"}, {"status": "todo", "tag": "x"}),
        ({}, {"assignee": "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"}),
    ],
)
def test_a_cursor_from_another_query_is_a_400_problem(
    client: TestClient, backlog: Backlog, made_with: dict[str, str], used_with: dict[str, str]
) -> None:
    cursor = backlog.first_page(client, **made_with)["next_cursor"]
    response = client.get(
        backlog.path, headers=bearer(backlog.owner), params={"limit": 10, "cursor": cursor, **used_with}
    )
    assert_problem(response, 400, "invalid-cursor")


def test_a_cursor_from_another_project_or_list_is_a_400_problem(client: TestClient, backlog: Backlog) -> None:
    cursor = backlog.first_page(client)["next_cursor"]
    other_path = f"/projects/{backlog.other_project['id']}"
    for path in (
        f"{other_path}/tasks",
        f"{backlog.path.rsplit('/', 1)[0]}/members",
        "/projects",
        "/me/tasks",
    ):
        response = client.get(path, headers=bearer(backlog.owner), params={"limit": 1, "cursor": cursor})
        assert_problem(response, 400, "invalid-cursor")
    # And the other way round: a cursor of the owner's project list does not page the tasks.
    projects_cursor = client.get("/projects", headers=bearer(backlog.owner), params={"limit": 1}).json()[
        "next_cursor"
    ]
    assert projects_cursor
    response = client.get(backlog.path, headers=bearer(backlog.owner), params={"cursor": projects_cursor})
    assert_problem(response, 400, "invalid-cursor")


def test_a_valid_cursor_resumes_exactly_where_the_page_ended(client: TestClient, backlog: Backlog) -> None:
    first = backlog.first_page(client, sort="due")
    again = client.get(
        backlog.path,
        headers=bearer(backlog.owner),
        params={"limit": 10, "sort": "due", "cursor": first["next_cursor"]},
    )
    assert again.status_code == 200
    assert _ids([first, again.json()]) == backlog.ids_by_due()[:20]


# DynamoDB calls per request (docs/data-model.md, "Access patterns")


def test_the_recorder_sees_a_scan(aws_calls: CallRecorder, app: FastAPI) -> None:
    """The no-Scan check can fail: a Scan made through the app's own PynamoDB connection is recorded."""
    from models.project import Project

    start = len(aws_calls.calls)
    list(Project.scan(limit=1))
    probe = [call for call in aws_calls.calls[start:] if call.service == "dynamodb"]
    # (One Scan page or several: the discriminator filter may skip a few other items first.)
    assert probe
    assert {call.operation for call in probe} == {"Scan"}
    aws_calls.discard(probe)  # the probe's own Scan is not the app's


def _calls(aws_calls: CallRecorder, request: Callable[[], Any], expected_status: int) -> list[str]:
    with aws_calls.during() as made:
        response = request()
    assert response.status_code == expected_status, response.text
    return made


def test_reading_a_project_is_one_getitem(client: TestClient, aws_calls: CallRecorder, team: Team) -> None:
    made = _calls(aws_calls, lambda: client.get(team.path, headers=bearer(team.viewer)), 200)
    assert made == ["GetItem"]


def test_changing_a_project_without_renaming_is_one_updateitem(
    client: TestClient, aws_calls: CallRecorder, team: Team
) -> None:
    change = {"description": "cheap"}
    made = _calls(aws_calls, lambda: client.patch(team.path, headers=bearer(team.editor), json=change), 200)
    assert made == ["UpdateItem"]
    etag = client.get(team.path, headers=bearer(team.editor)).headers["etag"]
    with_etag = bearer(team.editor, **{"If-Match": etag})
    made = _calls(aws_calls, lambda: client.patch(team.path, headers=with_etag, json=change), 200)
    assert made == ["UpdateItem"]


def test_renaming_a_project_adds_one_membership_refresh(
    client: TestClient, aws_calls: CallRecorder, team: Team
) -> None:
    rename = {"name": unique("renamed")}
    made = _calls(aws_calls, lambda: client.patch(team.path, headers=bearer(team.owner), json=rename), 200)
    assert made == ["UpdateItem", "TransactWriteItems"]


def test_creating_a_project_or_a_task_is_one_transaction(
    client: TestClient, aws_calls: CallRecorder, team: Team
) -> None:
    made = _calls(
        aws_calls, lambda: client.post("/projects", headers=bearer(team.owner), json={"name": "p"}), 201
    )
    assert made == ["TransactWriteItems"]
    task = {"title": "t", "assignee": team.viewer["sub"]}
    made = _calls(
        aws_calls, lambda: client.post(f"{team.path}/tasks", headers=bearer(team.editor), json=task), 201
    )
    assert made == ["TransactWriteItems"]


def test_task_reads_and_writes_cost_what_the_data_model_says(
    client: TestClient, aws_calls: CallRecorder, team: Team
) -> None:
    task = new_task(client, team.owner, team.id)
    path = f"/tasks/{task['id']}"
    assert _calls(aws_calls, lambda: client.get(path, headers=bearer(team.viewer)), 200) == ["BatchGetItem"]
    assert _calls(
        aws_calls, lambda: client.patch(path, headers=bearer(team.editor), json={"status": "done"}), 200
    ) == ["GetItem", "UpdateItem"]
    # The task with its project (authorization, and the title its tombstone records), then the delete
    # and the tombstone in one transaction.
    assert _calls(aws_calls, lambda: client.delete(path, headers=bearer(team.editor)), 204) == [
        "BatchGetItem",
        "TransactWriteItems",
    ]


def test_unfiltered_lists_cost_one_query_per_page(
    client: TestClient, aws_calls: CallRecorder, make_user: Any
) -> None:
    user = make_user()
    projects = [new_project(client, user) for _ in range(3)]
    for _ in range(5):
        new_task(client, user, projects[0]["id"], assignee=user["sub"])

    for path, per_page, pages in (
        ("/projects", ["Query"], 2),
        ("/me/tasks", ["Query", "BatchGetItem"], 3),
        (f"/projects/{projects[0]['id']}/tasks", ["GetItem", "Query"], 3),
        (f"/projects/{projects[0]['id']}/tasks?sort=due", ["GetItem", "Query"], 3),
        (f"/projects/{projects[0]['id']}/members", ["GetItem", "Query"], 1),
    ):
        cursor: str | None = None
        for page in range(pages):
            query = f"{'&' if '?' in path else '?'}limit=2" + (f"&cursor={cursor}" if cursor else "")
            with aws_calls.during() as made:
                response = client.get(path + query, headers=bearer(user))
            assert response.status_code == 200, response.text
            assert made == per_page, (path, page, made)
            cursor = response.json()["next_cursor"]
        assert cursor is None, path


def test_filtered_lists_only_query(client: TestClient, aws_calls: CallRecorder, team: Team) -> None:
    for i in range(6):
        new_task(
            client, team.owner, team.id, tags=["x"] if i % 3 == 0 else [], status="done" if i % 2 else "todo"
        )
    for query in ("tag=x", "status=done", "assignee=nobody", "sort=due&tag=x&status=todo"):
        with aws_calls.during() as made:
            pages = walk_pages(client, team.viewer, f"{team.path}/tasks?{query}", limit=1)
        assert set(made) == {"GetItem", "Query"}, (query, made)
        assert made.count("GetItem") == len(pages)
    with aws_calls.during() as made:
        walk_pages(client, team.viewer, "/me/tasks", status="done")
    # One Query per page, and one BatchGetItem of the projects of a page that holds tasks.
    assert set(made) <= {"Query", "BatchGetItem"}
    assert made.count("BatchGetItem") <= made.count("Query")


def test_in_production_rate_limit_counters_cost_the_app_table_nothing(
    aws_calls: CallRecorder, app_environment: dict[str, str], rate_limit_storage_uri: str, team: Team
) -> None:
    """template.yaml counts rate limits in a table of their own (RATE_LIMIT_STORAGE_URI), leasing slices of
    each budget: the counts above are all the app table sees, and the counter table gets an UpdateItem
    only when a container's slice runs out. These modules run with the in-memory limiter."""
    from main import create_app
    from settings import Settings

    production_like = create_app(Settings(rate_limit_storage_uri=rate_limit_storage_uri))
    requests = 40
    start = len(aws_calls.calls)
    with TestClient(production_like, raise_server_exceptions=False) as production_client:
        for _ in range(requests):
            assert production_client.get(team.path, headers=bearer(team.viewer)).status_code == 200
    made = aws_calls.dynamodb(start)
    counter_table = rate_limit_storage_uri.removeprefix("dynamodb://")
    assert [call.operation for call in made if call.table != counter_table] == ["GetItem"] * requests
    counted = [call.operation for call in made if call.table == counter_table]
    assert set(counted) == {"UpdateItem"}
    assert len(counted) <= requests / 4


def test_member_changes_cost_what_the_data_model_says(
    client: TestClient, aws_calls: CallRecorder, team: Team, outsider: User
) -> None:
    """GetItem (authorization) + one transaction; a role change reads the membership back for the answer;
    a removal then unassigns the member's tasks (one Query, and one transaction when it finds some)."""
    members = f"{team.path}/members"
    added = _calls(
        aws_calls,
        lambda: client.post(members, headers=bearer(team.owner), json={"subject": outsider["sub"]}),
        201,
    )
    assert added == ["GetItem", "TransactWriteItems"]
    changed = _calls(
        aws_calls,
        lambda: client.patch(
            f"{members}/{outsider['sub']}", headers=bearer(team.owner), json={"role": "editor"}
        ),
        200,
    )
    assert changed == ["GetItem", "TransactWriteItems", "GetItem"]
    removed = _calls(
        aws_calls, lambda: client.delete(f"{members}/{outsider['sub']}", headers=bearer(team.owner)), 204
    )
    assert removed == ["GetItem", "TransactWriteItems", "Query"]


def test_deleting_a_project_costs_what_the_data_model_says(
    client: TestClient, aws_calls: CallRecorder, team: Team
) -> None:
    """GetItem (authorization, the members), then one transaction deleting the project and its memberships,
    whatever the project holds: the stream consumer purges its tasks (tests/test_purge.py)."""
    for _ in range(2):
        new_task(client, team.owner, team.id)
    made = _calls(aws_calls, lambda: client.delete(team.path, headers=bearer(team.owner)), 204)
    assert made == ["GetItem", "TransactWriteItems"]


def test_my_tasks_cost_one_query_and_one_batch_get_per_page(
    client: TestClient, aws_calls: CallRecorder, make_user: Any
) -> None:
    """The membership check of /me/tasks reads all of a page's projects at once."""
    user = make_user()
    for _ in range(3):
        project = new_project(client, user)
        new_task(client, user, project["id"], assignee=user["sub"])
    made = _calls(aws_calls, lambda: client.get("/me/tasks", headers=bearer(user)), 200)
    assert made == ["Query", "BatchGetItem"]


# Isolation matrix: every route, every relation to the project

ROLES = ("outsider", "viewer", "editor", "owner")
ROUTES: dict[str, tuple[str, str, tuple[int, int, int, int]]] = {
    # name: (method, path template, status for the outsider, a viewer, an editor, an owner)
    "get project": ("GET", "{project}", (404, 200, 200, 200)),
    "patch project": ("PATCH", "{project}", (404, 403, 200, 200)),
    "delete project": ("DELETE", "{project}", (404, 403, 403, 204)),
    "list members": ("GET", "{project}/members", (404, 200, 200, 200)),
    "add member": ("POST", "{project}/members", (404, 403, 403, 201)),
    "change member": ("PATCH", "{project}/members/{member}", (404, 403, 403, 200)),
    "remove member": ("DELETE", "{project}/members/{member}", (404, 403, 403, 204)),
    "list tasks": ("GET", "{project}/tasks", (404, 200, 200, 200)),
    "create task": ("POST", "{project}/tasks", (404, 403, 201, 201)),
    "get task": ("GET", "/tasks/{task}", (404, 200, 200, 200)),
    "patch task": ("PATCH", "/tasks/{task}", (404, 403, 200, 200)),
    "delete task": ("DELETE", "/tasks/{task}", (404, 403, 204, 204)),
}


class Tenant:
    """A project with one member of each role plus a bystander (the target of member changes), and a task;
    every name in it is unique, so a leak into another caller's response is unmistakable."""

    def __init__(self, client: TestClient, users: dict[str, User], bystander: User) -> None:
        self.users = users
        self.team = make_team(client, users["owner"], users["editor"], users["viewer"])
        add_member(client, users["owner"], self.team.id, bystander, "viewer")
        self.bystander = bystander
        self.task = new_task(client, users["editor"], self.team.id, title=unique("secret-task"))
        self.secrets = (self.team.project["name"], self.team.project["description"], self.task["title"])

    def path(self, template: str) -> str:
        return template.format(project=self.team.path, member=self.bystander["sub"], task=self.task["id"])

    def state(self, client: TestClient) -> tuple[Any, ...]:
        """Everything a refused request must leave as it was, read by the owner."""
        owner = bearer(self.users["owner"])
        return (
            client.get(self.team.path, headers=owner).json(),
            all_items(walk_pages(client, self.users["owner"], f"{self.team.path}/members")),
            all_items(walk_pages(client, self.users["owner"], f"{self.team.path}/tasks")),
        )


@pytest.fixture(scope="module")
def bystander(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture(scope="module")
def newcomer(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture(scope="module")
def matrix_users(owner: User, editor: User, viewer: User, outsider: User) -> dict[str, User]:
    return {"owner": owner, "editor": editor, "viewer": viewer, "outsider": outsider}


@pytest.fixture(scope="module")
def shared_tenant(client: TestClient, matrix_users: dict[str, User], bystander: User) -> Tenant:
    """For the cases that must change nothing (reads and refusals)."""
    return Tenant(client, matrix_users, bystander)


@pytest.fixture(scope="module")
def outsiders_own_project(client: TestClient, outsider: User) -> dict[str, Any]:
    """The outsider is a tenant too, with data of their own that must not leak the other way."""
    project = new_project(client, outsider, name=unique("outsider-project"))
    new_task(client, outsider, project["id"], title=unique("outsider-task"))
    return project


def _body(route: str, role: str, newcomer: User) -> dict[str, Any] | None:
    return {
        "patch project": {"description": f"changed by {role}"},
        "add member": {"subject": newcomer["sub"], "role": "viewer"},
        "change member": {"role": "editor"},
        "create task": {"title": f"created by {role}"},
        "patch task": {"title": f"changed by {role}"},
    }.get(route)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_isolation_matrix(
    client: TestClient,
    route: str,
    role: str,
    matrix_users: dict[str, User],
    bystander: User,
    newcomer: User,
    shared_tenant: Tenant,
    outsiders_own_project: dict[str, Any],
) -> None:
    method, template, statuses = ROUTES[route]
    expected = statuses[ROLES.index(role)]
    succeeds = expected < 400
    mutates = succeeds and method != "GET"
    # Writes that succeed get a tenant of their own; everything else must leave the shared one untouched.
    tenant = Tenant(client, matrix_users, bystander) if mutates else shared_tenant
    before = None if mutates else tenant.state(client)

    response = client.request(
        method, tenant.path(template), headers=bearer(matrix_users[role]), json=_body(route, role, newcomer)
    )

    assert response.status_code == expected, response.text
    if succeeds:
        assert outsiders_own_project["name"] not in response.text
        return
    assert_problem(response, expected)
    for secret in tenant.secrets:
        assert secret not in response.text
    assert tenant.state(client) == before


# Idempotency-Key on POST


def test_concurrent_posts_with_one_key_create_one_task(client: TestClient, app: FastAPI, team: Team) -> None:
    key = unique("retry")
    body = {"title": unique("once"), "tags": ["idem"]}

    def post() -> tuple[int, Any, str, str]:
        with own_client(app) as own:
            response = own.post(
                f"{team.path}/tasks", headers=bearer(team.editor, **{"Idempotency-Key": key}), json=body
            )
        return (
            response.status_code,
            response.json(),
            response.headers.get("location", ""),
            response.headers.get("etag", ""),
        )

    results = run_together(*[post] * 8)

    assert {status for status, *_ in results} == {201}, results
    assert len({json.dumps(result, sort_keys=True) for result in results}) == 1, results
    created = all_items(walk_pages(client, team.owner, f"{team.path}/tasks"))
    assert [task["id"] for task in created] == [results[0][1]["id"]]
    again = client.post(
        f"{team.path}/tasks", headers=bearer(team.editor, **{"Idempotency-Key": key}), json=body
    )
    assert again.status_code == 201
    assert again.json() == results[0][1]


def test_one_key_with_another_body_is_422(client: TestClient, team: Team) -> None:
    headers = bearer(team.editor, **{"Idempotency-Key": unique("key")})
    first = client.post(f"{team.path}/tasks", headers=headers, json={"title": "first"})
    assert first.status_code == 201
    second = client.post(f"{team.path}/tasks", headers=headers, json={"title": "second"})
    assert_problem(second, 422, "unprocessable-content")
    assert [t["title"] for t in all_items(walk_pages(client, team.owner, f"{team.path}/tasks"))] == ["first"]


def test_an_idempotency_key_belongs_to_its_caller(client: TestClient, team: Team) -> None:
    key = unique("shared-key")
    body = {"title": "same words"}
    mine = client.post(
        f"{team.path}/tasks", headers=bearer(team.editor, **{"Idempotency-Key": key}), json=body
    )
    theirs = client.post(
        f"{team.path}/tasks", headers=bearer(team.owner, **{"Idempotency-Key": key}), json=body
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert (mine.json()["created_by"], theirs.json()["created_by"]) == (team.editor["sub"], team.owner["sub"])
    assert len(all_items(walk_pages(client, team.owner, f"{team.path}/tasks"))) == 2


def test_an_idempotency_key_belongs_to_its_route(client: TestClient, team: Team) -> None:
    headers = bearer(team.owner, **{"Idempotency-Key": unique("route-key")})
    project = client.post("/projects", headers=headers, json={"name": "t"})
    assert project.status_code == 201, project.text
    task = client.post(f"{team.path}/tasks", headers=headers, json={"title": "t"})
    assert task.status_code == 201, task.text
    assert task.json()["id"] != project.json()["id"]


def test_an_idempotency_key_reused_for_another_project_is_422(client: TestClient, team: Team) -> None:
    """The route's template is the same for every project: the project id is part of what is compared."""
    headers = bearer(team.owner, **{"Idempotency-Key": unique("project-key")})
    body = {"title": "same words"}
    first = client.post(f"{team.path}/tasks", headers=headers, json=body)
    assert first.status_code == 201, first.text
    other = new_project(client, team.owner)
    response = client.post(f"/projects/{other['id']}/tasks", headers=headers, json=body)
    assert_problem(response, 422, "unprocessable-content")
    assert first.json()["title"] not in response.text
    assert all_items(walk_pages(client, team.owner, f"/projects/{other['id']}/tasks")) == []


def test_a_refused_post_is_not_remembered(client: TestClient, team: Team) -> None:
    headers = bearer(team.editor, **{"Idempotency-Key": unique("archived")})
    client.patch(team.path, headers=bearer(team.owner), json={"archived": True})
    assert_problem(client.post(f"{team.path}/tasks", headers=headers, json={"title": "t"}), 409)
    client.patch(team.path, headers=bearer(team.owner), json={"archived": False})
    assert client.post(f"{team.path}/tasks", headers=headers, json={"title": "t"}).status_code == 201


def test_without_a_key_every_post_creates(client: TestClient, team: Team) -> None:
    for _ in range(2):
        assert (
            client.post(f"{team.path}/tasks", headers=bearer(team.editor), json={"title": "t"}).status_code
            == 201
        )
    assert len(all_items(walk_pages(client, team.owner, f"{team.path}/tasks"))) == 2


@pytest.mark.parametrize("key", ["short", "has space in it", "x" * 129])
def test_malformed_idempotency_keys_are_422(client: TestClient, team: Team, key: str) -> None:
    response = client.post(
        f"{team.path}/tasks", headers=bearer(team.editor, **{"Idempotency-Key": key}), json={"title": "t"}
    )
    assert_problem(response, 422, "validation-error")


# Concurrency


def test_concurrent_writers_of_different_fields_lose_nothing(
    client: TestClient, app: FastAPI, team: Team
) -> None:
    task = new_task(client, team.owner, team.id)
    path = f"/tasks/{task['id']}"
    rounds = 25
    members = [team.viewer["sub"], team.editor["sub"]]
    first_due = date(2030, 1, 1)
    writers: dict[str, Callable[[int], Any]] = {
        "title": lambda i: f"title {i}",
        "description": lambda i: f"description {i}",
        "status": lambda i: ("todo", "doing", "done")[i % 3],
        "priority": lambda i: ("low", "medium", "high", "urgent")[i % 4],
        "assignee": lambda i: members[i % 2],
        "due_date": lambda i: (first_due + timedelta(days=i)).isoformat(),
        "tags": lambda i: [f"round-{i}"],
    }
    versions_read: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def write(field: str) -> None:
        with own_client(app) as own:
            for i in range(rounds):
                response = own.patch(path, headers=bearer(team.editor), json={field: writers[field](i)})
                if response.status_code != 200:
                    failures.append(f"{field} #{i}: {response.status_code} {response.text}")

    def read() -> None:
        # The eighth thread reads while the others write: every read succeeds and sees a whole item.
        with own_client(app) as own:
            while not done.is_set():
                response = own.get(path, headers=bearer(team.viewer))
                if response.status_code != 200:
                    failures.append(f"read: {response.status_code} {response.text}")
                versions_read.append(response.json()["version"])

    writer_threads = [threading.Thread(target=write, args=(field,)) for field in writers]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writer_threads:
        thread.start()
    for thread in writer_threads:
        thread.join(timeout=120)
    done.set()
    reader.join(timeout=30)

    assert failures == []
    final = client.get(path, headers=bearer(team.owner)).json()
    last = rounds - 1
    assert final["title"] == writers["title"](last)
    assert final["description"] == writers["description"](last)
    assert final["status"] == writers["status"](last)
    assert final["priority"] == writers["priority"](last)
    assert final["assignee"] == writers["assignee"](last)
    assert final["due_date"] == writers["due_date"](last)
    assert final["tags"] == writers["tags"](last)
    assert final["version"] == 1 + rounds * len(writers)
    assert versions_read
    assert all(1 <= version <= final["version"] for version in versions_read)
    # The indexes agree with the item: the task is on its final assignee's list, under its final due date.
    final_assignee = next(u for u in (team.viewer, team.editor) if u["sub"] == final["assignee"])
    other = team.editor if final_assignee is team.viewer else team.viewer
    assert task["id"] in {t["id"] for t in all_items(walk_pages(client, final_assignee, "/me/tasks"))}
    assert task["id"] not in {t["id"] for t in all_items(walk_pages(client, other, "/me/tasks"))}
    by_due = all_items(walk_pages(client, team.owner, f"{team.path}/tasks", sort="due"))
    assert [(t["id"], t["due_date"]) for t in by_due] == [(task["id"], final["due_date"])]


@pytest.mark.parametrize("target", ["task", "project"])
def test_with_if_match_exactly_one_of_two_concurrent_writers_wins(
    client: TestClient, app: FastAPI, team: Team, target: str
) -> None:
    path = f"/tasks/{new_task(client, team.owner, team.id)['id']}" if target == "task" else team.path

    def write(user: User, etag: str, text: str) -> tuple[int, str]:
        with own_client(app) as own:
            response = own.patch(path, headers=bearer(user, **{"If-Match": etag}), json={"description": text})
        return response.status_code, text

    for round_number in range(5):
        etag = client.get(path, headers=bearer(team.owner)).headers["etag"]

        results = run_together(
            partial(write, team.owner, etag, f"owner {round_number}"),
            partial(write, team.editor, etag, f"editor {round_number}"),
        )

        assert sorted(status for status, _ in results) == [200, 412], results
        winner = next(text for status, text in results if status == 200)
        current = client.get(path, headers=bearer(team.owner))
        assert current.json()["description"] == winner
        assert current.headers["etag"] == '"{}"'.format(int(etag.strip('"')) + 1)
