"""The first authenticated request after a cold start opens no connection but DynamoDB's: the pool's signing
keys come with the deployment (COGNITO_JWKS), so a fresh process serving one authenticated read never
downloads them. Each service answers at its own address here, and the process records every connection it
opens."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from bench.cold_start import child_environment, run_once
from local.resources import LocalResources

from functions.signing_keys import lean_jwks
from tests.events import rest_event
from tests.runtime_environment import jwks_of_standin

ROOT = Path(__file__).resolve().parent.parent
# Nothing listens here: a call to any AWS service but DynamoDB would show as a connection to it.
CLOSED = "http://127.0.0.1:9"


class JwksServer:
    """Serves one JWKS document and counts the requests for it."""

    def __init__(self, document: Any) -> None:
        body = json.dumps(document).encode()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pool_jwks(aws_resources: LocalResources) -> Any:
    return jwks_of_standin(aws_resources.jwks_url)


@pytest.fixture
def jwks_server(pool_jwks: Any) -> Iterator[JwksServer]:
    server = JwksServer(pool_jwks)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def access_token(make_user: Any) -> str:
    token: str = make_user()["access"]
    return token


def _first_authenticated_read(
    aws_resources: LocalResources, jwks_server: JwksServer, token: str, tmp_path: Path, *, shipped: str
) -> dict[str, Any]:
    """A fresh API function's first invocation, GET /projects with the token, as deployed: DynamoDB at the
    stand-in, every other AWS service at a closed port, the JWKS at `jwks_server`."""
    environment = {
        **aws_resources.app_environment(),
        "AWS_ENDPOINT_URL": CLOSED,
        "AWS_ENDPOINT_URL_DYNAMODB": aws_resources.endpoint,
        "RATE_LIMIT_STORAGE_URI": aws_resources.rate_limit_storage_uri,
        "COGNITO_JWKS_URL": jwks_server.url,
        "COGNITO_JWKS": shipped,
        "ACCESS_LOG": "false",
    }
    event_file = tmp_path / "event.json"
    event_file.write_text(
        json.dumps(rest_event("GET", "/projects", headers={"Authorization": f"Bearer {token}"}))
    )
    return run_once(
        "main",
        event_file,
        child_environment(environment, [ROOT / "src"]),
        ROOT,
        expect=200,
        record_connections=True,
    )


def test_first_authenticated_read_connects_to_dynamodb_only(
    aws_resources: LocalResources, jwks_server: JwksServer, access_token: str, pool_jwks: Any, tmp_path: Path
) -> None:
    answer = _first_authenticated_read(
        aws_resources, jwks_server, access_token, tmp_path, shipped=lean_jwks(pool_jwks)
    )
    dynamodb = urlsplit(aws_resources.endpoint).netloc
    assert answer["connections"], "the read reached DynamoDB"
    assert set(answer["connections"]) == {dynamodb}
    assert jwks_server.requests == 0


def test_without_shipped_keys_the_first_request_downloads_them(
    aws_resources: LocalResources, jwks_server: JwksServer, access_token: str, tmp_path: Path
) -> None:
    # The counter itself: the same request, nothing shipped, shows the download it would otherwise hide.
    answer = _first_authenticated_read(aws_resources, jwks_server, access_token, tmp_path, shipped="")
    assert jwks_server.address in answer["connections"]
    assert jwks_server.requests == 1
    assert set(answer["connections"]) == {jwks_server.address, urlsplit(aws_resources.endpoint).netloc}
