"""Secrets Manager's part of a rotation, played against the stand-in.

RotateSecret on the stand-in does what AWS does first: it stages a new, empty version AWSPENDING and
records the rotation (enabled, its function, its schedule). Its Lambda cannot run our function (that
needs Docker), so the stand-in is told to run a no-op in its place, and the test then invokes the four
steps itself, in order, with the event Secrets Manager sends: what AWS would do next.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import requests
from local.resources import aws_client

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def rotation_function_arn(endpoint: str) -> str:
    """A function the stand-in can 'invoke' without Docker, to name as the secret's rotation function."""
    response = requests.post(
        f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10
    )
    response.raise_for_status()
    name = f"rotate-{uuid.uuid4().hex[:10]}"
    role = aws_client("iam", endpoint).create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("placeholder.py", "def handler(event, context):\n    return None\n")
    created = aws_client("lambda", endpoint).create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="placeholder.handler",
        Code={"ZipFile": package.getvalue()},
    )
    arn: str = created["FunctionArn"]
    return arn


def start_rotation(endpoint: str, secret_id: str, function_arn: str) -> str:
    """RotateSecret: the token (version id) of the AWSPENDING version the stand-in staged."""
    response = aws_client("secretsmanager", endpoint).rotate_secret(
        SecretId=secret_id, RotationLambdaARN=function_arn, RotationRules={"AutomaticallyAfterDays": 30}
    )
    token: str = response["VersionId"]
    return token


def step_event(secret_id: str, token: str, step: str) -> dict[str, Any]:
    return {"SecretId": secret_id, "ClientRequestToken": token, "Step": step}


def rotate(endpoint: str, secret_id: str, function_arn: str) -> str:
    """A whole rotation, every step in order; the new current version's id."""
    from functions.rotate_app_secret import handler

    token = start_rotation(endpoint, secret_id, function_arn)
    for step in STEPS:
        handler(step_event(secret_id, token, step), None)
    return token


def stages(endpoint: str, secret_id: str) -> dict[str, list[str]]:
    """Version id -> its staging labels (versions without a label left out)."""
    described = aws_client("secretsmanager", endpoint).describe_secret(SecretId=secret_id)
    return {version: labels for version, labels in described["VersionIdsToStages"].items() if labels}


def value(endpoint: str, secret_id: str, **version: str) -> dict[str, Any]:
    text = aws_client("secretsmanager", endpoint).get_secret_value(SecretId=secret_id, **version)[
        "SecretString"
    ]
    decoded: dict[str, Any] = json.loads(text)
    return decoded
