"""The pre-traffic hook (src/functions/pre_traffic.py) as CodeDeploy runs it: it reads the machine client's
secret from the stand-in's Cognito, gets a client-credentials token from a token endpoint, invokes the new
version with readiness and one authenticated read, and always reports Succeeded or Failed. Lambda cannot
run functions inside the stand-in and it has no CodeDeploy hooks: those two calls are intercepted, the
Invoke running the app's handler in-process, as the new version would."""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import io
import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jose import jwk, jwt
from local.resources import LocalResources, aws_client

from functions import pre_traffic
from main import create_app, create_handler
from settings import Settings
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.events import LambdaContext

VERSION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stratus-test-api:7"
STANDIN_KID = "dummy"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(scope="module")
def machine_client(aws_resources: LocalResources) -> dict[str, str]:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    client = cognito.create_user_pool_client(
        UserPoolId=aws_resources.user_pool_id,
        ClientName=f"machine-{uuid.uuid4().hex[:6]}",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthFlowsUserPoolClient=True,
    )["UserPoolClient"]
    return {"id": client["ClientId"], "secret": client["ClientSecret"]}


@pytest.fixture(scope="module")
def settings(app_environment: dict[str, str], machine_client: dict[str, str]) -> Settings:
    return Settings(cognito_client_ids=[*Settings().cognito_client_ids, machine_client["id"]])


