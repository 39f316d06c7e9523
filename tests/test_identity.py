"""/me, /api-keys and /admin end to end: real Cognito tokens from the stand-in, DynamoDB over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client


def bearer(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}"}


@pytest.fixture(scope="module")
def alice(make_user: Any) -> dict[str, str]:
    user: dict[str, str] = make_user(("admin", "user"))
    return user


@pytest.fixture(scope="module")
def bob(make_user: Any) -> dict[str, str]:
    user: dict[str, str] = make_user(("user",))
    return user


# /me


def test_me_is_created_on_first_access_from_the_directory(client: TestClient, bob: dict[str, str]) -> None:
    response = client.get("/me", headers=bearer(bob))
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["subject"] == bob["sub"]
    assert profile["email"] == bob["email"]
    assert profile["display_name"] == bob["email"].split("@")[0]
    assert client.get("/me", headers=bearer(bob)).json()["created_at"] == profile["created_at"]


def test_me_patch_changes_only_what_was_sent(client: TestClient, make_user: Any) -> None:
    user = make_user()
    first = client.patch("/me", headers=bearer(user), json={"preferences": {"theme": "dark"}})
    assert first.status_code == 200, first.text
    second = client.patch(
        "/me", headers=bearer(user), json={"display_name": "  Carol  ", "preferences": {"locale": "en-GB"}}
    )
    body = second.json()
    assert body["display_name"] == "Carol"
    assert body["preferences"] == {"theme": "dark", "locale": "en-GB"}
    cleared = client.patch("/me", headers=bearer(user), json={"preferences": {"theme": None}})
    assert cleared.json()["preferences"] == {"locale": "en-GB"}


@pytest.mark.parametrize(
    "patch",
    [
        {"display_name": ""},
        {"display_name": "   "},
        {"display_name": "x" * 81},
        {"preferences": {"theme": "neon"}},
        {"preferences": {"timezone": "Mars/Olympus"}},
        {"preferences": {"locale": "english"}},
        {"preferences": {"unknown": 1}},
        {"subject": "someone-else"},
    ],
)
def test_me_patch_rejects_bad_input_with_a_problem(
    client: TestClient, bob: dict[str, str], patch: dict[str, Any]
) -> None:
    before = client.get("/me", headers=bearer(bob)).json()
    response = client.patch("/me", headers=bearer(bob), json=patch)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/me", headers=bearer(bob)).json() == before


def test_me_requires_authentication(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


# /api-keys


def create_key(client: TestClient, user: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"name": "ci script", "scopes": ["stratus/read"], **body}
    response = client.post("/api-keys", headers=bearer(user), json=payload)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_api_key_secret_is_shown_once_and_authenticates_as_its_owner(
    client: TestClient, bob: dict[str, str]
) -> None:
    created = create_key(client, bob)
    assert created["secret"].startswith(created["prefix"] + "_")
    me = client.get("/me", headers={"X-API-Key": created["secret"]})
    assert me.status_code == 200
    assert me.json()["subject"] == bob["sub"]
    listed = client.get("/api-keys", headers=bearer(bob)).json()
    assert created["id"] in {key["id"] for key in listed["items"]}
    assert created["secret"] not in str(listed)
    assert all("secret" not in key for key in listed["items"])


def test_api_key_records_last_use(client: TestClient, bob: dict[str, str]) -> None:
    created = create_key(client, bob)
    client.get("/me", headers={"X-API-Key": created["secret"]})
    listed = {key["id"]: key for key in client.get("/api-keys", headers=bearer(bob)).json()["items"]}
    assert listed[created["id"]]["last_used_at"] is not None


def test_revoked_expired_unknown_and_malformed_keys_are_401(client: TestClient, bob: dict[str, str]) -> None:
    created = create_key(client, bob)
    assert client.delete(f"/api-keys/{created['id']}", headers=bearer(bob)).status_code == 204
    unknown = "stratus_" + "0" * 16 + "_" + "A" * 43
    wrong_secret = created["secret"][:-4] + "AAAA"
    for key in (created["secret"], unknown, wrong_secret, "not-a-key", "stratus_zz_zz"):
        response = client.get("/me", headers={"X-API-Key": key})
        assert response.status_code == 401, key
        assert response.headers["content-type"] == "application/problem+json"


def test_api_key_cannot_grant_more_than_its_creator_holds(client: TestClient, bob: dict[str, str]) -> None:
    response = client.post("/api-keys", headers=bearer(bob), json={"name": "x", "scopes": ["stratus/admin"]})
    assert response.status_code == 422
    via_key = create_key(client, bob)
    minted = client.post(
        "/api-keys", headers={"X-API-Key": via_key["secret"]}, json={"name": "y", "scopes": ["stratus/read"]}
    )
    assert minted.status_code == 403


def test_api_key_expiry_must_be_in_the_future(client: TestClient, bob: dict[str, str]) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = client.post(
        "/api-keys", headers=bearer(bob), json={"name": "x", "scopes": ["stratus/read"], "expires_at": past}
    )
    assert response.status_code == 422


def test_a_user_never_sees_or_revokes_another_users_keys(
    client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    alices = create_key(client, alice)
    assert client.delete(f"/api-keys/{alices['id']}", headers=bearer(bob)).status_code == 404
    assert alices["id"] not in {
        key["id"] for key in client.get("/api-keys", headers=bearer(bob)).json()["items"]
    }
    assert client.get("/me", headers={"X-API-Key": alices["secret"]}).status_code == 200


def test_api_key_list_paginates_with_signed_cursors(client: TestClient, make_user: Any) -> None:
    user = make_user()
    ids = {create_key(client, user, name=f"k{i}")["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api-keys", headers=bearer(user), params=params).json()
        seen += [key["id"] for key in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    first = client.get("/api-keys", headers=bearer(user), params={"limit": 2}).json()
    tampered = first["next_cursor"][:-2] + ("AA" if not first["next_cursor"].endswith("AA") else "BB")
    assert client.get("/api-keys", headers=bearer(user), params={"cursor": tampered}).status_code == 400
    other = make_user()
    foreign = client.get("/api-keys", headers=bearer(other), params={"cursor": first["next_cursor"]})
    assert foreign.status_code == 400


# /admin


def test_admin_routes_are_403_for_non_admins_and_401_for_anonymous(
    client: TestClient, bob: dict[str, str]
) -> None:
    assert client.get("/admin/users", headers=bearer(bob)).status_code == 403
    assert client.get("/admin/audit", headers=bearer(bob)).status_code == 403
    assert client.get("/admin/users").status_code == 401


def test_admin_lists_users_with_opaque_cursor(
    client: TestClient, alice: dict[str, str], make_user: Any
) -> None:
    for _ in range(3):
        make_user()
    page = client.get("/admin/users", headers=bearer(alice), params={"limit": 2})
    assert page.status_code == 200, page.text
    body = page.json()
    assert len(body["items"]) == 2
    assert body["next_cursor"]
    following = client.get(
        "/admin/users", headers=bearer(alice), params={"limit": 2, "cursor": body["next_cursor"]}
    )
    assert following.status_code == 200
    assert {u["id"] for u in following.json()["items"]}.isdisjoint({u["id"] for u in body["items"]})


def test_admin_disables_enables_regroups_and_signs_out_with_audit(
    client: TestClient, alice: dict[str, str], make_user: Any, aws_resources: LocalResources
) -> None:
    target = make_user()
    user_id = target["sub"]
    admin = bearer(alice)
    assert client.post(f"/admin/users/{user_id}/disable", headers=admin).json()["enabled"] is False
    assert client.post(f"/admin/users/{user_id}/enable", headers=admin).json()["enabled"] is True
    assert "admin" in client.put(f"/admin/users/{user_id}/groups/admin", headers=admin).json()["groups"]
    assert (
        "admin" not in client.delete(f"/admin/users/{user_id}/groups/admin", headers=admin).json()["groups"]
    )
    # Cognito accepts the email alias wherever it takes a username; the stand-in revokes refresh tokens
    # only when signed out by the alias the user signed in with, so the alias is used here.
    response = client.post(f"/admin/users/{target['email']}/sign-out", headers=admin)
    assert response.status_code == 204
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        cognito.initiate_auth(
            ClientId=aws_resources.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": target["refresh"]},
        )
    trail = client.get("/admin/audit", headers=admin, params={"limit": 100}).json()["items"]
    mine = [entry for entry in trail if entry["target"] in {user_id, target["email"]}]
    assert [entry["action"] for entry in mine] == [
        "user.sign_out",
        "user.group.remove",
        "user.group.add",
        "user.enable",
        "user.disable",
    ]
    assert all(entry["actor"] == alice["sub"] and entry["request_id"] for entry in mine)


def test_admin_cannot_lock_themselves_out(client: TestClient, alice: dict[str, str]) -> None:
    assert client.post(f"/admin/users/{alice['sub']}/disable", headers=bearer(alice)).status_code == 409
    assert (
        client.delete(f"/admin/users/{alice['sub']}/groups/admin", headers=bearer(alice)).status_code == 409
    )


def test_admin_unknown_user_and_group_are_problems(client: TestClient, alice: dict[str, str]) -> None:
    assert client.get("/admin/users/no-such-user", headers=bearer(alice)).status_code == 404
    assert client.put(f"/admin/users/{alice['sub']}/groups/root", headers=bearer(alice)).status_code == 422


def test_api_keys_never_reach_admin_routes(client: TestClient, alice: dict[str, str]) -> None:
    key = create_key(client, alice)
    assert client.get("/admin/users", headers={"X-API-Key": key["secret"]}).status_code == 403
