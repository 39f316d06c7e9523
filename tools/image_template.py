"""Writes the container-image variant of template.yaml: the same stack, with every function deployed from one
Lambda container image (the repository's Dockerfile) instead of zip artifacts and the dependencies layer.
Generated, never edited, so that it can never drift from template.yaml:

    python3 tools/image_template.py [--output build/template-image.yaml]
    .tools/sam/bin/sam build -t build/template-image.yaml        # needs Docker
    .tools/sam/bin/sam deploy --resolve-image-repos ...

What differs, and why:
- each function: PackageType Image, its handler as the image's command, the Dockerfile as its build recipe;
  no Runtime, Handler, CodeUri or layer (an image carries its runtime and dependencies);
- no DependenciesLayer;
- no SnapStart parameter: Lambda offers SnapStart for zip functions only. Provisioned concurrency stays;
- Tracing is "off" only: the ADOT layer that Tracing=otel adds cannot be attached to an image (Lambda and
  API Gateway still record their X-Ray segments).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.cloudformation import CloudFormationLoader  # noqa: E402 - the one reader of template.yaml's tags

TEMPLATE = ROOT / "template.yaml"
DEFAULT_OUTPUT = ROOT / "build" / "template-image.yaml"
DOCKERFILE = "Dockerfile"
DOCKER_TAG = "python3.13-arm64"
# What only zip functions have: the parameter, its condition and rule, and the function property.
_SNAPSTART_PARAMETER = "SnapStart"
_SNAPSTART_CONDITION = "UseSnapStart"
_SNAPSTART_RULE = "PreWarmingOneWayAtMost"
_TRACING_PARAMETER = "Tracing"
_TRACING_LAYER_MAPPING = "AdotPythonLayer"


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def image_template(template: dict[str, Any], output_directory: Path) -> dict[str, Any]:
    """template.yaml (as data, tags in their long form) turned into its container-image variant, with local
    paths made relative to `output_directory`."""
    variant = copy.deepcopy(template)
    globals_function = variant["Globals"]["Function"]
    for zip_only in ("Runtime", "Layers", "Handler", "CodeUri"):
        globals_function.pop(zip_only, None)
    resources: dict[str, Any] = variant["Resources"]
    for name in [name for name, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"]:
        del resources[name]
    for resource in resources.values():
        if resource["Type"] == "AWS::Serverless::Function":
            _to_image_function(resource, output_directory)
        elif resource["Type"] == "AWS::Serverless::Application":
            location = resource["Properties"]["Location"]
            if isinstance(location, str) and not location.startswith(("s3://", "https://")):
                resource["Properties"]["Location"] = _relative(ROOT / location, output_directory)
    _remove_snapstart(variant)
    _tracing_off(variant)
    variant["Description"] = f"{template.get('Description', '').strip()} (container image variant)".strip()
    return variant


def _to_image_function(resource: dict[str, Any], output_directory: Path) -> None:
    properties = resource["Properties"]
    handler = properties.pop("Handler")
    for zip_only in ("CodeUri", "Runtime", "Layers", "SnapStart"):
        properties.pop(zip_only, None)
    properties["PackageType"] = "Image"
    # The runtime reads `functions/signing_keys.handler` and `functions.signing_keys.handler` alike.
    properties["ImageConfig"] = {"Command": [handler]}
    resource["Metadata"] = {
        "Dockerfile": DOCKERFILE,
        "DockerContext": _relative(ROOT, output_directory),
        "DockerTag": DOCKER_TAG,
    }


def _remove_snapstart(variant: dict[str, Any]) -> None:
    variant["Parameters"].pop(_SNAPSTART_PARAMETER, None)
    variant.get("Conditions", {}).pop(_SNAPSTART_CONDITION, None)
    variant.get("Rules", {}).pop(_SNAPSTART_RULE, None)
    interface = variant.get("Metadata", {}).get("AWS::CloudFormation::Interface", {})
    for group in interface.get("ParameterGroups", []):
        group["Parameters"] = [name for name in group["Parameters"] if name != _SNAPSTART_PARAMETER]


def _tracing_off(variant: dict[str, Any]) -> None:
    tracing = variant["Parameters"][_TRACING_PARAMETER]
    tracing["AllowedValues"] = ["off"]
    tracing["Default"] = "off"
    tracing["Description"] = "The container-image variant cannot attach the ADOT layer: off only."
    mappings = variant.get("Mappings", {})
    mappings.pop(_TRACING_LAYER_MAPPING, None)
    if not mappings:
        variant.pop("Mappings", None)


def write(output: Path) -> Path:
    template = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader
    variant = image_template(template, output.parent.resolve())
    output.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by tools/image_template.py from template.yaml: do not edit.\n"
    output.write_text(header + yaml.safe_dump(variant, sort_keys=False, width=120))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    arguments = parser.parse_args(argv)
    print(write(arguments.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
