"""Every moment the API writes is UTC with six fraction digits, so clients may compare them as strings;
the sort keys built from moments have a fixed width for the same reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel

from models.project import Project, membership_item, project_key
from routers.common import Timestamp

FIXED_WIDTH = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class _Moment(BaseModel):
    at: Timestamp


def test_a_whole_second_keeps_its_fraction_and_every_zone_becomes_utc() -> None:
    whole = datetime(2026, 1, 31, 9, 30, 19, tzinfo=UTC)
    assert _Moment(at=whole).model_dump(mode="json") == {"at": "2026-01-31T09:30:19.000000Z"}
    later = whole + timedelta(milliseconds=34)
    assert _Moment(at=whole).model_dump_json() < _Moment(at=later).model_dump_json()
    eastern = whole.astimezone(timezone(timedelta(hours=-5)))
    assert _Moment(at=eastern).model_dump(mode="json")["at"] == "2026-01-31T09:30:19.000000Z"
    # A naive moment is UTC (botocore and Cognito give aware ones; nothing local is ever meant).
    assert (
        _Moment(at=whole.replace(tzinfo=None)).model_dump(mode="json")["at"] == "2026-01-31T09:30:19.000000Z"
    )
    # Python keeps the datetime; only JSON is formatted.
    assert _Moment(at=whole).model_dump()["at"] == whole


def test_the_document_still_declares_date_times(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["ProjectView"]["properties"]["created_at"]["format"] == "date-time"


def test_responses_write_fixed_width_moments(client: TestClient, make_user: Any) -> None:
    user = make_user(("user",))
    headers = {"Authorization": f"Bearer {user['access']}"}
    project = client.post("/projects", headers=headers, json={"name": "moments"}).json()
    key = client.post("/api-keys", headers=headers, json={"name": "k", "scopes": ["stratus/read"]}).json()
    me = client.get("/me", headers=headers).json()
    moments = [project["created_at"], project["updated_at"], key["created_at"], me["created_at"]]
    assert all(FIXED_WIDTH.fullmatch(moment) for moment in moments), moments


def test_sort_keys_of_moments_have_a_fixed_width() -> None:
    whole = datetime(2026, 1, 31, 9, 30, 19, tzinfo=UTC)
    assert whole.isoformat() == "2026-01-31T09:30:19+00:00"  # what a plain isoformat writes
    project = Project(project_key("p1"), "PROJECT", project_id="p1", name="sorted", archived=False)
    membership = membership_item(project, "someone", "owner", whole)
    assert membership.gsi1sk == "2026-01-31T09:30:19.000000+00:00#p1"
    later = membership_item(project, "someone", "owner", whole + timedelta(milliseconds=34))
    assert membership.gsi1sk < later.gsi1sk
