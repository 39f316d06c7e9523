"""tRPC through the Lambda handler with API Gateway's own event shapes (tests/events, from `sam local
generate-event`): the stage prefix, a custom domain's base path, commas in the path (raw and encoded), JSON
in the query string as API Gateway decodes it, base64 bodies, HEAD, and HTTP API (payload v2) events."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

import main
from main import create_handler
from tests.events import LambdaContext, http_api_event, rest_event

UNKNOWN_PROJECT = "01J00000000000000000000000"
ROOT = Path(__file__).resolve().parent.parent


def body_of(result: dict[str, Any]) -> Any:
    body: str = result["body"]
    text = base64.b64decode(body).decode() if result["isBase64Encoded"] else body
    return json.loads(text)


def header(result: dict[str, Any], name: str) -> str | None:
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


@pytest.fixture(scope="module")
def handler(app: FastAPI) -> Mangum:
    """main.handler's adapter around the app that this module's stand-in serves."""
    return create_handler(app)


@pytest.fixture(scope="module")
def bearer(make_user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_user()['access']}"}


def invoke(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler(event, LambdaContext())
    return result


# -- main.handler itself (no data needed) -----------------------------------------------------------------
def test_a_query_under_the_stage_prefix_answers_a_text_envelope() -> None:
    event = rest_event("GET", "/trpc/health", stage="Prod")
    result = invoke(main.handler, event)
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    assert body_of(result) == {"result": {"data": {"status": "ok"}}}
    assert header(result, "x-request-id") == event["requestContext"]["requestId"]
    assert header(result, "content-type") == "application/json"


def test_a_cold_functions_first_request_may_be_a_trpc_call(app_environment: dict[str, str]) -> None:
    """As deployed, main.app builds its REST routes on first need; the procedures bind to those routes, so
    a container whose first request is a tRPC call installs them first (a fresh process, nothing warm)."""
    script = """
