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
from tests.events import LambdaContext, authorizer_event, rest_event  # noqa: E402
from tests.runtime_environment import standin_signing_keys  # noqa: E402

import rate_limits  # noqa: E402
from cold_start import child_environment, measure_cold_starts  # noqa: E402
from rate_limits import RateLimitMeasurement  # noqa: E402
from warm import added_microseconds, microseconds_per_invocation, stdout_to_devnull  # noqa: E402

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
    # Lambda's runtime sets the invocation's X-Ray trace header before every invocation (the API function's
    # tracing is Active): the EMF line reads it, so the warm rows pay that read as the function does.
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
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
        return "PASS" if met else "FAIL"


@dataclass(frozen=True)
class Options:
    cold_runs: int
    warm_calls: int
    warm_batches: int


def health_event() -> dict[str, Any]:
    """A real REST (payload v1) event, from the `sam local generate-event` fixture, under stage Prod."""
    return rest_event("GET", "/health", stage="Prod")


# A token the pool's (shipped) keys verify, from an app client that is no partner: the partner authorizer
# checks its signature and claims, then refuses it, with no network call (its first invocation's work
# without the usage plan lookup, which the first admitted partner adds).
PARTNER_POOL_ID = "us-east-1_bench"
REFUSED_BY_THE_AUTHORIZER = "raised: Unauthorized"


