"""tRPC at /trpc, as @trpc/client speaks it, against the stand-in: envelopes, batches and their statuses,
methods and content types, JSON lines, and the REST rules (credentials, scopes, rate limits, idempotency,
preconditions) applied to every call; every failure is a tRPC error envelope, never a bare 500."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from main import create_app
from ratelimit import RateLimits, install_rate_limits
from settings import Settings
from trpc.procedures import PROCEDURES

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_PROJECT = "01J00000000000000000000000"
JSON_RPC_CODES = {
    "BAD_REQUEST": -32600,
    "UNAUTHORIZED": -32001,
    "FORBIDDEN": -32003,
    "NOT_FOUND": -32004,
    "METHOD_NOT_SUPPORTED": -32005,
    "CONFLICT": -32009,
    "PRECONDITION_FAILED": -32012,
    "PAYLOAD_TOO_LARGE": -32013,
    "UNSUPPORTED_MEDIA_TYPE": -32015,
    "UNPROCESSABLE_CONTENT": -32022,
    "TOO_MANY_REQUESTS": -32029,
    "INTERNAL_SERVER_ERROR": -32603,
    "SERVICE_UNAVAILABLE": -32603,
}


def query_url(path: str, input_value: Any = None, *, batch: bool = False) -> str:
    """The URL httpLink / httpBatchLink build for a query (httpUtils.ts, getUrl)."""
    parts = ["batch=1"] if batch else []
    if input_value is not None:
        parts.append("input=" + quote(json.dumps(input_value), safe=""))
    return f"/trpc/{path}" + ("?" + "&".join(parts) if parts else "")


def assert_error(envelope: dict[str, Any], code: str, status: int, path: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = envelope["error"]
    assert error["code"] == JSON_RPC_CODES[code], error
    assert error["data"]["code"] == code, error
    assert error["data"]["httpStatus"] == status, error
    assert isinstance(error["message"], str)
    assert error["data"].get("path") == path
    return error


@pytest.fixture(scope="module")
def alice(make_user: Any) -> dict[str, str]:
    user: dict[str, str] = make_user()
    return user


@pytest.fixture(scope="module")
def auth(alice: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {alice['access']}"}


@pytest.fixture(scope="module")
def project(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    created = client.post("/projects", headers=auth, json={"name": "tRPC"})
    assert created.status_code == 201, created.text
    view: dict[str, Any] = created.json()
    return view


# -- envelopes -------------------------------------------------------------------------------------------
def test_a_query_answers_the_twins_model_in_a_result_envelope(
    client: TestClient, auth: dict[str, str], project: dict[str, Any]
) -> None:
    answer = client.get(query_url("projects.byId", {"id": project["id"]}), headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    rest = client.get(f"/projects/{project['id']}", headers=auth).json()
    assert answer.json() == {"result": {"data": rest}}


def test_a_mutation_by_post_answers_the_view_and_one_without_output_an_empty_result(
    client: TestClient, auth: dict[str, str]
) -> None:
    created = client.post("/trpc/projects.create", headers=auth, json={"name": "Made over tRPC"})
    assert created.status_code == 200, created.text
    project = created.json()["result"]["data"]
    assert project["name"] == "Made over tRPC"
    assert project["my_role"] == "owner"
    deleted = client.post("/trpc/projects.delete", headers=auth, json={"id": project["id"]})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"result": {}}
    assert client.get(f"/projects/{project['id']}", headers=auth).status_code == 404


def test_a_procedure_without_input_takes_none(client: TestClient) -> None:
    assert client.get("/trpc/health").json() == {"result": {"data": {"status": "ok"}}}
    refused = client.get(query_url("health", {"verbose": True}))
    assert refused.status_code == 400
    assert_error(refused.json(), "BAD_REQUEST", 400, "health")


def test_answers_carry_the_request_id_vary_and_no_store(client: TestClient) -> None:
    answer = client.get("/trpc/health", headers={"X-Request-ID": "ignored"})
    assert answer.headers["x-request-id"]
    assert answer.headers["vary"].startswith("trpc-accept, accept")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"


# -- batches ---------------------------------------------------------------------------------------------
def test_a_batch_answers_each_call_in_order_and_207_when_they_differ(
    client: TestClient, auth: dict[str, str], project: dict[str, Any]
) -> None:
    url = query_url(
        "projects.byId,projects.byId,nowhere,tasks.byId,health",
        {"0": {"id": project["id"]}, "1": {"id": UNKNOWN_PROJECT}, "3": {"id": "not-a-task"}},
        batch=True,
    )
    answer = client.get(url, headers=auth)
    assert answer.status_code == 207, answer.text
    first, missing, nowhere, malformed, health = answer.json()
    assert first["result"]["data"]["id"] == project["id"]
    assert_error(missing, "NOT_FOUND", 404, "projects.byId")
    assert nowhere["error"]["message"] == 'No procedure found on path "nowhere"'
    assert_error(nowhere, "NOT_FOUND", 404, "nowhere")
    assert_error(malformed, "BAD_REQUEST", 400, "tasks.byId")
    assert health == {"result": {"data": {"status": "ok"}}}


def test_a_batch_whose_calls_fail_alike_answers_their_status(client: TestClient) -> None:
    answer = client.get(query_url("me.get,projects.list", batch=True))
    assert answer.status_code == 401
    for envelope, path in zip(answer.json(), ("me.get", "projects.list"), strict=True):
        assert_error(envelope, "UNAUTHORIZED", 401, path)


def test_a_mutation_batch_reads_index_keyed_inputs_from_the_body(
    client: TestClient, auth: dict[str, str]
) -> None:
    answer = client.post(
        "/trpc/projects.create,projects.create?batch=1",
        headers=auth,
        json={"0": {"name": "first"}, "1": {"name": ""}},
    )
    assert answer.status_code == 207
    created, refused = answer.json()
    assert created["result"]["data"]["name"] == "first"
    error = assert_error(refused, "BAD_REQUEST", 400, "projects.create")
    assert error["data"]["errors"] == [
        {
            "location": "input",
            "field": "name",
            "message": "String should have at least 1 character",
            "type": "string_too_short",
        }
    ]


def test_queries_and_mutations_cannot_share_a_batch(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.post("/trpc/health,projects.create?batch=1", headers=auth, json={"1": {"name": "x"}})
    assert answer.status_code == 400
    assert_error(answer.json(), "BAD_REQUEST", 400)


def test_a_batch_larger_than_the_maximum_is_refused_whole(client: TestClient) -> None:
    size = Settings().trpc_max_batch_size
    assert client.get(query_url(",".join(["health"] * size), batch=True)).status_code == 200
    answer = client.get(query_url(",".join(["health"] * (size + 1)), batch=True))
    assert answer.status_code == 400
    error = assert_error(answer.json(), "BAD_REQUEST", 400)
    assert str(size) in error["message"]


def test_a_batch_input_must_be_an_index_keyed_object(client: TestClient) -> None:
    answer = client.get(query_url("health,health", [None, None], batch=True))
    assert answer.status_code == 400
    assert_error(answer.json(), "BAD_REQUEST", 400)


def test_json_lines_carry_every_call_in_the_head_for_the_stream_link(
    client: TestClient, auth: dict[str, str], project: dict[str, Any]
) -> None:
    url = query_url(
        "projects.byId,projects.byId", {"0": {"id": project["id"]}, "1": {"id": UNKNOWN_PROJECT}}, batch=True
    )
    answer = client.get(url, headers={**auth, "trpc-accept": "application/jsonl"})
    # A stream's status is sent before its calls settle: 200, and each call carries its own outcome.
    assert answer.status_code == 200
    lines = answer.text.split("\n")
    assert lines[-1] == ""
    head = json.loads(lines[0])
    assert set(head) == {"0", "1"}
    # Each value is encoded as [[value]]: complete, with no chunk to wait for (tRPC's stream/jsonl.ts).
    [[found]], [[missing]] = head["0"], head["1"]
    assert found["result"]["data"]["id"] == project["id"]
    assert_error(missing, "NOT_FOUND", 404, "projects.byId")
    assert len(lines) == 2
    # `Accept` naming application/jsonl asks for it too (the link's streamHeader: 'accept').
    accepted = client.get(url, headers={**auth, "accept": "application/json, application/jsonl"})
    assert json.loads(accepted.text.split("\n")[0]) == head


def test_json_lines_need_a_batch(client: TestClient) -> None:
    answer = client.get("/trpc/health", headers={"trpc-accept": "application/jsonl"})
    assert answer.status_code == 400
    assert_error(answer.json(), "BAD_REQUEST", 400)


# -- methods, content types, malformed requests -----------------------------------------------------------
def test_queries_may_come_as_post_but_mutations_never_as_get(
    client: TestClient, auth: dict[str, str]
) -> None:
    overridden = client.post("/trpc/projects.list", headers=auth, json={"limit": 1})
    assert overridden.status_code == 200, overridden.text
    assert len(overridden.json()["result"]["data"]["items"]) <= 1
    refused = client.get(query_url("projects.create", {"name": "by GET"}), headers=auth)
    assert refused.status_code == 405
    assert_error(refused.json(), "METHOD_NOT_SUPPORTED", 405, "projects.create")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_method_not_supported(client: TestClient, method: str) -> None:
    answer = client.request(method, "/trpc/projects.delete")
    assert answer.status_code == 405
    assert_error(answer.json(), "METHOD_NOT_SUPPORTED", 405)


def test_head_answers_204_without_a_body(client: TestClient) -> None:
    answer = client.head("/trpc/projects.list")
    assert answer.status_code == 204
    assert answer.content == b""


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"name": "x"}'),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("application/octet-stream", b"\x00\x01"),
        (None, b'{"name": "x"}'),
    ],
)
def test_a_body_that_is_not_json_is_unsupported_media_type(
    client: TestClient, auth: dict[str, str], content_type: str | None, body: bytes
) -> None:
    headers = dict(auth) | ({"content-type": content_type} if content_type else {})
    answer = client.post("/trpc/projects.create", headers=headers, content=body)
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/json"
    assert_error(answer.json(), "UNSUPPORTED_MEDIA_TYPE", 415)


@pytest.mark.parametrize("text", ["{", '{"name": NaN}', "[" * 100_000, '"\\ud800"x'])
def test_input_that_is_not_json_is_bad_request(client: TestClient, auth: dict[str, str], text: str) -> None:
    posted = client.post(
        "/trpc/projects.create", headers={**auth, "content-type": "application/json"}, content=text
    )
    assert posted.status_code == 400
    assert_error(posted.json(), "BAD_REQUEST", 400)
    queried = client.get(f"/trpc/projects.byId?input={quote(text[:2000])}", headers=auth)
    assert queried.status_code == 400
    assert_error(queried.json(), "BAD_REQUEST", 400)


def test_a_body_over_the_limit_is_payload_too_large(client: TestClient, auth: dict[str, str]) -> None:
    body = json.dumps({"name": "x", "description": "y" * 1_100_000})
    answer = client.post(
        "/trpc/projects.create", headers={**auth, "content-type": "application/json"}, content=body
    )
    assert answer.status_code == 413
    assert_error(answer.json(), "PAYLOAD_TOO_LARGE", 413)


def test_an_unknown_procedure_and_the_bare_endpoint_are_not_found(client: TestClient) -> None:
    for url in ("/trpc/projects.nope", "/trpc", "/trpc/", "/trpc/a/b"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert answer.json()["error"]["data"]["code"] == "NOT_FOUND"


def test_commas_left_encoded_by_a_proxy_still_split_a_batch(client: TestClient) -> None:
    answer = client.get("/trpc/health%2Chealth?batch=1")
    assert answer.status_code == 200
    assert len(answer.json()) == 2


# -- the REST rules, call by call -------------------------------------------------------------------------
def test_validation_lists_every_invalid_field_of_params_and_body(
    client: TestClient, auth: dict[str, str]
) -> None:
    answer = client.post(
        "/trpc/tasks.create",
        headers=auth,
        json={"projectId": "lower", "title": "", "priority": "whenever", "colour": "red"},
    )
    assert answer.status_code == 400
    error = assert_error(answer.json(), "BAD_REQUEST", 400, "tasks.create")
    fields = {(e["field"], e["type"]) for e in error["data"]["errors"]}
    assert fields == {
        ("projectId", "string_too_short"),
        ("title", "string_too_short"),
        ("priority", "literal_error"),
        ("colour", "extra_forbidden"),
    }
    assert all(e["location"] == "input" for e in error["data"]["errors"])
    assert "red" not in answer.text, "input values are never echoed"


def test_anonymous_and_invalid_credentials_are_unauthorized_with_a_challenge(client: TestClient) -> None:
    anonymous = client.get("/trpc/me.get")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert_error(anonymous.json(), "UNAUTHORIZED", 401, "me.get")
    forged = client.get("/trpc/me.get", headers={"Authorization": "Bearer not.a.token"})
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_invalid_credentials_do_not_stop_a_call_that_needs_none(client: TestClient) -> None:
    answer = client.get("/trpc/health,me.get?batch=1", headers={"Authorization": "Bearer not.a.token"})
    assert answer.status_code == 207
    health, me = answer.json()
    assert health == {"result": {"data": {"status": "ok"}}}
    assert_error(me, "UNAUTHORIZED", 401, "me.get")


def test_a_read_only_api_key_reads_but_may_not_write(client: TestClient, auth: dict[str, str]) -> None:
    minted = client.post(
        "/trpc/apiKeys.create", headers=auth, json={"name": "reader", "scopes": ["stratus/read"]}
    )
    assert minted.status_code == 200, minted.text
    key = minted.json()["result"]["data"]
    headers = {"X-API-Key": key["secret"]}
    answer = client.post(
        "/trpc/projects.list,projects.create?batch=1", headers=headers, json={"1": {"name": "x"}}
    )
    # A query and a mutation cannot share a batch: two requests, as the client would send them.
    assert answer.status_code == 400
    listed = client.get("/trpc/projects.list", headers=headers)
    assert listed.status_code == 200, listed.text
    refused = client.post("/trpc/projects.create", headers=headers, json={"name": "x"})
    assert refused.status_code == 403
    error = assert_error(refused.json(), "FORBIDDEN", 403, "projects.create")
    assert "stratus/write" in error["message"]
    client.post("/trpc/apiKeys.revoke", headers=auth, json={"id": key["id"]})
    assert client.get("/trpc/projects.list", headers=headers).status_code == 401


def test_domain_errors_keep_their_status_as_trpc_codes(
    client: TestClient, auth: dict[str, str], make_user: Any
) -> None:
    viewer = make_user()
    created = client.post("/trpc/projects.create", headers=auth, json={"name": "Rules"}).json()["result"][
        "data"
    ]
    pid = created["id"]
    added = client.post(
        "/trpc/projects.members.add", headers=auth, json={"projectId": pid, "subject": viewer["sub"]}
    )
    assert added.status_code == 200, added.text
    again = client.post(
        "/trpc/projects.members.add", headers=auth, json={"projectId": pid, "subject": viewer["sub"]}
    )
    assert_error(again.json(), "CONFLICT", 409, "projects.members.add")
    outsider = client.post(
        "/trpc/tasks.create",
        headers=auth,
        json={"projectId": pid, "title": "t", "assignee": "00000000-0000-0000-0000-000000000000"},
    )
    assert_error(outsider.json(), "UNPROCESSABLE_CONTENT", 422, "tasks.create")
    viewer_auth = {"Authorization": f"Bearer {viewer['access']}"}
    forbidden = client.post(
        "/trpc/projects.update", headers=viewer_auth, json={"id": pid, "name": "mine now"}
    )
    assert_error(forbidden.json(), "FORBIDDEN", 403, "projects.update")
    hidden = client.get(query_url("projects.byId", {"id": UNKNOWN_PROJECT}), headers=viewer_auth)
    assert_error(hidden.json(), "NOT_FOUND", 404, "projects.byId")


def test_a_stale_expected_version_is_precondition_failed(client: TestClient, auth: dict[str, str]) -> None:
    project = client.post("/trpc/projects.create", headers=auth, json={"name": "v"}).json()["result"]["data"]
    changed = client.post(
        "/trpc/projects.update", headers=auth, json={"id": project["id"], "expectedVersion": 1, "name": "v2"}
    )
    assert changed.json()["result"]["data"]["version"] == 2
    stale = client.post(
        "/trpc/projects.update", headers=auth, json={"id": project["id"], "expectedVersion": 1, "name": "v3"}
    )
    assert stale.status_code == 412
    assert_error(stale.json(), "PRECONDITION_FAILED", 412, "projects.update")
    refused = client.post(
        "/trpc/projects.delete", headers=auth, json={"id": project["id"], "expectedVersion": 1}
    )
    assert_error(refused.json(), "PRECONDITION_FAILED", 412, "projects.delete")
    assert client.get(f"/projects/{project['id']}", headers=auth).headers["etag"] == '"2"'


def test_an_idempotency_key_is_one_request_on_either_surface(
    client: TestClient, auth: dict[str, str], project: dict[str, Any]
) -> None:
    key = f"shared-{uuid.uuid4()}"
    body = {"title": "Once", "tags": ["a"]}
    rest = client.post(
        f"/projects/{project['id']}/tasks", headers={**auth, "Idempotency-Key": key}, json=body
    )
    assert rest.status_code == 201, rest.text
    retried = client.post(
        "/trpc/tasks.create", headers=auth, json={"projectId": project["id"], "idempotencyKey": key, **body}
    )
    assert retried.json()["result"]["data"] == rest.json()
    other_body = client.post(
        "/trpc/tasks.create",
        headers=auth,
        json={"projectId": project["id"], "idempotencyKey": key, "title": "Twice"},
    )
    assert_error(other_body.json(), "UNPROCESSABLE_CONTENT", 422, "tasks.create")
    listed = client.get(f"/projects/{project['id']}/tasks", headers=auth).json()["items"]
    assert [task["title"] for task in listed].count("Once") == 1


def test_tasks_are_listed_filtered_and_paged_with_cursors(
    client: TestClient, auth: dict[str, str], project: dict[str, Any]
) -> None:
    for title in ("p1", "p2", "p3"):
        client.post(
            "/trpc/tasks.create",
            headers=auth,
            json={"projectId": project["id"], "title": title, "tags": ["paged"]},
        )
    seen: list[str] = []
    page_input: dict[str, Any] = {"projectId": project["id"], "tag": "paged", "limit": 2}
    for _ in range(5):
        page = client.get(query_url("tasks.list", page_input), headers=auth).json()["result"]["data"]
        seen += [task["title"] for task in page["items"]]
        if page["next_cursor"] is None:
            break
        page_input["cursor"] = page["next_cursor"]
    assert seen == ["p1", "p2", "p3"]
    # A cursor is bound to its query: another filter refuses it.
    foreign = client.get(
        query_url("tasks.list", {**page_input, "tag": "other", "cursor": page_input["cursor"]}), headers=auth
    )
    assert_error(foreign.json(), "BAD_REQUEST", 400, "tasks.list")


@pytest.fixture
def limited_client(app_environment: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(Settings())
    install_rate_limits(app, Settings(), RateLimits(read="3/minute", anonymous="1000/minute"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_every_call_of_a_batch_counts_against_the_rate_limit(
    limited_client: TestClient, make_user: Any
) -> None:
    headers = {"Authorization": f"Bearer {make_user()['access']}"}
    # 2 x 3 + 1 calls in one request: however a window boundary splits them, one window holds more than 3.
    answer = limited_client.get(query_url(",".join(["projects.list"] * 7), batch=True), headers=headers)
    envelopes = answer.json()
    refused = [envelope for envelope in envelopes if "error" in envelope]
    assert 1 <= len(refused) <= 7 - 3
    for envelope in refused:
        assert_error(envelope, "TOO_MANY_REQUESTS", 429, "projects.list")
    assert answer.status_code == 207
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["x-ratelimit-limit"] == "3"
    # The budget is the REST route's: GET /projects now finds it spent as well (unless a new window began).
    assert limited_client.get("/projects", headers=headers).status_code in (200, 429)


# -- failures say nothing of their cause ------------------------------------------------------------------
def test_an_unexpected_failure_is_an_internal_error_that_says_nothing(
    client: TestClient,
    auth: dict[str, str],
    project: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    app_log: Any,
) -> None:
    import services.projects

    def broken(*_: Any) -> None:
        raise RuntimeError("secret table layout")

    monkeypatch.setattr(services.projects, "visible_project", broken)
    answer = client.get(
        query_url("projects.byId,health", {"0": {"id": project["id"]}}, batch=True), headers=auth
    )
    assert answer.status_code == 207
    failed, health = answer.json()
    error = assert_error(failed, "INTERNAL_SERVER_ERROR", 500, "projects.byId")
    assert "secret" not in answer.text
    assert "request id" in error["message"]
    assert health["result"]["data"] == {"status": "ok"}
    assert "secret table layout" in app_log.getvalue()


def test_a_throttled_data_store_is_service_unavailable_with_retry_after(
    client: TestClient, auth: dict[str, str], project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.projects

    def throttled(*_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetItem")

    monkeypatch.setattr(services.projects, "visible_project", throttled)
    answer = client.get(query_url("projects.byId", {"id": project["id"]}), headers=auth)
    assert answer.status_code == 503
    error = assert_error(answer.json(), "SERVICE_UNAVAILABLE", 503, "projects.byId")
    assert error["code"] == -32603
    assert answer.headers["retry-after"] == "2"
    assert "slow down" not in answer.text


def test_a_defect_of_the_adapter_is_still_an_envelope(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trpc.endpoint

    def unbindable(_: FastAPI) -> None:
        raise RuntimeError("binding failed")

    monkeypatch.setattr(trpc.endpoint, "router_of", unbindable)
    answer = client.get("/trpc/health")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert_error(answer.json(), "INTERNAL_SERVER_ERROR", 500)
    assert "binding" not in answer.text


# -- whatever is sent, the answer is a tRPC envelope -------------------------------------------------------
_NAMES = st.sampled_from([p.name for p in PROCEDURES] + ["", "nope", "projects", "a.b.c"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
    names=st.lists(_NAMES, min_size=1, max_size=4),
    batch=st.booleans(),
    input_value=st.none() | _JSON | st.dictionaries(st.sampled_from(["0", "1", "2"]), _JSON, max_size=3),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
    stream=st.booleans(),
)
def test_any_request_is_answered_with_a_trpc_envelope_and_never_a_server_error(
    client: TestClient,
    auth: dict[str, str],
    method: str,
    names: list[str],
    batch: bool,
    input_value: Any,
    content_type: str | None,
    stream: bool,
) -> None:
    # Reads only: the generated calls must not delete what the other tests made.
    names = [name for name in names if not name.endswith((".delete", ".remove", ".revoke"))] or ["health"]
    path = ",".join(names)
    headers = dict(auth) | ({"content-type": content_type} if content_type else {})
    if stream:
        headers["trpc-accept"] = "application/jsonl"
    body = None if method == "GET" or input_value is None else json.dumps(input_value)
    url = f"/trpc/{path}" + ("?batch=1" if batch else "")
    if method == "GET" and input_value is not None:
        url += ("&" if batch else "?") + "input=" + quote(json.dumps(input_value), safe="")
    answer = client.request(method, url, headers=headers, content=body)
    assert answer.status_code < 500, answer.text
    if method == "HEAD":
        assert answer.status_code == 204
        return
    text = answer.text
    if stream and batch and answer.status_code == 200:
        head = json.loads(text.split("\n")[0])
        envelopes = [value[0][0] for value in head.values()]
    else:
        decoded = json.loads(text)
        envelopes = decoded if isinstance(decoded, list) else [decoded]
    for envelope in envelopes:
        assert ("result" in envelope) != ("error" in envelope), envelope
        if "error" in envelope:
            data = envelope["error"]["data"]
            assert envelope["error"]["code"] == JSON_RPC_CODES[data["code"]]


# -- docs and cold start ----------------------------------------------------------------------------------
def test_the_openapi_document_mentions_the_endpoint_and_every_procedure(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    description = document["info"]["description"]
    assert "/trpc/<procedure>" in description
    for procedure in PROCEDURES:
        assert f"| `{procedure.name}` | {procedure.kind} | `{' '.join(procedure.rest)}` |" in description
    assert document["info"]["x-trpc"]["procedures"] == [p.name for p in PROCEDURES]
    assert not any(path.startswith("/trpc") for path in document["paths"])


def test_requests_that_are_not_trpc_load_none_of_it() -> None:
    probe = """
import sys
from main import handler
from tests.events import LambdaContext, rest_event
handler(rest_event("GET", "/health"), LambdaContext())
before = sorted(m for m in sys.modules if m == "trpc" or m.startswith("trpc."))
handler(rest_event("GET", "/trpc/health"), LambdaContext())
after = sorted(m for m in sys.modules if m == "trpc" or m.startswith("trpc."))
print(before, after)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": "src:.", "PATH": "/usr/bin:/bin", "ACCESS_LOG": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after = result.stdout.strip().splitlines()[-1].split("] [")
    assert before == "['trpc', 'trpc.mount'"
    assert "'trpc.endpoint'" in after
    assert "'trpc.procedures'" in after
