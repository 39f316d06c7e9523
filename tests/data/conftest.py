"""Fixtures of the data tests: the environment they run the app in, and a team per test (an owner, an
editor and a viewer of a fresh project) plus an outsider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.data.helpers import Team, User, data_test_environment, make_team


@pytest.fixture(scope="module")
def app_environment(app_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    with data_test_environment(app_environment) as environment:
        yield environment


@pytest.fixture(scope="module")
def owner(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture(scope="module")
def editor(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture(scope="module")
def viewer(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture(scope="module")
def outsider(make_user: Any) -> User:
    user: User = make_user()
    return user


@pytest.fixture
def team(client: TestClient, owner: User, editor: User, viewer: User) -> Team:
    return make_team(client, owner, editor, viewer)
