"""Secrets Manager's rotation function for the app secret: each rotation adds a key to the keyring
(app_keyring.py), makes it current, and retires keys older than KEY_RETIREMENT_ROTATIONS rotations.

Secrets Manager calls it four times per rotation with the same ClientRequestToken, the id of the new
version it has staged AWSPENDING (empty until createSecret fills it):

- createSecret: put the rotated keyring into that version (nothing to do when it already holds one);
- setSecret: nothing: no other system holds these keys;
- testSecret: check the pending keyring is one the app can use and keeps every key not due to retire;
- finishSecret: move AWSCURRENT to the new version (Secrets Manager moves AWSPREVIOUS with it) and take
  AWSPENDING off it.

Every step can be repeated: Secrets Manager retries a failed step. Imports boto3 and app_keyring only.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import boto3

from app_keyring import Keyring, next_kid, parse_keyring

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
RETIREMENT_VARIABLE = "KEY_RETIREMENT_ROTATIONS"
DEFAULT_RETIREMENT_ROTATIONS = 13
# 48 random bytes, base64url: 64 characters, like the master key the template generates.
KEY_BYTES = 48
# Lambda writes the standard library's log records as JSON lines (the function's LogFormat).
logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


class RotationRefused(Exception):
    """This version cannot be rotated: the message says why (it is in the function's log)."""


def handler(event: dict[str, Any], context: Any) -> None:
    secret_id, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    client = boto3.client("secretsmanager")
    metadata = client.describe_secret(SecretId=secret_id)
    if not metadata.get("RotationEnabled"):
        raise RotationRefused(f"rotation is not enabled for {secret_id}")
    stages = metadata.get("VersionIdsToStages", {})
    if token not in stages:
        raise RotationRefused(f"version {token} of {secret_id} has no stage for rotation")
    if CURRENT in stages[token]:
        # Already finished (a repeated step after finishSecret): only AWSPENDING may be left to remove.
        if step == "finishSecret" and PENDING in stages[token]:
            client.update_secret_version_stage(
                SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=token
            )
        logger.info("%s: version %s is already %s", step, token, CURRENT)
        return
    if PENDING not in stages[token]:
        raise RotationRefused(f"version {token} of {secret_id} is not {PENDING}")
    steps = {
        "createSecret": create_secret,
        "setSecret": set_secret,
        "testSecret": test_secret,
        "finishSecret": finish_secret,
    }
    if step not in steps:
        raise RotationRefused(f"unknown step {step}")
    steps[step](client, secret_id, token)


def retirement_rotations() -> int:
    rotations = int(os.environ.get(RETIREMENT_VARIABLE, DEFAULT_RETIREMENT_ROTATIONS))
    if rotations < 1:
        raise RotationRefused(f"{RETIREMENT_VARIABLE} must be at least 1")
    return rotations


def _current_keyring(client: Any, secret_id: str) -> Keyring:
    value = client.get_secret_value(SecretId=secret_id, VersionStage=CURRENT)
    return parse_keyring(value["SecretString"])


def _pending_value(client: Any, secret_id: str, token: str) -> str | None:
    try:
        value = client.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage=PENDING)
    except client.exceptions.ResourceNotFoundException:
        return None
    text: str | None = value.get("SecretString")
    return text


def create_secret(client: Any, secret_id: str, token: str) -> None:
    if _pending_value(client, secret_id, token) is not None:
        logger.info("createSecret: version %s already holds its keyring", token)
        return
    current = _current_keyring(client, secret_id)
    kid = next_kid(current)
    rotated = current.rotated(kid, secrets.token_urlsafe(KEY_BYTES), retirement_rotations())
    # The token makes this put idempotent: a retry with the same value is accepted as done.
    client.put_secret_value(
        SecretId=secret_id, ClientRequestToken=token, SecretString=rotated.to_json(), VersionStages=[PENDING]
    )
    retired = sorted(set(current.kids) - set(rotated.kids))
    logger.info("createSecret: new key %s; keys kept %s; retired %s", kid, list(rotated.kids), retired)


def set_secret(client: Any, secret_id: str, token: str) -> None:
    # The app is the only user of these keys and reads them from the secret itself.
    logger.info("setSecret: nothing to set")


def test_secret(client: Any, secret_id: str, token: str) -> None:
    pending_text = _pending_value(client, secret_id, token)
    if pending_text is None:
        raise RotationRefused(f"version {token} holds no value to test")
    pending = parse_keyring(pending_text)
    current = _current_keyring(client, secret_id)
    if pending.current_kid in current.kids:
        raise RotationRefused(f"the pending keyring's current key {pending.current_kid} is not new")
    # Only the oldest keys may go: what the current keyring verifies now, the new one verifies too unless
    # it is due to retire.
    kept = current.kids[-retirement_rotations() :]
    missing = [kid for kid in kept if pending.material(kid) != current.material(kid)]
    if missing:
        raise RotationRefused(
            f"the pending keyring lost or changed keys that are not due to retire: {missing}"
        )
    logger.info("testSecret: keyring of %d keys, current %s", len(pending.kids), pending.current_kid)


def finish_secret(client: Any, secret_id: str, token: str) -> None:
    stages = client.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    current_version = next(version for version, labels in stages.items() if CURRENT in labels)
    client.update_secret_version_stage(
        SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=current_version
    )
    # Either state ends a rotation for Secrets Manager; without AWSPENDING no later RotateSecret can take
    # this version for one still in progress.
    client.update_secret_version_stage(SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=token)
    logger.info("finishSecret: version %s is %s; %s is AWSPREVIOUS", token, CURRENT, current_version)
