"""Shared fixtures: one AWS stand-in per test session, uniquely named resources per module, the app
pointed at them exactly as in production (standard AWS SDK variables), and real Cognito tokens."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from local.resources import (
    DEMO_PASSWORD,
    LocalResources,
    create_user,
    provision,
    sign_in,
    standin_environment,
)
from local.standin import StandIn

from observability import logger


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    running = StandIn.start(0)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in standin_environment(running.endpoint).items():
            patch.setenv(key, value)
        yield running
    running.stop()


@pytest.fixture(scope="module")
def aws_resources(standin: StandIn) -> LocalResources:
    return provision(standin.endpoint, name=f"stratus-test-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def app_environment(aws_resources: LocalResources) -> Iterator[dict[str, str]]:
    # Module apps count their rate limits in memory, so that the DynamoDB calls a test sees are its route's
    # own; the limiter's tests draw on the module's rate-limit table (`rate_limit_storage_uri`).
    environment = {**aws_resources.app_environment(), "STAGE": "test", "RATE_LIMIT_STORAGE_URI": "memory://"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        yield environment


@pytest.fixture(scope="module")
def rate_limit_storage_uri(aws_resources: LocalResources) -> str:
    """This module's rate-limit table (template.yaml's RateLimitTable), as RATE_LIMIT_STORAGE_URI names it."""
    return aws_resources.rate_limit_storage_uri


@pytest.fixture(scope="module")
def app(app_environment: dict[str, str]) -> FastAPI:
    from main import create_app
    from settings import Settings

    return create_app(Settings())


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def make_user(aws_resources: LocalResources):  # type: ignore[no-untyped-def]
    """Creates a Cognito user in this module's pool and returns its access token and sub."""

    def _make_user(groups: tuple[str, ...] = ("user",)) -> dict[str, str]:
        email = f"user-{uuid.uuid4().hex}@example.com"
        sub = create_user(aws_resources.endpoint, aws_resources.user_pool_id, email, DEMO_PASSWORD, groups)
        tokens = sign_in(aws_resources.endpoint, aws_resources.client_id, email, DEMO_PASSWORD)
        return {"email": email, "sub": sub, **tokens}

    return _make_user


@pytest.fixture
def app_log() -> Iterator[io.StringIO]:
    """The app's log output, formatted exactly as in Lambda (Powertools JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger._logger.removeHandler(handler)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` spreads the suite over workers (pytest-xdist, `--dist loadgroup`): each module runs whole
    on one worker, so that its fixtures (table, user pool, app, builds) are made once, and the modules that
    hold a slow test are handed out first, so that the longest work starts at once and the short modules
    fill in around it. Without xdist this only changes the order of the modules."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    # The group mark exists only with xdist loaded (`-p no:xdist` would otherwise fail --strict-markers).
    group_by_module = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if group_by_module and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(str(item.path.relative_to(config.rootpath))))
    items.sort(key=lambda item: item.path not in slow_modules)


def pytest_configure(config: pytest.Config) -> None:
    # The suite must never reach real AWS, whatever the developer's shell holds: dummy credentials, and
    # every SDK call goes to a closed local port unless a test points it at the stand-in.
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(standin_environment("http://127.0.0.1:9"))
