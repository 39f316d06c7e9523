"""Projects and their members end to end: real Cognito tokens, DynamoDB on the stand-in over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

from tests.data.helpers import (
    Team,
    User,
    all_items,
    assert_problem,
    bearer,
    instant,
    new_project,
    new_task,
    run_together,
    unique,
    walk_pages,
)
from tests.streams import Consumer


def members_of(client: TestClient, user: User, project_id: str) -> dict[str, str]:
    pages = walk_pages(client, user, f"/projects/{project_id}/members")
    return {member["subject"]: member["role"] for member in all_items(pages)}


# Create and read


def test_create_returns_201_with_location_and_etag(client: TestClient, owner: User) -> None:
    name = unique("Apollo")
    response = client.post(
        "/projects", headers=bearer(owner), json={"name": f"  {name} ", "description": "d"}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == name
    assert created["description"] == "d"
    assert created["archived"] is False
    assert created["my_role"] == "owner"
    assert created["members"] == 1
    assert created["created_by"] == owner["sub"]
    assert created["version"] == 1
    assert response.headers["location"] == f"/projects/{created['id']}"
    assert response.headers["etag"] == '"1"'

    fetched = client.get(response.headers["location"], headers=bearer(owner))
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["etag"] == '"1"'


def test_project_ids_are_distinct_and_unguessable(client: TestClient, owner: User) -> None:
    first, second = new_project(client, owner), new_project(client, owner)
    assert first["id"] != second["id"]
    assert len(first["id"]) == 26


def test_get_shows_the_callers_role_and_member_count(client: TestClient, team: Team) -> None:
    for user, role in ((team.owner, "owner"), (team.editor, "editor"), (team.viewer, "viewer")):
        response = client.get(team.path, headers=bearer(user))
        assert response.status_code == 200
        assert response.json()["my_role"] == role
        assert response.json()["members"] == 3


def test_projects_require_authentication(client: TestClient, team: Team) -> None:
    assert client.get("/projects").status_code == 401
    assert client.get(team.path).status_code == 401
    assert client.post("/projects", json={"name": "x"}).status_code == 401


# My projects


def test_my_projects_are_newest_first_and_paginated(client: TestClient, make_user: Any) -> None:
    user = make_user()
    created = [new_project(client, user, name=f"p{i}")["id"] for i in range(5)]

    pages = walk_pages(client, user, "/projects", limit=2)

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [item["id"] for item in all_items(pages)] == list(reversed(created))
    assert pages[-1]["next_cursor"] is None
    assert all(item["my_role"] == "owner" and item["archived"] is False for item in all_items(pages))


def test_my_projects_list_shared_projects_with_my_role(client: TestClient, team: Team) -> None:
    listed = {item["id"]: item for item in all_items(walk_pages(client, team.viewer, "/projects"))}
    assert listed[team.id]["my_role"] == "viewer"
    assert listed[team.id]["name"] == team.project["name"]


def test_an_empty_list_has_no_cursor(client: TestClient, make_user: Any) -> None:
    response = client.get("/projects", headers=bearer(make_user()))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_rename_and_archive_reach_every_members_project_list(client: TestClient, team: Team) -> None:
    renamed = unique("renamed")
    response = client.patch(team.path, headers=bearer(team.editor), json={"name": renamed, "archived": True})
    assert response.status_code == 200, response.text

    for user in (team.owner, team.editor, team.viewer):
        listed = {item["id"]: item for item in all_items(walk_pages(client, user, "/projects"))}
        assert listed[team.id]["name"] == renamed
        assert listed[team.id]["archived"] is True


# Change


def test_patch_changes_only_what_was_sent_and_moves_the_etag(client: TestClient, team: Team) -> None:
    response = client.patch(team.path, headers=bearer(team.owner), json={"description": "new plans"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["description"] == "new plans"
    assert changed["name"] == team.project["name"]
    assert changed["archived"] is False
    assert changed["version"] == team.project["version"] + 1
    assert response.headers["etag"] == f'"{changed["version"]}"'
    assert instant(changed["updated_at"]) > instant(team.project["updated_at"])
    assert changed["created_at"] == team.project["created_at"]
    assert client.get(team.path, headers=bearer(team.viewer)).json()["description"] == "new plans"


def test_patch_with_the_current_etag_succeeds(client: TestClient, team: Team) -> None:
    etag = client.get(team.path, headers=bearer(team.owner)).headers["etag"]
    response = client.patch(team.path, headers=bearer(team.owner, **{"If-Match": etag}), json={"name": "n"})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] != etag


def test_stale_if_match_returns_412_and_changes_nothing(client: TestClient, team: Team) -> None:
    stale = client.get(team.path, headers=bearer(team.owner)).headers["etag"]
    assert (
        client.patch(team.path, headers=bearer(team.editor), json={"description": "first"}).status_code == 200
    )

    response = client.patch(
        team.path, headers=bearer(team.owner, **{"If-Match": stale}), json={"name": "late"}
    )

    assert_problem(response, 412, "precondition-failed")
    current = client.get(team.path, headers=bearer(team.owner)).json()
    assert current["name"] == team.project["name"]
    assert current["description"] == "first"


@pytest.mark.parametrize("if_match", ["1", 'W/"1"', '"one"', '""', '"1", "2"'])
def test_malformed_if_match_returns_412(client: TestClient, team: Team, if_match: str) -> None:
    response = client.patch(
        team.path, headers=bearer(team.owner, **{"If-Match": if_match}), json={"name": "n"}
    )
    assert_problem(response, 412, "precondition-failed")
    assert client.get(team.path, headers=bearer(team.owner)).json()["version"] == team.project["version"]


def test_if_match_star_writes_whatever_the_version(client: TestClient, team: Team) -> None:
    client.patch(team.path, headers=bearer(team.owner), json={"description": "bump"})
    response = client.patch(
        team.path, headers=bearer(team.owner, **{"If-Match": "*"}), json={"name": "starred"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "starred"


def test_viewer_cannot_change_the_project(client: TestClient, team: Team) -> None:
    response = client.patch(team.path, headers=bearer(team.viewer), json={"name": "mine now"})
    assert_problem(response, 403, "forbidden")
    assert client.get(team.path, headers=bearer(team.owner)).json()["name"] == team.project["name"]


def test_editor_may_change_the_project(client: TestClient, team: Team) -> None:
    response = client.patch(team.path, headers=bearer(team.editor), json={"archived": True})
    assert response.status_code == 200, response.text
    assert response.json()["archived"] is True
    assert response.json()["my_role"] == "editor"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": None},
        {"archived": None},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"description": "x" * 2001},
        {"archived": "maybe"},
        {"name": "ok", "owner": "someone"},
        {"roles": {"intruder": "owner"}},
        {"version": 99},
    ],
)
def test_patch_rejects_bad_bodies_with_422(client: TestClient, team: Team, body: dict[str, Any]) -> None:
    response = client.patch(team.path, headers=bearer(team.owner), json=body)
    assert_problem(response, 422, "validation-error")
    assert client.get(team.path, headers=bearer(team.owner)).json() == {**team.project}


# Create: validation


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": 5},
        {"name": "ok", "description": "x" * 2001},
        {"name": "ok", "color": "red"},
        {"name": "ok", "roles": {"someone": "owner"}},
        {"name": "ok", "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
    ],
)
def test_create_rejects_bad_bodies_with_422(client: TestClient, make_user: Any, body: dict[str, Any]) -> None:
    user = make_user()
    response = client.post("/projects", headers=bearer(user), json=body)
    body_problem = assert_problem(response, 422, "validation-error")
    assert body_problem["errors"]
    assert client.get("/projects", headers=bearer(user)).json()["items"] == []


def test_malformed_json_is_a_400_problem(client: TestClient, owner: User) -> None:
    response = client.post(
        "/projects", headers=bearer(owner, **{"Content-Type": "application/json"}), content=b'{"name": '
    )
    assert_problem(response, 400, "malformed-body")


@pytest.mark.parametrize("project_id", ["nope", "01arz3ndektsv4rrffq69g5fav", "0" * 27])
def test_malformed_project_ids_are_422_never_500(client: TestClient, owner: User, project_id: str) -> None:
    assert_problem(client.get(f"/projects/{project_id}", headers=bearer(owner)), 422)


def test_unknown_project_is_404(client: TestClient, owner: User) -> None:
    assert_problem(
        client.get("/projects/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=bearer(owner)), 404, "not-found"
    )


# Delete


def _partition_items(resources: LocalResources, project_id: str) -> list[dict[str, Any]]:
    """Everything left in the project's partition and its due-date index, read behind the app's back."""
    dynamodb = aws_client("dynamodb", resources.endpoint)
    table = dynamodb.query(
        TableName=resources.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"PROJECT#{project_id}"}},
    )["Items"]
    by_due = dynamodb.query(
        TableName=resources.table_name,
        IndexName="gsi2",
        KeyConditionExpression="gsi2pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"PROJECT#{project_id}#DUE"}},
    )["Items"]
    return [*table, *by_due]


def test_owner_deletes_the_project_with_its_tasks_and_memberships(
    client: TestClient, team: Team, aws_resources: LocalResources
) -> None:
    tasks = [new_task(client, team.editor, team.id, assignee=team.editor["sub"]) for _ in range(3)]
    assert len(_partition_items(aws_resources, team.id)) > 0
    consumer = Consumer(aws_resources)

    response = client.delete(team.path, headers=bearer(team.owner))

    assert response.status_code == 204
    assert response.content == b""
    for user in (team.owner, team.editor, team.viewer):
        assert_problem(client.get(team.path, headers=bearer(user)), 404)
        assert_problem(client.get(f"{team.path}/tasks", headers=bearer(user)), 404)
        assert team.id not in {p["id"] for p in all_items(walk_pages(client, user, "/projects"))}
    for task in tasks:
        assert_problem(client.get(f"/tasks/{task['id']}", headers=bearer(team.editor)), 404)
    assert {t["id"] for t in all_items(walk_pages(client, team.editor, "/me/tasks"))}.isdisjoint(
        {t["id"] for t in tasks}
    )
    # The project and its memberships went at once; the stream consumer purges the rest.
    assert len(_partition_items(aws_resources, team.id)) == 2 * len(tasks)  # in the table and gsi2
    consumer.run()
    assert _partition_items(aws_resources, team.id) == []


def test_deleting_twice_is_404(client: TestClient, team: Team) -> None:
    assert client.delete(team.path, headers=bearer(team.owner)).status_code == 204
    assert_problem(client.delete(team.path, headers=bearer(team.owner)), 404)


def test_no_task_can_be_added_to_a_deleted_project(client: TestClient, team: Team) -> None:
    assert client.delete(team.path, headers=bearer(team.owner)).status_code == 204
    response = client.post(f"{team.path}/tasks", headers=bearer(team.editor), json={"title": "ghost"})
    assert_problem(response, 404)


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_only_owners_delete_a_project(client: TestClient, team: Team, role: str) -> None:
    response = client.delete(team.path, headers=bearer(getattr(team, role)))
    assert_problem(response, 403, "forbidden")
    assert client.get(team.path, headers=bearer(team.owner)).status_code == 200


def test_delete_with_a_stale_if_match_returns_412(client: TestClient, team: Team) -> None:
    client.patch(team.path, headers=bearer(team.owner), json={"description": "moved on"})
    response = client.delete(team.path, headers=bearer(team.owner, **{"If-Match": '"1"'}))
    assert_problem(response, 412, "precondition-failed")
    assert client.get(team.path, headers=bearer(team.owner)).status_code == 200


def test_delete_with_the_current_if_match_succeeds(client: TestClient, team: Team) -> None:
    etag = client.get(team.path, headers=bearer(team.owner)).headers["etag"]
    assert client.delete(team.path, headers=bearer(team.owner, **{"If-Match": etag})).status_code == 204


# Members


def test_members_lists_everyone_with_their_role_page_by_page(client: TestClient, team: Team) -> None:
    pages = walk_pages(client, team.viewer, f"{team.path}/members", limit=2)
    assert [len(page["items"]) for page in pages] == [2, 1]
    roles = {member["subject"]: member["role"] for member in all_items(pages)}
    assert roles == {team.owner["sub"]: "owner", team.editor["sub"]: "editor", team.viewer["sub"]: "viewer"}


def test_add_member_by_subject(client: TestClient, team: Team, make_user: Any) -> None:
    newcomer = make_user()
    response = client.post(
        f"{team.path}/members",
        headers=bearer(team.owner),
        json={"subject": newcomer["sub"], "role": "editor"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["subject"] == newcomer["sub"]
    assert response.json()["role"] == "editor"
    assert response.headers["location"] == f"{team.path}/members/{newcomer['sub']}"
    assert members_of(client, team.owner, team.id)[newcomer["sub"]] == "editor"
    mine = client.get(team.path, headers=bearer(newcomer))
    assert mine.status_code == 200
    assert mine.json()["my_role"] == "editor"
    assert mine.json()["members"] == 4


def test_add_member_by_subject_defaults_to_viewer(client: TestClient, team: Team, make_user: Any) -> None:
    newcomer = make_user()
    response = client.post(
        f"{team.path}/members", headers=bearer(team.owner), json={"subject": newcomer["sub"]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["subject"] == newcomer["sub"]
    assert response.json()["role"] == "viewer"
    assert client.get(team.path, headers=bearer(newcomer)).json()["my_role"] == "viewer"


def test_members_are_not_added_by_email_address_but_invited(
    client: TestClient, team: Team, make_user: Any
) -> None:
    # An address is a claim until its owner verifies it: by address, people are invited (test_invitations).
    newcomer = make_user()
    response = client.post(
        f"{team.path}/members", headers=bearer(team.owner), json={"email": newcomer["email"]}
    )
    assert_problem(response, 422, "validation-error")
    assert_problem(client.get(team.path, headers=bearer(newcomer)), 404)


def test_adding_an_existing_member_is_409(client: TestClient, team: Team) -> None:
    response = client.post(
        f"{team.path}/members",
        headers=bearer(team.owner),
        json={"subject": team.viewer["sub"], "role": "owner"},
    )
    assert_problem(response, 409, "conflict")
    assert members_of(client, team.owner, team.id)[team.viewer["sub"]] == "viewer"


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "00000000-0000-0000-0000-000000000000"},
        {"email": "nobody-here@example.com"},
    ],
)
def test_adding_an_unknown_user_is_422(client: TestClient, team: Team, body: dict[str, str]) -> None:
    assert_problem(client.post(f"{team.path}/members", headers=bearer(team.owner), json=body), 422)
    assert len(members_of(client, team.owner, team.id)) == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": "editor"},
        {"subject": "a", "email": "a@example.com"},
        {"subject": "a", "role": "admin"},
        {"email": "not-an-email"},
        {"subject": ""},
        {"subject": "a", "nickname": "x"},
    ],
)
def test_add_member_rejects_bad_bodies_with_422(client: TestClient, team: Team, body: dict[str, Any]) -> None:
    response = client.post(f"{team.path}/members", headers=bearer(team.owner), json=body)
    assert_problem(response, 422, "validation-error")


def test_owner_changes_a_members_role(client: TestClient, team: Team) -> None:
    response = client.patch(
        f"{team.path}/members/{team.viewer['sub']}", headers=bearer(team.owner), json={"role": "editor"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "editor"
    assert members_of(client, team.owner, team.id)[team.viewer["sub"]] == "editor"
    promoted = client.patch(team.path, headers=bearer(team.viewer), json={"description": "I can write now"})
    assert promoted.status_code == 200, promoted.text


def test_changing_a_role_keeps_the_join_time(client: TestClient, team: Team) -> None:
    joined = {
        m["subject"]: m["joined_at"]
        for m in all_items(walk_pages(client, team.owner, f"{team.path}/members"))
    }
    response = client.patch(
        f"{team.path}/members/{team.viewer['sub']}", headers=bearer(team.owner), json={"role": "editor"}
    )
    assert response.status_code == 200, response.text
    listed = {
        m["subject"]: m["joined_at"]
        for m in all_items(walk_pages(client, team.owner, f"{team.path}/members"))
    }
    assert listed[team.viewer["sub"]] == joined[team.viewer["sub"]]
    assert response.json()["joined_at"] == joined[team.viewer["sub"]]


def test_changing_the_role_of_a_non_member_is_404(client: TestClient, team: Team, outsider: User) -> None:
    response = client.patch(
        f"{team.path}/members/{outsider['sub']}", headers=bearer(team.owner), json={"role": "editor"}
    )
    assert_problem(response, 404)
    assert outsider["sub"] not in members_of(client, team.owner, team.id)


def test_owner_removes_a_member_who_then_sees_nothing(client: TestClient, team: Team) -> None:
    response = client.delete(f"{team.path}/members/{team.editor['sub']}", headers=bearer(team.owner))
    assert response.status_code == 204
    assert team.editor["sub"] not in members_of(client, team.owner, team.id)
    assert_problem(client.get(team.path, headers=bearer(team.editor)), 404)
    assert team.id not in {p["id"] for p in all_items(walk_pages(client, team.editor, "/projects"))}
    assert client.get(team.path, headers=bearer(team.owner)).json()["members"] == 2


def test_removing_a_non_member_is_404(client: TestClient, team: Team, outsider: User) -> None:
    assert_problem(client.delete(f"{team.path}/members/{outsider['sub']}", headers=bearer(team.owner)), 404)


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_member_may_leave(client: TestClient, team: Team, role: str) -> None:
    member = getattr(team, role)
    response = client.delete(f"{team.path}/members/{member['sub']}", headers=bearer(member))
    assert response.status_code == 204, response.text
    assert_problem(client.get(team.path, headers=bearer(member)), 404)
    assert member["sub"] not in members_of(client, team.owner, team.id)


def test_the_last_owner_cannot_leave_be_removed_or_be_demoted(client: TestClient, team: Team) -> None:
    me = f"{team.path}/members/{team.owner['sub']}"
    assert_problem(client.delete(me, headers=bearer(team.owner)), 409, "conflict")
    assert_problem(client.patch(me, headers=bearer(team.owner), json={"role": "editor"}), 409, "conflict")
    assert members_of(client, team.owner, team.id)[team.owner["sub"]] == "owner"


def test_with_a_second_owner_an_owner_may_step_down(client: TestClient, team: Team) -> None:
    promote = client.patch(
        f"{team.path}/members/{team.editor['sub']}", headers=bearer(team.owner), json={"role": "owner"}
    )
    assert promote.status_code == 200, promote.text
    step_down = client.patch(
        f"{team.path}/members/{team.owner['sub']}", headers=bearer(team.owner), json={"role": "viewer"}
    )
    assert step_down.status_code == 200, step_down.text
    # Now the former editor is the last owner.
    last = f"{team.path}/members/{team.editor['sub']}"
    assert_problem(client.delete(last, headers=bearer(team.editor)), 409)
    assert_problem(client.delete(team.path, headers=bearer(team.owner)), 403)


def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    client: TestClient, app: Any, team: Team
) -> None:
    client.patch(
        f"{team.path}/members/{team.editor['sub']}", headers=bearer(team.owner), json={"role": "owner"}
    )
    first, second = team.owner, team.editor

    def demote(actor: User, target: User) -> int:
        # One TestClient per thread: each has its own event loop, so the requests really overlap.
        with TestClient(app, raise_server_exceptions=False) as own:
            path = f"{team.path}/members/{target['sub']}"
            return own.patch(path, headers=bearer(actor), json={"role": "viewer"}).status_code

    statuses = run_together(lambda: demote(first, second), lambda: demote(second, first))

    # Both winning would leave the project without an owner: exactly one wins, the other sees a conflict.
    assert sorted(statuses) in ([200, 403], [200, 409]), statuses
    roles = members_of(client, team.viewer, team.id)
    assert list(roles.values()).count("owner") == 1, roles
    assert client.get(team.path, headers=bearer(team.viewer)).json()["members"] == 3


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_only_owners_change_members(client: TestClient, team: Team, make_user: Any, role: str) -> None:
    actor = getattr(team, role)
    other = team.viewer if role == "editor" else team.editor
    newcomer = make_user()
    members = f"{team.path}/members"
    assert_problem(client.post(members, headers=bearer(actor), json={"subject": newcomer["sub"]}), 403)
    assert_problem(
        client.patch(f"{members}/{other['sub']}", headers=bearer(actor), json={"role": "owner"}), 403
    )
    assert_problem(
        client.patch(f"{members}/{actor['sub']}", headers=bearer(actor), json={"role": "owner"}), 403
    )
    assert_problem(client.delete(f"{members}/{other['sub']}", headers=bearer(actor)), 403)
    assert members_of(client, team.owner, team.id) == {
        team.owner["sub"]: "owner",
        team.editor["sub"]: "editor",
        team.viewer["sub"]: "viewer",
    }


def test_outsiders_get_404_for_everything_and_learn_nothing(
    client: TestClient, team: Team, outsider: User
) -> None:
    members = f"{team.path}/members"
    refused = [
        client.get(team.path, headers=bearer(outsider)),
        client.patch(team.path, headers=bearer(outsider), json={"name": "taken"}),
        client.delete(team.path, headers=bearer(outsider)),
        client.get(members, headers=bearer(outsider)),
        client.post(members, headers=bearer(outsider), json={"subject": outsider["sub"], "role": "owner"}),
        client.patch(f"{members}/{team.viewer['sub']}", headers=bearer(outsider), json={"role": "owner"}),
        client.patch(f"{members}/{outsider['sub']}", headers=bearer(outsider), json={"role": "owner"}),
        client.delete(f"{members}/{team.viewer['sub']}", headers=bearer(outsider)),
        client.delete(f"{members}/{outsider['sub']}", headers=bearer(outsider)),
    ]
    for response in refused:
        assert_problem(response, 404, "not-found")
        assert team.project["name"] not in response.text
        assert team.project["description"] not in response.text
        assert team.owner["sub"] not in response.text
    assert client.get(team.path, headers=bearer(team.owner)).json() == team.project
    assert len(members_of(client, team.owner, team.id)) == 3


@pytest.mark.parametrize("role", ["editor", "viewer"])
def test_non_owners_cannot_learn_who_has_an_account(
    client: TestClient, team: Team, make_user: Any, role: str
) -> None:
    """A known and an unknown user get the same refusal: the caller's right is checked before the lookup."""
    known = make_user()
    members = f"{team.path}/members"
    for body in (
        {"subject": known["sub"]},
        {"subject": "00000000-0000-0000-0000-000000000000"},
    ):
        response = client.post(members, headers=bearer(getattr(team, role)), json=body)
        assert_problem(response, 403, "forbidden")
        assert known["sub"] not in response.text
    assert len(members_of(client, team.owner, team.id)) == 3


