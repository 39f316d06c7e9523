"""The template's observability: the Tracing parameter and the ADOT layer, the dashboard (every widget reads
a metric the app's EMF lines carry or one AWS emits for a resource of this stack), the alarms on the app's
request metrics, and the saved Logs Insights queries (their fields are the ones the app writes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import observability
from observability import _Invocation, write_request_line
from settings import Settings
from tests.cloudformation import function_properties, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


# --- Tracing -----------------------------------------------------------------------------------------------


def test_tracing_is_on_by_default_through_the_adot_layer(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["Tracing"]
    assert parameter["Default"] == "otel"
    assert set(parameter["AllowedValues"]) == {"otel", "off"}
    assert set(parameter["AllowedValues"]) == set(Settings.model_fields["tracing"].annotation.__args__)  # type: ignore[union-attr]
    assert template["Conditions"]["TracingOn"] == {"Fn::Equals": [{"Ref": "Tracing"}, "otel"]}
    api = function_properties(template, "ApiFunction")
    variables = api["Environment"]["Variables"]
    assert variables["TRACING"] == {"Ref": "Tracing"}
    # The dependencies layer in both cases: an intrinsic replaces Globals' Layers instead of adding to them.
    assert api["Layers"] == {
        "Fn::If": [
            "TracingOn",
            [
                {"Ref": "DependenciesLayer"},
                {"Fn::FindInMap": ["AdotPythonLayer", {"Ref": "AWS::Region"}, "Arn"]},
            ],
            [{"Ref": "DependenciesLayer"}],
        ]
    }
    # With tracing off, nothing of the layer's start-up remains.
    for name, on in {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/otel-instrument",
        "OTEL_AWS_APPLICATION_SIGNALS_ENABLED": "false",
        "OTEL_PYTHON_DISTRO": "aws_distro",
        "OTEL_PYTHON_CONFIGURATOR": "aws_configurator",
    }.items():
        assert variables[name] == {"Fn::If": ["TracingOn", on, {"Ref": "AWS::NoValue"}]}, name
    # Spans leave through Lambda's X-Ray daemon: active tracing and the role's X-Ray permissions.
    assert api["Tracing"] == "Active"
    statements = resources_policy_statements(template, "ApiFunctionRole")
    assert any("xray:PutTraceSegments" in s["Action"] for s in statements)


def resources_policy_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in template["Resources"][role]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_the_layer_is_pinned_for_each_region_to_its_own_arn(template: dict[str, Any]) -> None:
    layers = template["Mappings"]["AdotPythonLayer"]
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= set(layers)
    for region, entry in layers.items():
        match = re.fullmatch(
            r"arn:aws(?:-cn)?:lambda:([a-z0-9-]+):\d{12}:layer:AWSOpenTelemetryDistroPython:(\d+)",
            entry["Arn"],
        )
        assert match, region
        assert match.group(1) == region


# --- What the app emits --------------------------------------------------------------------------------------


def emitted_dimension_sets(capsys: pytest.CaptureFixture[str]) -> dict[str, set[frozenset[str]]]:
    """Metric name -> its dimension sets, read from a real EMF line of the app with every directive the
    request line can carry, and from the metrics the app adds through Powertools (dimension `service`)."""
    capsys.readouterr()
    # One line per domain outcome (a request has one), each with a refusal and a cold start as well.
    for route, status in observability.DOMAIN_OUTCOMES:
        invocation = _Invocation()
        invocation.refused_class = "write"
        write_request_line(
            route=route,
            status=status,
            latency_us=1000,
            request_id="r",
            subject="s",
            function_request_id="f",
            invocation=invocation,
            cold_start=True,
        )
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert len(lines) == len(observability.DOMAIN_OUTCOMES)
    found: dict[str, set[frozenset[str]]] = {}
    for line in lines:
        for directive in line["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == observability.METRICS_NAMESPACE
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], set()).update(frozenset(d) for d in directive["Dimensions"])
    assert set(found) >= observability.REQUEST_LINE_METRICS
    for source in Path(observability.__file__).parent.rglob("*.py"):
        for name in re.findall(r"\.add_metric\(\s*name=[\"']([^\"']+)[\"']", source.read_text()):
            found.setdefault(name, set()).add(frozenset({"service"}))
    assert {"RateLimitStorageErrors", "FollowUpsLeftToStream"} <= set(found)  # the scan finds the calls
    return found


# --- The dashboard ------------------------------------------------------------------------------------------

AWS_METRICS: dict[str, dict[str, set[frozenset[str]]]] = {
    "AWS/ApiGateway": {
        name: {frozenset({"ApiName", "Stage"})}
        for name in ("Count", "4XXError", "5XXError", "Latency", "IntegrationLatency")
    },
    "AWS/Lambda": {
        name: {frozenset({"FunctionName"})}
        for name in ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "IteratorAge")
    },
    "AWS/DynamoDB": {
        **{
            name: {frozenset({"TableName"}), frozenset({"TableName", "GlobalSecondaryIndexName"})}
            for name in (
                "ConsumedReadCapacityUnits",
                "ConsumedWriteCapacityUnits",
                "ReadThrottleEvents",
                "WriteThrottleEvents",
            )
        },
        "SuccessfulRequestLatency": {frozenset({"TableName", "Operation"})},
    },
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible": {frozenset({"QueueName"})}},
    "AWS/WAFV2": {
        name: {frozenset({"WebACL", "Region", "Rule"})}
        for name in ("BlockedRequests", "AllowedRequests", "CountedRequests")
    },
}
# Which resource type a dimension's value must name (a `${LogicalId}` of this template).
DIMENSION_RESOURCE_TYPES = {
    "FunctionName": "AWS::Serverless::Function",
    "TableName": "AWS::DynamoDB::Table",
    "QueueName": "AWS::SQS::Queue",
}
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} MetricName=\"([^\"]+)\"([^']*)'")
INSIGHTS = re.compile(r"SELECT \w+\((\w+)\) FROM SCHEMA\(([^)]*)\)(.*)")


def dashboard_body(template: dict[str, Any], *, waf: bool) -> dict[str, Any]:
    """The dashboard's JSON as CloudFormation would join it, `${...}` left in place."""
    separator, parts = template["Resources"]["ObservabilityDashboard"]["Properties"]["DashboardBody"][
        "Fn::Join"
    ]
    text = []
    for part in parts:
        chosen = part
        if isinstance(part, dict) and "Fn::If" in part:
            condition, when_true, when_false = part["Fn::If"]
            assert condition == "WafEnabled"
            chosen = when_true if waf else when_false
        text.append(_substituted(chosen["Fn::Sub"]) if isinstance(chosen, dict) else chosen)
    body: dict[str, Any] = json.loads(separator.join(text))
    return body


