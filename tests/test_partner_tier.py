"""The partner tier: the authorizer (src/partner_authorizer.py) verifies a partner's client-credentials
token against the stand-in's JWKS and answers with the partner's usage plan key, read from the stand-in's
API Gateway; the app serves the partner entry point (/partner) to partner clients only, and partner
clients only there."""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt
from local.resources import LocalResources, aws_client

import partner_authorizer
from auth import SigningKeys, TokenVerifier
from errors import ServiceUnavailable
from main import create_app, create_handler
from partner_authorizer import PartnerAuthorizer
from partner_keys import PartnerKeys
from settings import Settings, get_settings
from tests.aws_calls import AwsCall, client_error, intercepting_aws_calls
from tests.events import LambdaContext, authorizer_event, rest_event

STANDIN_KID = "dummy"
API_ARN = "arn:aws:execute-api:us-east-1:123456789012:example"
Token = Callable[..., str]


# --- the stand-in: a partner client, a usage plan with its key, and tokens the stand-in's key signs --------


@pytest.fixture(scope="module")
def partner_client_id(aws_resources: LocalResources) -> str:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    client = cognito.create_user_pool_client(
        UserPoolId=aws_resources.user_pool_id,
        ClientName=f"partner-{uuid.uuid4().hex[:6]}",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthFlowsUserPoolClient=True,
    )
    client_id: str = client["UserPoolClient"]["ClientId"]
    return client_id


@pytest.fixture(scope="module")
def keyless_partner_id(aws_resources: LocalResources) -> str:
    """A partner client whose key exists in the account but not in the partner usage plan."""
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    client = cognito.create_user_pool_client(
        UserPoolId=aws_resources.user_pool_id, ClientName="keyless-partner", GenerateSecret=True
    )
    client_id: str = client["UserPoolClient"]["ClientId"]
    aws_client("apigateway", aws_resources.endpoint).create_api_key(name=client_id, enabled=True)
    return client_id


@pytest.fixture(scope="module")
def usage_plan(aws_resources: LocalResources, partner_client_id: str) -> dict[str, str]:
    apigateway = aws_client("apigateway", aws_resources.endpoint)
    plan_id: str = apigateway.create_usage_plan(name=f"partners-{uuid.uuid4().hex[:6]}")["id"]
    key = apigateway.create_api_key(name=partner_client_id, enabled=True)
    # A key whose name merely starts with the client id (the lookup matches by prefix) is not the partner's.
    decoy = apigateway.create_api_key(name=f"{partner_client_id}-old", enabled=True)
    for key_id in (key["id"], decoy["id"]):
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    return {"id": plan_id, "key_value": key["value"], "decoy_value": decoy["value"]}


@pytest.fixture(scope="module")
def partner_settings(
    app_environment: dict[str, str],
    partner_client_id: str,
    keyless_partner_id: str,
    usage_plan: dict[str, str],
) -> Settings:
    return Settings(
        partner_client_ids=[partner_client_id, keyless_partner_id], partner_usage_plan_id=usage_plan["id"]
    )


@pytest.fixture(scope="module")
def standin_signing_key() -> dict[str, Any]:
    # The stand-in signs every pool with this key; its private half ships with moto.
    packed = importlib.resources.files("moto.cognitoidp") / "resources" / "jwks-private.json.gz"
    key: dict[str, Any] = json.loads(gzip.decompress(packed.read_bytes()))
    assert key["kid"] == STANDIN_KID
    return key


@pytest.fixture(scope="module")
def token(standin_signing_key: dict[str, Any], partner_settings: Settings) -> Token:
    """A client-credentials access token as Cognito issues it, signed with the stand-in's key; keyword
    arguments override claims (None removes one)."""

    def _token(client_id: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": client_id,
            "client_id": client_id,
            "token_use": "access",
            "scope": "stratus/read stratus/write",
            "iss": partner_settings.cognito_issuer,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            **overrides,
        }
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, standin_signing_key, algorithm="RS256", headers={"kid": STANDIN_KID})

    return _token


@pytest.fixture
def authorizer(partner_settings: Settings) -> PartnerAuthorizer:
    """A fresh authorizer (empty caches), as in a new container."""
    return PartnerAuthorizer(partner_settings)


