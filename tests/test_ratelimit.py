"""Rate limits against the stand-in over HTTP: one budget across Lambda containers (leased slices, and one
write per request), per owner (never per API key) and never per X-Forwarded-For; headers, 429 problems,
window resets, storage outages, hot counters, and what each design costs in DynamoDB calls."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlparse

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from fastapi import FastAPI
from fastapi.testclient import TestClient
from limits.errors import StorageError
from local.resources import LocalResources, aws_client, create_rate_limit_table
from local.standin import StandIn
from mangum import Mangum
from pydantic import ValidationError
from starlette.requests import Request

import ratelimit
from auth import Principal
from main import create_handler
from ratelimit import (
    HOT_COUNTER_COOL_OFF_SECONDS,
    RateLimitHeadersMiddleware,
    RateLimits,
    Strategy,
    install_rate_limits,
    rate_limit_key,
)
from ratelimit_leasing import LEASE_ATTEMPTS, SLICE_DIVISOR, LeasedFixedWindowRateLimiter
from ratelimit_storage import COUNTER_PREFIX, WINDOW_PREFIX, DynamoDBStorage, Lease
from settings import Settings
from tests.aws_calls import AwsCall, client_error, intercepting_aws_calls
from tests.ratelimit_app import invoke, limited_app, write_file_at_once

ROOT = Path(__file__).resolve().parent.parent
_addresses = itertools.count(1)


def fresh_ip() -> str:
    """A client address no other test in this module has used (counters outlive a test)."""
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def bearer(user: dict[str, str]) -> dict[str, list[str] | str]:
    return {"Authorization": f"Bearer {user['access']}"}


def wait_for_fresh_window(period: int, margin: float = 0.05) -> float:
    """Sleeps into the start of the next epoch-aligned window of `period` seconds; returns its end."""
    now = time.time()
    start = (math.floor(now / period) + 1) * period
    time.sleep(start - now + margin)
    return start + period


def room_left_in_window(period: int, room: float) -> None:
    """Sleeps into the next epoch-aligned window of `period` seconds when less than `room` seconds are left
    of the current one: whatever is counted in the next `room` seconds then lands in one window."""
    left = period - time.time() % period
    if left < room:
        time.sleep(left + 0.05)


@pytest.fixture(autouse=True)
def clear_of_the_top_of_the_hour() -> None:
    """The budgets below are mostly per hour, counted in windows that begin at every full hour: a test that
    ran across one would see its count start again (a spent budget admitting once more, say). Each test
    that counts per hour takes a second at most, so starting it 15 s before the hour ends at the latest
    keeps it inside one window (and costs a wait in 1 run of 240, at most 15 s)."""
    room_left_in_window(3600, room=15)


AppFactory = Callable[..., tuple[FastAPI, Mangum]]


@pytest.fixture
def make_app(app_environment: dict[str, str], rate_limit_storage_uri: str) -> AppFactory:
    """An app from create_app() with the given limits and the test routes, and its Lambda handler; its
    counters in the module's rate-limit table unless another storage is named."""

    def _make_app(limits: RateLimits, storage_uri: str = "") -> tuple[FastAPI, Mangum]:
        app = limited_app(limits, storage_uri or rate_limit_storage_uri)
        return app, create_handler(app)

    return _make_app


@pytest.fixture(scope="module")
def user(make_user: Any) -> dict[str, str]:
    created: dict[str, str] = make_user(("user",))
    return created


@pytest.fixture(scope="module")
def other_user(make_user: Any) -> dict[str, str]:
    created: dict[str, str] = make_user(("user",))
    return created


# Across containers

STRATEGIES = ("leased-fixed-window", "fixed-window")


def run_containers(
    storage_uri: str,
    strategy: str,
    limit: str,
    requests: int,
    source_ip: str,
    choose_start: Callable[[], float],
    tmp_path: Path,
) -> tuple[float, list[dict[str, Any]]]:
    """Four processes, each its own app and handler like four Lambda containers, fire together at the
    moment `choose_start()` picks once all four are warm (however long they took to start); returns that
    moment and what each container saw."""
    environment = {**os.environ, "PYTHONPATH": "src:.", "LOG_LEVEL": "WARNING", "ACCESS_LOG": "false"}
    start_file = tmp_path / "start-at"
    processes, ready_files, result_files = [], [], []
    for container in range(4):
        ready_file = tmp_path / f"container-{container}.ready"
        result_file = tmp_path / f"container-{container}.json"
        spec = {
            "storage_uri": storage_uri,
            "strategy": strategy,
            "limit": limit,
            "requests": requests,
            "source_ip": source_ip,
            "warmup_ip": fresh_ip(),
            "ready_file": str(ready_file),
            "start_file": str(start_file),
            "result_file": str(result_file),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.ratelimit_app", json.dumps(spec)], cwd=ROOT, env=environment
            )
        )
        ready_files.append(ready_file)
        result_files.append(result_file)
    try:
        deadline = time.monotonic() + 120
        while not all(ready.exists() for ready in ready_files):
            assert all(process.poll() is None for process in processes), "a container exited before its burst"
            assert time.monotonic() < deadline, "the containers did not get ready"
            time.sleep(0.05)
        start_at = choose_start()
        write_file_at_once(start_file, repr(start_at))
        for process in processes:
            assert process.wait(timeout=180) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return start_at, [json.loads(result_file.read_text()) for result_file in result_files]


