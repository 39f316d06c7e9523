"""template.yaml's stream consumer against the code it runs: the event source mapping filters exactly as
stream.RECORD_FILTERS (which the local stack applies), the local stack batches and retries as the mapping
does, a record's work fits the timeout, the consumer's role allows each call it makes and no more, and
the activity retention reaches both functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local import stream_poller
from local.resources import LocalResources

import stream
from services.followups import reserve_seconds
from settings import Settings
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.cloudformation import deployed, function_properties, load_template
from tests.streams import Consumer
from tests.test_identity import bearer

# The IAM action each part of a TransactWriteItems call needs.
_TRANSACTION_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def consumer_function(template: dict[str, Any]) -> dict[str, Any]:
    return function_properties(template, "StreamFunction")


@pytest.fixture(scope="module")
def event_source(consumer_function: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = consumer_function["Events"]["TableStream"]["Properties"]
    return properties


def _table_actions(template: dict[str, Any]) -> dict[str, set[str]]:
    """The consumer role's DynamoDB actions, by the resource they are allowed on."""
    allowed: dict[str, set[str]] = {}
    # As deployed with the defaults: the regional AppTable (no replica regions).
    (policy,) = deployed(template)["StreamFunctionRole"]["Properties"]["Policies"]
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if action.startswith("dynamodb:"):
                allowed.setdefault(json.dumps(statement["Resource"]), set()).add(action)
    return allowed


def test_the_mapping_filters_records_as_the_consumer_expects(event_source: dict[str, Any]) -> None:
    patterns = [json.loads(entry["Pattern"]) for entry in event_source["FilterCriteria"]["Filters"]]
    assert patterns == stream.RECORD_FILTERS


def test_the_local_stack_batches_and_retries_as_the_mapping_does(
    consumer_function: dict[str, Any], event_source: dict[str, Any]
) -> None:
    assert event_source["BatchSize"] == stream_poller.BATCH_SIZE
    assert event_source["MaximumRetryAttempts"] == stream_poller.MAX_RETRY_ATTEMPTS
    assert event_source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert consumer_function["Timeout"] == stream_poller.TIMEOUT_SECONDS


def test_a_records_worst_case_fits_in_the_timeout_with_time_to_do_work(
    consumer_function: dict[str, Any],
) -> None:
    """Deployed settings (the template sets no DynamoDB client limits: the defaults): every step starts
    with enough time left for its calls at their slowest, and more than half the invocation can work."""
    reserve = reserve_seconds(Settings())
    assert reserve < consumer_function["Timeout"] / 2, reserve


def test_the_activity_retention_is_a_parameter_both_functions_read(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["ActivityRetentionDays"]
    assert parameter["Default"] == Settings().activity_retention_days
    assert (parameter["MinValue"], parameter["MaxValue"]) == (1, 3650)
    for function in ("ApiFunction", "StreamFunction"):
        variables = function_properties(template, function)["Environment"]["Variables"]
        assert variables["ACTIVITY_RETENTION_DAYS"] == {"Ref": "ActivityRetentionDays"}, function


def test_the_consumer_may_write_the_table_but_read_no_index_and_scan_nothing(
    template: dict[str, Any],
) -> None:
    allowed = _table_actions(template)
    table = json.dumps({"Fn::GetAtt": ["AppTable", "Arn"]})
    stream_arn = json.dumps({"Fn::GetAtt": ["AppTable", "StreamArn"]})
    assert set(allowed) == {table, stream_arn}
    assert "dynamodb:Scan" not in allowed[table]
    assert not any(action.startswith("dynamodb:*") for actions in allowed.values() for action in actions)


def test_the_consumer_role_allows_every_call_the_consumer_makes_and_nothing_unused(
    template: dict[str, Any],
    aws_resources: LocalResources,
    app_environment: dict[str, str],
    client: TestClient,
    make_user: Any,
) -> None:
    """Every kind of work, for real: the feed, a rename's refresh, an unassignment, a purge with a
    checkpoint (rounds of 25 here). The actions it needs are exactly what the role allows on the table."""
    consumer = Consumer(aws_resources)
    owner, member = make_user(), make_user()
    project = client.post("/projects", headers=bearer(owner), json={"name": "IAM"}).json()["id"]
    client.post(f"/projects/{project}/members", headers=bearer(owner), json={"subject": member["sub"]})
    client.patch(
        f"/projects/{project}/members/{member['sub']}", headers=bearer(owner), json={"role": "editor"}
    )
    for i in range(30):
        client.post(
            f"/projects/{project}/tasks",
            headers=bearer(owner),
            json={"title": f"t{i}", "assignee": member["sub"]},
        )
    client.patch(f"/projects/{project}", headers=bearer(owner), json={"name": "IAM II"})
    client.delete(f"/projects/{project}/members/{member['sub']}", headers=bearer(owner))
    client.delete(f"/projects/{project}", headers=bearer(owner))
    needed: set[str] = set()

    def record(call: AwsCall) -> Any:
        if call.service == "dynamodb":
            if call.operation == "TransactWriteItems":
                needed.update(
                    _TRANSACTION_ACTIONS[kind] for item in call.params["TransactItems"] for kind in item
                )
            else:
                needed.add(f"dynamodb:{call.operation}")
        return call.proceed()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream.followups, "PURGE_ROUND_ITEMS", 25)
        with intercepting_aws_calls(record):
            consumer.run()

    assert consumer.given_up == []
    table = json.dumps({"Fn::GetAtt": ["AppTable", "Arn"]})
    assert needed == _table_actions(template)[table]