def counting_calls(operation: str) -> tuple[list[AwsCall], Callable[[AwsCall], Any]]:
    seen: list[AwsCall] = []

    def intercept(call: AwsCall) -> Any:
        if call.operation == operation:
            seen.append(call)
        return call.proceed()

    return seen, intercept


# --- the authorizer ------------------------------------------------------------------------------------------


def test_a_partner_is_allowed_the_whole_entry_point_with_its_usage_plan_key(
    authorizer: PartnerAuthorizer, token: Token, partner_client_id: str, usage_plan: dict[str, str]
) -> None:
    event = authorizer_event(f"Bearer {token(partner_client_id)}", method="POST", path="/partner/projects")
    answer = authorizer(event)
    assert answer["principalId"] == partner_client_id
    assert answer["usageIdentifierKey"] == usage_plan["key_value"]
    (statement,) = answer["policyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    # Cached per token, so it covers every method and path of the entry point, and nothing else.
    assert statement["Resource"] == [f"{API_ARN}/Prod/*/partner", f"{API_ARN}/Prod/*/partner/*"]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNzd29yZA==",
        "Token {token}",
        "Bearer {token}.tampered",
    ],
)
def test_what_is_not_a_partners_bearer_token_is_unauthorized(
    authorizer: PartnerAuthorizer, token: Token, partner_client_id: str, header: str
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer(authorizer_event(header.format(token=token(partner_client_id))))


def test_tokens_that_are_not_a_partners_are_unauthorized(
    authorizer: PartnerAuthorizer,
    token: Token,
    partner_client_id: str,
    aws_resources: LocalResources,
    make_user: Callable[[tuple[str, ...]], dict[str, str]],
) -> None:
    refused = {
        "the app's own client": token(aws_resources.client_id),
        "a user's token from the stand-in": make_user(("user",))["access"],
        "a user's token of the partner client": token(partner_client_id, username="someone"),
        "an ID token": token(partner_client_id, token_use="id"),
        "expired": token(partner_client_id, exp=int(time.time()) - 120, iat=int(time.time()) - 720),
        "another issuer": token(partner_client_id, iss="https://cognito-idp.us-east-1.amazonaws.com/other"),
    }
    for what, refused_token in refused.items():
        try:
            authorizer(authorizer_event(f"Bearer {refused_token}"))
        except Exception as error:  # API Gateway's contract is the message
            assert str(error) == "Unauthorized", what  # noqa: PT017
        else:
            pytest.fail(f"admitted: {what}")


def test_a_partner_without_a_key_in_the_plan_is_denied_without_a_key(
    authorizer: PartnerAuthorizer, token: Token, keyless_partner_id: str
) -> None:
    answer = authorizer(authorizer_event(f"Bearer {token(keyless_partner_id)}"))
    assert "usageIdentifierKey" not in answer
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    # Cached per token too: the whole entry point.
    assert statement["Resource"] == [f"{API_ARN}/Prod/*/partner", f"{API_ARN}/Prod/*/partner/*"]


def test_the_scheme_is_case_insensitive(
    authorizer: PartnerAuthorizer, token: Token, partner_client_id: str
) -> None:
    assert authorizer(authorizer_event(f"bearer {token(partner_client_id)}"))["usageIdentifierKey"]


def test_keys_are_read_once_per_partner_and_then_cached(
    authorizer: PartnerAuthorizer, token: Token, partner_client_id: str, keyless_partner_id: str
) -> None:
    seen, intercept = counting_calls("GetUsagePlanKeys")
    with intercepting_aws_calls(intercept):
        for _ in range(3):
            authorizer(authorizer_event(f"Bearer {token(partner_client_id)}"))
            authorizer(authorizer_event(f"Bearer {token(keyless_partner_id)}"))
    assert sorted(call.params["nameQuery"] for call in seen) == sorted(
        [partner_client_id, keyless_partner_id]
    )
    assert {call.params["usagePlanId"] for call in seen} == {authorizer.keys.usage_plan_id}


def test_cached_keys_expire(
    partner_settings: Settings, usage_plan: dict[str, str], partner_client_id: str
) -> None:
    now = [1000.0]
    keys = PartnerKeys(partner_settings.partner_usage_plan_id, clock=lambda: now[0])
    seen, intercept = counting_calls("GetUsagePlanKeys")
    with intercepting_aws_calls(intercept):
        assert keys.value_for(partner_client_id) == usage_plan["key_value"]
        now[0] += 299
        keys.value_for(partner_client_id)
        now[0] += 2
        keys.value_for(partner_client_id)
    assert len(seen) == 2


def test_unreadable_keys_fail_the_authorizer_instead_of_admitting_or_refusing(
    authorizer: PartnerAuthorizer, token: Token, partner_client_id: str, app_log: io.StringIO
) -> None:
    def throttled(call: AwsCall) -> Any:
        if call.operation == "GetUsagePlanKeys":
            raise client_error(call.operation, "TooManyRequestsException")
        return call.proceed()

    # Anything but "Unauthorized" makes API Gateway answer 500 (AUTHORIZER_CONFIGURATION_ERROR), uncached.
    with intercepting_aws_calls(throttled), pytest.raises(ServiceUnavailable):
        authorizer(authorizer_event(f"Bearer {token(partner_client_id)}"))
    assert "TooManyRequestsException" in app_log.getvalue()
    # Nothing was cached: the next request reads the keys again.
    assert authorizer(authorizer_event(f"Bearer {token(partner_client_id)}"))["usageIdentifierKey"]


def test_keys_and_tokens_never_reach_the_log(
    authorizer: PartnerAuthorizer,
    token: Token,
    partner_client_id: str,
    usage_plan: dict[str, str],
    app_log: io.StringIO,
) -> None:
    partner_token = token(partner_client_id)
    authorizer(authorizer_event(f"Bearer {partner_token}"))
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer(authorizer_event(f"Bearer {partner_token}x"))
    logged = app_log.getvalue()
    assert partner_client_id in logged
    for secret in (usage_plan["key_value"], usage_plan["decoy_value"], *partner_token.split(".")):
        assert secret not in logged


def test_the_lambda_handler_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, token: Token, partner_client_id: str, usage_plan: dict[str, str]
) -> None:
    monkeypatch.setenv("PARTNER_CLIENT_IDS", partner_client_id)
    monkeypatch.setenv("PARTNER_USAGE_PLAN_ID", usage_plan["id"])
    get_settings.cache_clear()
    partner_authorizer._authorizer.cache_clear()
    try:
        event = authorizer_event(f"Bearer {token(partner_client_id)}")
        answer = partner_authorizer.handler(event, LambdaContext())
        assert answer["usageIdentifierKey"] == usage_plan["key_value"]
    finally:
        get_settings.cache_clear()
        partner_authorizer._authorizer.cache_clear()