def a_minute_clear_of_the_hour() -> float:
    """Half a second from now (every container has seen the start time by then), or just after the next
    full hour when less than a minute of this one is left: a burst that takes a few seconds, on the
    slowest machine a few tens of seconds, lands in one hourly window (a wait in 1 run of 60)."""
    start = time.time() + 0.5
    hour_end = (math.floor(start / 3600) + 1) * 3600
    return start if hour_end - start >= 60 else hour_end + 0.1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shared_counters_hold_one_limit_across_four_containers(
    app_environment: dict[str, str], rate_limit_storage_uri: str, tmp_path: Path, strategy: str
) -> None:
    limit = 20
    start_at, results = run_containers(
        rate_limit_storage_uri,
        strategy,
        f"{limit}/hour",
        limit + 10,
        fresh_ip(),
        a_minute_clear_of_the_hour,
        tmp_path,
    )
    statuses = [status for result in results for status in result["statuses"]]
    assert set(statuses) <= {200, 429}, statuses
    window_end = (math.floor(start_at / 3600) + 1) * 3600
    assert max(result["finished"] for result in results) < window_end, "the burst spilled into a new window"
    assert min(result["started"] for result in results) < start_at + 1, "the containers did not overlap"
    assert sum(result["storage_failures"] for result in results) == 0, "a container admitted unlimited"
    # One write per request: ADD is atomic, so nothing beyond the limit and nothing short of it. Leased
    # slices: the table hands out at most the limit, and a container ends up holding unspent tokens only
    # if its requests ran out before its slice did, which a burst longer than the whole budget rules out.
    assert statuses.count(200) == limit


def test_memory_counters_admit_four_times_the_limit_across_four_containers(
    app_environment: dict[str, str], tmp_path: Path
) -> None:
    """Why the storage is shared: with slowapi's default memory:// each container keeps its own count."""
    limit = 20
    _, results = run_containers(
        "memory://",
        "leased-fixed-window",
        f"{limit}/hour",
        limit + 10,
        fresh_ip(),
        a_minute_clear_of_the_hour,
        tmp_path,
    )
    admitted = sum(result["statuses"].count(200) for result in results)
    assert admitted == 4 * limit


# Headers, 429, windows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_limited_responses_carry_rate_limit_headers_whatever_the_route_returns(
    make_app: AppFactory, strategy: Strategy
) -> None:
    _, handler = make_app(RateLimits(anonymous="10/hour", strategy=strategy))
    ip = fresh_ip()
    started = time.time()
    responses = [
        invoke(handler, "/_limited/read", source_ip=ip),  # a dict
        invoke(handler, "/_limited/write", method="POST", source_ip=ip),  # a model, 201
        invoke(handler, "/_limited/expensive", source_ip=ip),  # a Response object
    ]
    assert [response["status"] for response in responses] == [200, 201, 200]
    # Anonymous callers draw on one budget per address across every limited route.
    assert [response["headers"]["x-ratelimit-remaining"] for response in responses] == ["9", "8", "7"]
    for response in responses:
        assert response["headers"]["x-ratelimit-limit"] == "10"
        reset_at = int(response["headers"]["x-ratelimit-reset"])
        assert started < reset_at <= started + 3600 + 1
    unlimited = invoke(handler, "/_limited/unlimited", source_ip=ip)
    assert "x-ratelimit-limit" not in unlimited["headers"]


def test_headers_reach_clients_of_an_asgi_server_too(make_app: AppFactory) -> None:
    app, _ = make_app(RateLimits(write="3/hour", anonymous="3/hour"))
    with TestClient(app) as client:
        response = client.post("/_limited/write")
    assert response.status_code == 201
    assert (response.headers["x-ratelimit-limit"], response.headers["x-ratelimit-remaining"]) == ("3", "2")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exceeding_the_limit_returns_a_429_problem_with_retry_after(
    make_app: AppFactory, strategy: Strategy
) -> None:
    _, handler = make_app(RateLimits(anonymous="2/hour", strategy=strategy))
    ip = fresh_ip()
    assert [invoke(handler, "/_limited/read", source_ip=ip)["status"] for _ in range(2)] == [200, 200]
    refused = invoke(handler, "/_limited/read", source_ip=ip)
    assert refused["status"] == 429
    assert refused["headers"]["content-type"] == "application/problem+json"
    problem = json.loads(refused["body"])
    assert problem["type"] == "urn:stratus:problem:rate-limited"
    assert problem["status"] == 429
    assert ip not in problem["detail"]
    assert 0 < int(refused["headers"]["retry-after"]) <= 3600
    assert refused["headers"]["x-ratelimit-remaining"] == "0"
    assert refused["headers"]["x-ratelimit-limit"] == "2"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_counters_reset_when_the_window_ends(make_app: AppFactory, strategy: Strategy) -> None:
    # Seven requests must land in one window: a machine too busy to send them within 2 s tries again with
    # a window twice as long, so the outcome never depends on the machine's speed.
    for period in (2, 4, 8, 16):
        _, handler = make_app(RateLimits(anonymous=f"5/{period} seconds", strategy=strategy))
        ip = fresh_ip()
        # The first limited request creates the storage client: keep that out of the window.
        invoke(handler, "/_limited/read", source_ip=fresh_ip())
        window_end = wait_for_fresh_window(period)
        responses = [invoke(handler, "/_limited/read", source_ip=ip) for _ in range(7)]
        if time.time() < window_end:
            break
    else:
        pytest.fail("seven requests never fit in one window of 16 s")
    assert [response["status"] for response in responses] == [200] * 5 + [429] * 2
    refused = responses[-1]
    assert 1 <= int(refused["headers"]["retry-after"]) <= period
    reset_at = int(refused["headers"]["x-ratelimit-reset"])
    assert reset_at == window_end
    time.sleep(max(0.0, reset_at - time.time()) + 0.05)
    again = invoke(handler, "/_limited/read", source_ip=ip)
    assert again["status"] == 200
    assert again["headers"]["x-ratelimit-remaining"] == "4"