def _substituted(sub: Any) -> str:
    """A Sub's text; with a variable map, each `${Variable}` becomes the `${LogicalId}` it names in a regional
    deployment (an If between a global and a regional table takes the regional one)."""
    if isinstance(sub, str):
        return sub
    text, variables = sub
    for name, value in variables.items():
        regional = value["Fn::If"][2] if "Fn::If" in value else value
        text = text.replace("${" + name + "}", "${" + regional["Ref"] + "}")
    return str(text)


def check_reference(value: str, resources: dict[str, Any], template: dict[str, Any], dimension: str) -> None:
    """A dimension value names this stack's things: `${LogicalId}` of the right type, or its parameters."""
    references = re.findall(r"\$\{([^}.]+)(?:\.[^}]+)?\}", value)
    assert references, f"{dimension}={value} names nothing of this stack"
    for reference in references:
        assert (
            reference in resources or reference in template["Parameters"] or reference.startswith("AWS::")
        ), value
        if dimension in DIMENSION_RESOURCE_TYPES:
            assert resources[reference]["Type"] == DIMENSION_RESOURCE_TYPES[dimension], value


def check_metric(
    namespace: str,
    name: str,
    dimensions: dict[str, str | None],
    emitted: dict[str, set[frozenset[str]]],
    template: dict[str, Any],
    resources: dict[str, Any],
) -> None:
    keys = frozenset(dimensions)
    if namespace == observability.METRICS_NAMESPACE:
        assert name in emitted, f"the app emits no {name}"
        assert keys in emitted[name], f"the app emits {name} with {emitted[name]}, not {set(keys)}"
        assert dimensions["service"] in (None, "${AWS::StackName}"), name
        return
    known = AWS_METRICS[namespace]
    assert name in known, f"{namespace} {name}"
    assert keys in known[name], f"{namespace} {name} has no dimensions {set(keys)}"
    for dimension, value in dimensions.items():
        if value is None or (
            dimension in ("Operation", "Rule", "GlobalSecondaryIndexName", "Region") and "${" not in value
        ):
            continue
        check_reference(value, resources, template, dimension)
    if namespace == "AWS/ApiGateway":
        assert (dimensions["ApiName"], dimensions["Stage"]) in (
            ("${AWS::StackName}", "${Stage}"),
            (None, None),
        )
    if namespace == "AWS/WAFV2":
        acl = resources["ApiWebAcl"]["Properties"]
        rules = {rule["VisibilityConfig"]["MetricName"]["Fn::Sub"] for rule in acl["Rules"]}
        assert dimensions["WebACL"] == acl["VisibilityConfig"]["MetricName"]["Fn::Sub"]
        assert dimensions["Rule"] == "ALL" or dimensions["Rule"] in rules
    if "GlobalSecondaryIndexName" in dimensions:
        indexes = {i["IndexName"] for i in resources["AppTable"]["Properties"]["GlobalSecondaryIndexes"]}
        assert dimensions["GlobalSecondaryIndexName"] in indexes


def widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    """(namespace, metric, dimensions) each metric widget reads; a SEARCH or a Metrics Insights query gives
    the dimension names of its schema (values None unless the query fixes them)."""
    read = []
    for entry in widget["properties"]["metrics"]:
        if isinstance(entry[0], dict):
            expression = entry[0]["expression"]
            search = SEARCH.search(expression)
            insights = INSIGHTS.search(expression)
            if search:
                namespace, *keys = [part.strip() for part in search.group(1).split(",")]
                fixed = dict(re.findall(r"(\w+)=\"([^\"]*)\"", search.group(3)))
                read.append((namespace, search.group(2), {key: fixed.get(key) for key in keys}))
            elif insights:
                namespace, *keys = [part.strip() for part in insights.group(2).split(",")]
                fixed = dict(re.findall(r"(\w+) = '([^']*)'", insights.group(3)))
                read.append((namespace, insights.group(1), {key: fixed.get(key) for key in keys}))
            else:
                raise AssertionError(f"an expression that reads no metric: {expression}")
            continue
        namespace, name, *rest = entry
        pairs = [item for item in rest if not isinstance(item, dict)]
        read.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return read


@pytest.mark.parametrize("waf", [False, True])
def test_every_dashboard_widget_reads_what_this_stack_emits(
    template: dict[str, Any], resources: dict[str, Any], capsys: pytest.CaptureFixture[str], waf: bool
) -> None:
    emitted = emitted_dimension_sets(capsys)
    widgets = dashboard_body(template, waf=waf)["widgets"]
    read = set()
    for widget in widgets:
        if widget["type"] == "text":
            continue
        if widget["type"] == "log":
            (group,) = re.findall(r"SOURCE '\$\{(\w+)\}'", widget["properties"]["query"])
            assert resources[group]["Type"] == "AWS::Logs::LogGroup"
            read.add(("logs", group))
            continue
        assert widget["type"] == "metric"
        assert widget["properties"]["region"] == "${AWS::Region}"
        for namespace, name, dimensions in widget_metrics(widget):
            check_metric(namespace, name, dimensions, emitted, template, resources)
            read.add((namespace, name))
    required = {
        ("AWS/ApiGateway", "Count"),
        ("AWS/ApiGateway", "4XXError"),
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/Lambda", "Duration"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/Lambda", "ConcurrentExecutions"),
        ("AWS/Lambda", "IteratorAge"),
        ("logs", "ApiFunctionLogGroup"),  # init duration, from the platform's report lines
        ("Stratus", "Requests"),
        ("Stratus", "Latency"),
        ("Stratus", "ServerErrors"),
        ("Stratus", "RateLimitRefusals"),
        ("AWS/DynamoDB", "ConsumedReadCapacityUnits"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "SuccessfulRequestLatency"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    }
    assert required <= read, sorted(required - read)
    assert (("AWS/WAFV2", "BlockedRequests") in read) is waf


