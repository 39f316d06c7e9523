"""The pool's signing keys shipped with the deployment: the PoolSigningKeys custom resource
(src/functions/signing_keys.py) reads them while CloudFormation deploys and answers with a lean JWKS, and
tokens.SigningKeys verifies with it, fetching the JWKS only for a key id it lacks."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from domain_errors import Unauthorized
from functions import signing_keys
from functions.signing_keys import MAX_JWKS_BYTES, lean_jwks
from settings import Settings
from tests.runtime_environment import cognito_like_jwks, standin_signing_keys
from tokens import SigningKeys, TokenVerifier

ISSUER_POOL = "us-east-1_keys"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{ISSUER_POOL}"


class CountingFetch:
    def __init__(self, document: Any) -> None:
        self.document = document
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float) -> Any:
        self.urls.append(url)
        return self.document


def _verifier(shipped: str, fetch: CountingFetch) -> TokenVerifier:
    settings = Settings(cognito_user_pool_id=ISSUER_POOL, cognito_client_ids=["client-a"])
    keys = SigningKeys(settings.jwks_url, fetch=fetch, shipped=shipped)
    return TokenVerifier(settings, keys)


def _token(**claims: Any) -> str:
    return standin_signing_keys().token(issuer=ISSUER, client_id="client-a", **claims)


# --- Shipped keys in tokens.SigningKeys ----------------------------------------------------------------


def test_shipped_keys_verify_tokens_without_a_fetch() -> None:
    fetch = CountingFetch({"keys": []})
    principal = _verifier(standin_signing_keys().shipped, fetch).verify(_token())
    assert principal.client_id == "client-a"
    assert fetch.urls == []


def test_an_unknown_key_id_fetches_the_jwks_once_per_cooldown() -> None:
    keys = standin_signing_keys()
    rotated = {"keys": [{**keys.public_jwks["keys"][0], "kid": "rotated"}]}
    fetch = CountingFetch(rotated)
    verifier = _verifier(lean_jwks(cognito_like_jwks()), fetch)
    with pytest.raises(Unauthorized):
        # The fetched document has no "dummy" key either: refused, and no second fetch within the cooldown.
        verifier.verify(_token())
    with pytest.raises(Unauthorized):
        verifier.verify(_token())
    assert len(fetch.urls) == 1


def test_a_key_added_after_the_deployment_is_fetched_and_then_verifies() -> None:
    fetch = CountingFetch(standin_signing_keys().public_jwks)
    verifier = _verifier(lean_jwks(cognito_like_jwks()), fetch)
    assert verifier.verify(_token()).client_id == "client-a"
    assert verifier.verify(_token()).client_id == "client-a"
    assert len(fetch.urls) == 1


@pytest.mark.parametrize("shipped", ["not json", '{"keys": "none"}', '{"keys": [{"kty": "EC", "kid": "x"}]}'])
def test_unusable_shipped_keys_fall_back_to_the_jwks_url(shipped: str) -> None:
    fetch = CountingFetch(standin_signing_keys().public_jwks)
    assert _verifier(shipped, fetch).verify(_token()).client_id == "client-a"
    assert len(fetch.urls) == 1


def test_restart_timers_allows_a_fetch_at_once_after_a_restore() -> None:
    fetch = CountingFetch(standin_signing_keys().public_jwks)
    keys = SigningKeys(
        "https://example.invalid/jwks.json", fetch=fetch, shipped=lean_jwks(cognito_like_jwks())
    )
    with pytest.raises(Unauthorized):
        keys.key_for("unknown-1")
    assert len(fetch.urls) == 1
    with pytest.raises(Unauthorized):
        keys.key_for("unknown-2")
    assert len(fetch.urls) == 1, "within the cooldown"
    keys.restart_timers()
    with pytest.raises(Unauthorized):
        keys.key_for("unknown-3")
    assert len(fetch.urls) == 2


# --- The lean JWKS ---------------------------------------------------------------------------------------


def test_the_lean_jwks_keeps_the_rs256_signing_keys_and_what_verification_reads() -> None:
    document = cognito_like_jwks()
    document["keys"].append({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"})
    document["keys"].append({**document["keys"][0], "kid": "encryption", "use": "enc"})
    lean = json.loads(lean_jwks(document))
    assert [key["kid"] for key in lean["keys"]] == [key["kid"] for key in document["keys"][:2]]
    assert all(set(key) == {"kid", "kty", "n", "e"} for key in lean["keys"])


def test_cognitos_two_keys_fit_the_environment_budget_with_room_to_spare() -> None:
    assert len(lean_jwks(cognito_like_jwks(2))) < MAX_JWKS_BYTES / 2
    with pytest.raises(ValueError, match="more than"):
        lean_jwks(cognito_like_jwks(6))


def test_a_jwks_without_signing_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no RS256 signing key"):
        lean_jwks({"keys": [{"kty": "EC", "kid": "x"}]})


# --- The custom resource ---------------------------------------------------------------------------------


class CloudFormationResponses:
    """The pre-signed URL CloudFormation waits at: records each PUT."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(
                    {"content_type": self.headers.get("Content-Type"), "body": json.loads(body)}
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/response?X-Amz-Signature=abc"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def responses() -> Iterator[CloudFormationResponses]:
    server = CloudFormationResponses()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _request(kind: str, response_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/stratus/abc",
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "PoolSigningKeys",
        "ResourceType": "Custom::PoolSigningKeys",
        "ResourceProperties": {
            "JwksUrl": f"https://cognito-idp.us-east-1.amazonaws.com/{ISSUER_POOL}/.well-known/jwks.json"
        },
        **extra,
    }


