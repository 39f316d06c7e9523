"""What each function's cold start loads: the API function builds its routes on the first request that needs
them and leaves AWS clients and token libraries to first use; the partner authorizer imports neither
FastAPI nor pydantic and reads its configuration as Settings does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from lazy_routes import DeferredRoutes
from main import create_app
from partner_authorizer import AuthorizerSettings
from settings import Settings
from tests.events import authorizer_event, rest_event
from tests.runtime_environment import standin_signing_keys

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def _fresh_process(script: str, environment: dict[str, str]) -> dict[str, Any]:
    """Runs `script` in a new interpreter on the code root; its last stdout line is a JSON answer."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=SRC,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}", **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


APP_ENVIRONMENT = {
    "STAGE": "dev",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "ACCESS_LOG": "false",
}
# Powertools imports botocore's package (for its user agent), never its clients: botocore.client is what a
# client costs.
LOADED_ON_FIRST_USE = (
    "botocore.client",
    "boto3",
    "jose",
    "pynamodb",
    "cryptography",
    "limits",
    "routers.projects",
)


# --- The API function ----------------------------------------------------------------------------------


def test_api_cold_start_answers_health_without_routes_clients_or_token_libraries() -> None:
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import main
from tests.events import LambdaContext, rest_event
health = main.handler(rest_event("GET", "/health"), LambdaContext())
after_health = [name for name in {LOADED_ON_FIRST_USE!r} if name in sys.modules]
installed_after_health = main.app.state.deferred_routes.installed
refused = main.handler(rest_event("GET", "/projects"), LambdaContext())
print(json.dumps({{
    "health": health["statusCode"],
    "after_health": after_health,
    "installed_after_health": installed_after_health,
    "projects": refused["statusCode"],
    "installed_after_projects": main.app.state.deferred_routes.installed,
}}))
"""
    answer = _fresh_process(script, APP_ENVIRONMENT)
    assert answer["health"] == 200
    assert answer["after_health"] == []
    assert answer["installed_after_health"] is False
    # An anonymous request to a deferred route installs the routes first, then meets its 401.
    assert answer["projects"] == 401
    assert answer["installed_after_projects"] is True


def _route_table(routes: list[BaseRoute]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (
            type(route).__name__,
            str(getattr(route, "path", "")),
            tuple(sorted(getattr(route, "methods", ()) or ())),
        )
        for route in routes
    ]


@pytest.fixture
def deferred_app() -> FastAPI:
    return create_app(Settings(), defer_routes=True)


def test_deferred_app_installs_exactly_the_eager_apps_routes_in_the_same_order(deferred_app: FastAPI) -> None:
    eager = create_app(Settings())
    assert len(deferred_app.routes) < len(eager.routes)
    deferred_app.state.deferred_routes.ensure_installed(deferred_app)
    assert _route_table(deferred_app.routes) == _route_table(eager.routes)
    assert deferred_app.openapi() == eager.openapi()


def test_health_checks_and_preflights_leave_the_routes_deferred(deferred_app: FastAPI) -> None:
    with TestClient(deferred_app) as client:
        assert client.get("/health").status_code == 200
        preflight = client.options(
            "/projects",
            headers={"Origin": "http://localhost:8000", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200
        assert deferred_app.state.deferred_routes.installed is False
        assert client.get("/projects").status_code == 401
        assert deferred_app.state.deferred_routes.installed is True


def test_reading_the_openapi_document_first_installs_the_routes(deferred_app: FastAPI) -> None:
    with TestClient(deferred_app) as client:
        document = client.get("/openapi.json").json()
    assert "/projects" in document["paths"]
    # The problem-aware document (openapi.py), not FastAPI's own.
    assert "Problem" in document["components"]["schemas"]


def test_concurrent_first_requests_install_the_routes_once() -> None:
    # The unlucky case forced: every thread asks at the same moment, and the install is slow.
    installs: list[int] = []
    start = threading.Barrier(8)

    def install(app: FastAPI) -> None:
        installs.append(1)
        threading.Event().wait(0.05)

    deferred = DeferredRoutes(install)
    app = FastAPI()

    def ask() -> None:
        start.wait()
        deferred.ensure_installed(app)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert installs == [1]
    assert deferred.installed


# --- The partner authorizer ----------------------------------------------------------------------------


def test_partner_authorizer_cold_start_imports_neither_fastapi_nor_pydantic() -> None:
    keys = standin_signing_keys()
    pool = "us-east-1_bench"
    token = keys.token(
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{pool}", client_id="not-a-partner"
    )
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import partner_authorizer
from tests.events import LambdaContext
try:
    partner_authorizer.handler({json.dumps(authorizer_event(f"Bearer {token}"))}, LambdaContext())
    outcome = "admitted"
except Exception as refused:
    outcome = str(refused)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} | {{"botocore.client"}} & set(sys.modules))
print(json.dumps({{"outcome": outcome, "loaded": loaded}}))
"""
    environment = {
        **APP_ENVIRONMENT,
        "COGNITO_USER_POOL_ID": pool,
        "PARTNER_CLIENT_IDS": "partner-one",
        "COGNITO_JWKS": keys.shipped,
        # A download would fail: the token is checked with the shipped keys only.
        "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    }
    answer = _fresh_process(script, environment)
    # Verified (signature, issuer, expiry) and refused for its client: the whole check ran.
    assert answer["outcome"] == "Unauthorized"
    loaded = set(answer["loaded"])
    assert {"jose", "cryptography"} <= loaded
    assert not loaded & {
        "fastapi",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "mangum",
        "botocore.client",
    }


def _clear_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "COGNITO_", "PARTNER_", "JWKS_", "STAGE", "CORS_", "RATE_LIMIT_")):
            monkeypatch.delenv(name)


