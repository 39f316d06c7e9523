"""Tasks end to end: create, read, change, delete, filter and sort a project's tasks, and /me/tasks."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.data.helpers import (
    Team,
    User,
    add_member,
    all_items,
    assert_problem,
    bearer,
    instant,
    new_project,
    new_task,
    unique,
    walk_pages,
)


@pytest.fixture
def assignee(client: TestClient, team: Team, make_user: Any) -> User:
    """A member of the team with no tasks anywhere yet."""
    user: User = make_user()
    add_member(client, team.owner, team.id, user, "editor")
    return user


def titles(items: list[dict[str, Any]]) -> list[str]:
    return [item["title"] for item in items]


def project_tasks(client: TestClient, user: User, team: Team, **params: Any) -> list[dict[str, Any]]:
    return all_items(walk_pages(client, user, f"{team.path}/tasks", **params))


def my_tasks(client: TestClient, user: User, **params: Any) -> list[dict[str, Any]]:
    return all_items(walk_pages(client, user, "/me/tasks", **params))


# Create


def test_create_returns_201_with_location_etag_and_defaults(client: TestClient, team: Team) -> None:
    response = client.post(f"{team.path}/tasks", headers=bearer(team.editor), json={"title": " Write tests "})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["id"].startswith(f"{team.id}.")
    assert task["project_id"] == team.id
    assert task["title"] == "Write tests"
    assert (task["status"], task["priority"], task["description"]) == ("todo", "medium", "")
    assert (task["assignee"], task["due_date"], task["tags"]) == (None, None, [])
    assert task["created_by"] == team.editor["sub"]
    assert task["version"] == 1
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert response.headers["etag"] == '"1"'

    fetched = client.get(response.headers["location"], headers=bearer(team.viewer))
    assert fetched.status_code == 200
    assert fetched.json() == task
    assert fetched.headers["etag"] == '"1"'


def test_create_with_every_field_normalizes_tags(client: TestClient, team: Team) -> None:
    task = new_task(
        client,
        team.owner,
        team.id,
        title="Ship",
        description="all of it",
        status="doing",
        priority="urgent",
        assignee=team.viewer["sub"],
        due_date="2031-02-03",
        tags=["Release", " ops ", "release"],
    )
    assert task["status"] == "doing"
    assert task["priority"] == "urgent"
    assert task["assignee"] == team.viewer["sub"]
    assert task["due_date"] == "2031-02-03"
    assert task["tags"] == ["ops", "release"]


def test_the_assignee_must_be_a_member(client: TestClient, team: Team, outsider: User) -> None:
    for assignee in (outsider["sub"], "00000000-0000-0000-0000-000000000000"):
        response = client.post(
            f"{team.path}/tasks", headers=bearer(team.editor), json={"title": "t", "assignee": assignee}
        )
        assert_problem(response, 422, "unprocessable-content")
    assert project_tasks(client, team.owner, team) == []


def test_no_task_can_be_added_to_an_archived_project(client: TestClient, team: Team) -> None:
    assert client.patch(team.path, headers=bearer(team.owner), json={"archived": True}).status_code == 200
    response = client.post(f"{team.path}/tasks", headers=bearer(team.editor), json={"title": "late"})
    assert_problem(response, 409, "conflict")
    assert project_tasks(client, team.owner, team) == []

    assert client.patch(team.path, headers=bearer(team.owner), json={"archived": False}).status_code == 200
    new_task(client, team.editor, team.id)


def test_an_archived_projects_tasks_and_fields_are_read_only_until_it_is_unarchived(
    client: TestClient, team: Team
) -> None:
    task = new_task(client, team.editor, team.id, title="before")
    assert client.patch(team.path, headers=bearer(team.owner), json={"archived": True}).status_code == 200
    for response in (
        client.patch(f"/tasks/{task['id']}", headers=bearer(team.editor), json={"title": "after"}),
        client.delete(f"/tasks/{task['id']}", headers=bearer(team.editor)),
        client.patch(team.path, headers=bearer(team.owner), json={"name": "renamed"}),
        client.patch(team.path, headers=bearer(team.editor), json={"description": "x", "archived": True}),
    ):
        assert "archived" in assert_problem(response, 409, "conflict")["detail"]
    assert client.get(f"/tasks/{task['id']}", headers=bearer(team.viewer)).json()["title"] == "before"
    assert client.get(team.path, headers=bearer(team.owner)).json()["name"] == team.project["name"]
    # Unarchiving may change fields in the same request; then everything is writable again.
    reopened = client.patch(
        team.path, headers=bearer(team.owner), json={"archived": False, "name": "reopened"}
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["name"] == "reopened"
    changed = client.patch(f"/tasks/{task['id']}", headers=bearer(team.editor), json={"title": "after"})
    assert changed.status_code == 200, changed.text


def test_viewers_cannot_create_tasks_and_outsiders_get_404(
    client: TestClient, team: Team, outsider: User
) -> None:
    assert_problem(client.post(f"{team.path}/tasks", headers=bearer(team.viewer), json={"title": "t"}), 403)
    assert_problem(client.post(f"{team.path}/tasks", headers=bearer(outsider), json={"title": "t"}), 404)
    assert project_tasks(client, team.owner, team) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "x" * 201},
        {"title": "t", "description": "x" * 5001},
        {"title": "t", "status": "blocked"},
        {"title": "t", "priority": "whenever"},
        {"title": "t", "due_date": "tomorrow"},
        {"title": "t", "due_date": "2030-02-30"},
        {"title": "t", "tags": ["has space"]},
        {"title": "t", "tags": ["-leading-dash"]},
        {"title": "t", "tags": [f"t{i}" for i in range(11)]},
        {"title": "t", "tags": "not-a-list"},
        {"title": "t", "assignee": ""},
        {"title": "t", "colour": "red"},
        {"title": "t", "version": 7},
        {"title": "t", "created_by": "someone-else"},
    ],
)
def test_create_rejects_bad_bodies_with_422(client: TestClient, team: Team, body: dict[str, Any]) -> None:
    response = client.post(f"{team.path}/tasks", headers=bearer(team.owner), json=body)
    assert_problem(response, 422, "validation-error")
    assert project_tasks(client, team.owner, team) == []


# Read


def test_unknown_and_malformed_task_ids(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id)
    gone = f"{team.id}.{'0' * 26}"
    assert_problem(client.get(f"/tasks/{gone}", headers=bearer(team.owner)), 404, "not-found")
    for malformed in (team.id, "x.y", f"{task['id']}.{'0' * 26}", task["id"].lower()):
        assert_problem(client.get(f"/tasks/{malformed}", headers=bearer(team.owner)), 422)


def test_a_task_id_cannot_be_grafted_onto_another_project(
    client: TestClient, team: Team, outsider: User
) -> None:
    """An outsider who learns a task id cannot reach it through a project of their own."""
    task = new_task(client, team.owner, team.id, title=unique("confidential"))
    own = new_project(client, outsider)
    grafted = f"{own['id']}.{task['id'].split('.')[1]}"
    for response in (
        client.get(f"/tasks/{grafted}", headers=bearer(outsider)),
        client.patch(f"/tasks/{grafted}", headers=bearer(outsider), json={"title": "mine"}),
        client.delete(f"/tasks/{grafted}", headers=bearer(outsider)),
        client.get(f"/tasks/{task['id']}", headers=bearer(outsider)),
    ):
        assert_problem(response, 404)
        assert task["title"] not in response.text
    assert client.get(f"/tasks/{task['id']}", headers=bearer(team.owner)).json() == task


# Change


def test_patch_changes_only_what_was_sent(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id, description="keep me", tags=["a"], due_date="2030-01-01")
    response = client.patch(f"/tasks/{task['id']}", headers=bearer(team.editor), json={"status": "doing"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed == {
        **task,
        "status": "doing",
        "version": 2,
        "updated_at": changed["updated_at"],
    }
    assert instant(changed["updated_at"]) > instant(task["updated_at"])
    assert response.headers["etag"] == '"2"'
    assert client.get(f"/tasks/{task['id']}", headers=bearer(team.viewer)).json() == changed


def test_null_clears_due_date_assignee_and_tags(client: TestClient, team: Team, assignee: User) -> None:
    task = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-01-01", tags=["x"])
    assert [t["id"] for t in my_tasks(client, assignee)] == [task["id"]]

    response = client.patch(
        f"/tasks/{task['id']}",
        headers=bearer(team.owner),
        json={"due_date": None, "assignee": None, "tags": None},
    )

    assert response.status_code == 200, response.text
    cleared = client.get(f"/tasks/{task['id']}", headers=bearer(team.owner)).json()
    assert (cleared["due_date"], cleared["assignee"], cleared["tags"]) == (None, None, [])
    assert my_tasks(client, assignee) == []
    assert project_tasks(client, team.owner, team, tag="x") == []
    assert [t["id"] for t in project_tasks(client, team.owner, team, sort="due")] == [task["id"]]


def test_an_empty_tag_list_clears_the_tags(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id, tags=["x", "y"])
    response = client.patch(f"/tasks/{task['id']}", headers=bearer(team.owner), json={"tags": []})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == []


def test_tags_are_replaced_not_merged(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id, tags=["x", "y"])
    response = client.patch(f"/tasks/{task['id']}", headers=bearer(team.owner), json={"tags": ["Z", "y"]})
    assert response.json()["tags"] == ["y", "z"]


def test_reassigning_moves_the_task_between_my_task_lists(
    client: TestClient, team: Team, assignee: User, make_user: Any
) -> None:
    other = make_user()
    add_member(client, team.owner, team.id, other, "viewer")
    task = new_task(client, team.owner, team.id, assignee=assignee["sub"])

    response = client.patch(
        f"/tasks/{task['id']}", headers=bearer(team.owner), json={"assignee": other["sub"]}
    )

    assert response.status_code == 200, response.text
    assert my_tasks(client, assignee) == []
    assert [t["id"] for t in my_tasks(client, other)] == [task["id"]]


def test_assigning_to_a_non_member_is_422(client: TestClient, team: Team, outsider: User) -> None:
    task = new_task(client, team.owner, team.id)
    response = client.patch(
        f"/tasks/{task['id']}", headers=bearer(team.owner), json={"assignee": outsider["sub"]}
    )
    assert_problem(response, 422, "unprocessable-content")
    assert client.get(f"/tasks/{task['id']}", headers=bearer(team.owner)).json()["assignee"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": None},
        {"status": None},
        {"priority": None},
        {"description": None},
        {"title": ""},
        {"status": "blocked"},
        {"due_date": "soon"},
        {"tags": ["UPPER CASE"]},
        {"project_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        {"version": 1},
    ],
)
def test_patch_rejects_bad_bodies_with_422(client: TestClient, team: Team, body: dict[str, Any]) -> None:
    task = new_task(client, team.owner, team.id)
    response = client.patch(f"/tasks/{task['id']}", headers=bearer(team.owner), json=body)
    assert_problem(response, 422, "validation-error")
    assert client.get(f"/tasks/{task['id']}", headers=bearer(team.owner)).json() == task


def test_if_match_guards_task_writes(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id)
    path = f"/tasks/{task['id']}"
    current = client.patch(path, headers=bearer(team.owner, **{"If-Match": '"1"'}), json={"title": "one"})
    assert current.status_code == 200, current.text
    assert current.headers["etag"] == '"2"'

    stale = client.patch(path, headers=bearer(team.editor, **{"If-Match": '"1"'}), json={"title": "lost"})
    assert_problem(stale, 412, "precondition-failed")
    assert_problem(
        client.patch(path, headers=bearer(team.owner, **{"If-Match": "2"}), json={"title": "x"}), 412
    )
    assert_problem(client.delete(path, headers=bearer(team.owner, **{"If-Match": '"1"'})), 412)
    assert client.get(path, headers=bearer(team.owner)).json()["title"] == "one"

    starred = client.patch(path, headers=bearer(team.owner, **{"If-Match": "*"}), json={"title": "star"})
    assert starred.status_code == 200
    assert client.delete(path, headers=bearer(team.owner, **{"If-Match": '"3"'})).status_code == 204


def test_viewers_cannot_change_or_delete_tasks(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id)
    path = f"/tasks/{task['id']}"
    assert_problem(client.patch(path, headers=bearer(team.viewer), json={"title": "mine"}), 403, "forbidden")
    assert_problem(client.delete(path, headers=bearer(team.viewer)), 403, "forbidden")
    assert client.get(path, headers=bearer(team.viewer)).json() == task


def test_changing_a_deleted_task_is_404(client: TestClient, team: Team) -> None:
    task = new_task(client, team.owner, team.id)
    path = f"/tasks/{task['id']}"
    assert client.delete(path, headers=bearer(team.editor)).status_code == 204
    assert_problem(client.patch(path, headers=bearer(team.owner), json={"title": "back"}), 404)
    assert_problem(
        client.patch(path, headers=bearer(team.owner, **{"If-Match": '"1"'}), json={"title": "b"}), 404
    )
    assert_problem(client.get(path, headers=bearer(team.owner)), 404)


# Delete


def test_delete_removes_the_task_from_every_list(client: TestClient, team: Team, assignee: User) -> None:
    kept = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-05-05")
    doomed = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-01-01")

    response = client.delete(f"/tasks/{doomed['id']}", headers=bearer(team.editor))

    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"/tasks/{doomed['id']}", headers=bearer(team.owner)), 404)
    assert_problem(client.delete(f"/tasks/{doomed['id']}", headers=bearer(team.owner)), 404)
    for sort in ("created", "due"):
        assert [t["id"] for t in project_tasks(client, team.owner, team, sort=sort)] == [kept["id"]]
    assert [t["id"] for t in my_tasks(client, assignee)] == [kept["id"]]


# Lists: filters and order


@pytest.fixture
def backlog(client: TestClient, team: Team, assignee: User) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {"title": "a", "status": "todo", "due_date": "2030-03-01", "tags": ["ops"]},
        {"title": "b", "status": "doing", "assignee": assignee["sub"], "tags": ["ops", "ui"]},
        {"title": "c", "status": "done", "due_date": "2030-01-15", "assignee": assignee["sub"]},
        {"title": "d", "status": "todo", "due_date": "2030-03-01", "assignee": team.viewer["sub"]},
        {"title": "e", "status": "todo", "tags": ["ui"]},
        {
            "title": "f",
            "status": "doing",
            "due_date": "2029-12-31",
            "assignee": assignee["sub"],
            "tags": ["ui"],
        },
    ]
    return [new_task(client, team.editor, team.id, **spec) for spec in specs]


def test_tasks_sort_by_creation_oldest_first(client: TestClient, team: Team, backlog: list[Any]) -> None:
    assert titles(project_tasks(client, team.viewer, team)) == ["a", "b", "c", "d", "e", "f"]
    assert titles(project_tasks(client, team.viewer, team, sort="created", limit=4)) == list("abcdef")


def test_tasks_sort_by_due_date_soonest_first_undated_last(
    client: TestClient, team: Team, backlog: list[Any]
) -> None:
    # Same due date: creation order; no due date: last, in creation order.
    assert titles(project_tasks(client, team.viewer, team, sort="due")) == ["f", "c", "a", "d", "b", "e"]
    assert titles(project_tasks(client, team.viewer, team, sort="due", limit=1)) == [
        "f",
        "c",
        "a",
        "d",
        "b",
        "e",
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "todo"}, "ade"),
        ({"status": "doing"}, "bf"),
        ({"status": "done"}, "c"),
        ({"tag": "ops"}, "ab"),
        ({"tag": "ui"}, "bef"),
        ({"tag": "none-such"}, ""),
        ({"status": "doing", "tag": "ui"}, "bf"),
        ({"status": "todo", "tag": "ui"}, "e"),
    ],
)
def test_filters_by_status_and_tag(
    client: TestClient, team: Team, backlog: list[Any], filters: dict[str, str], expected: str
) -> None:
    assert titles(project_tasks(client, team.viewer, team, **filters)) == list(expected)
    assert titles(project_tasks(client, team.viewer, team, limit=1, **filters)) == list(expected)


def test_filters_by_assignee_in_either_order(
    client: TestClient, team: Team, backlog: list[Any], assignee: User
) -> None:
    assert titles(project_tasks(client, team.viewer, team, assignee=assignee["sub"])) == ["b", "c", "f"]
    assert titles(project_tasks(client, team.viewer, team, assignee=assignee["sub"], sort="due")) == [
        "f",
        "c",
        "b",
    ]
    assert titles(project_tasks(client, team.viewer, team, assignee=team.viewer["sub"], status="todo")) == [
        "d"
    ]


@pytest.mark.parametrize("query", ["sort=priority", "status=blocked", "limit=0", "limit=101", "limit=ten"])
def test_bad_list_parameters_are_422(client: TestClient, team: Team, query: str) -> None:
    assert_problem(
        client.get(f"{team.path}/tasks?{query}", headers=bearer(team.owner)), 422, "validation-error"
    )


# /me/tasks


def test_my_tasks_span_projects_soonest_due_first(
    client: TestClient, team: Team, assignee: User, make_user: Any
) -> None:
    other_owner = make_user()
    other = new_project(client, other_owner)
    add_member(client, other_owner, other["id"], assignee, "viewer")
    here = {
        "undated": new_task(client, team.owner, team.id, assignee=assignee["sub"]),
        "june": new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-06-01"),
        "not mine": new_task(client, team.owner, team.id, due_date="2000-01-01"),
    }
    there = {
        "march": new_task(client, other_owner, other["id"], assignee=assignee["sub"], due_date="2030-03-01"),
        "done": new_task(
            client, other_owner, other["id"], assignee=assignee["sub"], due_date="2030-01-01", status="done"
        ),
    }

    listed = [t["id"] for t in my_tasks(client, assignee)]
    assert listed == [there["done"]["id"], there["march"]["id"], here["june"]["id"], here["undated"]["id"]]
    assert [t["id"] for t in my_tasks(client, assignee, limit=1)] == listed

    assert [t["id"] for t in my_tasks(client, assignee, status="done")] == [there["done"]["id"]]
    assert [t["id"] for t in my_tasks(client, assignee, status="todo", limit=1)] == listed[1:]


def test_my_tasks_follow_a_due_date_change(client: TestClient, team: Team, assignee: User) -> None:
    first = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-01-01")
    second = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-02-01")
    client.patch(f"/tasks/{first['id']}", headers=bearer(team.owner), json={"due_date": "2030-03-01"})
    assert [t["id"] for t in my_tasks(client, assignee)] == [second["id"], first["id"]]
    client.patch(f"/tasks/{second['id']}", headers=bearer(team.owner), json={"due_date": None})
    assert [t["id"] for t in my_tasks(client, assignee)] == [first["id"], second["id"]]


@pytest.mark.parametrize("who_removes", ["owner", "the member"])
def test_a_removed_members_tasks_are_unassigned(
    client: TestClient, team: Team, assignee: User, make_user: Any, who_removes: str
) -> None:
    elsewhere_owner = make_user()
    elsewhere = new_project(client, elsewhere_owner)
    add_member(client, elsewhere_owner, elsewhere["id"], assignee, "editor")
    kept = new_task(client, elsewhere_owner, elsewhere["id"], assignee=assignee["sub"])
    tasks = [new_task(client, team.owner, team.id, assignee=assignee["sub"]) for _ in range(3)]
    others = new_task(client, team.owner, team.id, assignee=team.viewer["sub"])

    actor = team.owner if who_removes == "owner" else assignee
    response = client.delete(f"{team.path}/members/{assignee['sub']}", headers=bearer(actor))

    assert response.status_code == 204, response.text
    for task in tasks:
        assert client.get(f"/tasks/{task['id']}", headers=bearer(team.owner)).json()["assignee"] is None
    assert [t["id"] for t in my_tasks(client, assignee)] == [kept["id"]]
    assert project_tasks(client, team.owner, team, assignee=assignee["sub"]) == []
    assert (
        client.get(f"/tasks/{others['id']}", headers=bearer(team.owner)).json()["assignee"]
        == team.viewer["sub"]
    )


def test_a_removed_member_no_longer_sees_tasks_left_assigned_to_them(
    client: TestClient, team: Team, assignee: User, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unassignment that follows a removal can fail or lose a race; /me/tasks checks membership itself."""
    import models.task

    elsewhere_owner = make_user()
    elsewhere = new_project(client, elsewhere_owner)
    add_member(client, elsewhere_owner, elsewhere["id"], assignee, "viewer")
    kept = new_task(client, elsewhere_owner, elsewhere["id"], assignee=assignee["sub"], due_date="2030-02-01")
    left = new_task(client, team.owner, team.id, assignee=assignee["sub"], due_date="2030-01-01")
    assert [t["id"] for t in my_tasks(client, assignee)] == [left["id"], kept["id"]]

    monkeypatch.setattr(models.task, "unassign_in_project", lambda project_id, subject: None)
    response = client.delete(f"{team.path}/members/{assignee['sub']}", headers=bearer(team.owner))
    assert response.status_code == 204, response.text

    assert (
        client.get(f"/tasks/{left['id']}", headers=bearer(team.owner)).json()["assignee"] == assignee["sub"]
    )
    listed = my_tasks(client, assignee)
    assert [t["id"] for t in listed] == [kept["id"]]
    assert left["title"] not in str(listed)
    assert [t["id"] for t in my_tasks(client, assignee, limit=1)] == [kept["id"]]


def test_tasks_of_a_deleted_project_leave_my_tasks_before_the_purge(
    client: TestClient, team: Team, assignee: User
) -> None:
    # The stream consumer purges the project's tasks; no consumer runs here.
    task = new_task(client, team.owner, team.id, assignee=assignee["sub"])
    assert client.delete(team.path, headers=bearer(team.owner)).status_code == 204
    assert client.get("/me/tasks", headers=bearer(assignee)).json() == {"items": [], "next_cursor": None}
    assert_problem(client.get(f"/tasks/{task['id']}", headers=bearer(assignee)), 404)


def test_my_tasks_without_assignments_is_empty(client: TestClient, make_user: Any) -> None:
    response = client.get("/me/tasks", headers=bearer(make_user()))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}