# Whose budget


def test_a_spoofed_x_forwarded_for_neither_resets_nor_drains_a_budget(make_app: AppFactory) -> None:
    _, handler = make_app(RateLimits(anonymous="3/hour"))
    client, victim = fresh_ip(), fresh_ip()
    for spoofed in ("1.2.3.4", "5.6.7.8, 9.9.9.9", victim):
        response = invoke(handler, "/_limited/read", source_ip=client, headers={"X-Forwarded-For": spoofed})
        assert response["status"] == 200
    fresh_claim = invoke(handler, "/_limited/read", source_ip=client, headers={"X-Forwarded-For": fresh_ip()})
    assert fresh_claim["status"] == 429
    # The client named the victim's address above; the victim's budget is untouched.
    victims_first = invoke(handler, "/_limited/read", source_ip=victim)
    assert victims_first["status"] == 200
    assert victims_first["headers"]["x-ratelimit-remaining"] == "2"


def test_one_token_from_two_addresses_shares_one_budget(make_app: AppFactory, user: dict[str, str]) -> None:
    _, handler = make_app(RateLimits(read="3/hour", anonymous="100/hour"))
    seen = [invoke(handler, "/_limited/whoami", source_ip=fresh_ip(), headers=bearer(user)) for _ in range(4)]
    assert [response["status"] for response in seen] == [200, 200, 200, 429]
    assert json.loads(seen[0]["body"]) == {"subject": user["sub"]}
    assert [response["headers"]["x-ratelimit-remaining"] for response in seen] == ["2", "1", "0", "0"]


def test_two_users_behind_one_address_have_their_own_budgets(
    make_app: AppFactory, user: dict[str, str], other_user: dict[str, str]
) -> None:
    _, handler = make_app(RateLimits(read="2/hour", anonymous="100/hour"))
    shared_ip = fresh_ip()
    first = [invoke(handler, "/_limited/read", source_ip=shared_ip, headers=bearer(user)) for _ in range(3)]
    assert [response["status"] for response in first] == [200, 200, 429]
    second = invoke(handler, "/_limited/read", source_ip=shared_ip, headers=bearer(other_user))
    assert second["status"] == 200
    assert second["headers"]["x-ratelimit-remaining"] == "1"
    anonymous = invoke(handler, "/_limited/read", source_ip=shared_ip)
    assert anonymous["headers"]["x-ratelimit-limit"] == "100"


def test_an_authenticated_callers_route_classes_have_separate_budgets(
    make_app: AppFactory, make_user: Any
) -> None:
    _, handler = make_app(RateLimits(read="5/hour", write="2/hour", expensive="1/hour"))
    caller = make_user(("user",))
    read = invoke(handler, "/_limited/read", headers=bearer(caller))
    write = invoke(handler, "/_limited/write", method="POST", headers=bearer(caller))
    expensive = [invoke(handler, "/_limited/expensive", headers=bearer(caller)) for _ in range(2)]
    assert (read["headers"]["x-ratelimit-limit"], read["headers"]["x-ratelimit-remaining"]) == ("5", "4")
    assert (write["headers"]["x-ratelimit-limit"], write["headers"]["x-ratelimit-remaining"]) == ("2", "1")
    assert [response["status"] for response in expensive] == [200, 429]


def test_the_limit_reuses_the_routes_authentication(make_app: AppFactory, user: dict[str, str]) -> None:
    app, handler = make_app(RateLimits())
    verifier = app.state.token_verifier
    verifications = []
    original = verifier.verify

    def counting_verify(token: str) -> Principal:
        verifications.append(token)
        principal: Principal = original(token)
        return principal

    verifier.verify = counting_verify
    assert invoke(handler, "/_limited/whoami", headers=bearer(user))["status"] == 200
    assert len(verifications) == 1


