"""`make dev`: starts the AWS stand-in, creates and seeds everything, and serves the API with reload.

Ctrl-C stops all of it. Children also stop on their own if this process dies (the stand-in watches its
parent; uvicorn gets a parent-death signal on Linux), so a second `make dev` after a crash starts clean.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from local.resources import (
    DEMO_PASSWORD,
    DEMO_USERS,
    LocalResources,
    provision,
    seed_demo_data,
    seed_demo_users,
)
from local.standin import HOST, StandIn, port_is_free

ROOT = Path(__file__).resolve().parent.parent
# Overridable so tests never touch the state of a developer's running stack.
STATE_DIR = Path(os.environ.get("STRATUS_LOCAL_DIR", ROOT / ".local"))
STACK_FILE = STATE_DIR / "stack.json"
DEFAULT_AWS_PORT = 4566


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to uvicorn when this process exits, however it exits.
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _background_child() -> None:
    _die_with_parent()
    os.nice(10)


def _choose_aws_port() -> int:
    configured = os.environ.get("AWS_PORT", "")
    if configured:
        return int(configured)
    return DEFAULT_AWS_PORT if port_is_free(DEFAULT_AWS_PORT) else 0


def _banner(resources: LocalResources, api_port: int) -> str:
    base = f"http://{HOST}:{api_port}"
    users = "\n".join(
        f"    {key:<6} {user.email:<20} groups: {', '.join(user.groups)}" for key, user in DEMO_USERS.items()
    )
    return f"""
  Stratus is running.

  API docs     {base}/docs      (ReDoc: {base}/redoc)
  Health       {base}/health/ready
  AWS stand-in {resources.endpoint}  (DynamoDB, Cognito, Secrets Manager; in memory)
  Rate limits  counted in table {resources.rate_limit_table_name} (leased slices, as deployed)

  Demo users (password {DEMO_PASSWORD}):
{users}
  Demo data: project "Launch plan" (alice owns it, bob edits it) with four tasks.
  The table stream's consumer runs here too: activity feeds, purges of deleted projects.

  Access token:  make -s token            (alice)   |   make -s token as=bob
  Try it:        curl -H "Authorization: Bearer $(make -s token)" {base}/me
  In /docs:      Authorize -> paste the token.

  Ctrl-C stops everything.
"""


def _running_stack() -> str | None:
    """The stand-in endpoint of a stack this checkout already runs (its stack file names a stand-in that
    answers); None when there is none, or only the file of one that crashed."""
    try:
        endpoint = LocalResources.from_json(STACK_FILE.read_text()).endpoint
    except (OSError, ValueError, TypeError):
        return None
    address = urlsplit(endpoint)
    # A crashed stack's stand-in notices its parent is gone within a second: give it time to go.
    for _ in range(15):
        try:
            socket.create_connection((address.hostname, address.port or 80), 1).close()
        except OSError:
            return None
        time.sleep(0.2)
    return endpoint


def _local_origins(api_port: int) -> str:
    # The docs page (and a front end served alongside) calls the API from these origins.
    return f"http://{HOST}:{api_port},http://localhost:{api_port}"


def main() -> int:
    api_port = int(os.environ.get("PORT", "8000"))
    running = _running_stack()
    if running:
        # One stack per checkout: `make token` reads its stack file, which a second stack would replace.
        print(
            f"Stratus already runs from this checkout (stand-in {running}); stop it with Ctrl-C first",
            file=sys.stderr,
        )
        return 1
    if not port_is_free(api_port, wait_seconds=5):
        print(
            f"port {api_port} on {HOST} is in use; stop what holds it or run `make dev PORT=8001`",
            file=sys.stderr,
        )
        return 1
    aws_port = _choose_aws_port()
    if aws_port and not port_is_free(aws_port, wait_seconds=5):
        print(
            f"port {aws_port} on {HOST} is in use; stop what holds it or run `make dev AWS_PORT=4567`",
            file=sys.stderr,
        )
        return 1
    STATE_DIR.mkdir(exist_ok=True)
    STACK_FILE.unlink(missing_ok=True)

    standin = StandIn.start(aws_port, log_file=STATE_DIR / "standin.log")
    server: subprocess.Popen[bytes] | None = None
    poller: subprocess.Popen[bytes] | None = None
    try:
        resources = provision(standin.endpoint)
        seed_demo_data(seed_demo_users(resources))
        STACK_FILE.write_text(resources.to_json())
        print(_banner(resources, api_port), flush=True)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "main:app",
                "--app-dir",
                str(ROOT / "src"),
                "--host",
                HOST,
                "--port",
                str(api_port),
                "--reload",
                "--reload-dir",
                str(ROOT / "src"),
                # No proxy sits in front locally: never let a client choose its address via X-Forwarded-For.
                "--no-proxy-headers",
                # The app writes its own structured access log line per request.
                "--no-access-log",
            ],
            env={
                "CORS_ALLOW_ORIGINS": _local_origins(api_port),
                **os.environ,
                **resources.app_environment(),
            },
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl, safe before exec
        )
        # The table stream's consumer, as deployed: activity feed, purges, refreshes, unassignments. Its own
        # process, at a lower CPU priority: requests never wait for it.
        poller = subprocess.Popen(
            [sys.executable, "-m", "local.stream_poller", "--parent-pid", str(os.getpid())],
            cwd=ROOT,
            env={**os.environ, **resources.app_environment()},
            preexec_fn=_background_child,  # noqa: PLW1509 - only calls prctl and nice, safe before exec
        )
        signal.signal(signal.SIGTERM, lambda *_: server.terminate() if server else None)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for child in (server, poller):
            if child and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        standin.stop()
        STACK_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
