"""/me, /api-keys and /admin end to end: real Cognito tokens from the stand-in, DynamoDB over HTTP."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import DEMO_PASSWORD, LocalResources, aws_client, sign_in

import directory
from auth import Principal
from errors import Forbidden
from services.api_keys import issue_api_key
from settings import Settings
from tests.data.helpers import assert_problem


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


def test_me_is_503_and_nothing_is_saved_while_the_directory_is_unreachable(
    client: TestClient, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user()
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "http://127.0.0.1:9")
    directory._cognito.cache_clear()
    try:
        unreachable = client.get("/me", headers=bearer(user))
    finally:
        monkeypatch.delenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER")
        directory._cognito.cache_clear()
    assert_problem(unreachable, 503, "service-unavailable")
    assert int(unreachable.headers["retry-after"]) >= 1
    # Had a profile been stored without the directory, it would keep email null for good.
    profile = client.get("/me", headers=bearer(user)).json()
    assert profile["email"] == user["email"]
    assert profile["display_name"] == user["email"].split("@")[0]


def test_me_first_reached_with_an_api_key_is_made_from_the_directory(
    client: TestClient, make_user: Any
) -> None:
    user = make_user()
    key = create_key(client, user)
    profile = client.get("/me", headers={"X-API-Key": key["secret"]})
    assert profile.status_code == 200, profile.text
    assert profile.json()["email"] == user["email"]


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


def expire_key_now(key_id: str) -> None:
    """Moves a key's expiry into the past, as if its time had run out."""
    from models.api_key import ApiKey

    ApiKey(f"APIKEY#{key_id}", "APIKEY").update(
        actions=[ApiKey.valid_until.set(datetime.now(UTC) - timedelta(seconds=1))]
    )