# --- the app behind the entry point --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handler(partner_settings: Settings) -> Callable[[dict[str, Any]], dict[str, Any]]:
    mangum = create_handler(create_app(partner_settings))

    def _handle(event: dict[str, Any]) -> dict[str, Any]:
        return mangum(event, LambdaContext())

    return _handle


def _body(response: dict[str, Any]) -> Any:
    body = response["body"]
    return json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)


def _header(response: dict[str, Any], name: str) -> str | None:
    single = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    multi = {key.lower(): values for key, values in (response.get("multiValueHeaders") or {}).items()}
    if name in single:
        return str(single[name])
    return str(multi[name][-1]) if name in multi else None


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_a_partner_uses_the_api_through_its_entry_point(
    handler: Callable[[dict[str, Any]], dict[str, Any]], token: Token, partner_client_id: str
) -> None:
    headers = _bearer(token(partner_client_id))
    created = handler(
        rest_event(
            "POST",
            "/projects",
            partner=partner_client_id,
            headers={**headers, "Content-Type": "application/json"},
            body={"name": "via partner"},
        )
    )
    assert created["statusCode"] == 201, created["body"]
    project = _body(created)
    # The app sees its own routes; the links it makes carry the entry point's prefix.
    assert _header(created, "location") == f"/Prod/partner/projects/{project['id']}"
    listed = handler(rest_event("GET", "/projects", partner=partner_client_id, headers=headers))
    assert listed["statusCode"] == 200
    assert [item["id"] for item in _body(listed)["items"]] == [project["id"]]