def test_top_routes_widgets_rank_by_count_and_by_p99(template: dict[str, Any]) -> None:
    expressions = [
        entry[0]["expression"]
        for widget in dashboard_body(template, waf=False)["widgets"]
        if widget["type"] == "metric"
        for entry in widget["properties"]["metrics"]
        if isinstance(entry[0], dict)
    ]
    assert any("SUM(Requests)" in e and "ORDER BY SUM() DESC LIMIT 10" in e for e in expressions)
    assert any(
        e.startswith("SORT(SEARCH(") and 'MetricName="Latency"' in e and "'p99'" in e for e in expressions
    )


# --- Alarms on the request line ------------------------------------------------------------------------------


def test_alarms_on_request_metrics_match_the_request_line(
    template: dict[str, Any], resources: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    emitted = emitted_dimension_sets(capsys)
    alarmed = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == observability.METRICS_NAMESPACE
        and resource["Properties"]["MetricName"] in observability.REQUEST_LINE_METRICS
    ]
    assert [alarm["MetricName"] for alarm in alarmed] == ["AuthenticationFailures"]
    service = function_properties(template, "ApiFunction")["Environment"]["Variables"][
        "POWERTOOLS_SERVICE_NAME"
    ]
    for alarm in alarmed:
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert frozenset(dimensions) in emitted[alarm["MetricName"]]
        assert dimensions["service"] == service == {"Ref": "AWS::StackName"}


# --- Saved queries -----------------------------------------------------------------------------------------


def test_saved_queries_read_fields_the_app_writes(
    resources: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    write_request_line(
        route="GET /me",
        status=404,
        latency_us=1000,
        request_id="r",
        subject="s",
        function_request_id="f",
        invocation=_problem("not-found"),
        cold_start=False,
    )
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    queries = {
        resource["Properties"]["Name"]["Fn::Sub"].removeprefix("${AWS::StackName}/"): resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Logs::QueryDefinition"
    }
    assert set(queries) == {
        "one request by id",
        "slowest routes",
        "errors by problem type",
        "a user's recent requests",
    }
    for name, query in queries.items():
        for group in query["LogGroupNames"]:
            reference = group["Fn::If"][1] if "Fn::If" in group else group
            assert resources[reference["Ref"]]["Type"] == "AWS::Logs::LogGroup", name
        # Fields named in filters and stats (not the ones an expression defines) are on the line.
        text = query["QueryString"]
        defined = set(re.findall(r"\bas (\w+)", text))
        used = set(re.findall(r"\b(request_id|route|status|problem|Latency|subject)\b", text)) - defined
        assert used, name
        assert used <= set(line), (name, used - set(line))
    assert 'subject = "REPLACE-WITH-SUBJECT"' in queries["a user's recent requests"]["QueryString"]
    by_id = queries["one request by id"]
    assert 'request_id = "REPLACE-WITH-REQUEST-ID"' in by_id["QueryString"]
    # Across functions and the gateway's access log (whose field is requestId).
    assert {"ApiFunctionLogGroup", "StreamFunctionLogGroup", "ApiAccessLogGroup"} <= {
        g["Ref"] for g in by_id["LogGroupNames"] if "Ref" in g
    }


def _problem(problem: str) -> _Invocation:
    invocation = _Invocation()
    invocation.problem = problem
    return invocation