def _authorizer_view(settings: Settings | AuthorizerSettings) -> dict[str, Any]:
    return {
        "stage": settings.stage,
        "cognito_issuer": settings.cognito_issuer,
        "jwks_url": settings.jwks_url,
        "cognito_jwks": settings.cognito_jwks,
        "cognito_client_ids": list(settings.cognito_client_ids),
        "partner_client_ids": list(settings.partner_client_ids),
        "partner_usage_plan_id": settings.partner_usage_plan_id,
        "jwks_timeout_seconds": settings.jwks_timeout_seconds,
        "jwks_refetch_cooldown_seconds": settings.jwks_refetch_cooldown_seconds,
    }


# Valid prod values for what only Settings checks (CORS, the limiter's storage), so that a refusal below
# is about what the authorizer reads.
_PROD = {
    "STAGE": "prod",
    "COGNITO_USER_POOL_ID": "us-east-1_AbCdEfGhI",
    "COGNITO_CLIENT_IDS": "client1",
    "CORS_ALLOW_ORIGINS": "https://app.example.com",
    "RATE_LIMIT_STORAGE_URI": "dynamodb://stratus-prod",
}


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"AWS_DEFAULT_REGION": "ap-south-1"},
        {
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "ap-south-1",
            "COGNITO_USER_POOL_ID": "eu-west-1_x",
        },
        {
            "COGNITO_USER_POOL_ID": "us-east-1_pool",
            "COGNITO_CLIENT_IDS": "web, machine",
            "PARTNER_CLIENT_IDS": " partner-a ,partner-b,, ",
            "PARTNER_USAGE_PLAN_ID": "plan123",
            "COGNITO_JWKS_URL": "http://127.0.0.1:4566/us-east-1_pool/.well-known/jwks.json",
            "COGNITO_JWKS": '{"keys":[]}',
            "JWKS_TIMEOUT_SECONDS": "1.5",
            "JWKS_REFETCH_COOLDOWN_SECONDS": "30",
        },
        {**_PROD, "PARTNER_CLIENT_IDS": "partner-a", "COGNITO_JWKS": '{"keys":[{"kid":"k"}]}'},
    ],
    ids=["defaults", "default-region", "region-wins", "every-variable", "prod"],
)
def test_the_authorizer_reads_what_settings_read(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    _clear_settings_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _authorizer_view(AuthorizerSettings.from_environment()) == _authorizer_view(Settings())


@pytest.mark.parametrize(
    "environment",
    [
        {**_PROD, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
        {**_PROD, "AWS_ENDPOINT_URL_APIGATEWAY": "http://127.0.0.1:4566"},
        {**_PROD, "COGNITO_JWKS_URL": "http://localhost:4566/pool/.well-known/jwks.json"},
        {**_PROD, "COGNITO_USER_POOL_ID": ""},
        {"STAGE": "production"},
    ],
    ids=["endpoint", "service-endpoint", "dev-jwks", "no-pool", "unknown-stage"],
)
def test_the_authorizer_refuses_what_settings_refuse(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    _clear_settings_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings()
    with pytest.raises(ValueError, match=r"refusing to start|STAGE"):
        AuthorizerSettings.from_environment()


def test_a_deferred_route_answers_as_an_eager_one(deferred_app: FastAPI) -> None:
    # The same request through the handler-shaped event: the first one installs, and the answer is the
    # eager app's.
    from main import create_handler
    from tests.events import LambdaContext

    eager = create_handler(create_app(Settings()))
    lazy = create_handler(deferred_app)
    event = rest_event("GET", "/projects")
    first, expected = lazy(event, LambdaContext()), eager(event, LambdaContext())
    assert (first["statusCode"], json.loads(first["body"])["type"]) == (
        expected["statusCode"],
        json.loads(expected["body"])["type"],
    )
