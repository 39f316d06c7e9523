"""The admin audit trail is append-only: over HTTP against the stand-in, an admin action only ever adds items
to the AUDIT partition (conditional puts), never updates or deletes one (what the app's role is denied in
template.yaml); its record stays as written and its outcome is an item of its own; records from before
(settled in place) still read right; records expire after AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

from models.audit import AUDIT_PARTITION
from tests.aws_calls import AwsCall, intercepting_aws_calls

RETENTION_DAYS = 30
# What the app's role may not do in the AUDIT partition (template.yaml, AuditTrailIsAppendOnly).
DENIED = {"UpdateItem", "DeleteItem", "BatchWriteItem", "ExecuteStatement", "BatchExecuteStatement"}


@pytest.fixture(scope="module")
def app_environment(aws_resources: LocalResources) -> Iterator[dict[str, str]]:
    environment = {
        **aws_resources.app_environment(),
        "STAGE": "test",
        "AUDIT_RETENTION_DAYS": str(RETENTION_DAYS),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        yield environment


def bearer(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}"}


def _partitions(call: AwsCall) -> set[str]:
    """The partition keys a DynamoDB call touches."""
    params = call.params
    keys = [params.get("Key"), params.get("Item")]
    for requests in params.get("RequestItems", {}).values():
        for request in requests if isinstance(requests, list) else [requests]:
            for kind in ("PutRequest", "DeleteRequest"):
                entry = request.get(kind, {}) if isinstance(request, dict) else {}
                keys.append(entry.get("Item") or entry.get("Key"))
    for item in params.get("TransactItems", []):
        for action in item.values():
            keys.append(action.get("Key") or action.get("Item"))
    found = {key["pk"]["S"] for key in keys if isinstance(key, dict) and "pk" in key}
    values = params.get("ExpressionAttributeValues", {})
    if call.operation == "Query":
        found |= {value["S"] for value in values.values() if value.get("S") == AUDIT_PARTITION}
    return found


def _raw_audit_items(aws_resources: LocalResources) -> list[dict[str, Any]]:
    dynamodb = aws_client("dynamodb", aws_resources.endpoint)
    items: list[dict[str, Any]] = dynamodb.query(
        TableName=aws_resources.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": AUDIT_PARTITION}},
    )["Items"]
    return items


def test_an_admin_action_only_adds_to_the_audit_partition(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin, target = make_user(("admin", "user")), make_user()
    calls: list[AwsCall] = []

    def record(call: AwsCall) -> Any:
        if call.service == "dynamodb":
            calls.append(call)
        return call.proceed()

    with intercepting_aws_calls(record):
        for method, action in (
            ("POST", "disable"),
            ("POST", "enable"),
            ("PUT", "groups/admin"),
            ("POST", "sign-out"),
        ):
            response = client.request(method, f"/admin/users/{target['sub']}/{action}", headers=bearer(admin))
            assert response.status_code in (200, 204), response.text
        assert client.get("/admin/audit", headers=bearer(admin)).status_code == 200
    audit_calls = [call for call in calls if AUDIT_PARTITION in _partitions(call)]
    assert {call.operation for call in audit_calls} == {"PutItem", "Query"}
    assert not [call for call in audit_calls if call.operation in DENIED]
    for put in (call for call in audit_calls if call.operation == "PutItem"):
        # Never over an existing item: the put is conditional on its key being new.
        assert "attribute_not_exists" in put.params["ConditionExpression"]
    assert sum(call.operation == "PutItem" for call in audit_calls) == 8


def test_a_record_stays_as_written_and_its_outcome_is_an_item_of_its_own(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin, target = make_user(("admin", "user")), make_user()
    assert client.post(f"/admin/users/{target['sub']}/enable", headers=bearer(admin)).status_code == 200
    raw = _raw_audit_items(aws_resources)
    (record,) = [
        i for i in raw if i["type"]["S"] == "AuditRecord" and i.get("target", {}).get("S") == target["sub"]
    ]
    assert record["outcome"]["S"] == "requested"
    (outcome,) = [i for i in raw if i["sk"]["S"] == record["sk"]["S"] + "#outcome"]
    assert outcome["type"]["S"] == "AuditOutcome"
    assert outcome["outcome"]["S"] == "succeeded"
    trail = client.get("/admin/audit", headers=bearer(admin), params={"limit": 100}).json()["items"]
    (entry,) = [e for e in trail if e["target"] == target["sub"]]
    assert entry["outcome"] == "succeeded"
    # Kept for AUDIT_RETENTION_DAYS, then TTL removes both.
    expires = datetime.fromtimestamp(int(record["expires_at"]["N"]), UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=RETENTION_DAYS))) < timedelta(minutes=5)
    assert outcome["expires_at"] == record["expires_at"]


def test_a_record_settled_in_place_before_outcome_items_still_reads_with_its_outcome(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin = make_user(("admin", "user"))
    dynamodb = aws_client("dynamodb", aws_resources.endpoint)
    now = datetime.now(UTC)
    dynamodb.put_item(
        TableName=aws_resources.table_name,
        Item={
            "pk": {"S": AUDIT_PARTITION},
            "sk": {"S": f"{now.isoformat(timespec='microseconds')}#legacy-request#user.disable"},
            "type": {"S": "AuditRecord"},
            "actor_subject": {"S": "someone"},
            "action": {"S": "user.disable"},
            "target": {"S": "legacy-target"},
            "request_id": {"S": "legacy-request"},
            "at": {"S": now.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
            "details": {"M": {"note": {"S": "settled in place"}}},
            "outcome": {"S": "failed"},
        },
    )
    trail = client.get("/admin/audit", headers=bearer(admin), params={"limit": 100}).json()["items"]
    (entry,) = [e for e in trail if e["target"] == "legacy-target"]
    assert entry["outcome"] == "failed"
    assert entry["details"] == {"note": "settled in place"}