def test_revoked_expired_unknown_and_malformed_keys_are_401(client: TestClient, bob: dict[str, str]) -> None:
    created = create_key(client, bob)
    assert client.delete(f"/api-keys/{created['id']}", headers=bearer(bob)).status_code == 204
    expiring = create_key(client, bob, expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert client.get("/me", headers={"X-API-Key": expiring["secret"]}).status_code == 200
    expire_key_now(expiring["id"])
    unknown = "stratus_" + "0" * 16 + "_" + "A" * 43
    # Another last character, whatever the random one was.
    wrong_secret = created["secret"][:-1] + ("B" if created["secret"].endswith("A") else "A")
    for key in (created["secret"], expiring["secret"], unknown, wrong_secret, "not-a-key", "stratus_zz_zz"):
        response = client.get("/me", headers={"X-API-Key": key})
        assert response.status_code == 401, key
        assert response.headers["content-type"] == "application/problem+json"
    expired = client.get("/me", headers={"X-API-Key": expiring["secret"]}).json()
    assert expired["detail"] == "The API key has expired."


def test_api_key_cannot_grant_more_than_its_creator_holds(client: TestClient, bob: dict[str, str]) -> None:
    response = client.post("/api-keys", headers=bearer(bob), json={"name": "x", "scopes": ["stratus/admin"]})
    assert response.status_code == 422
    via_key = create_key(client, bob)
    minted = client.post(
        "/api-keys", headers={"X-API-Key": via_key["secret"]}, json={"name": "y", "scopes": ["stratus/read"]}
    )
    assert minted.status_code == 403


def test_issuing_refuses_scopes_the_caller_does_not_hold(app: Any) -> None:
    # Signed-in people hold every scope of the API, so this rule is reached only by a principal built
    # with fewer (e.g. if people's scopes ever follow their groups).
    reader = Principal(
        subject="reader-sub", auth_method="jwt", username="reader", scopes=frozenset({"stratus/read"})
    )
    settings: Settings = app.state.settings
    with pytest.raises(Forbidden, match="stratus/write"):
        issue_api_key(reader, settings, "escalate", {"stratus/read", "stratus/write"}, None)


def test_a_read_only_api_key_cannot_write(client: TestClient, make_user: Any) -> None:
    user = make_user()
    reader = {"X-API-Key": create_key(client, user)["secret"]}
    writer = {"X-API-Key": create_key(client, user, scopes=["stratus/read", "stratus/write"])["secret"]}
    victim = create_key(client, user, name="victim")

    assert_problem(client.patch("/me", headers=reader, json={"display_name": "Mallory"}), 403, "forbidden")
    assert_problem(client.delete(f"/api-keys/{victim['id']}", headers=reader), 403, "forbidden")
    assert client.get("/me", headers=reader).json()["display_name"] != "Mallory"
    assert client.get("/me", headers={"X-API-Key": victim["secret"]}).status_code == 200

    changed = client.patch("/me", headers=writer, json={"display_name": "Scripted"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "Scripted"
    assert client.delete(f"/api-keys/{victim['id']}", headers=writer).status_code == 204
    assert client.get("/me", headers={"X-API-Key": victim["secret"]}).status_code == 401


def test_api_key_secrets_never_reach_the_logs(
    client: TestClient, make_user: Any, app_log: io.StringIO
) -> None:
    user = make_user()
    created = create_key(client, user)
    secret = created["secret"]
    assert client.get("/me", headers={"X-API-Key": secret}).status_code == 200
    assert client.get("/api-keys", headers=bearer(user)).status_code == 200
    assert client.delete(f"/api-keys/{created['id']}", headers=bearer(user)).status_code == 204
    assert client.get("/me", headers={"X-API-Key": secret}).status_code == 401
    logged = app_log.getvalue()
    assert logged.count('"message":"request"') >= 5  # every request was logged, with its path
    assert secret not in logged
    # `stratus_<key id>_<secret part>`; the random part may itself contain "_".
    prefix, key_id, random_part = secret.split("_", 2)
    assert (prefix, key_id) == ("stratus", created["id"])
    assert len(random_part) >= 32
    assert random_part not in logged


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
    # The admin names the user by their email alias; the directory is told their username (here their
    # sub). The stand-in revokes only refresh tokens from sign-ins by the name it is told, so this one
    # signs in by username.
    refresh = sign_in(aws_resources.endpoint, aws_resources.client_id, user_id, DEMO_PASSWORD)["refresh"]
    response = client.post(f"/admin/users/{target['email']}/sign-out", headers=admin)
    assert response.status_code == 204
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        cognito.initiate_auth(
            ClientId=aws_resources.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh},
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


def test_disabling_a_user_revokes_their_api_keys(client: TestClient, make_user: Any) -> None:
    admin = bearer(make_user(("admin", "user")))
    target = make_user()
    keys = [create_key(client, target, name=f"k{i}") for i in range(2)]
    assert client.get("/me", headers={"X-API-Key": keys[0]["secret"]}).status_code == 200

    disabled = client.post(f"/admin/users/{target['email']}/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    for key in keys:
        assert_problem(client.get("/me", headers={"X-API-Key": key["secret"]}), 401, "unauthorized")
    # Enabling the account again does not bring the keys back.
    assert client.post(f"/admin/users/{target['sub']}/enable", headers=admin).status_code == 200
    assert client.get("/me", headers={"X-API-Key": keys[1]["secret"]}).status_code == 401

    trail = client.get("/admin/audit", headers=admin, params={"limit": 100}).json()["items"]
    disabling = next(e for e in trail if e["action"] == "user.disable" and e["target"] == target["sub"])
    assert disabling["outcome"] == "succeeded"
    # A count, not the ids: the record stays small whatever the user held.
    assert disabling["details"]["revoked_api_keys"] == len(keys)


def test_signing_a_user_out_everywhere_revokes_their_api_keys(client: TestClient, make_user: Any) -> None:
    admin = bearer(make_user(("admin", "user")))
    target = make_user()
    key = create_key(client, target)
    assert client.get("/me", headers={"X-API-Key": key["secret"]}).status_code == 200

    assert client.post(f"/admin/users/{target['sub']}/sign-out", headers=admin).status_code == 204
    assert_problem(client.get("/me", headers={"X-API-Key": key["secret"]}), 401, "unauthorized")
    trail = client.get("/admin/audit", headers=admin, params={"limit": 100}).json()["items"]
    signing_out = next(e for e in trail if e["action"] == "user.sign_out" and e["target"] == target["sub"])
    assert signing_out["details"]["revoked_api_keys"] == 1


def test_a_disabled_user_cannot_mint_an_api_key_with_a_token_still_valid(
    client: TestClient, make_user: Any
) -> None:
    admin = bearer(make_user(("admin", "user")))
    target = make_user()
    assert client.post(f"/admin/users/{target['sub']}/disable", headers=admin).status_code == 200
    minted = client.post("/api-keys", headers=bearer(target), json={"name": "x", "scopes": ["stratus/read"]})
    assert_problem(minted, 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "action"),
    [("POST", "disable"), ("DELETE", "groups/admin"), ("POST", "sign-out")],
)
def test_admin_cannot_lock_themselves_out_by_any_of_their_names(
    client: TestClient, make_user: Any, aws_resources: LocalResources, method: str, action: str
) -> None:
    admin = make_user(("admin", "user"))
    for name in (admin["email"], admin["sub"]):
        refused = client.request(method, f"/admin/users/{name}/{action}", headers=bearer(admin))
        assert_problem(refused, 409, "conflict")
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    me = cognito.admin_get_user(UserPoolId=aws_resources.user_pool_id, Username=admin["email"])
    assert me["Enabled"] is True
    groups = cognito.admin_list_groups_for_user(
        UserPoolId=aws_resources.user_pool_id, Username=admin["email"]
    )
    assert "admin" in {group["GroupName"] for group in groups["Groups"]}
