"""The app secret's rotation function, step by step against the stand-in's Secrets Manager: what each of
createSecret, setSecret, testSecret and finishSecret leaves in the secret and its staging labels, that
every step can be repeated, what it refuses, and how keys retire."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from local.resources import aws_client, create_app_secret
from local.standin import StandIn

from app_keyring import LEGACY_KID, MASTER_KEY_FIELD, parse_keyring
from functions.rotate_app_secret import RETIREMENT_VARIABLE, RotationRefused, handler
from tests.secret_rotation import (
    STEPS,
    rotate,
    rotation_function_arn,
    stages,
    start_rotation,
    step_event,
    value,
)

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


@pytest.fixture(scope="module")
def function_arn(standin: StandIn) -> str:
    return rotation_function_arn(standin.endpoint)


@pytest.fixture
def secret(standin: StandIn) -> str:
    """A new app secret as the template generates it: one master_key."""
    return create_app_secret(standin.endpoint, f"stratus-rotation-{uuid.uuid4().hex[:10]}/app")


@pytest.fixture(autouse=True)
def retire_after_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETIREMENT_VARIABLE, "2")


def _version_with(labels: dict[str, list[str]], label: str) -> str:
    (version,) = [version for version, held in labels.items() if label in held]
    return version


def test_each_step_leaves_the_secret_and_its_labels_as_secrets_manager_expects(
    standin: StandIn, secret: str, function_arn: str
) -> None:
    endpoint = standin.endpoint
    original = value(endpoint, secret)
    old_version = _version_with(stages(endpoint, secret), CURRENT)
    token = start_rotation(endpoint, secret, function_arn)
    assert stages(endpoint, secret) == {old_version: [CURRENT], token: [PENDING]}

    handler(step_event(secret, token, "createSecret"), None)
    pending = parse_keyring(value(endpoint, secret, VersionId=token, VersionStage=PENDING))
    assert pending.kids[0] == LEGACY_KID
    assert pending.material(LEGACY_KID) == original[MASTER_KEY_FIELD]
    assert pending.current_kid == pending.kids[1]
    assert len(pending.current_material) >= 64
    # Nothing uses the new key yet: the app reads AWSCURRENT, which is the old version still.
    assert stages(endpoint, secret) == {old_version: [CURRENT], token: [PENDING]}
    assert value(endpoint, secret, VersionStage=CURRENT) == original

    handler(step_event(secret, token, "setSecret"), None)
    handler(step_event(secret, token, "testSecret"), None)
    assert stages(endpoint, secret) == {old_version: [CURRENT], token: [PENDING]}

    handler(step_event(secret, token, "finishSecret"), None)
    assert stages(endpoint, secret) == {old_version: [PREVIOUS], token: [CURRENT]}
    current = parse_keyring(value(endpoint, secret, VersionStage=CURRENT))
    assert current == pending
    # A rollback to code from before keyrings still finds the legacy key where it looked for it.
    assert value(endpoint, secret, VersionStage=CURRENT)[MASTER_KEY_FIELD] == original[MASTER_KEY_FIELD]


def test_every_step_can_be_repeated(standin: StandIn, secret: str, function_arn: str) -> None:
    endpoint = standin.endpoint
    token = start_rotation(endpoint, secret, function_arn)
    handler(step_event(secret, token, "createSecret"), None)
    made = value(endpoint, secret, VersionId=token, VersionStage=PENDING)
    for step in STEPS:
        handler(step_event(secret, token, step), None)
        handler(step_event(secret, token, step), None)
    # The retried createSecret kept the key it had made: no second new key.
    assert value(endpoint, secret, VersionStage=CURRENT) == made
    old_version = next(version for version in stages(endpoint, secret) if version != token)
    assert stages(endpoint, secret) == {old_version: [PREVIOUS], token: [CURRENT]}
    # Any step repeated after the rotation finished changes nothing.
    for step in STEPS:
        handler(step_event(secret, token, step), None)
    assert stages(endpoint, secret) == {old_version: [PREVIOUS], token: [CURRENT]}


def test_a_finished_rotation_lets_the_next_one_start(
    standin: StandIn, secret: str, function_arn: str
) -> None:
    endpoint = standin.endpoint
    first = rotate(endpoint, secret, function_arn)
    second = rotate(endpoint, secret, function_arn)
    labels = stages(endpoint, secret)
    assert labels[second] == [CURRENT]
    assert labels[first] == [PREVIOUS]
    assert PENDING not in {label for held in labels.values() for label in held}


def test_keys_retire_after_the_configured_number_of_rotations(
    standin: StandIn, secret: str, function_arn: str
) -> None:
    endpoint = standin.endpoint
    kids_after = []
    for _ in range(3):
        rotate(endpoint, secret, function_arn)
        kids_after.append(parse_keyring(value(endpoint, secret, VersionStage=CURRENT)).kids)
    first, second, third = kids_after
    assert first[0] == second[0] == LEGACY_KID
    assert len(first) == 2
    assert len(second) == 3
    # Retired after two rotations: the key current before the first rotation, and with it master_key.
    assert third == (*second[1:], third[-1])
    assert LEGACY_KID not in third
    assert MASTER_KEY_FIELD not in value(endpoint, secret, VersionStage=CURRENT)
    assert list(third) == sorted(third)


def test_test_secret_refuses_a_pending_keyring_that_lost_a_key_not_due_to_retire(
    standin: StandIn, secret: str, function_arn: str
) -> None:
    endpoint = standin.endpoint
    rotate(endpoint, secret, function_arn)
    current = parse_keyring(value(endpoint, secret, VersionStage=CURRENT))
    token = start_rotation(endpoint, secret, function_arn)
    # A pending value made by hand that keeps only its new key: the legacy key is not due to retire yet.
    lost = current.rotated("29991231235959", "n" * 64, retire_after_rotations=1)
    aws_client("secretsmanager", endpoint).put_secret_value(
        SecretId=secret, ClientRequestToken=token, SecretString=lost.to_json(), VersionStages=[PENDING]
    )
    with pytest.raises(RotationRefused, match="not due to retire"):
        handler(step_event(secret, token, "testSecret"), None)


@pytest.mark.parametrize("step", STEPS)
def test_a_version_not_staged_for_rotation_is_refused(
    standin: StandIn, secret: str, function_arn: str, step: str
) -> None:
    start_rotation(standin.endpoint, secret, function_arn)
    with pytest.raises(RotationRefused, match="has no stage for rotation"):
        handler(step_event(secret, str(uuid.uuid4()), step), None)


def test_a_version_that_is_neither_pending_nor_current_is_refused(
    standin: StandIn, secret: str, function_arn: str
) -> None:
    first = rotate(standin.endpoint, secret, function_arn)
    rotate(standin.endpoint, secret, function_arn)
    with pytest.raises(RotationRefused, match="is not AWSPENDING"):
        handler(step_event(secret, first, "createSecret"), None)


def test_a_secret_without_rotation_is_refused(standin: StandIn, secret: str) -> None:
    current = _version_with(stages(standin.endpoint, secret), CURRENT)
    with pytest.raises(RotationRefused, match="rotation is not enabled"):
        handler(step_event(secret, current, "createSecret"), None)


def test_an_unreadable_current_secret_fails_create_secret_and_leaves_current_alone(
    standin: StandIn, function_arn: str
) -> None:
    endpoint = standin.endpoint
    manager = aws_client("secretsmanager", endpoint)
    secret: str = manager.create_secret(
        Name=f"stratus-rotation-{uuid.uuid4().hex[:10]}/app", SecretString=json.dumps({"other": "x"})
    )["ARN"]
    token = start_rotation(endpoint, secret, function_arn)
    with pytest.raises(ValueError, match="neither keys nor master_key"):
        handler(step_event(secret, token, "createSecret"), None)
    labels: dict[str, Any] = stages(endpoint, secret)
    assert labels[token] == [PENDING]
    assert value(endpoint, secret, VersionStage=CURRENT) == {"other": "x"}