import json, main
from tests.events import LambdaContext, rest_event
assert not main.app.state.deferred_routes.installed
result = main.handler(rest_event("GET", "/trpc/health,tasks.byId", stage="Prod", query={"batch": ["1"]}), LambdaContext())
print(json.dumps({"status": result["statusCode"], "body": result["body"]}))
"""
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    answer = json.loads(finished.stdout.strip().splitlines()[-1])
    # health answers; tasks.byId without a token is UNAUTHORIZED: both bound, neither an internal error.
    assert answer["status"] == 207, answer
    first, second = json.loads(answer["body"])
    assert first == {"result": {"data": {"status": "ok"}}}
    assert second["error"]["data"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    "event",
    [
        rest_event("GET", "/trpc/health", base_path="v1"),
        rest_event("GET", "/trpc/health", sam_local=True),
        http_api_event("GET", "/trpc/health", stage="staging"),
        http_api_event("GET", "/trpc/health"),
    ],
    ids=["custom-domain-v1", "sam-local", "http-api-stage", "http-api-default"],
)
def test_the_endpoint_is_found_behind_every_prefix(event: dict[str, Any]) -> None:
    result = invoke(main.handler, event)
    assert result["statusCode"] == 200, result
    assert body_of(result) == {"result": {"data": {"status": "ok"}}}


def test_head_is_a_204_warm_up_ping() -> None:
    result = invoke(main.handler, rest_event("HEAD", "/trpc/projects.list"))
    assert result["statusCode"] == 204
    assert result["body"] == ""


def test_protocol_errors_are_envelopes_through_the_handler() -> None:
    unknown = invoke(main.handler, rest_event("GET", "/trpc/nothing.here"))
    assert unknown["statusCode"] == 404
    assert unknown["isBase64Encoded"] is False
    assert body_of(unknown)["error"]["data"] == {
        "code": "NOT_FOUND",
        "httpStatus": 404,
        "path": "nothing.here",
    }
    wrong_method = invoke(main.handler, rest_event("PUT", "/trpc/projects.update"))
    assert wrong_method["statusCode"] == 405
    assert body_of(wrong_method)["error"]["code"] == -32005
    not_json = invoke(
        main.handler,
        rest_event(
            "POST",
            "/trpc/projects.create",
            headers={"content-type": "text/plain"},
            body=b"name=x",
            base64_body=True,
        ),
    )
    assert not_json["statusCode"] == 415
    assert body_of(not_json)["error"]["data"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    anonymous = invoke(main.handler, rest_event("GET", "/trpc/me.get"))
    assert anonymous["statusCode"] == 401
    assert header(anonymous, "www-authenticate") == 'Bearer error="invalid_request"'


# -- against this module's stand-in -----------------------------------------------------------------------
def test_a_base64_mutation_then_a_batch_with_json_in_the_query_string(
    handler: Mangum, bearer: dict[str, str]
) -> None:
    created = invoke(
        handler,
        rest_event(
            "POST",
            "/trpc/projects.create",
            headers={**bearer, "content-type": "application/json"},
            body={"name": "Through API Gateway", "description": "héllo, wörld"},
            base64_body=True,
        ),
    )
    assert created["statusCode"] == 200, created
    project = body_of(created)["result"]["data"]
    assert project["description"] == "héllo, wörld"

    # API Gateway hands the query string decoded, JSON and all; the path keeps its commas.
    batch = rest_event(
        "GET",
        "/trpc/projects.byId,projects.byId,tasks.list",
        headers=bearer,
        query={
            "batch": ["1"],
            "input": [
                json.dumps(
                    {
                        "0": {"id": project["id"]},
                        "1": {"id": UNKNOWN_PROJECT},
                        "2": {"projectId": project["id"], "status": "todo", "sort": "due"},
                    }
                )
            ],
        },
    )
    result = invoke(handler, batch)
    assert result["statusCode"] == 207, result
    found, missing, tasks = body_of(result)
    assert found["result"]["data"]["id"] == project["id"]
    assert missing["error"]["data"]["code"] == "NOT_FOUND"
    assert tasks["result"]["data"] == {"items": [], "next_cursor": None}


def test_commas_encoded_in_the_path_split_the_batch(handler: Mangum, bearer: dict[str, str]) -> None:
    event = rest_event(
        "GET",
        "/trpc/health,me.get",
        headers=bearer,
        query={"batch": ["1"]},
    )
    # As a client or proxy that encodes them sends it: %2C in the paths API Gateway passes on.
    event["path"] = "/trpc/health%2Cme.get"
    event["requestContext"]["path"] = "/Prod/trpc/health%2Cme.get"
    result = invoke(handler, event)
    assert result["statusCode"] == 200, result
    health, me = body_of(result)
    assert health["result"]["data"] == {"status": "ok"}
    assert "subject" in me["result"]["data"]


def test_json_lines_through_the_handler_are_text(handler: Mangum, bearer: dict[str, str]) -> None:
    event = rest_event(
        "GET",
        "/trpc/health,projects.list",
        headers={**bearer, "trpc-accept": "application/jsonl"},
        query={"batch": ["1"], "input": ['{"1":{"limit":1}}']},
    )
    result = invoke(handler, event)
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    head = json.loads(result["body"].split("\n")[0])
    assert head["0"] == [[{"result": {"data": {"status": "ok"}}}]]
    assert "items" in head["1"][0][0]["result"]["data"]


def test_a_mutation_batch_posted_as_http_api_v2(handler: Mangum, bearer: dict[str, str]) -> None:
    event = http_api_event(
        "POST",
        "/trpc/projects.create,projects.create",
        stage="staging",
        headers={**{k.lower(): v for k, v in bearer.items()}, "content-type": "application/json"},
        query={"batch": ["1"]},
        body={"0": {"name": "v2 one"}, "1": {"name": "v2 two"}},
        base64_body=True,
    )
    result = invoke(handler, event)
    assert result["statusCode"] == 200, result
    assert [envelope["result"]["data"]["name"] for envelope in body_of(result)] == ["v2 one", "v2 two"]
