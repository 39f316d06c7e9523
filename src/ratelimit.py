"""Rate limits per route class that hold across Lambda containers: slowapi's Limiter over the DynamoDB
counters of ratelimit_storage, spent from leased slices (ratelimit_leasing), keyed by the authenticated
principal's owner or else the address API Gateway saw.

Route authors write one line: `dependencies=[Depends(rate_limit("write"))]`. A limited response carries
`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds at which the window
ends); a refused one is a 429 problem with `Retry-After`. Anonymous callers share one budget per address
(`anonymous`) across every limited route; authenticated callers get one budget per route class, shared by
everything that acts for the same user (their tokens and every personal API key they minted).

With the leasing strategy (the default over DynamoDB) a container spends slices of the window's budget
locally and asks the table only when a slice runs out; `X-RateLimit-Remaining` is then this container's
view, exact when one container serves the caller and otherwise off by at most the slices other containers
took since (see ratelimit_leasing). A refusal always says 0.

When the counter storage fails the request is admitted (logged, counted in the `RateLimitStorageErrors`
metric), or refused with 503 when `fail_closed` is set; it is never a 500 and never waits past the
storage client's short timeouts. After a timeout or an unreachable endpoint the container stops asking the
storage for a few seconds, so an outage does not add seconds to every request. A counter DynamoDB
throttles (one caller above a partition's write rate) is a hot counter instead: reads are admitted,
writes and the expensive class refused with a 429 problem for a moment, each counted in
`RateLimitCounterThrottled`.

Routes without a budget are the free public ones (liveness, the index, the docs and the OpenAPI
document): they make no DynamoDB call, and the same middleware that writes the rate-limit headers gives
them a Cache-Control header instead.

slowapi supplies the Limiter (key function, storage, strategy); its `@limiter.limit` decorator and
SlowAPIMiddleware are not used: the decorator runs before FastAPI's dependencies, so it cannot key on the
authenticated principal without verifying the token a second time; it needs `request` (and, for its
headers, `response`) in every route's signature, and its header injection fails on routes that return
models or dicts; the middleware's default limits would count the docs pages and liveness too. One
dependency per route class keeps all of that in this module.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import OptionalUser, Principal
from errors import ServiceUnavailable, TooManyRequests
from observability import count_refusal, logger, metrics
from settings import Settings

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import RateLimiter
    from limits.util import WindowStats
    from slowapi import Limiter

RouteClass = Literal["read", "write", "expensive"]
ANONYMOUS = "anonymous"
LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"
RESET_HEADER = "X-RateLimit-Reset"

# The counter client waits less than the data path (PynamoDB reads for 2.5 s): a counter is not worth a
# slow request. Two attempts: one retry for a transient error, no more.
STORAGE_CONNECT_TIMEOUT_SECONDS = 1.0
STORAGE_READ_TIMEOUT_SECONDS = 1.0
STORAGE_MAX_ATTEMPTS = 2
# After a timeout or an unreachable endpoint, this container skips the storage for this long.
STORAGE_COOL_OFF_SECONDS = 5.0
# DynamoDB's answers when one partition (one caller's counter) takes more writes than it can: a hot counter.
THROTTLING_ERRORS = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException"})
# After a throttled counter, this container leaves that key alone for this long (asking again would only
# keep the partition hot) and tells refused callers to come back after it.
HOT_COUNTER_COOL_OFF_SECONDS = 2.0
# A hot counter refuses what changes data or costs much, and admits reads (the domain table is not the
# one throttled, so reads still cost it no more than usual).
HOT_COUNTER_REFUSES: frozenset[str] = frozenset({"write", "expensive"})

Strategy = Literal["leased-fixed-window", "fixed-window"]

# What the free public routes (no budget, no DynamoDB call) tell caches, by path below the root path. The
# OpenAPI document, the index and the docs pages change only with a deployment; their assets are the
# installed packages' files. Liveness must reach the function every time.
PUBLIC_CACHE_CONTROL = {
    "/health": "no-store",
    "/": "public, max-age=300",
    "/openapi.json": "public, max-age=300",
    "/docs": "public, max-age=300",
    "/redoc": "public, max-age=300",
}
PUBLIC_ASSETS_PREFIX = "/docs/"
PUBLIC_ASSETS_CACHE_CONTROL = "public, max-age=86400"
_CACHE_CONTROL_RAW = b"cache-control"

# One limit per class, in limits' notation ("60/minute", "5 per 2 seconds"): several limits per class
# would cost one DynamoDB call each.
_ONE_LIMIT = re.compile(
    r"^\s*[0-9]+\s*(/|\s*per\s*)\s*([0-9]+)?\s*(second|minute|hour|day|month|year)s?\s*$", re.IGNORECASE
)


class RateLimits(BaseModel):
    """The limit of each route class and what happens when the counters cannot be reached."""

    model_config = ConfigDict(frozen=True)

    read: str = "300/minute"
    write: str = "60/minute"
    expensive: str = "20/minute"
    # Callers without credentials, one budget per address across every limited route.
    anonymous: str = "30/minute"
    # True: refuse (503) while the counters are unreachable. False: admit, log and count the failure.
    fail_closed: bool = False
    # leased-fixed-window: containers spend leased slices of each window (DynamoDB storage only; other
    # storages count every hit). fixed-window: one counter write per request, exact remaining counts.
    strategy: Strategy = "leased-fixed-window"

    @field_validator("read", "write", "expensive", "anonymous")
    @classmethod
    def _one_limit(cls, value: str) -> str:
        if not _ONE_LIMIT.match(value):
            raise ValueError(f"{value!r} is not one rate limit such as '60/minute' or '5 per 2 seconds'")
        return value.strip()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """These defaults, overridden by every Settings field named `rate_limit_<field>`."""
        overrides = {
            name: getattr(settings, f"rate_limit_{name}")
            for name in cls.model_fields
            if hasattr(settings, f"rate_limit_{name}")
        }
        return cls(**overrides)


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """What the response headers report about the budget this request drew on."""

    limit: int
    remaining: int
    reset_at: int


def rate_limit_key(request: Request) -> str:
    """Whose budget a request draws on: the principal the auth dependency put in the request state, else
    the client address. A personal API key draws on its owner's budget (its principal's subject is the
    owner's), so minting keys never multiplies a budget. Mangum takes the address from
    `requestContext.identity.sourceIp` (HTTP API: `requestContext.http.sourceIp`), which API Gateway
    writes; `X-Forwarded-For` is written by clients and is never read here (nor is slowapi's `get_ipaddr`)."""
    principal = request.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal):
        return f"user:{principal.subject}"
    client = request.client
    return f"ip:{client.host}" if client is not None and client.host else "ip:unknown"


