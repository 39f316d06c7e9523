"""`make bench`: Stratus against baselines measured in the same run, side by side, as ratios with targets.

Each line of the table comes from one function in BENCHES returning a Row; add a line by adding one."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC, BENCH = ROOT / "src", ROOT / "bench"
for _path in (SRC, ROOT, BENCH):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.cloudformation import default_environment_value  # noqa: E402
from tests.events import LambdaContext, rest_event  # noqa: E402

from cold_start import child_environment, measure_cold_starts  # noqa: E402
from warm import microseconds_per_invocation, stdout_to_devnull  # noqa: E402

# What the app needs to start, as deployed but pointing nowhere real; /health does no I/O. ACCESS_LOG is
# what template.yaml gives the function when the stack keeps its parameters' defaults.
APP_ENVIRONMENT = {
    "ACCESS_LOG": default_environment_value("ApiFunction", "ACCESS_LOG"),
    "STAGE": "dev",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "TABLE_NAME": "stratus-bench",
    "LOG_LEVEL": "INFO",
}


@dataclass(frozen=True)
class Row:
    """One line of the table: Stratus's number, the baseline's, and the ratio's target (lower is better)."""

    measure: str
    unit: str
    stratus: float
    baseline_name: str
    baseline: float
    # None: measured for information, with no target to meet.
    target: float | None
    detail: str = ""
    # The target is met only by an equal ratio (e.g. exactly one call), not by a lower one.
    exact: bool = False
    # Why the measurement means nothing (e.g. the limiter made no call at all): reported as INVALID.
    invalid_because: str = ""

    @property
    def ratio(self) -> float:
        return self.stratus / self.baseline

    @property
    def verdict(self) -> str:
        if self.invalid_because:
            return "INVALID"
        if self.target is None:
            return "(info)"
        met = self.ratio == self.target if self.exact else self.ratio <= self.target
        return "PASS" if met else "MISS"


@dataclass(frozen=True)
class Options:
    cold_runs: int
    warm_calls: int
    warm_batches: int


def health_event() -> dict[str, Any]:
    """A real REST (payload v1) event, from the `sam local generate-event` fixture, under stage Prod."""
    return rest_event("GET", "/health", stage="Prod")


def cold_start_row(options: Options) -> Row:
    environment = child_environment(APP_ENVIRONMENT, [SRC, BENCH])
    results = measure_cold_starts(
        ["main", "reference_app"], health_event(), environment, runs=options.cold_runs, cwd=ROOT
    )
    stratus, reference = results["main"], results["reference_app"]
    return Row(
        measure="cold start: import + first GET /health",
        unit="ms",
        stratus=stratus.total_ms,
        baseline_name="FastAPI+Mangum+boto3 client",
        baseline=reference.total_ms,
        target=1.0,
        detail=(
            f"median of {options.cold_runs} fresh processes; import / first call: stratus "
            f"{stratus.import_ms:.0f} / {stratus.first_invocation_ms:.1f} ms, reference "
            f"{reference.import_ms:.0f} / {reference.first_invocation_ms:.1f} ms"
        ),
    )


def _warm_against_bare(
    options: Options, handler: Any, measure: str, detail: str, target: float | None = 1.5
) -> Row:
    """Microseconds per GET /health through `handler`, against the bare route, in the same run."""
    import bare_app

    measured = microseconds_per_invocation(
        {"stratus": handler, "bare": bare_app.handler},
        health_event(),
        LambdaContext(),
        calls=options.warm_calls,
        batches=options.warm_batches,
    )
    return Row(
        measure=measure,
        unit="µs",
        stratus=measured["stratus"],
        baseline_name="bare async FastAPI+Mangum",
        baseline=measured["bare"],
        target=target,
        detail=detail,
    )