@cache
def measure_function_cold_starts(options: Options) -> dict[str, Any]:
    """The API function (import + first GET /health), its reference and the partner authorizer (import +
    first token check), interleaved in one run."""
    from cold_start import measure_cold_starts as measure

    keys = standin_signing_keys()
    authorizer_environment = {
        **APP_ENVIRONMENT,
        "COGNITO_USER_POOL_ID": PARTNER_POOL_ID,
        "PARTNER_CLIENT_IDS": "partner-bench",
        "PARTNER_USAGE_PLAN_ID": "plan-bench",
        "COGNITO_JWKS": keys.shipped,
        # Nothing may be fetched: a JWKS download would fail here, and the bench with it.
        "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    }
    token = keys.token(
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{PARTNER_POOL_ID}", client_id="not-a-partner"
    )
    return measure(
        ["main", "reference_app", "partner_authorizer"],
        health_event(),
        child_environment(APP_ENVIRONMENT, [SRC, BENCH]),
        runs=options.cold_runs,
        cwd=ROOT,
        events={"partner_authorizer": authorizer_event(f"Bearer {token}")},
        environments={"partner_authorizer": child_environment(authorizer_environment, [SRC])},
        expect={"partner_authorizer": REFUSED_BY_THE_AUTHORIZER},
    )


def cold_start_row(options: Options) -> Row:
    results = measure_function_cold_starts(options)
    stratus, reference = results["main"], results["reference_app"]
    return Row(
        measure="cold start: import + first GET /health",
        unit="ms",
        stratus=stratus.total_ms,
        baseline_name="FastAPI+Mangum+boto3 client",
        baseline=reference.total_ms,
        target=0.8,
        detail=(
            f"median of {options.cold_runs} fresh processes; import / first call: stratus "
            f"{stratus.import_ms:.0f} / {stratus.first_invocation_ms:.1f} ms, reference "
            f"{reference.import_ms:.0f} / {reference.first_invocation_ms:.1f} ms; the API's routes are "
            "installed by the first request that needs them (src/lazy_routes.py)"
        ),
    )


def partner_authorizer_cold_start_row(options: Options) -> Row:
    results = measure_function_cold_starts(options)
    authorizer, api = results["partner_authorizer"], results["main"]
    return Row(
        measure="cold start: partner authorizer",
        unit="ms",
        stratus=authorizer.total_ms,
        baseline_name="the API function (row above)",
        baseline=api.total_ms,
        target=0.5,
        detail=(
            f"import + first token check (signature and claims verified with the shipped keys, no I/O): "
            f"import {authorizer.import_ms:.0f} / first call {authorizer.first_invocation_ms:.1f} ms; "
            "imports neither FastAPI nor pydantic"
        ),
    )


@cache
def measure_first_authenticated_read(options: Options) -> dict[str, Any]:
    """A fresh API function serving one authenticated DynamoDB read (GET /projects with a user's token)
    against a fresh stand-in, its signing keys shipped; against a FastAPI+Mangum+boto3 function doing one
    GetItem. Both record the connections they open."""
    from local.resources import DEMO_PASSWORD, create_user, provision, sign_in
    from local.standin import StandIn
    from tests.runtime_environment import jwks_of_standin

    from cold_start import measure_cold_starts as measure
    from functions.signing_keys import lean_jwks

    standin = StandIn.start(0)
    try:
        resources = provision(standin.endpoint, "stratus-bench-read")
        create_user(standin.endpoint, resources.user_pool_id, "reader@example.com", DEMO_PASSWORD, ("user",))
        token = sign_in(standin.endpoint, resources.client_id, "reader@example.com", DEMO_PASSWORD)["access"]
        environment = {
            **APP_ENVIRONMENT,
            **resources.app_environment(),
            "ACCESS_LOG": APP_ENVIRONMENT["ACCESS_LOG"],
            "RATE_LIMIT_STORAGE_URI": resources.rate_limit_storage_uri,
            "COGNITO_JWKS": lean_jwks(jwks_of_standin(resources.jwks_url)),
            # As deployed: the keys are shipped; a download would go to this closed port and fail.
            "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
        }
        events = {
            "main": rest_event("GET", "/projects", headers={"Authorization": f"Bearer {token}"}),
            "reference_read_app": rest_event("GET", "/item"),
        }
        return measure(
            ["main", "reference_read_app"],
            events["main"],
            child_environment(environment, [SRC, BENCH]),
            runs=max(3, options.cold_runs // 3),
            cwd=ROOT,
            events=events,
            record_connections=True,
        )
    finally:
        standin.stop()


def first_authenticated_read_row(options: Options) -> Row:
    results = measure_first_authenticated_read(options)
    stratus, reference = results["main"], results["reference_read_app"]
    return Row(
        measure="cold start: first authenticated read",
        unit="ms",
        stratus=stratus.total_ms,
        baseline_name="FastAPI+Mangum+boto3 GetItem",
        baseline=reference.total_ms,
        target=None,
        detail=(
            f"GET /projects with a user's token against the stand-in, median of {stratus.runs}: import "
            f"{stratus.import_ms:.0f} / first call {stratus.first_invocation_ms:.0f} ms (routes installed, "
            f"token verified with the shipped keys, rate limit and projects read in DynamoDB); connections: "
            f"{len(stratus.connections)}, all to DynamoDB ({', '.join(sorted(set(stratus.connections)))})"
        ),
        invalid_because=""
        if len(set(stratus.connections)) == 1
        else f"connections to more than DynamoDB: {stratus.connections}",
    )


def environment_size_row(options: Options) -> Row:
    from tests.runtime_environment import LAMBDA_ENVIRONMENT_LIMIT, deployed_environment, environment_size

    variables = deployed_environment("ApiFunction", parameters={"EnablePartnerTier": "true"})
    return Row(
        measure="API function environment, keys shipped",
        unit="B",
        stratus=float(environment_size(variables)),
        baseline_name="Lambda's environment limit",
        baseline=float(LAMBDA_ENVIRONMENT_LIMIT),
        target=1.0,
        detail=(
            f"as deployed (partner tier on, AWS-shaped ids), JSON bytes; COGNITO_JWKS (two 2048-bit RSA keys, "
            f"lean) is {len(variables['COGNITO_JWKS'])} of them"
        ),
    )


@cache
def build_artifacts() -> dict[str, tuple[int, int]]:
    """Zipped and unzipped bytes of one function's artifact and of the dependencies layer, built as
    `make build` builds them."""
    import subprocess
    import tempfile
    import zipfile

    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for name, flags in (("DependenciesLayer", ["--layer"]), ("ApiFunction", [])):
            tree = Path(directory) / name
            subprocess.run(
                [sys.executable, str(ROOT / "tools" / "build_lambda.py"), *flags, str(tree)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            files = [path for path in tree.rglob("*") if path.is_file()]
            archive = Path(directory) / f"{name}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
                for path in files:
                    zipped.write(path, path.relative_to(tree))
            pycs = sum(1 for path in files if path.suffix == ".pyc")
            sizes[name] = (archive.stat().st_size, sum(path.stat().st_size for path in files))
            sizes[f"{name}.pyc"] = (pycs, len(files))
    return sizes


def _artifact_row(name: str, description: str) -> Row:
    sizes = build_artifacts()
    zipped, unzipped = sizes[name]
    pycs, files = sizes[f"{name}.pyc"]
    return Row(
        measure=f"artifact zipped: {description}",
        unit="MB",
        stratus=zipped / 1e6,
        baseline_name="the 20 MB budget",
        baseline=20.0,
        target=1.0,
        detail=f"{unzipped / 1e6:.1f} MB unzipped, {files} files, {pycs} python3.13 .pyc",
        invalid_because="" if pycs else "no bytecode (no Python 3.13 found)",
    )


def layer_artifact_row(options: Options) -> Row:
    return _artifact_row("DependenciesLayer", "dependencies layer")


def function_artifact_row(options: Options) -> Row:
    return _artifact_row("ApiFunction", "each function")


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


# The budget for the per-request EMF line: 20 µs added to a warm GET /health.
REQUEST_METRICS_BUDGET_US = 20.0


def request_metrics_row(options: Options) -> Row:
    """Warm GET /health with the invocation's EMF line against the same stack without it, as deployed: one
    app whose RequestContextMiddleware writes the line or not (Settings.request_metrics, switched in place)."""
    os.environ.update(APP_ENVIRONMENT)
    from main import create_app, create_handler
    from observability import RequestContextMiddleware
    from settings import Settings

    app = create_app(Settings(access_log=APP_ENVIRONMENT["ACCESS_LOG"] == "true"))
    handler = create_handler(app)
    with stdout_to_devnull():
        # The first request builds the middleware stack.
        handler(health_event(), LambdaContext())
    layer: Any = app.middleware_stack
    while not isinstance(layer, RequestContextMiddleware):
        layer = layer.app
    request_context: RequestContextMiddleware = layer

    def write_the_line(on: bool) -> None:
        request_context.request_metrics = on

    added, with_line, without_line = added_microseconds(
        handler,
        write_the_line,
        health_event(),
        LambdaContext(),
        rounds=max(50, options.warm_calls // 5),
    )
    return Row(
        measure="request metrics (EMF line): added per request",
        unit="µs",
        stratus=added,
        baseline_name="the issue's budget",
        baseline=REQUEST_METRICS_BUDGET_US,
        target=1.0,
        detail=(
            f"warm GET /health {with_line:.1f} µs with the line, {without_line:.1f} µs without (one app, the "
            f"line switched on and off; CPU time, median of alternating rounds of 50 calls)"
        ),
    )


def tracing_cold_start_row(options: Options) -> Row:
    """Cold start with Tracing=otel's SDK set-up (bench/traced_app.py) against the app as it is by default."""
    environment = child_environment(APP_ENVIRONMENT, [SRC, BENCH])
    results = measure_cold_starts(
        ["main", "traced_app"], health_event(), environment, runs=options.cold_runs, cwd=ROOT
    )
    traced, plain = results["traced_app"], results["main"]
    return Row(
        measure="cold start: Tracing=otel (SDK part)",
        unit="ms",
        stratus=traced.total_ms,
        baseline_name="the same, Tracing=off",
        baseline=plain.total_ms,
        target=None,
        detail=(
            f"+{traced.total_ms - plain.total_ms:.0f} ms: OpenTelemetry SDK, X-Ray propagator, botocore "
            f"instrumentation, the request span; the ADOT layer's own start-up (opentelemetry-instrument, "
            f"its distro) comes on top and is measured only in Lambda"
        ),
    )


@cache
def measure_rate_limits(options: Options) -> RateLimitMeasurement:
    """Both limiter designs against one fresh stand-in (bench/rate_limits.py)."""
    # Every lease or write crosses loopback to the stand-in (~3 ms): a few batches are plenty.
    return rate_limits.measure_rate_limits(batches=max(3, options.warm_batches))


def _workloads_detail(design: rate_limits.Design) -> str:
    return (
        f"{design.steady.calls_per_request:.3f} calls and {design.steady.added_us_per_request:.0f} µs added per "
        f"request spending {rate_limits.STEADY_REQUESTS} of a {rate_limits.BUDGET} budget over "
        f"{rate_limits.CONTAINERS} containers; {design.exhausting.calls_per_request:.3f} calls and "
        f"{design.exhausting.added_us_per_request:.0f} µs sending {rate_limits.EXHAUSTING_REQUESTS} "
        f"({design.exhausting.admitted // max(1, design.exhausting.requests // rate_limits.EXHAUSTING_REQUESTS)} "
        "admitted)"
    )


def _admissions_wrong(design: rate_limits.Design) -> str:
    # A limiter that failed open (or counted wrong) would look cheap: it must admit every steady request,
    # and of each exhausting caller at most the budget and no less than 90 % of it.
    steady, exhausting = design.steady, design.exhausting
    budgets = exhausting.requests // rate_limits.EXHAUSTING_REQUESTS * rate_limits.BUDGET
    if steady.admitted != steady.requests:
        return f"admitted {steady.admitted} of {steady.requests} steady requests"
    if not 0.9 * budgets <= exhausting.admitted <= budgets:
        return f"admitted {exhausting.admitted} of {budgets} when exhausting the budgets"
    return ""


def rate_limit_one_write_row(options: Options) -> Row:
    measured = measure_rate_limits(options)
    one_write = measured.one_write
    return Row(
        measure="rate limit, one write/request: added",
        unit="µs",
        stratus=one_write.steady.added_us_per_request,
        baseline_name="one bare UpdateItem, same client",
        baseline=measured.bare_update_item_us,
        target=1.25,
        detail=f"RATE_LIMIT_STRATEGY=fixed-window: {_workloads_detail(one_write)}",
        invalid_because=_admissions_wrong(one_write)
        or (
            ""
            if one_write.steady.calls_per_request == 1.0
            else f"{one_write.steady.calls_per_request} storage calls per request, not 1"
        ),
    )


def rate_limit_leased_time_row(options: Options) -> Row:
    measured = measure_rate_limits(options)
    return Row(
        measure="rate limit, leased: added per request",
        unit="µs",
        stratus=measured.leased.steady.added_us_per_request,
        baseline_name="one write per request (today)",
        baseline=measured.one_write.steady.added_us_per_request,
        target=0.5,
        detail=f"RATE_LIMIT_STRATEGY=leased-fixed-window (default): {_workloads_detail(measured.leased)}",
        invalid_because=_admissions_wrong(measured.leased),
    )


def rate_limit_leased_calls_row(options: Options) -> Row:
    measured = measure_rate_limits(options)
    leased, one_write = measured.leased.steady, measured.one_write.steady
    return Row(
        measure="rate limit, leased: DynamoDB calls/request",
        unit="",
        stratus=leased.calls_per_request,
        baseline_name="one write per request (today)",
        baseline=one_write.calls_per_request,
        # The baseline is one call a request (else the row above is INVALID): the ratio is calls per request.
        target=0.25,
        detail=(
            f"{leased.counter_calls} calls for {leased.requests} requests ({measured.batches} fresh callers, "
            f"each starting from empty slices); today's design {one_write.counter_calls}"
        ),
        invalid_because=_admissions_wrong(measured.leased)
        or ("" if leased.counter_calls > 0 else "the limiter made no call at all"),
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
    partner_authorizer_cold_start_row,
    first_authenticated_read_row,
    environment_size_row,
    function_artifact_row,
    layer_artifact_row,
    warm_row,
    warm_with_access_log_row,
    request_metrics_row,
    tracing_cold_start_row,
    rate_limit_one_write_row,
    rate_limit_leased_time_row,
    rate_limit_leased_calls_row,
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
    parser.add_argument("--only", default="", help="run only the benches whose function name contains this")
    arguments = parser.parse_args(argv)
    options = Options(arguments.cold_runs, arguments.warm_calls, arguments.warm_batches)

    print(
        f"Stratus bench: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; baselines measured in this run, lower is better"
    )
    started = time.perf_counter()
    rows = []
    for bench in BENCHES:
        if arguments.only in bench.__name__:
            rows.append(bench(options))
    print_table(rows)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
