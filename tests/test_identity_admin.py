"""/admin guarantees that need a user pool of their own (the admin group's members, the whole audit trail)
and the directory's answers to what Cognito refuses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

import directory
import models
from auth import APP_SCOPES, Principal
from errors import Forbidden, NotFound
from pagination import query_binding
from services.api_keys import issue_api_key
from services.profiles import get_or_create_profile
from tests.data.helpers import assert_problem
from tests.test_identity import bearer, create_key

Refusal = Callable[[str, dict[str, Any]], str | None]


@pytest.fixture
def refuse_aws(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Refusal], None]:
    """Makes chosen AWS calls fail: `refuse(service, decide)` where decide(operation, params) returns the
    error code to answer with, or None to let the call through."""
    original = botocore.client.BaseClient._make_api_call
    rules: list[tuple[str, Refusal]] = []

    def call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        for wanted, decide in rules:
            code = decide(operation_name, api_params) if service == wanted else None
            if code is not None:
                error = {"Code": code, "Message": f"refused by the test: {code}"}
                raise ClientError(
                    {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation_name
                )
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return lambda service, decide: rules.append((service, decide))


def cognito_user(aws_resources: LocalResources, name: str) -> dict[str, Any]:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    user: dict[str, Any] = cognito.admin_get_user(UserPoolId=aws_resources.user_pool_id, Username=name)
    groups = cognito.admin_list_groups_for_user(UserPoolId=aws_resources.user_pool_id, Username=name)
    user["Groups"] = {group["GroupName"] for group in groups["Groups"]}
    return user


def audit_trail(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/admin/audit", headers=bearer(admin), params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# The last admin


def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    pool = aws_resources.user_pool_id
    for member in cognito.list_users_in_group(UserPoolId=pool, GroupName="admin")["Users"]:
        cognito.admin_remove_user_from_group(UserPoolId=pool, Username=member["Username"], GroupName="admin")
    # Demoted in the directory, but their access token still names the admin group for up to an hour.
    stale = make_user(("admin", "user"))
    cognito.admin_remove_user_from_group(UserPoolId=pool, Username=stale["email"], GroupName="admin")
    last = make_user(("admin", "user"))
    dormant = make_user(("admin", "user"))
    cognito.admin_disable_user(UserPoolId=pool, Username=dormant["email"])

    for method, action in (("DELETE", "groups/admin"), ("POST", "disable")):
        refused = client.request(method, f"/admin/users/{last['sub']}/{action}", headers=bearer(stale))
        assert "last enabled admin" in assert_problem(refused, 409, "conflict")["detail"]
    assert cognito_user(aws_resources, last["email"])["Enabled"] is True
    assert "admin" in cognito_user(aws_resources, last["email"])["Groups"]

    make_user(("admin", "user"))
    demoted = client.delete(f"/admin/users/{last['sub']}/groups/admin", headers=bearer(stale))
    assert demoted.status_code == 200, demoted.text
    assert "admin" not in demoted.json()["groups"]


# The audit trail comes first


def test_an_action_the_audit_trail_cannot_record_is_not_taken(
    client: TestClient,
    make_user: Any,
    aws_resources: LocalResources,
    refuse_aws: Callable[[str, Refusal], None],
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    key = create_key(client, target)

    def audit_put(operation: str, params: dict[str, Any]) -> str | None:
        is_audit = operation == "PutItem" and params["Item"].get("type", {}).get("S") == "AuditRecord"
        # A missing IAM permission: not transient, so nothing else would turn it into a 503.
        return "AccessDeniedException" if is_audit else None

    refuse_aws("dynamodb", audit_put)
    for method, action in (("POST", "disable"), ("PUT", "groups/admin"), ("POST", "sign-out")):
        response = client.request(method, f"/admin/users/{target['sub']}/{action}", headers=bearer(admin))
        body = assert_problem(response, 503, "service-unavailable")
        assert "audit" in body["detail"]
    after = cognito_user(aws_resources, target["email"])
    assert after["Enabled"] is True
    assert "admin" not in after["Groups"]
    assert client.get("/me", headers={"X-API-Key": key["secret"]}).status_code == 200


def test_an_action_whose_end_cannot_be_recorded_stays_on_the_trail_as_requested(
    client: TestClient,
    make_user: Any,
    aws_resources: LocalResources,
    refuse_aws: Callable[[str, Refusal], None],
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()

    def audit_update(operation: str, params: dict[str, Any]) -> str | None:
        is_audit = operation == "UpdateItem" and params["Key"]["pk"]["S"] == "AUDIT"
        return "AccessDeniedException" if is_audit else None

    refuse_aws("dynamodb", audit_update)
    disabled = client.post(f"/admin/users/{target['sub']}/disable", headers=bearer(admin))
    assert disabled.status_code == 200, disabled.text
    assert cognito_user(aws_resources, target["email"])["Enabled"] is False
    entry = next(e for e in audit_trail(client, admin) if e["target"] == target["sub"])
    assert (entry["action"], entry["outcome"]) == ("user.disable", "requested")


def test_a_refused_action_is_on_the_trail_as_failed(
    client: TestClient, make_user: Any, refuse_aws: Callable[[str, Refusal], None]
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    refuse_aws("cognito-idp", lambda op, _: "UserNotFoundException" if op == "AdminDisableUser" else None)
    assert_problem(client.post(f"/admin/users/{target['sub']}/disable", headers=bearer(admin)), 404)
    entry = next(e for e in audit_trail(client, admin) if e["target"] == target["sub"])
    assert (entry["action"], entry["outcome"]) == ("user.disable", "failed")
    assert entry["details"]["error"] == "not-found"


# What Cognito refuses


def test_a_user_name_cognito_refuses_is_404_on_admin_routes_and_422_for_members(
    client: TestClient, make_user: Any, refuse_aws: Callable[[str, Refusal], None]
) -> None:
    admin = make_user(("admin", "user"))
    project = client.post("/projects", headers=bearer(admin), json={"name": "Directory errors"}).json()
    # Cognito answers a username outside its pattern (e.g. with spaces) so, and a search filter it cannot
    # parse; the stand-in checks neither. Members are looked up by subject: a ListUsers search on `sub`.

    def refused(operation: str, params: dict[str, Any]) -> str | None:
        searches_sub = operation == "ListUsers" and str(params.get("Filter", "")).startswith("sub")
        return "InvalidParameterException" if operation == "AdminGetUser" or searches_sub else None

    refuse_aws("cognito-idp", refused)
    assert_problem(client.get("/admin/users/some.one", headers=bearer(admin)), 404, "not-found")
    assert_problem(client.post("/admin/users/some.one/disable", headers=bearer(admin)), 404, "not-found")
    added = client.post(
        f"/projects/{project['id']}/members", headers=bearer(admin), json={"subject": "some one"}
    )
    assert_problem(added, 422)


@pytest.mark.parametrize("answer", [None, "InvalidParameterException"], ids=["stand-in", "cognito"])
def test_an_expired_directory_cursor_is_400(
    app: FastAPI,
    client: TestClient,
    make_user: Any,
    refuse_aws: Callable[[str, Refusal], None],
    answer: str | None,
) -> None:
    admin = make_user(("admin", "user"))
    if answer is not None:
        refuse_aws(
            "cognito-idp", lambda op, p: answer if op == "ListUsers" and "PaginationToken" in p else None
        )
    # A cursor this API signed, around a Cognito pagination token Cognito no longer accepts.
    binding = query_binding("/admin/users", admin["sub"], limit=2)
    cursor = app.state.cursor_codec.encode("an-expired-cognito-token", binding)
    response = client.get("/admin/users", headers=bearer(admin), params={"limit": 2, "cursor": cursor})
    assert_problem(response, 400, "invalid-cursor")


def test_a_busy_directory_is_503(
    client: TestClient, make_user: Any, refuse_aws: Callable[[str, Refusal], None]
) -> None:
    admin = make_user(("admin", "user"))
    refuse_aws("cognito-idp", lambda op, p: "TooManyRequestsException")
    response = client.get("/admin/users", headers=bearer(admin))
    assert_problem(response, 503, "service-unavailable")
    assert int(response.headers["retry-after"]) >= 1


# Usernames are not subjects


@pytest.fixture(scope="module")
def federated_pool(aws_resources: LocalResources) -> dict[str, str]:
    """A pool whose usernames are not subs: as Cognito names users who sign in with Google."""
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    pool_id: str = cognito.create_user_pool(PoolName=f"federated-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"]
    email = f"fed-{uuid.uuid4().hex[:8]}@example.com"
    username = f"Google_{uuid.uuid4().int % 10**21}"
    user = cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=username,
        UserAttributes=[{"Name": "email", "Value": email}],
        MessageAction="SUPPRESS",
    )["User"]
    sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
    return {"pool_id": pool_id, "username": username, "email": email, "sub": sub}


def test_a_user_found_by_email_is_named_by_their_tokens_subject(
    app: FastAPI, federated_pool: dict[str, str]
) -> None:
    assert federated_pool["sub"] != federated_pool["username"]
    assert (
        directory.find_user_by_email(federated_pool["pool_id"], federated_pool["email"])
        == federated_pool["sub"]
    )
    found = directory.find_user_by_subject(federated_pool["pool_id"], federated_pool["sub"])
    assert found is not None
    assert (found.user_id, found.subject) == (federated_pool["username"], federated_pool["sub"])
    looked_up = directory.lookup_user(federated_pool["pool_id"], federated_pool["username"])
    assert looked_up.subject == federated_pool["sub"]


def test_a_token_of_a_deleted_user_does_not_act_as_whoever_gets_their_username_next(
    app: FastAPI, aws_resources: LocalResources, federated_pool: dict[str, str]
) -> None:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    pool_id = federated_pool["pool_id"]
    username = f"Google_{uuid.uuid4().int % 10**21}"

    def create(email: str) -> str:
        attributes = [{"Name": "email", "Value": email}]
        user = cognito.admin_create_user(
            UserPoolId=pool_id, Username=username, UserAttributes=attributes, MessageAction="SUPPRESS"
        )["User"]
        return next(str(a["Value"]) for a in user["Attributes"] if a["Name"] == "sub")

    old_subject = create(f"gone-{uuid.uuid4().hex[:8]}@example.com")
    cognito.admin_delete_user(UserPoolId=pool_id, Username=username)
    assert create(f"new-{uuid.uuid4().hex[:8]}@example.com") != old_subject
    # What an access token issued to the deleted user still says until it expires.
    old_token = Principal(subject=old_subject, auth_method="jwt", username=username, scopes=APP_SCOPES)
    settings = app.state.settings.model_copy(update={"cognito_user_pool_id": pool_id})

    with pytest.raises(Forbidden, match="no longer exists"):
        issue_api_key(old_token, settings, "inherited", {"stratus/read"}, None)
    with pytest.raises(NotFound):
        get_or_create_profile(old_token, settings)
    assert models.profile.get_profile(old_subject) is None
    assert models.api_key.list_api_keys(old_subject, 10, None)[0] == []


def test_admin_user_view_shows_username_and_subject(client: TestClient, make_user: Any) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    shown = client.get(f"/admin/users/{target['email']}", headers=bearer(admin)).json()
    assert shown["subject"] == target["sub"]
    assert shown["email"] == target["email"]
