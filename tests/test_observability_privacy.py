"""Logs carry no personal data: a realistic run (admin look-ups by email, bad and tampered tokens, API keys
minted, used and guessed, errors) with the access log on and the app logging at DEBUG, through the Lambda
handler; everything written (the app's log lines, the EMF lines, whatever reaches the root logger as
Lambda ships it) is scanned for emails, tokens and API key secrets."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from main import create_app, create_handler
from observability import logger
from settings import Settings
from tests.events import LambdaContext, rest_event

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# A JWT (three base64url parts) and the API key format (stratus_<id>_<secret>).
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")
API_KEY = re.compile(r"stratus_\w+_\w+")


@pytest.fixture
def everything_written(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What was written so far: stdout (EMF lines), the app's log at DEBUG, and the root logger at INFO
    (Lambda's default application log level)."""
    stream = io.StringIO()
    app_handler = logging.StreamHandler(stream)
    app_handler.setFormatter(logger.registered_formatter)
    root_handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved_levels = (logger.log_level, root.level)
    logger.setLevel("DEBUG")
    root.setLevel(logging.INFO)
    logger._logger.addHandler(app_handler)
    root.addHandler(root_handler)
    capsys.readouterr()

    def written() -> str:
        stream.write(capsys.readouterr().out)
        return stream.getvalue()

    try:
        yield written
    finally:
        logger._logger.removeHandler(app_handler)
        root.removeHandler(root_handler)
        logger.setLevel(saved_levels[0])
        root.setLevel(saved_levels[1])


def test_a_full_run_logs_no_email_token_or_key_secret(
    app_environment: dict[str, str], make_user: Any, everything_written: Callable[[], str]
) -> None:
    handler = create_handler(create_app(Settings(access_log=True, log_level="DEBUG")))
    admin = make_user(groups=("admin", "user"))
    member = make_user()
    secrets: list[str] = [admin["email"], member["email"]]
    secrets += [admin[kind] for kind in ("access", "id", "refresh")] + [member["access"]]

    def call(method: str, path: str, token: str | None = None, **event: Any) -> dict[str, Any]:
        headers = dict(event.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if "body" in event:
            headers["Content-Type"] = "application/json"
        response = handler(rest_event(method, path, headers=headers, **event), LambdaContext())
        body = response.get("body") or "{}"
        parsed: dict[str, Any] = json.loads(body) if body.startswith("{") else {}
        return {**parsed, "status": response["statusCode"]}

    # Admins look people up by email, in the path.
    assert call("GET", f"/admin/users/{member['email']}", admin["access"])["status"] == 200
    assert call("GET", "/admin/users/nobody-here@example.org", admin["access"])["status"] == 404
    assert call("POST", f"/admin/users/{member['email']}/disable", admin["access"])["status"] == 200
    assert call("POST", f"/admin/users/{member['email']}/enable", admin["access"])["status"] == 200
    assert call("GET", "/admin/users", admin["access"], query={"limit": ["5"]})["status"] == 200
    # Tokens that fail: garbage, tampered, an ID token, a refresh token where an access token belongs.
    tampered = admin["access"][:-6] + ("AAAAAA" if not admin["access"].endswith("AAAAAA") else "BBBBBB")
    for bad in ("not-a-token", tampered, admin["id"], admin["refresh"]):
        assert call("GET", "/me", bad)["status"] == 401
    # API keys: minted (the secret is in the response only), used, guessed.
    minted = call("POST", "/api-keys", admin["access"], body={"name": "ci", "scopes": ["stratus/read"]})
    assert minted["status"] == 201
    secrets.append(minted["secret"])
    assert call("GET", "/me", headers={"X-API-Key": minted["secret"]})["status"] == 200
    guessed = minted["secret"][:-4] + ("zzzz" if not minted["secret"].endswith("zzzz") else "yyyy")
    secrets.append(guessed)
    assert call("GET", "/me", headers={"X-API-Key": guessed})["status"] == 401
    # Ordinary use, and paths nobody serves that hold an email.
    assert call("PATCH", "/me", admin["access"], body={"display_name": "Ada"})["status"] == 200
    project = call("POST", "/projects", admin["access"], body={"name": "Launch"})
    assert call("GET", f"/projects/{project['id']}", admin["access"])["status"] == 200
    assert call("GET", f"/no/such/{member['email']}", admin["access"])["status"] == 404
    assert call("GET", f"/me/{admin['access']}")["status"] == 404

    written = everything_written()
    assert written.count('"message":"request"') >= 15, "the access log was not captured"
    assert written.count('"_aws"') >= 15, "the EMF lines were not captured"
    for secret in secrets:
        assert secret not in written
    assert EMAIL.findall(written) == []
    assert JWT.findall(written) == []
    assert API_KEY.findall(written) == []
    assert "Bearer " not in written