def test_the_docs_page_behind_the_entry_point_loads_its_own_schema(
    handler: Callable[[dict[str, Any]], dict[str, Any]], token: Token, partner_client_id: str
) -> None:
    headers = _bearer(token(partner_client_id))
    for base_path, schema_url in ((None, "/Prod/partner/openapi.json"), ("v1", "/v1/partner/openapi.json")):
        # The entry point's root (resource /partner) is the app's root.
        root = handler(
            rest_event("GET", "/", partner=partner_client_id, base_path=base_path, headers=headers)
        )
        assert root["statusCode"] == 200, root["body"]
        assert _body(root)["docs"] == schema_url.removesuffix("openapi.json") + "docs"
        page = handler(
            rest_event("GET", "/docs", partner=partner_client_id, base_path=base_path, headers=headers)
        )
        assert page["statusCode"] == 200
        assert schema_url in page["body"], base_path


def test_a_partner_token_outside_the_entry_point_is_a_401_problem(
    handler: Callable[[dict[str, Any]], dict[str, Any]], token: Token, partner_client_id: str
) -> None:
    # Straight to the catch-all: the usage plan would never see it. An authorizer's principal on another
    # resource (should one ever run there) does not make it the entry point either.
    direct = rest_event("GET", "/projects", headers=_bearer(token(partner_client_id)))
    claimed = rest_event("GET", "/projects", headers=_bearer(token(partner_client_id)))
    claimed["requestContext"]["authorizer"] = {"principalId": partner_client_id}
    for event in (direct, claimed):
        response = handler(event)
        assert response["statusCode"] == 401
        assert _header(response, "content-type") == "application/problem+json"
        assert "partner entry point" in _body(response)["detail"]


def test_the_entry_point_serves_the_partner_the_authorizer_admitted_and_only_partners(
    handler: Callable[[dict[str, Any]], dict[str, Any]],
    token: Token,
    partner_client_id: str,
    keyless_partner_id: str,
    aws_resources: LocalResources,
) -> None:
    mismatched = rest_event(
        "GET", "/projects", partner=keyless_partner_id, headers=_bearer(token(partner_client_id))
    )
    own_client = rest_event(
        "GET", "/projects", partner=aws_resources.client_id, headers=_bearer(token(aws_resources.client_id))
    )
    for event in (mismatched, own_client):
        response = handler(event)
        assert response["statusCode"] == 401, response["body"]
        assert _header(response, "content-type") == "application/problem+json"


def test_outside_lambda_a_partner_token_is_refused(
    partner_settings: Settings, token: Token, partner_client_id: str, standin_signing_key: dict[str, Any]
) -> None:
    from fastapi.testclient import TestClient

    app = create_app(partner_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/projects", headers=_bearer(token(partner_client_id)))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_the_app_marks_only_partner_clients_as_partners(
    partner_settings: Settings, token: Token, partner_client_id: str, aws_resources: LocalResources
) -> None:
    verifier = TokenVerifier(partner_settings)
    assert verifier.verify(token(partner_client_id)).partner is True
    assert verifier.verify(token(aws_resources.client_id)).partner is False
    # The authorizer's verifier knows partners only.
    only_partners = TokenVerifier(
        partner_settings,
        SigningKeys(partner_settings.jwks_url),
        client_ids=partner_settings.partner_client_ids,
    )
    with pytest.raises(Exception, match="another client"):
        only_partners.verify(token(aws_resources.client_id))


def test_stand_in_serves_the_plan_keys_the_authorizer_reads(
    aws_resources: LocalResources, usage_plan: dict[str, str], partner_client_id: str
) -> None:
    # The lookup's premise: the plan's keys come with their names and values, filtered by name prefix.
    apigateway = aws_client("apigateway", aws_resources.endpoint)
    items = apigateway.get_usage_plan_keys(usagePlanId=usage_plan["id"], nameQuery=partner_client_id)["items"]
    assert {(item["name"], item["value"]) for item in items} == {
        (partner_client_id, usage_plan["key_value"]),
        (f"{partner_client_id}-old", usage_plan["decoy_value"]),
    }