def test_outsiders_cannot_learn_who_has_an_account(
    client: TestClient, team: Team, outsider: User, make_user: Any
) -> None:
    known = make_user()
    for body in ({"subject": known["sub"]}, {"subject": "00000000-0000-0000-0000-000000000000"}):
        assert_problem(client.post(f"{team.path}/members", headers=bearer(outsider), json=body), 404)


# Idempotency-Key on adding a member


def test_adding_a_member_again_with_the_same_key_replays_the_answer(
    client: TestClient, team: Team, make_user: Any
) -> None:
    newcomer = make_user()
    headers = bearer(team.owner, **{"Idempotency-Key": unique("member")})
    body = {"subject": newcomer["sub"], "role": "editor"}

    first = client.post(f"{team.path}/members", headers=headers, json=body)
    again = client.post(f"{team.path}/members", headers=headers, json=body)

    assert first.status_code == 201, first.text
    # Without the key the second request would be a 409: the member exists.
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"{team.path}/members/{newcomer['sub']}"
    assert members_of(client, team.owner, team.id)[newcomer["sub"]] == "editor"
    assert client.get(team.path, headers=bearer(team.owner)).json()["members"] == 4


def test_one_member_key_with_another_body_or_project_is_422(
    client: TestClient, team: Team, make_user: Any
) -> None:
    newcomer = make_user()
    headers = bearer(team.owner, **{"Idempotency-Key": unique("member")})
    body = {"subject": newcomer["sub"], "role": "viewer"}
    assert client.post(f"{team.path}/members", headers=headers, json=body).status_code == 201

    other_role = client.post(f"{team.path}/members", headers=headers, json={**body, "role": "owner"})
    assert_problem(other_role, 422, "unprocessable-content")
    other_project = new_project(client, team.owner)
    elsewhere = client.post(f"/projects/{other_project['id']}/members", headers=headers, json=body)
    assert_problem(elsewhere, 422, "unprocessable-content")

    assert members_of(client, team.owner, team.id)[newcomer["sub"]] == "viewer"
    assert newcomer["sub"] not in members_of(client, team.owner, other_project["id"])
