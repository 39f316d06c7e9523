"""template.yaml against the code it deploys: the table matches the PynamoDB models, the function matches
the build and the settings, IAM stays least-privilege, and requirements/lambda.txt matches uv.lock."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pynamodb.attributes import TTLAttribute

import models
from models.table import StratusItem, table_models
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAMBDA_REQUIREMENTS = ROOT / "requirements" / "lambda.txt"

# Statements allowed to name Resource "*", each with the reason AWS leaves no narrower choice.
DOCUMENTED_WILDCARDS = {
    ("ApiFunctionRole", "XRayHasNoResourceLevelPermissions"): "X-Ray has no resource-level permissions",
    # In a key policy, "*" is the key the policy is attached to.
    ("AppKey", "AccountAdministersAndDelegatesToIam"): "key policy: the key itself",
    ("AppKey", "DynamoDbReadsKeyMetadata"): "key policy: the key itself",
}
# Managed policies allowed on roles, each with its reason.
DOCUMENTED_MANAGED_POLICIES = {
    ("ApiGatewayCloudWatchRole", "AmazonAPIGatewayPushToCloudWatchLogs"): (
        "the account-wide API Gateway logging role: API Gateway names each API's log groups itself"
    ),
}
DEV_ONLY_PACKAGES = {"uvicorn", "pytest", "moto", "ruff", "mypy"}
# Read by libraries rather than by Settings.
ENVIRONMENT_READ_ELSEWHERE = {"POWERTOOLS_SERVICE_NAME"}


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !Sub, !GetAtt...) into their long form."""


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    key = suffix if suffix in {"Ref", "Condition"} else f"Fn::{suffix}"
    return {key: value}


CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


def load_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)
    return loaded


