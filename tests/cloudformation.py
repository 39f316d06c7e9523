"""template.yaml as data: CloudFormation's short tags read into their long form, and the values a stack
deployed with the parameters' defaults gives its functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


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
