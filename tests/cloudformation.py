"""template.yaml as data: CloudFormation's short tags read into their long form, and the values a stack
deployed with the parameters' defaults gives its functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
NESTED_TEMPLATES = sorted((TEMPLATE.parent / "templates").glob("*.yaml"))


# libyaml's parser when PyYAML was built with it (its wheels are): the same documents, ten times faster,
# and the suite reads template.yaml dozens of times.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CloudFormationLoader(_SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !Sub, !GetAtt...) into their long form."""


def _construct_short_tag(loader: CloudFormationLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
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


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=CloudFormationLoader)
    return loaded


def function_properties(
    template: dict[str, Any], name: str, resources: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A function's properties as SAM deploys them (the template's Globals applied, the two environments
    merged), with its Metadata. `resources`: the template's, or a deployed selection of them."""
    function = (resources or template["Resources"])[name]
    defaults = template["Globals"]["Function"]
    merged: dict[str, Any] = {**defaults, **function["Properties"]}
    merged["Environment"] = {
        "Variables": {
            **defaults.get("Environment", {}).get("Variables", {}),
            **function["Properties"].get("Environment", {}).get("Variables", {}),
        }
    }
    merged["Metadata"] = function.get("Metadata", {})
    return merged


def default_environment_value(function: str, variable: str, template: dict[str, Any] | None = None) -> str:
    """The value `variable` has in `function`'s environment when the stack's parameters keep their
    defaults: a literal, or a `Ref` to a parameter."""
    template = template or load_template()
    value = function_properties(template, function)["Environment"]["Variables"][variable]
    if isinstance(value, dict):
        (function_name, argument), *_ = value.items()
        if function_name != "Ref" or argument not in template["Parameters"]:
            raise ValueError(f"{variable} of {function} is not a literal nor a parameter: {value}")
        value = template["Parameters"][argument]["Default"]
    return str(value)


def parameter_values(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Every parameter's value for a deployment: its default, or the override."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    unknown = set(overrides) - set(values)
    assert not unknown, f"not parameters of the template: {sorted(unknown)}"
    return {**values, **overrides}


def evaluate_condition(template: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """A condition as CloudFormation evaluates it, including the string functions conditions may use on
    parameters (Fn::Select, Fn::Split, Fn::Join, Fn::Sub)."""

    def value(expression: Any) -> Any:
        if not isinstance(expression, dict):
            return expression
        (function, argument), *_ = expression.items()
        if function == "Ref":
            return parameters[argument]
        if function == "Condition":
            return evaluate_condition(template, argument, parameters)
        if function == "Fn::Equals":
            return str(value(argument[0])) == str(value(argument[1]))
        if function == "Fn::Not":
            return not value(argument[0])
        if function == "Fn::And":
            return all(value(item) for item in argument)
        if function == "Fn::Or":
            return any(value(item) for item in argument)
        if function == "Fn::Select":
            return value(argument[1])[int(value(argument[0]))]
        if function == "Fn::Split":
            return str(value(argument[1])).split(argument[0])
        if function == "Fn::Join":
            # A CommaDelimitedList parameter's value is given as its comma-separated text.
            items = value(argument[1])
            items = items.split(",") if isinstance(items, str) else items
            return str(argument[0]).join(str(value(item)) for item in items)
        if function == "Fn::Sub":
            assert isinstance(argument, str), expression
            return re.sub(r"\$\{([^}]+)\}", lambda match: parameters[match.group(1)], argument)
        raise AssertionError(f"unsupported in a condition: {function}")

    return bool(value(template["Conditions"][name]))


def decide_conditions(value: Any, is_true: Callable[[str], bool]) -> Any:
    """`value` with every Fn::If decided and every AWS::NoValue dropped; other intrinsics stay as written."""
    no_value = {"Ref": "AWS::NoValue"}
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return decide_conditions(when_true if is_true(name) else when_false, is_true)
        decided = {key: decide_conditions(item, is_true) for key, item in value.items()}
        return {key: item for key, item in decided.items() if item != no_value}
    if isinstance(value, list):
        return [item for item in (decide_conditions(entry, is_true) for entry in value) if item != no_value]
    return value


def deployed(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The resources (conditions decided) a deployment with these parameter values creates."""
    parameters = parameter_values(template, **overrides)

    def is_true(name: str) -> bool:
        return evaluate_condition(template, name, parameters)

    return {
        name: decide_conditions(resource, is_true)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or is_true(resource["Condition"])
    }


def keeps_the_shared_layer(properties: dict[str, Any], layer: str) -> bool:
    """Whether a function gets `layer`: through Globals (no Layers of its own), or, when its own Layers is a
    Fn::If (which replaces Globals' list instead of adding to it), first in every branch."""
    own = properties.get("Layers")
    if own is None:
        return True
    if not (isinstance(own, dict) and set(own) == {"Fn::If"}):
        return False
    _, *branches = own["Fn::If"]
    return all(isinstance(branch, list) and branch[:1] == [{"Ref": layer}] for branch in branches)
