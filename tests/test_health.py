"""Liveness needs nothing; readiness reaches the table over HTTP and fails cleanly when it cannot."""

from __future__ import annotations

from fastapi.testclient import TestClient

from main import create_app
from settings import Settings


def test_liveness_answers_without_io(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_reaches_the_table(client: TestClient) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "table": "ok"}


def test_readiness_is_503_problem_when_the_table_is_missing(app_environment: dict[str, str]) -> None:
    app = create_app(Settings(table_name="no-such-table"))
    try:
        with TestClient(app) as client:
            response = client.get("/health/ready")
    finally:
        create_app(Settings())  # bind the models back to this module's table
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["status"] == 503
    assert "no-such-table" not in response.text
    assert "ResourceNotFound" not in response.text
