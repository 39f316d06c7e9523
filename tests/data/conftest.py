"""Fixtures of the data tests: the environment they run the app in, a recorder of every AWS call that fails
any module whose code issued a DynamoDB Scan, and a team per test (an owner, an editor and a viewer of a
fresh project) plus an outsider."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.data.dynamodb_calls import CallRecorder, recording_aws_calls
from tests.data.helpers import Team, User, data_test_environment, make_team


@pytest.fixture(scope="module", autouse=True)
def aws_calls() -> Iterator[CallRecorder]:
    """Records every AWS call of the module; fails the module if any of them was a DynamoDB Scan."""
    with recording_aws_calls() as recorder:
        yield recorder
    scans = [call for call in recorder.dynamodb() if call.operation == "Scan"]
    if scans:
        pytest.fail(f"{len(scans)} DynamoDB Scan call(s) were made: {scans}")


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