def warm_row(options: Options) -> Row:
    os.environ.update(APP_ENVIRONMENT)
    import main

    return _warm_against_bare(
        options,
        main.handler,
        "warm: GET /health per invocation",
        f"median of {options.warm_batches} batches of {options.warm_calls} calls, in-process, as deployed "
        f"(ACCESS_LOG={APP_ENVIRONMENT['ACCESS_LOG']}: cold starts and 5xx get a log line, to /dev/null)",
    )


def warm_with_access_log_row(options: Options) -> Row:
    os.environ.update(APP_ENVIRONMENT)
    from main import create_app, create_handler
    from settings import Settings

    return _warm_against_bare(
        options,
        create_handler(create_app(Settings(access_log=True))),
        "warm: GET /health, ACCESS_LOG=true",
        "the same stack writing one Powertools JSON line per request (the local default; template "
        "parameter AccessLog=true)",
        target=None,
    )


@dataclass(frozen=True)
class RateLimitMeasurement:
    limited_us: float
    unlimited_us: float
    update_item_us: float
    calls_per_request: float
    requests: int


@cache
def measure_rate_limit(options: Options) -> RateLimitMeasurement:
    """The DynamoDB-backed limiter against a fresh stand-in: one route limited and unlimited, one bare
    UpdateItem of the same shape with the limiter's own client, and its calls per limited request."""
    from local.resources import provision
    from local.standin import StandIn
    from tests.ratelimit_app import limited_app

    from main import create_handler
    from ratelimit import RateLimits

    saved_environment = dict(os.environ)
    standin = StandIn.start(0)
    try:
        resources = provision(standin.endpoint, "stratus-bench-ratelimit")
        os.environ.update({**resources.app_environment(), "ACCESS_LOG": "false"})
        app = limited_app(RateLimits(anonymous="100000000/hour"))
        handler = create_handler(app)
        limited_event = rest_event("GET", "/_limited/read", stage="Prod")
        unlimited_event = rest_event("GET", "/_limited/unlimited", stage="Prod")
        with stdout_to_devnull():
            handler(limited_event, LambdaContext())  # creates the storage client
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

        # Every call crosses loopback to the stand-in (~3 ms): a tenth of the warm calls is plenty.
        calls = max(50, options.warm_calls // 10)
        measured = microseconds_per_invocation(
            {
                "limited": lambda _, context: handler(limited_event, context),
                "unlimited": lambda _, context: handler(unlimited_event, context),
                "update_item": bare_update_item,
            },
            limited_event,
            LambdaContext(),
            calls=calls,
            batches=options.warm_batches,
            warmup_calls=20,
        )
        made: list[str] = []
        client.meta.events.register("before-call.dynamodb", lambda model, **_: made.append(model.name))
        requests = 100
        with stdout_to_devnull():
            for _ in range(requests):
                handler(limited_event, LambdaContext())
        return RateLimitMeasurement(
            limited_us=measured["limited"],
            unlimited_us=measured["unlimited"],
            update_item_us=measured["update_item"],
            calls_per_request=len(made) / requests,
            requests=requests,
        )
    finally:
        standin.stop()
        os.environ.clear()
        os.environ.update(saved_environment)


def rate_limit_added_time_row(options: Options) -> Row:
    measured = measure_rate_limit(options)
    return Row(
        measure="rate limit (DynamoDB): added per request",
        unit="µs",
        stratus=measured.limited_us - measured.unlimited_us,
        baseline_name="one bare UpdateItem, same client",
        baseline=measured.update_item_us,
        target=1.25,
        detail=(
            f"against the moto stand-in over loopback; the route limited {measured.limited_us:.0f} µs, "
            f"unlimited {measured.unlimited_us:.0f} µs per invocation"
        ),
        # A limiter that skipped its storage (failing open) would add nothing and look fast.
        invalid_because=""
        if measured.calls_per_request == 1.0
        else f"{measured.calls_per_request} storage calls per request",
    )


def rate_limit_calls_row(options: Options) -> Row:
    measured = measure_rate_limit(options)
    return Row(
        measure="rate limit (DynamoDB): calls per request",
        unit="",
        stratus=measured.calls_per_request,
        baseline_name="exactly one UpdateItem",
        baseline=1.0,
        target=1.0,
        detail=f"botocore before-call events over {measured.requests} limited requests",
        exact=True,
    )


TRPC_BATCH_SIZE = 10


@cache
def measure_trpc(options: Options) -> dict[str, float]:
    """Microseconds per invocation of main.handler, as deployed: REST GET /health, the same query as a tRPC
    call (`health`), and one tRPC batch of TRPC_BATCH_SIZE of them."""
    os.environ.update(APP_ENVIRONMENT)
    import main

    rest = health_event()
    one = rest_event("GET", "/trpc/health", stage="Prod")
    batch = rest_event(
        "GET", "/trpc/" + ",".join(["health"] * TRPC_BATCH_SIZE), stage="Prod", query={"batch": ["1"]}
    )
    return microseconds_per_invocation(
        {
            "rest": lambda _, context: main.handler(rest, context),
            "trpc": lambda _, context: main.handler(one, context),
            "trpc_batch": lambda _, context: main.handler(batch, context),
        },
        rest,
        LambdaContext(),
        calls=options.warm_calls,
        batches=options.warm_batches,
    )


def trpc_query_row(options: Options) -> Row:
    measured = measure_trpc(options)
    return Row(
        measure="tRPC: one query per invocation",
        unit="µs",
        stratus=measured["trpc"],
        baseline_name="the same query as REST GET",
        baseline=measured["rest"],
        target=1.1,
        detail="GET /trpc/health against GET /health through main.handler, warm, in-process, as deployed",
    )


def trpc_batch_row(options: Options) -> Row:
    measured = measure_trpc(options)
    return Row(
        measure=f"tRPC: batch of {TRPC_BATCH_SIZE} queries, one invocation",
        unit="µs",
        stratus=measured["trpc_batch"],
        baseline_name=f"{TRPC_BATCH_SIZE} separate REST GETs",
        baseline=measured["rest"] * TRPC_BATCH_SIZE,
        target=0.5,
        detail=f"GET /trpc/health,…?batch=1 ({TRPC_BATCH_SIZE} calls) against {TRPC_BATCH_SIZE} invocations "
        "of GET /health",
    )


BENCHES: list[Callable[[Options], Row]] = [
    cold_start_row,
    warm_row,
    warm_with_access_log_row,
    rate_limit_added_time_row,
    rate_limit_calls_row,
    trpc_query_row,
    trpc_batch_row,
]


def print_table(rows: list[Row]) -> None:
    print(f"{'measure':<42} {'stratus':>11}   {'baseline':<30} {'':>11} {'ratio':>6} {'target':>7}")
    for row in rows:
        target = "—" if row.target is None else ("= " if row.exact else "≤ ") + format(row.target, ".2f")
        print(
            f"{row.measure:<42} {row.stratus:>8.1f} {row.unit:<2}   {row.baseline_name:<30} "
            f"{row.baseline:>8.1f} {row.unit:<2} {row.ratio:>6.2f} "
            f"{target:>7}  {row.verdict}"
        )
        if row.detail:
            print(f"    {row.detail}")
        if row.invalid_because:
            print(f"    INVALID: {row.invalid_because}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold-runs", type=int, default=9, help="fresh processes per app (default 9)")
    parser.add_argument("--warm-calls", type=int, default=1000, help="calls per warm batch (default 1000)")
    parser.add_argument("--warm-batches", type=int, default=7, help="warm batches per app (default 7)")
    arguments = parser.parse_args(argv)
    options = Options(arguments.cold_runs, arguments.warm_calls, arguments.warm_batches)

    print(
        f"Stratus bench: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; baselines measured in this run, lower is better"
    )
    started = time.perf_counter()
    rows = []
    for bench in BENCHES:
        rows.append(bench(options))
    print_table(rows)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