class TokenEndpoint:
    """The pool's /oauth2/token for client_credentials (the stand-in serves none): checks the client's
    Basic credentials and the grant, and issues an access token signed with the stand-in's key."""

    def __init__(self, issuer: str, client: dict[str, str]) -> None:
        packed = importlib.resources.files("moto.cognitoidp") / "resources" / "jwks-private.json.gz"
        self.key = jwk.construct(json.loads(gzip.decompress(packed.read_bytes())), "RS256")
        self.issuer = issuer
        self.client = client
        self.requests: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self.available = True
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                endpoint.requests.append({"authorization": self.headers["Authorization"], "form": body})
                status, answer = endpoint.answer(self.headers["Authorization"], urllib.parse.parse_qs(body))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, authorization: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if not self.available:
            return 503, {"error": "unavailable"}
        expected = base64.b64encode(f"{self.client['id']}:{self.client['secret']}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 400, {"error": "invalid_client"}
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        now = int(time.time())
        claims = {
            "sub": self.client["id"],
            "client_id": self.client["id"],
            "token_use": "access",
            "scope": " ".join(form.get("scope", [])),
            "iss": self.issuer,
            "iat": now,
            "exp": now + 3600,
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": STANDIN_KID})
        self.issued.append(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}


@pytest.fixture(scope="module")
def token_endpoint(settings: Settings, machine_client: dict[str, str]) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(settings.cognito_issuer, machine_client)
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture
def hook_environment(
    monkeypatch: pytest.MonkeyPatch,
    aws_resources: LocalResources,
    machine_client: dict[str, str],
    token_endpoint: Any,
) -> None:
    token_endpoint.available = True
    for name, value in {
        "API_FUNCTION_VERSION_ARN": VERSION_ARN,
        "STAGE": "test",
        "COGNITO_USER_POOL_ID": aws_resources.user_pool_id,
        "MACHINE_CLIENT_ID": machine_client["id"],
        "TOKEN_URL": token_endpoint.url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CDN_ORIGIN_SECRET_ARN", raising=False)


class Deployment:
    """CodeDeploy and Lambda around the hook: Invoke runs `new_version` in-process, the hook's report is kept."""

    def __init__(self, new_version: Handler) -> None:
        self.new_version = new_version
        self.invocations: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []

    def intercept(self, call: AwsCall) -> Any:
        if (call.service, call.operation) == ("lambda", "Invoke"):
            assert call.params["FunctionName"] == VERSION_ARN  # the new version itself, never the alias
            event = json.loads(call.params["Payload"])
            self.invocations.append(event)
            try:
                answer = self.new_version(event, LambdaContext())
            except Exception:
                return {
                    "StatusCode": 200,
                    "FunctionError": "Unhandled",
                    "Payload": io.BytesIO(b'{"errorType":"x"}'),
                }
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}
        if (call.service, call.operation) == ("codedeploy", "PutLifecycleEventHookExecutionStatus"):
            self.reports.append(call.params)
            return {"lifecycleEventHookExecutionId": call.params["lifecycleEventHookExecutionId"]}
        return call.proceed()

    def run_hook(self) -> str:
        event = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": str(uuid.uuid4())}
        with intercepting_aws_calls(self.intercept):
            pre_traffic.handler(event, LambdaContext())
        (report,) = self.reports
        assert report["deploymentId"] == event["DeploymentId"]
        assert report["lifecycleEventHookExecutionId"] == event["LifecycleEventHookExecutionId"]
        status: str = report["status"]
        return status


@pytest.fixture(scope="module")
def new_version(settings: Settings) -> Handler:
    handler: Handler = create_handler(create_app(settings))
    return handler


@pytest.mark.usefixtures("hook_environment")
def test_a_healthy_version_passes_readiness_and_an_authenticated_read(
    new_version: Handler, token_endpoint: TokenEndpoint, machine_client: dict[str, str]
) -> None:
    deployment = Deployment(new_version)
    assert deployment.run_hook() == "Succeeded"
    readiness, read = deployment.invocations
    assert (readiness["httpMethod"], readiness["path"]) == ("GET", "/health/ready")
    assert (read["httpMethod"], read["path"], read["queryStringParameters"]) == (
        "GET",
        "/projects",
        {"limit": "1"},
    )
    assert "Authorization" not in readiness["headers"]
    assert read["headers"]["Authorization"] == f"Bearer {token_endpoint.issued[-1]}"
    # The machine client's own credentials, read from the pool, and only the read scope.
    last = token_endpoint.requests[-1]
    assert (
        last["authorization"]
        == "Basic " + base64.b64encode(f"{machine_client['id']}:{machine_client['secret']}".encode()).decode()
    )
    assert urllib.parse.parse_qs(last["form"]) == {
        "grant_type": ["client_credentials"],
        "scope": ["stratus/read"],
    }


@pytest.mark.usefixtures("hook_environment")
def test_a_version_that_cannot_reach_its_table_fails_before_any_token(
    settings: Settings, token_endpoint: TokenEndpoint
) -> None:
    broken = create_handler(create_app(settings.model_copy(update={"table_name": "no-such-table"})))
    deployment = Deployment(broken)
    issued_before = len(token_endpoint.issued)
    assert deployment.run_hook() == "Failed"
    assert len(deployment.invocations) == 1
    assert len(token_endpoint.issued) == issued_before


@pytest.mark.usefixtures("hook_environment")
def test_a_version_that_refuses_the_machine_client_fails(app_environment: dict[str, str]) -> None:
    # A version that lost the machine client from COGNITO_CLIENT_IDS answers its token with 401.
    deployment = Deployment(create_handler(create_app(Settings())))
    assert deployment.run_hook() == "Failed"
    assert deployment.invocations[-1]["path"] == "/projects"


@pytest.mark.usefixtures("hook_environment")
def test_a_version_that_crashes_fails() -> None:
    def crashing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("import error in the new version")

    assert Deployment(crashing).run_hook() == "Failed"


@pytest.mark.usefixtures("hook_environment")
def test_no_token_fails_the_deployment_and_says_so_at_once(
    new_version: Handler, token_endpoint: TokenEndpoint
) -> None:
    token_endpoint.available = False
    assert Deployment(new_version).run_hook() == "Failed"


@pytest.mark.usefixtures("hook_environment")
def test_anything_unexpected_is_still_reported(new_version: Handler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MACHINE_CLIENT_ID", "no-such-client")
    assert Deployment(new_version).run_hook() == "Failed"


@pytest.mark.usefixtures("hook_environment")
def test_behind_the_cdn_the_hook_proves_itself_with_the_origin_secret(
    settings: Settings, aws_resources: LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_value = secrets.token_urlsafe(48)
    arn = aws_client("secretsmanager", aws_resources.endpoint).create_secret(
        Name=f"cdn-origin-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"current": secret_value})
    )["ARN"]
    protected = create_handler(create_app(settings.model_copy(update={"cdn_origin_secret_arn": arn})))
    # Without the secret the protected version refuses the hook's requests, as it refuses everyone's.
    assert Deployment(protected).run_hook() == "Failed"
    monkeypatch.setenv("CDN_ORIGIN_SECRET_ARN", arn)
    deployment = Deployment(protected)
    assert deployment.run_hook() == "Succeeded"
    assert all(event["headers"]["X-Origin-Verify"] == secret_value for event in deployment.invocations)


@pytest.mark.usefixtures("hook_environment")
def test_the_hook_logs_neither_the_token_nor_the_client_secret(
    new_version: Handler,
    token_endpoint: TokenEndpoint,
    machine_client: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="pre_traffic")
    assert Deployment(new_version).run_hook() == "Succeeded"
    token_endpoint.available = False
    assert Deployment(new_version).run_hook() == "Failed"
    logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert "passed" in logged
    assert machine_client["secret"] not in logged
    assert all(token not in logged for token in token_endpoint.issued)


def test_the_synthetic_events_are_the_gateways_shape_for_the_stage() -> None:
    event = pre_traffic.api_event("GET", "/health/ready", stage="prod", headers={"X-Origin-Verify": "s"})
    assert event["requestContext"]["path"] == "/prod/health/ready"
    assert event["pathParameters"] == {"proxy": "health/ready"}
    assert event["multiValueHeaders"]["X-Origin-Verify"] == ["s"]
    assert event["requestContext"]["identity"]["sourceIp"] == pre_traffic.SYNTHETIC_SOURCE_IP