def test_bad_credentials_on_a_limited_route_are_a_401_before_counting(make_app: AppFactory) -> None:
    _, handler = make_app(RateLimits(anonymous="1/hour"))
    ip = fresh_ip()
    rejected = invoke(handler, "/_limited/read", source_ip=ip, headers={"Authorization": "Bearer nope"})
    assert rejected["status"] == 401
    assert "x-ratelimit-limit" not in rejected["headers"]
    assert invoke(handler, "/_limited/read", source_ip=ip)["status"] == 200


def _request_with(principal: Principal | None, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    state = {"principal": principal} if principal else {}
    return Request({"type": "http", "headers": headers or [], "client": ("192.0.2.7", 443), "state": state})


def test_the_key_is_the_principals_owner_else_the_gateways_client_address() -> None:
    assert rate_limit_key(_request_with(Principal(subject="abc", auth_method="jwt"))) == "user:abc"
    api_key = Principal(subject="abc", auth_method="api_key", key_id="0123456789abcdef")
    assert rate_limit_key(_request_with(api_key)) == "user:abc"
    forwarded = _request_with(None, [(b"x-forwarded-for", b"6.6.6.6"), (b"x_forwarded_for", b"6.6.6.6")])
    assert rate_limit_key(forwarded) == "ip:192.0.2.7"


def test_personal_api_keys_draw_on_their_owners_budget_however_many_are_minted(
    make_app: AppFactory, make_user: Any
) -> None:
    """Over HTTP, with the real routes: the owner's token and every key they mint share one read budget,
    so minting keys never multiplies it; another user's key has a budget of its own."""
    app, _ = make_app(RateLimits(read="5/hour", expensive="10/hour"))
    owner, other = make_user(("user",)), make_user(("user",))
    with TestClient(app) as client:

        def mint(user: dict[str, str], name: str) -> dict[str, str]:
            minted = client.post(
                "/api-keys", headers=bearer(user), json={"name": name, "scopes": ["stratus/read"]}
            )
            assert minted.status_code == 201, minted.text
            return {"X-API-Key": minted.json()["secret"]}

        first_key, second_key = mint(owner, "first"), mint(owner, "second")
        seen = [
            client.get("/me", headers=credentials)
            for credentials in (bearer(owner), first_key, second_key, first_key, second_key)
        ]
        assert [response.status_code for response in seen] == [200] * 5, seen[-1].text
        assert [response.headers["X-RateLimit-Remaining"] for response in seen] == ["4", "3", "2", "1", "0"]
        third_key = mint(owner, "third")
        for credentials in (third_key, first_key, bearer(owner)):
            refused = client.get("/me", headers=credentials)
            assert refused.status_code == 429, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
        others = client.get("/me", headers=mint(other, "theirs"))
        assert others.status_code == 200, others.text
        assert others.headers["X-RateLimit-Remaining"] == "4"


# What each design costs in DynamoDB calls


@contextmanager
def counter_calls(storage_uri: str) -> Iterator[list[AwsCall]]:
    """Every AWS call on the rate-limit table made inside the block, whichever client made it."""
    table = urlparse(storage_uri).netloc
    calls: list[AwsCall] = []

    def record(call: AwsCall) -> Any:
        if call.service == "dynamodb" and call.params.get("TableName") == table:
            calls.append(call)
        return call.proceed()

    with intercepting_aws_calls(record):
        yield calls


def test_one_write_per_request_makes_exactly_one_dynamodb_call(make_app: AppFactory) -> None:
    app, handler = make_app(RateLimits(anonymous="3/hour", strategy="fixed-window"))
    invoke(handler, "/_limited/read", source_ip=fresh_ip())  # creates the storage client
    client = app.state.rate_limits.storage.client
    calls: list[str] = []
    sends: list[int] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    client.meta.events.register("before-send.dynamodb", lambda **_: sends.append(1))
    ip = fresh_ip()
    statuses = [invoke(handler, "/_limited/read", source_ip=ip)["status"] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert calls == ["UpdateItem"] * 5
    assert len(sends) == 5
    invoke(handler, "/_limited/unlimited", source_ip=ip)
    assert len(calls) == 5


def _containers(make_app: AppFactory, limits: RateLimits, count: int = 4) -> list[Mangum]:
    """`count` apps with their own limiter each, over one table: Lambda containers of one function."""
    return [make_app(limits)[1] for _ in range(count)]


def test_leased_slices_cost_at_most_one_call_per_four_requests_at_steady_state(
    make_app: AppFactory, rate_limit_storage_uri: str
) -> None:
    """A caller spending most of a default read budget (300) through four containers."""
    containers = _containers(make_app, RateLimits(anonymous="300/hour"))
    ip = fresh_ip()
    with counter_calls(rate_limit_storage_uri) as calls:
        responses = [invoke(containers[n % 4], "/_limited/read", source_ip=ip) for n in range(240)]
    assert {response["status"] for response in responses} == {200}
    assert {call.operation for call in calls} == {"UpdateItem"}
    assert len(calls) <= 240 / 4, len(calls)
    remaining = [int(response["headers"]["x-ratelimit-remaining"]) for response in responses]
    assert all(0 <= left < 300 for left in remaining)
    # Each container's view lags behind the others' leases, never behind its own requests.
    assert remaining[-1] >= 300 - 240 - 3 * math.ceil(300 / SLICE_DIVISOR)


def test_leased_slices_admit_exactly_the_limit_then_refuse_without_calls(
    make_app: AppFactory, rate_limit_storage_uri: str
) -> None:
    containers = _containers(make_app, RateLimits(anonymous="50/hour"))
    ip = fresh_ip()
    with counter_calls(rate_limit_storage_uri) as calls:
        responses = [invoke(containers[n % 4], "/_limited/read", source_ip=ip) for n in range(120)]
        statuses = [response["status"] for response in responses]
        assert statuses.count(200) == 50
        first_refusal = statuses.index(429)
        assert set(statuses[first_refusal:]) == {429}
        # A spent budget stays spent for its window: once each container has been told so, it refuses alone.
        made = len(calls)
        more = [invoke(container, "/_limited/read", source_ip=ip) for container in containers * 5]
    assert {response["status"] for response in more} == {429}
    assert len(calls) == made
    for refused in [responses[first_refusal], *more]:
        assert refused["headers"]["x-ratelimit-remaining"] == "0"
        assert int(refused["headers"]["retry-after"]) >= 1


def test_a_caller_moving_between_containers_loses_less_than_a_tenth_of_the_budget(
    make_app: AppFactory,
) -> None:
    """Four containers serve a caller in turn, then only one does: the others keep their unspent slices
    until the window ends, and those are what the caller can no longer spend."""
    containers = _containers(make_app, RateLimits(anonymous="100/hour"))
    ip = fresh_ip()
    spread = [invoke(containers[n % 4], "/_limited/read", source_ip=ip)["status"] for n in range(80)]
    concentrated = [invoke(containers[0], "/_limited/read", source_ip=ip)["status"] for _ in range(100)]
    assert set(spread) == {200}
    admitted = (spread + concentrated).count(200)
    assert 90 <= admitted <= 100


def test_a_container_that_serves_a_caller_once_keeps_nothing_from_the_others(make_app: AppFactory) -> None:
    once, busy = _containers(make_app, RateLimits(anonymous="10/hour"), count=2)
    ip = fresh_ip()
    assert invoke(once, "/_limited/read", source_ip=ip)["status"] == 200
    statuses = [invoke(busy, "/_limited/read", source_ip=ip)["status"] for _ in range(20)]
    assert statuses == [200] * 9 + [429] * 11


def test_slices_grow_with_use_and_shrink_as_the_budget_runs_low(
    make_app: AppFactory, rate_limit_storage_uri: str
) -> None:
    _, handler = make_app(RateLimits(anonymous="100/hour"))
    ip = fresh_ip()
    with counter_calls(rate_limit_storage_uri) as calls:
        statuses = [invoke(handler, "/_limited/read", source_ip=ip)["status"] for _ in range(100)]
        slices = [int(call.params["ExpressionAttributeValues"][":amount"]["N"]) for call in calls]
        refused = invoke(handler, "/_limited/read", source_ip=ip)
    assert statuses == [200] * 100
    assert refused["status"] == 429
    assert slices[:4] == [1, 2, 4, 8]
    leased = 0
    for previous, amount in zip([0, *slices], slices, strict=False):
        left = 100 - leased
        # At most a tenth of what was left, at most twice the slice before (the first is one token): the
        # last tokens of the window are leased one at a time.
        assert amount <= max(1, math.ceil(left / SLICE_DIVISOR)), slices
        assert amount <= max(1, 2 * previous), slices
        leased += amount
    assert leased == 100
    assert slices[-SLICE_DIVISOR:] == [1] * SLICE_DIVISOR
    # The last lease's answer said the budget was spent: the refusal needed no call.
    assert len(calls) == len(slices)


def test_a_request_makes_a_bounded_number_of_lease_calls_whatever_the_table_answers(
    make_app: AppFactory,
) -> None:
    """Each answer says a token is left, yet refuses it (as if other containers always took it first):
    the request gives up after LEASE_ATTEMPTS calls with a 429 (never admitting beyond what the table
    granted), without holding the budget spent, so the next request asks the table again."""
    _, handler = make_app(RateLimits(anonymous="10/hour"))
    ip = fresh_ip()
    attempts: list[int] = []

    def always_taken_first(call: AwsCall) -> Any:
        if call.operation != "UpdateItem":
            return call.proceed()
        attempts.append(1)
        raise client_error("UpdateItem", "ConditionalCheckFailedException", Item={"leased": {"N": "9"}})

    with intercepting_aws_calls(always_taken_first):
        refused = invoke(handler, "/_limited/read", source_ip=ip)
    assert refused["status"] == 429
    assert refused["headers"]["x-ratelimit-remaining"] == "0"
    assert len(attempts) == LEASE_ATTEMPTS
    assert invoke(handler, "/_limited/read", source_ip=ip)["status"] == 200


# Storage outages


class SilentEndpoint:
    """Accepts connections and never answers: every read times out. Counts the connections it accepted, so
    a test tells how many attempts a request made without timing it."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(connection)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for connection in self._held:
                connection.close()


@pytest.fixture
def silent_endpoint() -> Iterator[SilentEndpoint]:
    endpoint = SilentEndpoint()
    yield endpoint
    endpoint.close()


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("outage", ["closed port", "missing table"])
def test_storage_outage_fails_open_with_a_logged_error_and_a_metric(
    make_app: AppFactory,
    monkeypatch: pytest.MonkeyPatch,
    app_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    outage: str,
) -> None:
    if outage == "closed port":
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
        _, handler = make_app(RateLimits(anonymous="1/hour"))
    else:
        _, handler = make_app(RateLimits(anonymous="1/hour"), "dynamodb://stratus-no-such-table")
    ip = fresh_ip()
    capsys.readouterr()
    # How long an outage may hold a request is the client's timeouts and attempts (checked below against a
    # silent endpoint), not a clock read here.
    response = invoke(handler, "/_limited/read", source_ip=ip)
    assert response["status"] == 200
    assert "x-ratelimit-limit" not in response["headers"]
    logged = [
        line for line in _json_lines(app_log.getvalue()) if line["message"] == "rate limit storage failed"
    ]
    # Powertools prints the EMF document to stdout, where Lambda hands it to CloudWatch.
    metrics = [line for line in _json_lines(capsys.readouterr().out) if "RateLimitStorageErrors" in line]
    assert len(logged) == 1
    assert logged[0]["level"] == "ERROR"
    expected_error = {"closed port": "EndpointConnectionError", "missing table": "ResourceNotFoundException"}
    assert logged[0]["error_type"] == expected_error[outage]
    assert "exception" in logged[0]
    assert ip not in json.dumps(logged[0])
    assert metrics[0]["RateLimitStorageErrors"] == [1.0]
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Stratus"
    # Fail open: a second request over the limit is admitted too.
    assert invoke(handler, "/_limited/read", source_ip=ip)["status"] == 200


@pytest.mark.parametrize("outage", ["closed port", "missing table"])
def test_storage_outage_fails_closed_with_a_503_problem(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, outage: str
) -> None:
    limits = RateLimits(anonymous="100/hour", fail_closed=True)
    if outage == "closed port":
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
        _, handler = make_app(limits)
    else:
        _, handler = make_app(limits, "dynamodb://stratus-no-such-table")
    response = invoke(handler, "/_limited/read", source_ip=fresh_ip())
    assert response["status"] == 503
    assert response["headers"]["content-type"] == "application/problem+json"
    assert json.loads(response["body"])["type"] == "urn:stratus:problem:service-unavailable"
    assert int(response["headers"]["retry-after"]) >= 1


def test_a_storage_that_never_answers_costs_bounded_attempts_then_is_skipped(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, silent_endpoint: SilentEndpoint
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", silent_endpoint.url)
    app, handler = make_app(RateLimits())
    storage = app.state.rate_limits.storage
    # Each attempt waits at most these (1 s to connect, 1 s to read); never near API Gateway's 29 s.
    assert (storage.connect_timeout, storage.read_timeout, storage.max_attempts) == (1.0, 1.0, 2)
    first = invoke(handler, "/_limited/read", source_ip=fresh_ip())
    assert first["status"] == 200
    # Two attempts, each a connection that timed out reading; no retry storm.
    assert silent_endpoint.connections == 2
    second = invoke(handler, "/_limited/read", source_ip=fresh_ip())
    assert second["status"] == 200
    # Skipped while the storage is known to be down: not one more connection.
    assert silent_endpoint.connections == 2


class _Body:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


def _throttled(**_: Any) -> AWSResponse:
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }
    headers = HTTPHeaders.from_dict({"Content-Type": "application/x-amz-json-1.0"})
    return AWSResponse("http://dynamodb", 400, headers, _Body(json.dumps(body).encode()))


# Hot counters. The stand-in never throttles, so these tests (and only these) make DynamoDB's answer at
# the botocore layer: the limiter's own client gets the response DynamoDB sends for a partition written
# faster than it takes (its retry included), everything else about the request is real.


@dataclass
class Throttling:
    """DynamoDB's throttling answer to every call of one app's counter client while `on`."""

    attempts: list[int] = field(default_factory=list)
    on: bool = True


@pytest.fixture
def throttled_counters() -> Callable[[FastAPI], Throttling]:
    def _throttle(app: FastAPI) -> Throttling:
        throttling = Throttling()

        def throttle(**kwargs: Any) -> AWSResponse | None:
            if not throttling.on:
                return None  # botocore sends the request
            throttling.attempts.append(1)
            return _throttled(**kwargs)

        app.state.rate_limits.storage.client.meta.events.register("before-send.dynamodb", throttle)
        return throttling

    return _throttle


def _metric_lines(output: str, name: str) -> list[dict[str, Any]]:
    return [line for line in _json_lines(output) if name in line]


@pytest.mark.parametrize("fail_closed", [False, True])
def test_a_hot_counter_refuses_writes_and_expensive_requests_with_a_429_and_admits_reads(
    make_app: AppFactory,
    make_user: Any,
    throttled_counters: Callable[[FastAPI], Throttling],
    app_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    fail_closed: bool,
) -> None:
    """Whatever RATE_LIMIT_FAIL_CLOSED says (it is about counters that cannot be reached): a throttled
    counter is one caller above a partition's write rate."""
    app, handler = make_app(RateLimits(fail_closed=fail_closed))
    invoke(handler, "/_limited/read", source_ip=fresh_ip())  # creates the storage client
    attempts = throttled_counters(app).attempts
    caller = bearer(make_user(("user",)))
    capsys.readouterr()
    write = invoke(handler, "/_limited/write", method="POST", headers=caller)
    assert write["status"] == 429
    assert write["headers"]["content-type"] == "application/problem+json"
    assert json.loads(write["body"])["type"] == "urn:stratus:problem:rate-limited"
    assert write["headers"]["retry-after"] == str(math.ceil(HOT_COUNTER_COOL_OFF_SECONDS))
    assert "x-ratelimit-remaining" not in write["headers"]
    # The SDK retried once, as for any throttling.
    assert len(attempts) == 2
    expensive = invoke(handler, "/_limited/expensive", headers=caller)
    assert expensive["status"] == 429
    read = invoke(handler, "/_limited/read", headers=caller)
    assert read["status"] == 200
    assert "x-ratelimit-remaining" not in read["headers"]
    assert len(attempts) == 6
    metrics = _metric_lines(capsys.readouterr().out, "RateLimitCounterThrottled")
    assert [line["RateLimitCounterThrottled"] for line in metrics] == [[1.0]] * 3
    logged = [
        line for line in _json_lines(app_log.getvalue()) if line["message"] == "rate limit counter throttled"
    ]
    assert [(line["level"], line["route_class"], line["decision"]) for line in logged] == [
        ("WARNING", "write", "refused"),
        ("WARNING", "expensive", "refused"),
        ("WARNING", "read", "admitted"),
    ]
    assert not any(line["message"] == "rate limit storage failed" for line in _json_lines(app_log.getvalue()))


def test_a_hot_counter_is_left_alone_for_a_moment_then_asked_again(
    make_app: AppFactory,
    throttled_counters: Callable[[FastAPI], Throttling],
    monkeypatch: pytest.MonkeyPatch,
    app_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(ratelimit, "HOT_COUNTER_COOL_OFF_SECONDS", 0.5)
    app, handler = make_app(RateLimits(anonymous="100/hour"))
    invoke(handler, "/_limited/read", source_ip=fresh_ip())
    throttling = throttled_counters(app)
    attempts = throttling.attempts
    ip = fresh_ip()
    assert invoke(handler, "/_limited/write", method="POST", source_ip=ip)["status"] == 429
    assert len(attempts) == 2
    # Anonymous callers have one budget for every class: while it is hot this container answers alone,
    # refusing the write and admitting the read, and asks the partition nothing.
    capsys.readouterr()
    assert invoke(handler, "/_limited/write", method="POST", source_ip=ip)["status"] == 429
    assert invoke(handler, "/_limited/read", source_ip=ip)["status"] == 200
    # Each request is counted in the metric; the log has one line per throttled call, not per request.
    assert len(_metric_lines(capsys.readouterr().out, "RateLimitCounterThrottled")) == 2
    throttled_lines = [line for line in _json_lines(app_log.getvalue()) if "throttled" in line["message"]]
    assert len(throttled_lines) == 1
    # Other callers' counters are not hot: they are asked (here, and throttled too: all of them are).
    assert invoke(handler, "/_limited/read", source_ip=fresh_ip())["status"] == 200
    assert len(attempts) == 4
    throttling.on = False
    time.sleep(0.6)
    cooled = invoke(handler, "/_limited/write", method="POST", source_ip=ip)
    assert cooled["status"] == 201
    assert cooled["headers"]["x-ratelimit-remaining"] == "99"


# The storage itself


@pytest.fixture(scope="module")
def counter_table(standin: StandIn) -> str:
    """A rate-limit table of its own, so that reset() here touches no other test's counters."""
    name = f"stratus-counters-{uuid.uuid4().hex[:8]}"
    create_rate_limit_table(standin.endpoint, name)
    return name


def test_the_storage_counts_per_window_and_ignores_ended_windows(
    counter_table: str, aws_resources: LocalResources
) -> None:
    storage = DynamoDBStorage(f"dynamodb://{counter_table}", region_name="us-east-1")
    key = f"LIMITER/test/{uuid.uuid4().hex}"
    window_end = (int(time.time()) // 3600 + 1) * 3600
    assert [storage.incr(key, 3600), storage.incr(key, 3600, amount=2)] == [1, 3]
    assert storage.get(key) == 3
    assert storage.get_expiry(key) == window_end
    # TTL deletes lazily: a window that has ended but is still in the table counts as empty.
    ended = f"LIMITER/test/{uuid.uuid4().hex}"
    start = int(time.time()) // 60 * 60
    aws_client("dynamodb", aws_resources.endpoint).put_item(
        TableName=counter_table,
        Item={
            "pk": {"S": COUNTER_PREFIX + ended},
            "sk": {"S": f"{WINDOW_PREFIX}{start - 60:012d}"},
            "hits": {"N": "99"},
            "expires_at": {"N": str(start)},
        },
    )
    assert storage.get(ended) == 0
    assert storage.get_expiry(ended) <= time.time()
    assert storage.incr(ended, 60) == 1
    storage.clear(key)
    assert storage.get(key) == 0
    assert storage.check()
    assert storage.reset() == 2
    assert storage.get(ended) == 0
    assert not DynamoDBStorage("dynamodb://stratus-no-such-table", region_name="us-east-1").check()


def test_the_storage_leases_while_the_window_has_enough_left_and_says_how_much_is_leased(
    counter_table: str,
) -> None:
    storage = DynamoDBStorage(f"dynamodb://{counter_table}", region_name="us-east-1")
    key = f"LIMITER/test/{uuid.uuid4().hex}"
    start = int(time.time()) // 3600 * 3600
    assert storage.lease(key, start, 3600, limit=10, amount=4) == Lease(granted=4, leased=4)
    assert storage.lease(key, start, 3600, limit=10, amount=4) == Lease(granted=4, leased=8)
    # Not enough left: nothing is taken, and the answer tells what is (one call either way).
    assert storage.lease(key, start, 3600, limit=10, amount=3) == Lease(granted=0, leased=8)
    assert storage.lease(key, start, 3600, limit=10, amount=2) == Lease(granted=2, leased=10)
    assert storage.lease(key, start, 3600, limit=10, amount=1) == Lease(granted=0, leased=10)
    # The next window is another item with a budget of its own; both expire through the TTL attribute.
    assert storage.lease(key, start + 3600, 3600, limit=10, amount=1) == Lease(granted=1, leased=1)
    item = aws_client("dynamodb", storage.client.meta.endpoint_url).get_item(
        TableName=counter_table,
        Key={"pk": {"S": COUNTER_PREFIX + key}, "sk": {"S": f"{WINDOW_PREFIX}{start:012d}"}},
    )["Item"]
    assert item["expires_at"] == {"N": str(start + 3600)}
    assert storage.get(key) == 1
    with pytest.raises(ValueError, match="1 to 10"):
        storage.lease(key, start, 3600, limit=10, amount=11)
    missing = DynamoDBStorage(
        "dynamodb://stratus-no-such-table", wrap_exceptions=True, region_name="us-east-1"
    )
    with pytest.raises(StorageError):
        missing.lease(key, start, 3600, limit=10, amount=1)


def test_counters_refuse_the_app_table_and_a_uri_without_a_table(app_environment: dict[str, str]) -> None:
    """A flood of counted requests must never compete with the domain for the app table's throughput."""
    app_table = Settings().table_name
    for uri in (f"dynamodb://{app_table}", "dynamodb://"):
        with pytest.raises(ValueError, match="a table of their own"):
            limited_app(RateLimits(), uri)


def test_memory_storage_counts_every_hit_whatever_the_strategy(make_app: AppFactory) -> None:
    app, handler = make_app(RateLimits(anonymous="2/hour"), "memory://")
    ip = fresh_ip()
    assert [invoke(handler, "/_limited/read", source_ip=ip)["status"] for _ in range(3)] == [200, 200, 429]
    assert not isinstance(app.state.rate_limits.strategy, LeasedFixedWindowRateLimiter)


def test_limits_are_one_limit_each_in_limits_notation() -> None:
    assert RateLimits.from_settings(Settings()) == RateLimits()
    assert RateLimits(read="5 per 2 seconds").read == "5 per 2 seconds"
    for invalid in ("lots", "10/second;100/minute", "10/fortnight"):
        with pytest.raises(ValidationError):
            RateLimits(write=invalid)


def test_settings_fields_named_rate_limit_override_the_defaults() -> None:
    class SettingsWithLimits(Settings):
        rate_limit_write: str = "7/minute"
        rate_limit_fail_closed: bool = True
        rate_limit_strategy: Literal["leased-fixed-window", "fixed-window"] = "fixed-window"

    limits = RateLimits.from_settings(SettingsWithLimits())
    assert (limits.write, limits.fail_closed, limits.read) == ("7/minute", True, RateLimits().read)
    assert limits.strategy == "fixed-window"
    assert RateLimits().strategy == Settings().rate_limit_strategy == "leased-fixed-window"


def test_installing_again_replaces_the_limits_and_keeps_one_headers_middleware(make_app: AppFactory) -> None:
    app, _ = make_app(RateLimits(read="1/hour"))
    install_rate_limits(app, Settings(rate_limit_storage_uri="memory://"), RateLimits(read="9/hour"))
    assert app.state.rate_limits.limits.read == "9/hour"
    assert app.state.rate_limits.storage_uri == "memory://"
    installed = [cast(Any, entry.cls) for entry in app.user_middleware]
    assert installed.count(RateLimitHeadersMiddleware) == 1