def load_tool(name: str) -> ModuleType:
    """A module of tools/ (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(f"stratus_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(scope="module")
def table(resources: dict[str, Any]) -> dict[str, Any]:
    tables = [r for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == 1, "single-table design: exactly one table"
    properties: dict[str, Any] = tables[0]["Properties"]
    return properties


@pytest.fixture(scope="module")
def model_schema() -> dict[str, Any]:
    # Entity models register their indexes on import: load every module of the models package first.
    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")
    schema: dict[str, Any] = dict(StratusItem._get_schema())
    return schema


@pytest.fixture(scope="module")
def api_function(template: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """ApiFunction's properties with the template's Globals applied (as SAM applies them)."""
    function = resources["ApiFunction"]
    merged: dict[str, Any] = {**template["Globals"]["Function"], **function["Properties"]}
    merged["Environment"] = {
        "Variables": {
            **template["Globals"]["Function"].get("Environment", {}).get("Variables", {}),
            **function["Properties"].get("Environment", {}).get("Variables", {}),
        }
    }
    merged["Metadata"] = function.get("Metadata", {})
    return merged


def _key_schema(entries: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(entry["AttributeName"], entry["KeyType"]) for entry in entries]


def _projection(projection: dict[str, Any]) -> tuple[str, list[str]]:
    return projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", []))


def _indexes(entries: list[dict[str, Any]], *, name: str, keys: str, projection: str) -> dict[str, Any]:
    return {entry[name]: (_key_schema(entry[keys]), _projection(entry[projection])) for entry in entries}


# --- The table and the PynamoDB models ----------------------------------------------------------------


def test_table_key_schema_matches_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    assert _key_schema(table["KeySchema"]) == _key_schema(model_schema["key_schema"])


def test_table_defines_exactly_the_key_attributes_of_table_and_indexes(
    table: dict[str, Any], model_schema: dict[str, Any]
) -> None:
    expected = {(d["AttributeName"], d["AttributeType"]) for d in model_schema["attribute_definitions"]}
    for index in model_schema["global_secondary_indexes"] + model_schema["local_secondary_indexes"]:
        expected |= {(d["AttributeName"], d["AttributeType"]) for d in index["attribute_definitions"]}
    declared = [(d["AttributeName"], d["AttributeType"]) for d in table["AttributeDefinitions"]]
    assert len(declared) == len(set(declared)), "an attribute is declared twice"
    assert set(declared) == expected


def test_global_secondary_indexes_match_the_model(
    table: dict[str, Any], model_schema: dict[str, Any]
) -> None:
    declared = _indexes(
        table.get("GlobalSecondaryIndexes", []), name="IndexName", keys="KeySchema", projection="Projection"
    )
    expected = _indexes(
        model_schema["global_secondary_indexes"],
        name="index_name",
        keys="key_schema",
        projection="projection",
    )
    assert declared == expected


def test_local_secondary_indexes_match_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    declared = _indexes(
        table.get("LocalSecondaryIndexes", []), name="IndexName", keys="KeySchema", projection="Projection"
    )
    expected = _indexes(
        model_schema["local_secondary_indexes"], name="index_name", keys="key_schema", projection="projection"
    )
    assert declared == expected


def test_ttl_attribute_matches_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    ttl_names = {
        attribute.attr_name
        for model in table_models()
        for attribute in model.get_attributes().values()
        if isinstance(attribute, TTLAttribute)
    }
    assert len(ttl_names) == 1, f"one table has one TTL attribute, models declare {sorted(ttl_names)}"
    assert table["TimeToLiveSpecification"] == {"AttributeName": ttl_names.pop(), "Enabled": True}


def test_stream_and_billing_mode_match_the_model(table: dict[str, Any]) -> None:
    assert table["StreamSpecification"]["StreamViewType"] == StratusItem.Meta.stream_view_type
    assert table["BillingMode"] == StratusItem.Meta.billing_mode


def test_table_is_encrypted_with_the_app_key_and_survives_stack_deletion(resources: dict[str, Any]) -> None:
    table = resources["AppTable"]
    assert table["Properties"]["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["AppKey", "Arn"]}
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # The key must outlive the data it encrypts.
    for name in ("AppTable", "AppKey"):
        assert resources[name]["DeletionPolicy"] == "Retain"
        assert resources[name]["UpdateReplacePolicy"] == "Retain"


# --- The function --------------------------------------------------------------------------------------


def test_function_runs_the_built_handler_on_python313_arm64(api_function: dict[str, Any]) -> None:
    assert api_function["Runtime"] == "python3.13"
    assert api_function["Architectures"] == ["arm64"]
    assert api_function["CodeUri"] == "src/"
    assert api_function["Handler"] == "main.handler"
    assert api_function["Metadata"]["BuildMethod"] == "makefile"
    assert (ROOT / "src" / "Makefile").read_text().count("build-ApiFunction:") == 1


def test_handler_named_in_the_template_exists(api_function: dict[str, Any]) -> None:
    module_name, attribute = api_function["Handler"].rsplit(".", 1)
    tree = ast.parse((ROOT / api_function["CodeUri"] / f"{module_name}.py").read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    names |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in names


def test_function_times_out_before_api_gateway(api_function: dict[str, Any]) -> None:
    assert api_function["Timeout"] < 29


def test_function_logs_to_its_own_log_group_with_retention(
    api_function: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Lambda would create /aws/lambda/<name> itself, without retention, if the names disagreed.
    log_group_name = api_function["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = resources[log_group_name]["Properties"]
    assert log_group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + api_function["FunctionName"]["Fn::Sub"]}
    assert "RetentionInDays" in log_group
    assert api_function["LoggingConfig"]["LogFormat"] == "JSON"


def _settings_environment_names() -> set[str]:
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(field_name.upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names |= {str(choice).upper() for choice in getattr(alias, "choices", [])}
    return names


def test_every_function_environment_variable_is_read_by_the_app(api_function: dict[str, Any]) -> None:
    unread = set(api_function["Environment"]["Variables"]) - _settings_environment_names()
    assert unread <= ENVIRONMENT_READ_ELSEWHERE, f"no Settings field reads {sorted(unread)}"


def test_stage_parameter_values_are_stages_the_settings_accept(template: dict[str, Any]) -> None:
    allowed = set(Settings.model_fields["stage"].annotation.__args__)  # type: ignore[union-attr]
    assert set(template["Parameters"]["Stage"]["AllowedValues"]) <= allowed


# --- The API -------------------------------------------------------------------------------------------


def test_api_pins_openapi_version_and_stage(resources: dict[str, Any]) -> None:
    api = resources["Api"]["Properties"]
    # Without OpenApiVersion SAM also creates a stage named "Stage".
    assert re.fullmatch(r"3\.\d+\.\d+", str(api["OpenApiVersion"]))
    assert api["StageName"] == {"Ref": "Stage"}
    assert "Cors" not in api, "the app answers CORS itself"


def test_gateway_errors_are_problem_json_with_a_cors_origin(resources: dict[str, Any]) -> None:
    responses = resources["Api"]["Properties"]["GatewayResponses"]
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for name, response in responses.items():
        headers = response["ResponseParameters"]["Headers"]
        assert "Access-Control-Allow-Origin" in headers, name
        assert headers["Content-Type"] == "'application/problem+json'", name
        for body in response["ResponseTemplates"].values():
            for field in ('"type"', '"title"', '"detail"', '"request_id":"$context.requestId"'):
                assert field in body, (name, field)


# --- IAM -----------------------------------------------------------------------------------------------


def _policy_statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, resource in resources.items():
        properties = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::KMS::Key":
            documents.append(properties["KeyPolicy"])
        elif resource["Type"] == "AWS::Serverless::Function":
            documents += [
                p for p in properties.get("Policies", []) if isinstance(p, dict) and "Statement" in p
            ]
        found += [(name, statement) for document in documents for statement in document["Statement"]]
    return found


def test_no_iam_statement_names_every_resource_without_a_documented_reason(resources: dict[str, Any]) -> None:
    statements = _policy_statements(resources)
    assert statements
    for name, statement in statements:
        targets = statement.get("Resource", [])
        targets = targets if isinstance(targets, list) else [targets]
        if "*" in targets and statement["Effect"] == "Allow":
            assert (name, statement.get("Sid")) in DOCUMENTED_WILDCARDS, f"{name}: {statement}"


def test_roles_carry_only_documented_managed_policies(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in resource["Properties"].get("ManagedPolicyArns", []):
            policy = str(arn.get("Fn::Sub", arn) if isinstance(arn, dict) else arn).rsplit("/", 1)[-1]
            assert (name, policy) in DOCUMENTED_MANAGED_POLICIES, f"{name}: {arn}"


def test_function_uses_its_explicit_least_privilege_role(resources: dict[str, Any]) -> None:
    # SAM's generated role would add AWSLambdaBasicExecutionRole (every log group) behind our back.
    properties = resources["ApiFunction"]["Properties"]
    assert properties["Role"] == {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}
    assert "Policies" not in properties


# --- Lambda requirements -------------------------------------------------------------------------------


def test_lambda_requirements_are_the_runtime_set_of_uv_lock() -> None:
    lambda_requirements = load_tool("lambda_requirements")
    uv = lambda_requirements.find_uv()
    if uv is None:
        if os.environ.get("CI"):
            pytest.fail("uv is required in CI to check requirements/lambda.txt: set UV or put uv on PATH")
        pytest.skip("uv not found: set UV or put uv on PATH")
    expected = lambda_requirements.render(uv)
    assert LAMBDA_REQUIREMENTS.read_text() == expected, "stale: run `make lambda-requirements`"


def test_lambda_requirements_hold_no_development_tools() -> None:
    pinned = {
        re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in LAMBDA_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert pinned, "no requirements found"
    assert not pinned & DEV_ONLY_PACKAGES
    # Markers are decided for Lambda when the file is made: pip would evaluate them for the build machine.
    assert ";" not in LAMBDA_REQUIREMENTS.read_text()
