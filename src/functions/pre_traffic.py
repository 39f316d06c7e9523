"""CodeDeploy's pre-traffic hook for the API function (template.yaml, PreTrafficHookFunction): before any
traffic shifts to a new version, invoke that version directly with two API Gateway events (readiness, then
one authenticated read with a client-credentials token of the machine client) and report Succeeded or
Failed. A failure ends the deployment with the live alias where it was.

The new version is invoked, not called over HTTP: until the alias moves, no URL reaches it. The token is a
real one from the pool's token endpoint, so the check covers what a client's first request needs (the
JWKS, the app secret, the rate limiter, the table). Imports boto3 and the standard library only."""

from __future__ import annotations

import base64
import json
import logging
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

READINESS_PATH = "/health/ready"
# One page of the machine client's own projects: token verification, the rate limiter, an index query and
# cursor signing (the app secret) in one read that changes nothing.
AUTHENTICATED_READ_PATH = "/projects"
READ_SCOPE = "stratus/read"
# A documentation address (RFC 5737): the synthetic requests' source in the app's logs and rate limits.
SYNTHETIC_SOURCE_IP = "192.0.2.1"
# The header CloudFront proves itself with (src/gateway.py); needed when the stack has a CDN.
ORIGIN_SECRET_HEADER = "X-Origin-Verify"  # noqa: S105 - a header name, not its value
TOKEN_TIMEOUT_SECONDS = 10

logger = logging.getLogger("pre_traffic")
logger.setLevel(logging.INFO)

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class CheckFailed(Exception):
    """The new version answered what a healthy version would not (the message says what; no secrets)."""


@dataclass(frozen=True)
class HookSettings:
    """What the template hands the hook (PreTrafficHookFunction's environment)."""

    version_arn: str
    stage: str
    user_pool_id: str
    machine_client_id: str
    token_url: str
    cdn_origin_secret_arn: str = ""

    @classmethod
    def from_environment(cls) -> HookSettings:
        return cls(
            version_arn=os.environ["API_FUNCTION_VERSION_ARN"],
            stage=os.environ["STAGE"],
            user_pool_id=os.environ["COGNITO_USER_POOL_ID"],
            machine_client_id=os.environ["MACHINE_CLIENT_ID"],
            token_url=os.environ["TOKEN_URL"],
            cdn_origin_secret_arn=os.environ.get("CDN_ORIGIN_SECRET_ARN", ""),
        )


def api_event(
    method: str, path: str, *, stage: str, headers: dict[str, str], query: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API proxy event (payload v1) for `ANY /{proxy+}`, as API Gateway sends for the execute-api URL."""
    request_id = f"pre-traffic-{uuid.uuid4()}"
    all_headers = {"Host": "pre-traffic.invalid", "X-Forwarded-Proto": "https", **headers}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()}
        if query
        else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": request_id,
            "identity": {"sourceIp": SYNTHETIC_SOURCE_IP, "userAgent": "stratus-pre-traffic-hook"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def client_credentials_token(token_url: str, client_id: str, client_secret: str, scope: str) -> str:
    """An access token from the pool's OAuth token endpoint (client_credentials, HTTP Basic client auth)."""
    if not token_url.startswith(("https://", "http://")):
        raise CheckFailed("the token URL is not an http(s) URL")
    credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        token_url,
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope}).encode(),
        headers={
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        # urlopen takes any scheme (bandit B310): only http(s) gets here, checked above.
        with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310
            answer = json.loads(response.read(100_000))
    except (OSError, ValueError) as error:
        # The error names the endpoint and the status, never the credentials.
        raise CheckFailed(f"no token from the token endpoint: {type(error).__name__}") from None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise CheckFailed("the token endpoint answered without an access token")
    return token


class NewVersionCheck:
    """The two requests the new version must answer before it gets any traffic."""

    def __init__(
        self,
        settings: HookSettings,
        invoke: Invoke,
        token: Callable[[], str],
        origin_secret: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self.invoke = invoke
        self.token = token
        self.origin_secret = origin_secret

    def run(self) -> None:
        headers: dict[str, str] = {}
        secret = self.origin_secret()
        if secret:
            headers[ORIGIN_SECRET_HEADER] = secret
        self._expect_ok(
            "readiness", api_event("GET", READINESS_PATH, stage=self.settings.stage, headers=headers)
        )
        headers["Authorization"] = f"Bearer {self.token()}"
        answer = self._expect_ok(
            "authenticated read",
            api_event(
                "GET",
                AUTHENTICATED_READ_PATH,
                stage=self.settings.stage,
                headers=headers,
                query={"limit": "1"},
            ),
        )
        if not isinstance(answer.get("items"), list):
            raise CheckFailed("authenticated read: the answer is not a page of projects")

    def _expect_ok(self, what: str, event: dict[str, Any]) -> dict[str, Any]:
        response = self.invoke(event)
        status = response.get("statusCode")
        request_id = event["requestContext"]["requestId"]
        if status != 200:
            raise CheckFailed(f"{what}: status {status} (request id {request_id} in the function's log)")
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        try:
            answer = json.loads(body)
        except ValueError:
            raise CheckFailed(f"{what}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise CheckFailed(f"{what}: the answer is not a JSON object")
        logger.info("check passed", extra={"check": what, "request_id": request_id})
        return answer


def lambda_invoker(lambda_client: Any, version_arn: str) -> Invoke:
    """Invokes exactly `version_arn` (a qualified ARN: the new version, not the alias)."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        result = lambda_client.invoke(FunctionName=version_arn, Payload=json.dumps(event).encode())
        payload = result["Payload"].read()
        if result.get("FunctionError"):
            raise CheckFailed(f"the new version failed the invocation ({result['FunctionError']})")
        answer = json.loads(payload)
        if not isinstance(answer, dict):
            raise CheckFailed("the new version answered something other than an API Gateway response")
        return answer

    return invoke


def handler(event: dict[str, Any], context: Any) -> None:
    """CodeDeploy BeforeAllowTraffic: check the new version, then report the outcome (always)."""
    import boto3

    settings = HookSettings.from_environment()
    status = "Succeeded"
    try:

        def token() -> str:
            client = boto3.client("cognito-idp").describe_user_pool_client(
                UserPoolId=settings.user_pool_id, ClientId=settings.machine_client_id
            )["UserPoolClient"]
            return client_credentials_token(
                settings.token_url, settings.machine_client_id, client["ClientSecret"], READ_SCOPE
            )

        def origin_secret() -> str | None:
            if not settings.cdn_origin_secret_arn:
                return None
            secret = boto3.client("secretsmanager").get_secret_value(SecretId=settings.cdn_origin_secret_arn)
            value = json.loads(secret["SecretString"]).get("current")
            return value if isinstance(value, str) else None

        NewVersionCheck(
            settings, lambda_invoker(boto3.client("lambda"), settings.version_arn), token, origin_secret
        ).run()
        logger.info("the new version passed", extra={"version": settings.version_arn})
    except CheckFailed as failure:
        status = "Failed"
        logger.error("the new version failed its check", extra={"reason": str(failure)})  # noqa: TRY400
    except Exception:
        # Whatever went wrong, CodeDeploy must hear it now rather than wait out its hour.
        status = "Failed"
        logger.exception("the pre-traffic check could not run")
    boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
