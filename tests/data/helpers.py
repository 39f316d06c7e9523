"""Helpers shared by the data tests: tokens, problems, creating projects, members and tasks, walking pages,
running requests at the same moment."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

User = dict[str, str]
PROBLEM = "application/problem+json"
# What these modules change in the shared environment. They write far more than 60 times a minute as
# one user: the limiter has its own tests. moto copies the whole table (stream included) on every
# transaction, so writes slow down as a module's table grows, and a loaded CI machine is slower still;
# past the app's 2.5 s read timeout botocore retries, and moto, which ignores the ClientRequestToken that
# makes the retry idempotent in DynamoDB, refuses the retried transaction: a spurious 409 or 500. So they
# wait longer instead.
DATA_TEST_ENVIRONMENT = {
    "RATE_LIMIT_READ": "100000/minute",
    "RATE_LIMIT_WRITE": "100000/minute",
    "DYNAMODB_READ_TIMEOUT_SECONDS": "20",
}


@contextmanager
def data_test_environment(shared: dict[str, str]) -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in DATA_TEST_ENVIRONMENT.items():
            patch.setenv(key, value)
        yield {**shared, **DATA_TEST_ENVIRONMENT}


def bearer(user: User, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}", **headers}


def unique(prefix: str) -> str:
    """A name no other test (or tenant) uses, so a leak of it into a response is unmistakable."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def instant(timestamp: str) -> datetime:
    """A timestamp of a response as a time. Compare these, never the strings: a time on a whole second is
    written without its fraction ("...:05Z"), and as a string that sorts after "...:05.2Z"."""
    return datetime.fromisoformat(timestamp)


def assert_problem(response: Any, status: int, problem: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if problem is not None:
        assert body["type"] == f"urn:stratus:problem:{problem}"
    return body


def new_project(client: TestClient, owner: User, name: str | None = None, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/projects", headers=bearer(owner), json={"name": name or unique("project"), **body}
    )
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    return project


def add_member(client: TestClient, owner: User, project_id: str, member: User, role: str) -> None:
    response = client.post(
        f"/projects/{project_id}/members",
        headers=bearer(owner),
        json={"subject": member["sub"], "role": role},
    )
    assert response.status_code == 201, response.text


def new_task(client: TestClient, user: User, project_id: str, **body: Any) -> dict[str, Any]:
    payload = {"title": unique("task"), **body}
    response = client.post(f"/projects/{project_id}/tasks", headers=bearer(user), json=payload)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def walk_pages(client: TestClient, user: User, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list route, following next_cursor until it is null."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, headers=bearer(user), params=query)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "pagination does not terminate"


def all_items(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["items"]]


def run_together(*requests: Callable[[], Any]) -> list[Any]:
    """Runs the callables at the same moment, one thread each, and returns their results in order."""
    barrier = threading.Barrier(len(requests))
    results: list[Any] = [None] * len(requests)
    errors: list[BaseException] = []

    def run(index: int, request: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = request()
        except BaseException as error:  # reported in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


@dataclass
class Team:
    """A fresh project with one member of every role."""

    project: dict[str, Any]
    owner: User
    editor: User
    viewer: User

    @property
    def id(self) -> str:
        return str(self.project["id"])

    @property
    def path(self) -> str:
        return f"/projects/{self.id}"


def make_team(client: TestClient, owner: User, editor: User, viewer: User) -> Team:
    project = new_project(client, owner, description=unique("secret-plans"))
    add_member(client, owner, project["id"], editor, "editor")
    add_member(client, owner, project["id"], viewer, "viewer")
    # As the owner sees it now (adding members moved its version).
    current: dict[str, Any] = client.get(f"/projects/{project['id']}", headers=bearer(owner)).json()
    return Team(current, owner, editor, viewer)