def _storage_uri_for(settings: Settings) -> str:
    uri = settings.rate_limit_storage_uri
    parsed = urlparse(uri)
    # Counters have a table of their own: in the app's table a flood of counted requests would compete
    # with the domain's reads and writes for its partitions and throughput.
    if parsed.scheme == "dynamodb" and parsed.netloc in ("", settings.table_name):
        raise ValueError(
            f"RATE_LIMIT_STORAGE_URI={uri!r}: rate-limit counters need a table of their own, "
            "dynamodb://<rate-limit table>, not the app's table"
        )
    return uri


class RateLimitEnforcer:
    """Draws on the caller's budget for a route class through slowapi's Limiter: with leasing, a storage
    call only when this container's slice runs out; without it, one storage hit per request.

    The Limiter (and with it limits and the DynamoDB storage) is built on the first limited request, so
    cold starts and unlimited routes never import them.
    """

    def __init__(self, storage_uri: str, limits: RateLimits, *, region_name: str = "") -> None:
        self.storage_uri = storage_uri
        self.limits = limits
        self.region_name = region_name
        self._limiter: Limiter | None = None
        self._strategy: RateLimiter | None = None
        self._items: dict[str, RateLimitItem] = {}
        self._build_lock = threading.Lock()
        self._skip_storage_until = 0.0
        # Keys whose counter DynamoDB throttled, and until when (monotonic) this container leaves them be.
        self._hot_until: dict[str, float] = {}

    @property
    def limiter(self) -> Limiter:
        """slowapi's Limiter: the key function and the storage (with limits' fixed-window strategy)."""
        if self._limiter is None:
            with self._build_lock:
                if self._limiter is None:
                    self._limiter, self._strategy, self._items = self._build()
        return self._limiter

    @property
    def strategy(self) -> RateLimiter:
        """The limits strategy that decides each hit: leased slices, or the Limiter's own fixed window."""
        self.limiter  # noqa: B018 - builds the Limiter and the strategy on first use
        assert self._strategy is not None
        return self._strategy

    def _build(self) -> tuple[Limiter, RateLimiter, dict[str, RateLimitItem]]:
        from limits import parse
        from slowapi import Limiter

        import ratelimit_storage  # registers the dynamodb:// scheme with limits
        from ratelimit_leasing import LeasedFixedWindowRateLimiter, supports_leases

        options: dict[str, Any] = {"wrap_exceptions": True}
        if urlparse(self.storage_uri).scheme in ratelimit_storage.DynamoDBStorage.STORAGE_SCHEME:
            options |= {
                "region_name": self.region_name,
                "connect_timeout": STORAGE_CONNECT_TIMEOUT_SECONDS,
                "read_timeout": STORAGE_READ_TIMEOUT_SECONDS,
                "max_attempts": STORAGE_MAX_ATTEMPTS,
            }
        limiter = Limiter(
            key_func=rate_limit_key,
            storage_uri=self.storage_uri,
            storage_options=options,
            strategy="fixed-window",
            headers_enabled=True,
        )
        strategy: RateLimiter = limiter.limiter
        storage = strategy.storage
        # slowapi picks strategies by name from limits' own table, which has no leasing: ours wraps the
        # storage the Limiter built. memory:// cannot lease (nor needs to: it is this process's alone).
        if self.limits.strategy == "leased-fixed-window" and supports_leases(storage):
            strategy = LeasedFixedWindowRateLimiter(storage)
        items = {
            name: parse(getattr(self.limits, name)) for name in ("read", "write", "expensive", ANONYMOUS)
        }
        return limiter, strategy, items

    @property
    def storage(self) -> Any:
        """The counter storage (a `limits` Storage) behind the Limiter's strategy."""
        return self.limiter.limiter.storage

    def enforce(self, request: Request, principal: Principal | None, route_class: RouteClass) -> None:
        """Counts this request against its budget; raises TooManyRequests when the budget is spent."""
        from limits.errors import StorageError

        from tracing import span

        strategy = self.strategy
        budget = route_class if principal is not None else ANONYMOUS
        item = self._items[budget]
        identifiers = (rate_limit_key(request), budget)
        if time.monotonic() < self._skip_storage_until:
            self._unenforced()
            return
        key = item.key_for(*identifiers)
        if self._hot_until and self._still_hot(key):
            self._hot_counter(route_class, budget, throttled_now=False)
            return
        try:
            with span("rate_limit.check", route_class=route_class):
                admitted = strategy.hit(item, *identifiers)
                stats = self._window_after_hit(strategy, item, identifiers)
        except StorageError as error:
            if _is_throttling(error.storage_error):
                self._hot_until[key] = time.monotonic() + HOT_COUNTER_COOL_OFF_SECONDS
                self._hot_counter(route_class, budget, throttled_now=True)
                return
            self._storage_failed(error.storage_error, route_class)
            self._unenforced()
            return
        # A refusal says 0 whatever a container's view of the window (leased slices can lose a race for
        # tokens its view still counts).
        request.state.rate_limit = RateLimitStatus(
            limit=item.amount,
            remaining=stats.remaining if admitted else 0,
            reset_at=math.ceil(stats.reset_time),
        )
        if not admitted:
            count_refusal(route_class if principal is not None else ANONYMOUS)
            raise TooManyRequests(
                f"Rate limit of {item} exceeded for {budget} requests.",
                retry_after_seconds=math.ceil(stats.reset_time - time.time()),
            )

    @staticmethod
    def _window_after_hit(
        strategy: RateLimiter, item: RateLimitItem, identifiers: tuple[str, str]
    ) -> WindowStats:
        from limits.strategies import FixedWindowRateLimiter
        from limits.util import WindowStats

        from ratelimit_storage import counted_by_this_request

        if isinstance(strategy, FixedWindowRateLimiter):
            counted = counted_by_this_request(item.key_for(*identifiers))
            if counted is not None:
                return WindowStats(float(counted.expires_at), max(0, item.amount - counted.hits))
        # Leased slices answer from this container's own view, and memory:// from memory: no call either way.
        stats: WindowStats = strategy.get_window_stats(item, *identifiers)
        return stats

    def _still_hot(self, key: str) -> bool:
        now = time.monotonic()
        for cooled in [hot for hot, until in self._hot_until.items() if until <= now]:
            del self._hot_until[cooled]
        return key in self._hot_until

    def _hot_counter(self, route_class: RouteClass, budget: str, *, throttled_now: bool) -> None:
        refused = route_class in HOT_COUNTER_REFUSES
        # One line per throttled call, not per request of the cool-off that follows: a flood must not
        # become a flood of log lines. The key (an address or a subject) stays out, as for storage failures.
        if throttled_now:
            logger.warning(
                "rate limit counter throttled",
                route_class=route_class,
                budget=budget,
                decision="refused" if refused else "admitted",
            )
        metrics.add_metric(name="RateLimitCounterThrottled", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        if refused:
            # 429, not 503: the counter is hot because this caller sends faster than one DynamoDB partition
            # takes writes, and a 5xx would count one client's flood against the API's own error alarms.
            raise TooManyRequests(
                f"Too many {budget} requests for this caller's rate-limit counter; retry shortly.",
                retry_after_seconds=math.ceil(HOT_COUNTER_COOL_OFF_SECONDS),
            )

    def _storage_failed(self, error: Exception, route_class: RouteClass) -> None:
        from botocore.exceptions import BotoCoreError

        # Timeouts and unreachable endpoints are what make requests slow; DynamoDB's own refusals
        # (a missing table, access denied) come back at once and are retried with the next request.
        if isinstance(error, BotoCoreError):
            self._skip_storage_until = time.monotonic() + STORAGE_COOL_OFF_SECONDS
        # The key (an address or a subject) stays out of the log; the error names the table at most.
        logger.exception(
            "rate limit storage failed",
            route_class=route_class,
            fail_closed=self.limits.fail_closed,
            error_type=type(error).__name__,
        )
        metrics.add_metric(name="RateLimitStorageErrors", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()

    def _unenforced(self) -> None:
        # Fail open (admit) unless configured to fail closed.
        if self.limits.fail_closed:
            raise ServiceUnavailable(
                "Rate limiting is unavailable; try again shortly.",
                retry_after_seconds=math.ceil(STORAGE_COOL_OFF_SECONDS),
            )


def _is_throttling(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in THROTTLING_ERRORS


@cache
def rate_limit(route_class: RouteClass) -> Callable[..., Awaitable[None]]:
    """The route dependency: `dependencies=[Depends(rate_limit("write"))]`.

    It depends on the same (cached) authentication as `CurrentUser`, so the caller is known before its
    budget is chosen, whatever order the route's dependencies are declared in; credentials that fail to
    authenticate are a 401 before any counting. One dependency per class and per app, so declaring the
    same class on a router and on a route counts once.
    """

    # async def: one request per Lambda container, so the one blocking UpdateItem blocks nothing else.
    async def limit_route(request: Request, principal: OptionalUser) -> None:
        enforcer: RateLimitEnforcer | None = getattr(request.app.state, "rate_limits", None)
        if enforcer is None:
            raise RuntimeError("rate_limit() is used but install_rate_limits(app, settings) was never called")
        enforcer.enforce(request, principal, route_class)

    limit_route.__name__ = f"rate_limit_{route_class}"
    return limit_route


def is_rate_limit(dependency: object) -> bool:
    """Whether `dependency` is one of the rate_limit() dependencies (for the OpenAPI document and tests)."""
    return any(dependency is rate_limit(route_class) for route_class in ("read", "write", "expensive"))


class RateLimitHeadersMiddleware:
    """Says how each response is limited. A limited request gets the X-RateLimit-* headers, whatever the
    route returned (a model, a dict, a Response) and on its 429 problem too; it reads what `enforce` left
    in the request state, so routes need no `response` parameter (slowapi's decorator would). A free public
    route's successful GET gets its Cache-Control instead (unless the route chose one itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Read now: a mount (the docs assets) moves the root path further in.
        cache_control = (
            public_cache_control(_path_below_root(scope)) if scope["method"] in ("GET", "HEAD") else None
        )

        async def send_with_rate_limit(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Read when the response starts: the state dict may be created further in.
                status: RateLimitStatus | None = scope.get("state", {}).get("rate_limit")
                if status is not None:
                    headers = MutableHeaders(scope=message)
                    headers[LIMIT_HEADER] = str(status.limit)
                    headers[REMAINING_HEADER] = str(status.remaining)
                    headers[RESET_HEADER] = str(status.reset_at)
                elif cache_control is not None and message["status"] in (200, 304):
                    # Raw, as the request id is: liveness is answered on every health check, and a
                    # MutableHeaders here costs it a tenth more time (make bench).
                    raw = list(message.get("headers", ()))
                    if not any(name.lower() == _CACHE_CONTROL_RAW for name, _ in raw):
                        message["headers"] = [*raw, (_CACHE_CONTROL_RAW, cache_control.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_rate_limit)


def public_cache_control(path: str) -> str | None:
    """The Cache-Control of a free public route (`path` below the root path), None for any other path."""
    if path in PUBLIC_CACHE_CONTROL:
        return PUBLIC_CACHE_CONTROL[path]
    if path.startswith(PUBLIC_ASSETS_PREFIX):
        return PUBLIC_ASSETS_CACHE_CONTROL
    return None


def _path_below_root(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path


def install_rate_limits(app: FastAPI, settings: Settings, limits: RateLimits | None = None) -> None:
    """Gives `app` its rate limits (from `settings` unless `limits` is given) and the headers middleware.

    Calling it again replaces the limits and keeps the one middleware (tests install their own limits).
    """
    first_install = getattr(app.state, "rate_limits", None) is None
    app.state.rate_limits = RateLimitEnforcer(
        _storage_uri_for(settings),
        limits or RateLimits.from_settings(settings),
        region_name=settings.aws_region,
    )
    if first_install:
        app.add_middleware(RateLimitHeadersMiddleware)
