"""Test-only limited routes on an app from create_app(), a Lambda-style invoke helper, and
`python -m tests.ratelimit_app SPEC_JSON`: one stand-in Lambda container that sends a burst of requests
through the Mangum handler, at a moment its parent chooses once every container is ready, and writes the
status codes it got to a file."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from auth import CurrentUser
from ratelimit import RateLimits, install_rate_limits, rate_limit
from settings import Settings
from tests.events import LambdaContext, rest_event


class Receipt(BaseModel):
    accepted: bool


def limited_routes() -> APIRouter:
    router = APIRouter(prefix="/_limited", tags=["_limited"])

    @router.get("/read", dependencies=[Depends(rate_limit("read"))])
    async def read_dict() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/write", dependencies=[Depends(rate_limit("write"))], status_code=201)
    async def write_model() -> Receipt:
        return Receipt(accepted=True)

    @router.get("/expensive", dependencies=[Depends(rate_limit("expensive"))])
    async def expensive_response() -> PlainTextResponse:
        return PlainTextResponse("done")

    # The limit is declared before CurrentUser, yet keys on the principal: it depends on the same auth.
    @router.get("/whoami", dependencies=[Depends(rate_limit("read"))])
    async def whoami(user: CurrentUser) -> dict[str, str]:
        return {"subject": user.subject}

    @router.get("/unlimited")
    async def unlimited() -> dict[str, str]:
        return {"status": "ok"}

    return router


def limited_app(limits: RateLimits, storage_uri: str) -> FastAPI:
    """The real app (settings from the environment) with `limits` over `storage_uri` and the test routes."""
    from main import create_app

    settings = Settings(rate_limit_storage_uri=storage_uri)
    app = create_app(settings)
    install_rate_limits(app, settings, limits)
    app.include_router(limited_routes())
    return app


LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def invoke(
    handler: LambdaHandler,
    path: str,
    *,
    method: str = "GET",
    source_ip: str = "203.0.113.10",
    headers: dict[str, list[str] | str] | None = None,
) -> dict[str, Any]:
    """One API Gateway REST invocation; headers come back lower-cased, the body decoded."""
    result: dict[str, Any] = handler(
        rest_event(method, path, source_ip=source_ip, headers=headers), LambdaContext()
    )
    merged = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = str(values[-1])
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return {"status": result["statusCode"], "headers": merged, "body": body}


def wait_for_file(path: Path, timeout_seconds: float) -> str:
    """The text of `path` once it exists (it is written whole, then renamed into place)."""
    deadline = time.monotonic() + timeout_seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_seconds} s")
        time.sleep(0.01)
    return path.read_text()


def write_file_at_once(path: Path, text: str) -> None:
    """Writes `path` so that a reader polling for it never sees it half written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def run_container(spec: dict[str, Any]) -> None:
    """Builds its own app (as a fresh Lambda container would), warms it up, reports that it is ready, waits
    for the start time the parent chooses once every container is ready, then sends `requests` GETs for
    one client address and records the status codes. The AWS SDK variables and the table come from the
    environment the parent gave this process."""
    import ratelimit
    from main import create_handler

    # Four processes on a loaded machine can keep the stand-in from answering within the limiter's 1 s: a
    # timeout would admit the request unlimited (fail open), which is not what the burst is about.
    ratelimit.STORAGE_READ_TIMEOUT_SECONDS = 30.0
    limit = spec["limit"]
    limits = RateLimits(read=limit, anonymous=limit, strategy=spec["strategy"])
    app = limited_app(limits, spec["storage_uri"])
    handler = create_handler(app)
    storage_failures: list[str] = []
    enforcer = app.state.rate_limits
    report_failure = enforcer._storage_failed

    def record_failure(error: Exception, route_class: Any) -> None:
        storage_failures.append(type(error).__name__)
        report_failure(error, route_class)

    enforcer._storage_failed = record_failure
    # The first limited request creates the storage client: keep that out of the burst.
    invoke(handler, "/_limited/read", source_ip=spec["warmup_ip"])
    write_file_at_once(Path(spec["ready_file"]), "ready")
    start_at = float(wait_for_file(Path(spec["start_file"]), timeout_seconds=300))
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    statuses = [
        invoke(handler, "/_limited/read", source_ip=spec["source_ip"])["status"]
        for _ in range(spec["requests"])
    ]
    with open(spec["result_file"], "w") as result:
        json.dump(
            {
                "statuses": statuses,
                "started": started,
                "finished": time.time(),
                "storage_failures": len(storage_failures),
            },
            result,
        )


if __name__ == "__main__":
    run_container(json.loads(sys.argv[1]))
