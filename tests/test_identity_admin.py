"""/admin guarantees that need a user pool of their own (the admin group's members, the whole audit trail)
and the directory's answers to what Cognito refuses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from local.resources import DEMO_PASSWORD, LocalResources, aws_client, sign_in

import directory
import models
from auth import APP_SCOPES, Principal
from errors import Forbidden, NotFound
from pagination import query_binding
from services.accounts import end_sessions as end_all_sessions
from services.api_keys import issue_api_key
from services.profiles import get_or_create_profile
from tests.aws_calls import AwsCall, client_error, intercepting_aws_calls
from tests.data.helpers import assert_problem
from tests.test_identity import bearer, create_key
from tests.test_identity_signout import wait_for_the_next_second

Refusal = Callable[[str, dict[str, Any]], str | None]


@pytest.fixture
def refuse_aws() -> Iterator[Callable[[str, Refusal], None]]:
    """Makes chosen AWS calls fail: `refuse(service, decide)` where decide(operation, params) returns the
    error code to answer with, or None to let the call through."""
    rules: list[tuple[str, Refusal]] = []

    def refuse(call: AwsCall) -> Any:
        for wanted, decide in rules:
            code = decide(call.operation, call.params) if call.service == wanted else None
            if code is not None:
                raise client_error(call.operation, code)
        return call.proceed()

    with intercepting_aws_calls(refuse):
        yield lambda service, decide: rules.append((service, decide))


class AwsCalls:
    """The AWS calls made during a test, and what is to happen right after chosen ones (as if someone
    else acted at that moment)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, dict[str, Any]]] = []
        self._after: list[tuple[str, Callable[[str, dict[str, Any]], bool], Callable[[], None]]] = []
        self._acting = False

    def after(
        self, service: str, wanted: Callable[[str, dict[str, Any]], bool], then: Callable[[], None]
    ) -> None:
        """Runs `then` once, right after the first `service` call that `wanted(operation, params)` picks."""
        self._after.append((service, wanted, then))

    def operations(self, service: str) -> list[str]:
        return [operation for made_to, operation, _ in self.made if made_to == service]

    def called(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self._acting:
            return
        self.made.append((service, operation, params))
        for entry in list(self._after):
            wanted_service, wanted, then = entry
            if wanted_service == service and wanted(operation, params):
                self._after.remove(entry)
                self._acting = True
                try:
                    then()
                finally:
                    self._acting = False


@pytest.fixture
def aws_calls() -> Iterator[AwsCalls]:
    """Records the AWS calls that succeed (the ones `refuse_aws` answers are not made)."""
    calls = AwsCalls()

    def record(call: AwsCall) -> Any:
        answer = call.proceed()
        calls.called(call.service, call.operation, call.params)
        return answer

    with intercepting_aws_calls(record):
        yield calls


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


# Admin rights are read live


def test_a_demoted_or_disabled_admin_is_refused_at_once_whatever_their_token_says(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    pool = aws_resources.user_pool_id
    # Each still holds an access token naming the admin group, valid for up to an hour.
    demoted, disabled = make_user(("admin", "user")), make_user(("admin", "user"))
    cognito.admin_remove_user_from_group(UserPoolId=pool, Username=demoted["email"], GroupName="admin")
    cognito.admin_disable_user(UserPoolId=pool, Username=disabled["email"])
    target = make_user()
    for stale in (demoted, disabled):
        for method, action in (("POST", "disable"), ("PUT", "groups/admin"), ("GET", "")):
            refused = client.request(
                method, f"/admin/users/{target['sub']}/{action}".rstrip("/"), headers=bearer(stale)
            )
            assert_problem(refused, 403, "forbidden")
        # Not even to enable or promote themselves.
        for method, action in (("POST", "enable"), ("PUT", "groups/admin")):
            refused = client.request(method, f"/admin/users/{stale['sub']}/{action}", headers=bearer(stale))
            assert_problem(refused, 403, "forbidden")
    assert cognito_user(aws_resources, target["email"])["Enabled"] is True
    assert "admin" not in cognito_user(aws_resources, target["email"])["Groups"]


def test_an_admin_whose_sessions_were_ended_is_refused_until_they_sign_in_again(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin = make_user(("admin", "user"))
    wait_for_the_next_second(admin)
    end_all_sessions(admin["sub"])
    assert_problem(client.get("/admin/users", headers=bearer(admin)), 401, "unauthorized")
    wait_for_the_next_second(admin)
    fresh = sign_in(aws_resources.endpoint, aws_resources.client_id, admin["email"], DEMO_PASSWORD)
    assert client.get("/admin/users", headers=bearer(fresh)).status_code == 200


def test_nobody_enables_promotes_or_locks_out_themselves(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    # With live checks, the caller is always an enabled admin other than the target: together with these
    # refusals, the last enabled admin always stays.
    admin = make_user(("admin", "user"))
    for method, action in (
        ("POST", "enable"),
        ("POST", "disable"),
        ("PUT", "groups/admin"),
        ("DELETE", "groups/admin"),
        ("POST", "sign-out"),
    ):
        for name in (admin["sub"], admin["email"]):
            refused = client.request(method, f"/admin/users/{name}/{action}", headers=bearer(admin))
            assert "themselves" in assert_problem(refused, 409, "conflict")["detail"]
    after = cognito_user(aws_resources, admin["email"])
    assert after["Enabled"] is True
    assert "admin" in after["Groups"]


def test_a_demotion_ends_the_demoted_admins_sessions(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin, other = make_user(("admin", "user")), make_user(("admin", "user"))
    wait_for_the_next_second(other)
    refresh = refresh_token_by_username(aws_resources, other)
    key = create_key(client, other)
    demoted = client.delete(f"/admin/users/{other['sub']}/groups/admin", headers=bearer(admin))
    assert demoted.status_code == 200, demoted.text
    assert "admin" not in demoted.json()["groups"]
    assert not refreshes(aws_resources, refresh)
    assert_problem(client.get("/me", headers={"X-API-Key": key["secret"]}), 401, "unauthorized")
    assert_problem(client.get("/admin/users", headers=bearer(other)), 403, "forbidden")


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

    def audit_outcome(operation: str, params: dict[str, Any]) -> str | None:
        is_audit = operation == "PutItem" and params["Item"].get("type", {}).get("S") == "AuditOutcome"
        return "AccessDeniedException" if is_audit else None

    refuse_aws("dynamodb", audit_outcome)
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


# The directory acts first, then the sessions end


def refresh_token_by_username(aws_resources: LocalResources, user: dict[str, str]) -> str:
    """A refresh token from a sign-in by username (here the sub): the stand-in revokes on sign-out only
    the refresh tokens from sign-ins by the name it is told, and the directory is told the username."""
    return sign_in(aws_resources.endpoint, aws_resources.client_id, user["sub"], DEMO_PASSWORD)["refresh"]


def refreshes(aws_resources: LocalResources, refresh_token: str) -> bool:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    try:
        cognito.initiate_auth(
            ClientId=aws_resources.client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token},
        )
    except cognito.exceptions.NotAuthorizedException:
        return False
    return True


def is_key_revocation(operation: str, params: dict[str, Any]) -> bool:
    """The transaction that ends a user's sessions (their profile item and their keys)."""
    return operation == "TransactWriteItems" and "APIKEY#" in str(params.get("TransactItems"))


@pytest.mark.parametrize("action", ["disable", "sign-out"])
def test_keys_that_cannot_be_revoked_leave_the_directory_acted_and_a_retry_finishes(
    client: TestClient,
    make_user: Any,
    aws_resources: LocalResources,
    refuse_aws: Callable[[str, Refusal], None],
    action: str,
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    keys = [create_key(client, target, name=f"k{i}") for i in range(2)]
    refresh = refresh_token_by_username(aws_resources, target)
    throttled = True

    def key_revocation(operation: str, params: dict[str, Any]) -> str | None:
        throttle = throttled and is_key_revocation(operation, params)
        return "ProvisionedThroughputExceededException" if throttle else None

    refuse_aws("dynamodb", key_revocation)
    failed = client.post(f"/admin/users/{target['sub']}/{action}", headers=bearer(admin))
    body = assert_problem(failed, 503, "service-unavailable")
    assert int(failed.headers["retry-after"]) >= 1
    # Revoking keys never delays locking the account: the directory acted, and the admin is told so.
    assert "directory already acted" in body["detail"]
    if action == "disable":
        assert cognito_user(aws_resources, target["sub"])["Enabled"] is False
    else:
        assert not refreshes(aws_resources, refresh)
    (entry,) = [e for e in audit_trail(client, admin) if e["actor"] == admin["sub"]]
    assert (entry["target"], entry["outcome"]) == (target["sub"], "failed")
    assert entry["details"]["error"] == "service-unavailable"

    throttled = False
    retried = client.post(f"/admin/users/{target['sub']}/{action}", headers=bearer(admin))
    assert retried.status_code in {200, 204}, retried.text
    for key in keys:
        assert_problem(client.get("/me", headers={"X-API-Key": key["secret"]}), 401, "unauthorized")
    latest = next(e for e in audit_trail(client, admin) if e["actor"] == admin["sub"])
    assert latest["outcome"] == "succeeded"
    assert latest["details"]["revoked_api_keys"] == len(keys)


@pytest.mark.parametrize(
    ("action", "directory_call"), [("disable", "AdminDisableUser"), ("sign-out", "AdminUserGlobalSignOut")]
)
def test_a_directory_refusal_changes_nothing_and_is_on_the_trail(
    client: TestClient,
    make_user: Any,
    refuse_aws: Callable[[str, Refusal], None],
    action: str,
    directory_call: str,
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    key = create_key(client, target)
    refuse_aws(
        "cognito-idp",
        lambda operation, _: "TooManyRequestsException" if operation == directory_call else None,
    )
    failed = client.post(f"/admin/users/{target['sub']}/{action}", headers=bearer(admin))
    assert_problem(failed, 503, "service-unavailable")
    assert client.get("/me", headers={"X-API-Key": key["secret"]}).status_code == 200
    (entry,) = [e for e in audit_trail(client, admin) if e["actor"] == admin["sub"]]
    assert (entry["outcome"], entry["details"]["error"]) == ("failed", "service-unavailable")


@pytest.mark.parametrize("ended", ["before the mint's write", "after the mint's write"])
def test_a_key_minted_while_its_owner_is_disabled_never_works(
    client: TestClient, make_user: Any, aws_resources: LocalResources, aws_calls: AwsCalls, ended: str
) -> None:
    user = make_user()
    wait_for_the_next_second(user)

    def disable() -> None:
        # What an admin's disabling does: the directory first, then the sessions end.
        cognito = aws_client("cognito-idp", aws_resources.endpoint)
        cognito.admin_disable_user(UserPoolId=aws_resources.user_pool_id, Username=user["sub"])
        end_all_sessions(user["sub"])

    if ended == "before the mint's write":
        # Between the mint's read of the key list and its transaction: the transaction is refused.
        wanted = lambda op, p: op == "GetItem" and p["Key"]["pk"]["S"] == f"USER#{user['sub']}"  # noqa: E731
    else:
        wanted = lambda op, _: op == "TransactWriteItems"  # noqa: E731
    aws_calls.after("dynamodb", wanted, disable)
    minted = client.post("/api-keys", headers=bearer(user), json={"name": "race", "scopes": ["stratus/read"]})
    if ended == "before the mint's write":
        assert_problem(minted, 401, "unauthorized")
        assert models.api_key.list_api_keys(user["sub"], 10, None)[0] == []
    else:
        assert minted.status_code == 201, minted.text
        assert_problem(client.get("/me", headers={"X-API-Key": minted.json()["secret"]}), 401, "unauthorized")
        (key,) = models.api_key.list_api_keys(user["sub"], 10, None)[0]
        assert key.revoked_at is not None


def test_a_key_minted_with_a_fresh_sign_in_while_the_directory_acts_is_revoked_too(
    app: FastAPI, client: TestClient, make_user: Any, aws_calls: AwsCalls
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    minted: list[str] = []

    def mint_with_a_fresh_sign_in() -> None:
        # Signed in again right after the sign-out, before the sessions were recorded as ended.
        signed_in = Principal(
            subject=target["sub"],
            auth_method="jwt",
            username=target["sub"],
            scopes=APP_SCOPES,
            authenticated_at=datetime.now(UTC).replace(microsecond=0),
        )
        minted.append(issue_api_key(signed_in, app.state.settings, "meanwhile", {"stratus/read"}, None)[1])

    aws_calls.after("cognito-idp", lambda op, _: op == "AdminUserGlobalSignOut", mint_with_a_fresh_sign_in)
    response = client.post(f"/admin/users/{target['sub']}/sign-out", headers=bearer(admin))
    assert response.status_code == 204, response.text
    (secret,) = minted
    assert_problem(client.get("/me", headers={"X-API-Key": secret}), 401, "unauthorized")


# What Cognito refuses


def test_a_user_name_cognito_refuses_is_404_on_admin_routes_and_422_for_members(
    client: TestClient, make_user: Any, refuse_aws: Callable[[str, Refusal], None]
) -> None:
    admin = make_user(("admin", "user"))
    project = client.post("/projects", headers=bearer(admin), json={"name": "Directory errors"}).json()
    # Cognito answers a username outside its pattern (e.g. with spaces) so, and a search filter it cannot
    # parse; the stand-in checks neither. Members are looked up by subject: a ListUsers search on `sub`.

    unknown = str(uuid.uuid4())

    def refused(operation: str, params: dict[str, Any]) -> str | None:
        searches_sub = operation == "ListUsers" and unknown in str(params.get("Filter", ""))
        named = operation == "AdminGetUser" and params.get("Username") == "some.one"
        return "InvalidParameterException" if named or searches_sub else None

    refuse_aws("cognito-idp", refused)
    assert_problem(client.get("/admin/users/some.one", headers=bearer(admin)), 404, "not-found")
    assert_problem(client.post("/admin/users/some.one/disable", headers=bearer(admin)), 404, "not-found")
    added = client.post(
        f"/projects/{project['id']}/members", headers=bearer(admin), json={"subject": unknown}
    )
    assert_problem(added, 422)
    # A name no user could have never reaches the directory.
    malformed = client.post(
        f"/projects/{project['id']}/members", headers=bearer(admin), json={"subject": "some one"}
    )
    assert_problem(malformed, 422, "validation-error")


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


def test_a_user_found_by_subject_is_named_by_their_username(
    app: FastAPI, federated_pool: dict[str, str]
) -> None:
    assert federated_pool["sub"] != federated_pool["username"]
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


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("POST", "disable"),
        ("POST", "enable"),
        ("PUT", "groups/admin"),
        ("DELETE", "groups/user"),
        ("POST", "sign-out"),
    ],
)
def test_an_action_by_email_alias_acts_on_the_user_it_audits(
    client: TestClient,
    make_user: Any,
    aws_resources: LocalResources,
    aws_calls: AwsCalls,
    method: str,
    action: str,
) -> None:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    pool = aws_resources.user_pool_id
    admin = make_user(("admin", "user"))
    looked_up, other = make_user(), make_user()
    if action == "enable":
        for user in (looked_up, other):
            cognito.admin_disable_user(UserPoolId=pool, Username=user["sub"])
    alias = looked_up["email"]

    def move_alias() -> None:
        # The email passes to someone else between the lookup and the action.
        for user, email in ((looked_up, f"moved-{alias}"), (other, alias)):
            attributes = [{"Name": "email", "Value": email}]
            cognito.admin_update_user_attributes(
                UserPoolId=pool, Username=user["sub"], UserAttributes=attributes
            )

    aws_calls.made.clear()
    aws_calls.after("cognito-idp", lambda op, p: op == "AdminGetUser" and p["Username"] == alias, move_alias)
    response = client.request(method, f"/admin/users/{alias}/{action}", headers=bearer(admin))
    assert response.status_code in {200, 204}, response.text

    (entry,) = [e for e in audit_trail(client, admin) if e["actor"] == admin["sub"]]
    assert (entry["target"], entry["outcome"]) == (looked_up["sub"], "succeeded")
    # The admin's own live check names the admin; every call about the target follows it.
    named = [
        p["Username"]
        for service, _, p in aws_calls.made
        if service == "cognito-idp" and "Username" in p and p["Username"] != admin["sub"]
    ]
    # Usernames are subs in this pool.
    assert named[0] == alias
    assert set(named[1:]) == {looked_up["sub"]}
    if action == "sign-out":
        return
    assert response.json()["id"] == looked_up["sub"]
    acted_on, left_alone = (cognito_user(aws_resources, u["sub"]) for u in (looked_up, other))
    if action in {"disable", "enable"}:
        assert acted_on["Enabled"] is (action == "enable")
        assert left_alone["Enabled"] is (action != "enable")
    else:
        group = action.removeprefix("groups/")
        assert (group in acted_on["Groups"]) is (method == "PUT")
        assert (group in left_alone["Groups"]) is (method != "PUT")


def test_admin_user_view_shows_username_and_subject(client: TestClient, make_user: Any) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    shown = client.get(f"/admin/users/{target['email']}", headers=bearer(admin)).json()
    assert shown["subject"] == target["sub"]
    assert shown["email"] == target["email"]


# What each call costs (docs/data-model.md, access patterns 14 and 15)


def test_minting_a_key_makes_the_calls_the_data_model_lists(
    client: TestClient, make_user: Any, aws_calls: AwsCalls
) -> None:
    user = make_user()
    aws_calls.made.clear()
    create_key(client, user)
    assert aws_calls.operations("cognito-idp") == ["AdminGetUser"]
    assert aws_calls.operations("dynamodb") == ["GetItem", "TransactWriteItems"]


def test_each_admin_action_makes_the_calls_the_data_model_lists(
    client: TestClient, make_user: Any, aws_resources: LocalResources, aws_calls: AwsCalls
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    live_check = ["AdminGetUser", "AdminListGroupsForUser"]
    settled_view = ["AdminGetUser", "AdminListGroupsForUser"]
    # The audit record's put first, its outcome's put last (the trail is append-only).
    ending_sessions = ["GetItem", "PutItem", "GetItem", "TransactWriteItems", "PutItem"]
    audited_only = ["GetItem", "PutItem", "PutItem"]
    steps: list[tuple[str, str, list[str], list[str]]] = [
        (
            "POST",
            "disable",
            [*live_check, "AdminGetUser", "AdminDisableUser", *settled_view],
            ending_sessions,
        ),
        ("POST", "enable", [*live_check, "AdminGetUser", "AdminEnableUser", *settled_view], audited_only),
        (
            "PUT",
            "groups/admin",
            [*live_check, "AdminGetUser", "AdminAddUserToGroup", *settled_view],
            audited_only,
        ),
        (
            "DELETE",
            "groups/admin",
            [
                *live_check,
                "AdminGetUser",
                "AdminRemoveUserFromGroup",
                "AdminUserGlobalSignOut",
                *settled_view,
            ],
            ending_sessions,
        ),
        (
            "DELETE",
            "groups/user",
            [*live_check, "AdminGetUser", "AdminRemoveUserFromGroup", *settled_view],
            audited_only,
        ),
        ("POST", "sign-out", [*live_check, "AdminGetUser", "AdminUserGlobalSignOut"], ending_sessions),
    ]
    for method, action, cognito_calls, dynamodb_calls in steps:
        if dynamodb_calls == ending_sessions:
            fresh = sign_in(aws_resources.endpoint, aws_resources.client_id, target["email"], DEMO_PASSWORD)
            create_key(client, {**target, **fresh})
        aws_calls.made.clear()
        response = client.request(method, f"/admin/users/{target['email']}/{action}", headers=bearer(admin))
        assert response.status_code in {200, 204}, response.text
        assert aws_calls.operations("cognito-idp") == cognito_calls, action
        assert aws_calls.operations("dynamodb") == dynamodb_calls, action
