"""What the app's rate limiter costs, both designs in one run against a fresh stand-in: DynamoDB calls per
limited request and the time a limit adds to a request, for leased slices and for one write per request."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.events import LambdaContext, rest_event

from warm import microseconds_per_invocation, stdout_to_devnull

if TYPE_CHECKING:
    from ratelimit import Strategy

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

CONTAINERS = 4
# The default read budget; a steady caller spends most of it in a window, spread over the containers.
BUDGET = 300
STEADY_REQUESTS = 240
# A caller that runs into its limit every window.
EXHAUSTING_REQUESTS = 2 * BUDGET

_addresses = itertools.count(1)


def _fresh_ip() -> str:
    """A caller with a full budget: every workload starts from its own."""
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


@dataclass(frozen=True)
class Workload:
    """One design under one workload: what its containers admitted, the calls they made, the time taken."""

    requests: int
    admitted: int
    counter_calls: int
    added_us_per_request: float

    @property
    def calls_per_request(self) -> float:
        return self.counter_calls / self.requests


@dataclass(frozen=True)
class Design:
    steady: Workload
    exhausting: Workload


@dataclass(frozen=True)
class RateLimitMeasurement:
    leased: Design
    one_write: Design
    bare_update_item_us: float
    batches: int


class _Containers:
    """`CONTAINERS` apps, each with a limiter of its own over one table (as Lambda containers of one
    function), and the counter calls their storage clients make."""

    def __init__(self, strategy: Strategy, storage_uri: str) -> None:
        from tests.ratelimit_app import limited_app

        from main import create_handler
        from ratelimit import RateLimits

        self.calls = 0
        self.handlers: list[LambdaHandler] = []
        limits = RateLimits(anonymous=f"{BUDGET}/hour", strategy=strategy)
        for _ in range(CONTAINERS):
            app = limited_app(limits, storage_uri)
            handler = create_handler(app)
            with stdout_to_devnull():
                handler(rest_event("GET", "/_limited/read", source_ip=_fresh_ip()), LambdaContext())
            app.state.rate_limits.storage.client.meta.events.register("before-call.dynamodb", self._count)
            self.handlers.append(handler)

    def _count(self, **_: Any) -> None:
        self.calls += 1

    def run(self, path: str, requests: int) -> tuple[float, list[int]]:
        """`requests` GETs of `path` by one new caller, round-robin over the containers: seconds, statuses."""
        events = [rest_event("GET", path, stage="Prod", source_ip=_fresh_ip())] * requests
        context = LambdaContext()
        with stdout_to_devnull():
            started = time.perf_counter()
            statuses = [
                self.handlers[n % CONTAINERS](event, context)["statusCode"] for n, event in enumerate(events)
            ]
            elapsed = time.perf_counter() - started
        return elapsed, statuses


def _workload(containers: _Containers, requests: int, batches: int) -> Workload:
    """Median over `batches` of the time the limit adds per request (the limited route against the same
    route without a limit, alternating), with the calls and admissions of every batch."""
    added: list[float] = []
    calls_before = containers.calls
    admitted = 0
    for _ in range(batches):
        limited_seconds, statuses = containers.run("/_limited/read", requests)
        unlimited_seconds, _ = containers.run("/_limited/unlimited", requests)
        added.append((limited_seconds - unlimited_seconds) / requests * 1_000_000)
        admitted += statuses.count(200)
    return Workload(
        requests=requests * batches,
        admitted=admitted,
        counter_calls=containers.calls - calls_before,
        added_us_per_request=statistics.median(added),
    )


def _design(strategy: Strategy, storage_uri: str, batches: int) -> Design:
    containers = _Containers(strategy, storage_uri)
    return Design(
        steady=_workload(containers, STEADY_REQUESTS, batches),
        exhausting=_workload(containers, EXHAUSTING_REQUESTS, max(1, batches // 2)),
    )


def _bare_update_item_us(storage_uri: str, batches: int) -> float:
    """One UpdateItem of the counters' shape with the limiter's own client: what one write costs here."""
    from tests.ratelimit_app import limited_app

    from ratelimit import RateLimits

    app = limited_app(RateLimits(strategy="fixed-window"), storage_uri)
    storage = app.state.rate_limits.storage
    client = storage.client

    def bare_update_item(event: dict[str, Any], context: Any) -> dict[str, Any]:
        client.update_item(
            TableName=storage.table_name,
            Key={"pk": {"S": "RATELIMIT#bench"}, "sk": {"S": "WINDOW#000000000000"}},
            UpdateExpression="ADD #hits :amount SET #expires_at = :expires_at",
            ExpressionAttributeNames={"#hits": "hits", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":amount": {"N": "1"}, ":expires_at": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return {"statusCode": 200}

    measured = microseconds_per_invocation(
        {"update_item": bare_update_item}, {}, LambdaContext(), calls=100, batches=batches, warmup_calls=20
    )
    return measured["update_item"]


def measure_rate_limits(batches: int) -> RateLimitMeasurement:
    """Both designs against one fresh stand-in, in this process."""
    from local.resources import provision
    from local.standin import StandIn

    saved_environment = dict(os.environ)
    standin = StandIn.start(0)
    try:
        resources = provision(standin.endpoint, "stratus-bench-ratelimit")
        os.environ.update({**resources.app_environment(), "ACCESS_LOG": "false"})
        storage_uri = resources.rate_limit_storage_uri
        return RateLimitMeasurement(
            leased=_design("leased-fixed-window", storage_uri, batches),
            one_write=_design("fixed-window", storage_uri, batches),
            bare_update_item_us=_bare_update_item_us(storage_uri, batches),
            batches=batches,
        )
    finally:
        standin.stop()
        os.environ.clear()
        os.environ.update(saved_environment)
