"""template.yaml's rate-limit counters: a table of their own (the one the local stack creates and the storage
writes), the only counter access the API function's role has, and the prod environment's WAF rate rule."""

from __future__ import annotations

import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from local.resources import LocalResources, aws_client

from ratelimit_storage import COUNTER_PREFIX, DynamoDBStorage
from tests.cloudformation import deployed, function_properties, load_template

ROOT = Path(__file__).resolve().parent.parent
COUNTERS_URI = {"Fn::Sub": "dynamodb://${RateLimitTable}"}
COUNTER_TABLE_ARN = {"Fn::GetAtt": ["RateLimitTable", "Arn"]}
APP_TABLE_ARN = {"Fn::GetAtt": ["AppTable", "Arn"]}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def counter_table(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"]["RateLimitTable"]["Properties"]
    return properties


def _api_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    # As deployed with the parameters' defaults: the app table is AppTable (no replica regions).
    role = deployed(template)["ApiFunctionRole"]["Properties"]
    return [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_counters_have_a_pay_per_request_table_encrypted_with_the_app_key(
    counter_table: dict[str, Any],
) -> None:
    assert counter_table["BillingMode"] == "PAY_PER_REQUEST"
    assert counter_table["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": ["AppKey", "Arn"]},
    }
    assert counter_table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # Windows last an hour at most: nothing to restore (the template says why), nothing streams from them.
    assert "PointInTimeRecoverySpecification" not in counter_table
    assert "StreamSpecification" not in counter_table


def test_counter_table_is_the_one_the_local_stack_creates_and_the_storage_writes(
    counter_table: dict[str, Any], aws_resources: LocalResources
) -> None:
    dynamodb = aws_client("dynamodb", aws_resources.endpoint)
    local = dynamodb.describe_table(TableName=aws_resources.rate_limit_table_name)["Table"]
    local_ttl = dynamodb.describe_time_to_live(TableName=aws_resources.rate_limit_table_name)
    assert counter_table["KeySchema"] == local["KeySchema"]
    assert counter_table["AttributeDefinitions"] == local["AttributeDefinitions"]
    assert local_ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert aws_resources.app_environment()["RATE_LIMIT_STORAGE_URI"] == aws_resources.rate_limit_storage_uri
    # What a lease writes: the table's keys and the TTL attribute, with a window's end in it.
    storage = DynamoDBStorage(aws_resources.rate_limit_storage_uri, region_name=aws_resources.region)
    key = f"LIMITER/template/{uuid.uuid4().hex}"
    window_start = int(time.time()) // 60 * 60
    storage.lease(key, window_start, 60, limit=5, amount=1)
    (item,) = dynamodb.query(
        TableName=aws_resources.rate_limit_table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": COUNTER_PREFIX + key}},
    )["Items"]
    keys = {entry["AttributeName"] for entry in counter_table["KeySchema"]}
    assert keys < set(item)
    assert int(item[counter_table["TimeToLiveSpecification"]["AttributeName"]]["N"]) == window_start + 60


def test_every_function_is_pointed_at_the_counter_table(template: dict[str, Any]) -> None:
    functions = [
        name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    ]
    assert "ApiFunction" in functions
    for name in functions:
        variables = function_properties(template, name)["Environment"]["Variables"]
        assert variables["RATE_LIMIT_STORAGE_URI"] == COUNTERS_URI, name


def test_the_api_function_may_only_lease_counters_and_only_in_their_table(template: dict[str, Any]) -> None:
    statements = _api_statements(template)
    on_counters = [s for s in statements if COUNTER_TABLE_ARN in _listed(s["Resource"])]
    # Leasing a slice and counting a request are both one UpdateItem; reading, clearing and resetting
    # counters are for operators, with their own credentials.
    assert on_counters == [
        {
            "Sid": "LeaseRateLimitCounters",
            "Effect": "Allow",
            "Action": "dynamodb:UpdateItem",
            "Resource": COUNTER_TABLE_ARN,
        }
    ]
    # The role still needs the app table for the domain; counters there are denied by their key prefix.
    (denied,) = [s for s in statements if s.get("Sid") == "NoRateLimitCountersInAppTable"]
    assert denied["Resource"] == APP_TABLE_ARN
    assert denied["Condition"] == {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [f"{COUNTER_PREFIX}*"]}}
    allowed_on_app_table = {
        action
        for s in statements
        if s["Effect"] == "Allow" and APP_TABLE_ARN in _listed(s["Resource"])
        for action in _listed(s["Action"])
    }
    # Every item-level action the role has on the app table (a table description names no item).
    assert set(denied["Action"]) == allowed_on_app_table - {
        "dynamodb:DescribeTable",
        "dynamodb:ConditionCheckItem",
    }


def test_no_other_role_touches_the_counters(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role" and name != "ApiFunctionRole":
            assert "RateLimitTable" not in str(resource["Properties"]), name


def test_the_stack_names_its_counter_table(template: dict[str, Any]) -> None:
    assert template["Outputs"]["RateLimitTableName"]["Value"] == {"Ref": "RateLimitTable"}


def test_prod_turns_the_waf_rate_rule_on(template: dict[str, Any]) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(
        pair.split("=", 1) for pair in config["prod"]["deploy"]["parameters"]["parameter_overrides"].split()
    )
    assert overrides["EnableWaf"] == "true"
    assert "RateLimitPerIp" in str(template["Resources"]["ApiWebAcl"]["Properties"]["Rules"])
    assert template["Resources"]["ApiWebAcl"]["Condition"] == "WafEnabled"