def test_create_answers_with_the_lean_jwks(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = cognito_like_jwks()
    monkeypatch.setattr(signing_keys, "fetch_jwks", lambda url: document)
    request = _request("Create", responses.url)
    signing_keys.handler(request, None)
    (response,) = responses.received
    # Signed without a content type: sending one would void the pre-signed URL's signature.
    assert response["content_type"] == ""
    body = response["body"]
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {"Jwks": lean_jwks(document)}
    assert body["PhysicalResourceId"].endswith("/.well-known/jwks.json")
    for member in ("StackId", "RequestId", "LogicalResourceId"):
        assert body[member] == request[member]


def test_an_update_for_another_pool_names_a_new_resource(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signing_keys, "fetch_jwks", lambda url: cognito_like_jwks())
    request = _request("Update", responses.url, PhysicalResourceId="https://old-pool/.well-known/jwks.json")
    signing_keys.handler(request, None)
    body = responses.received[0]["body"]
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == request["ResourceProperties"]["JwksUrl"]


def test_a_failed_read_fails_the_deployment_with_the_reason(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(url: str) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(signing_keys, "fetch_jwks", unreachable)
    signing_keys.handler(_request("Update", responses.url, PhysicalResourceId="old-id"), None)
    body = responses.received[0]["body"]
    assert body["Status"] == "FAILED"
    assert "connection refused" in body["Reason"]
    assert body["PhysicalResourceId"] == "old-id"


def test_delete_answers_without_reading_anything(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_fetch(url: str) -> Any:
        raise AssertionError("fetched on delete")

    monkeypatch.setattr(signing_keys, "fetch_jwks", must_not_fetch)
    signing_keys.handler(_request("Delete", responses.url, PhysicalResourceId="old-id"), None)
    assert responses.received[0]["body"]["Status"] == "SUCCESS"


def test_an_unexpected_error_still_answers_cloudformation(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without an answer CloudFormation waits an hour before it gives up on the deployment.
    def broken(url: str) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(signing_keys, "fetch_jwks", broken)
    signing_keys.handler(_request("Create", responses.url), None)
    body = responses.received[0]["body"]
    assert body["Status"] == "FAILED"
    assert "RuntimeError: bug" in body["Reason"]


def test_the_jwks_is_read_over_https_only() -> None:
    with pytest.raises(ValueError, match="https"):
        signing_keys.fetch_jwks("http://cognito-idp.us-east-1.amazonaws.com/pool/.well-known/jwks.json")


def test_the_shipped_jwks_is_logged_by_size_never_by_content(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch, app_log: io.StringIO
) -> None:
    document = cognito_like_jwks()
    monkeypatch.setattr(signing_keys, "fetch_jwks", lambda url: document)
    signing_keys.handler(_request("Create", responses.url), None)
    (line,) = [json.loads(line) for line in app_log.getvalue().splitlines() if "signing keys" in line]
    assert line["jwks_bytes"] == len(lean_jwks(document))
    assert document["keys"][0]["n"] not in app_log.getvalue()
