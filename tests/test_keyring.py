"""The app secret's keyring: its JSON layout (and the single master_key of stacks deployed before it), how
rotations add and retire keys, and one container's copy of it against the stand-in's Secrets Manager:
cached, read again once for a kid it has not seen, never more often than the cooldown allows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from local.resources import aws_client, create_app_secret
from local.standin import StandIn

from app_keyring import (
    LEGACY_KID,
    MASTER_KEY_FIELD,
    Keyring,
    MalformedKeyring,
    next_kid,
    parse_keyring,
)
from app_secrets import ContainerKeyring, PurposeKeys, RetiredKey, keyed_digest
from errors import ServiceUnavailable
from pagination import CursorCodec, InvalidCursor
from settings import Settings
from tests.secret_rotation import rotate, rotation_function_arn

MASTER = "m" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _legacy_secret(standin: StandIn) -> str:
    return create_app_secret(standin.endpoint, f"stratus-keyring-{uuid.uuid4().hex[:10]}/app")


def _master_key(standin: StandIn, secret: str) -> str:
    value = aws_client("secretsmanager", standin.endpoint).get_secret_value(SecretId=secret)["SecretString"]
    master: str = json.loads(value)[MASTER_KEY_FIELD]
    return master


def _settings(secret: str, **overrides: Any) -> Settings:
    return Settings(app_secret_arn=secret, **overrides)


# --- The layout ----------------------------------------------------------------------------------------


def test_a_single_master_key_reads_as_a_keyring_of_the_legacy_kid() -> None:
    keyring = parse_keyring(json.dumps({MASTER_KEY_FIELD: MASTER}))
    assert keyring.kids == (LEGACY_KID,)
    assert keyring.current_kid == LEGACY_KID
    assert keyring.current_material == MASTER


def test_a_rotated_keyring_round_trips_through_json_and_keeps_other_fields() -> None:
    legacy = parse_keyring({MASTER_KEY_FIELD: MASTER, "note": "kept"})
    rotated = legacy.rotated("20260101000000", "n" * 64, retire_after_rotations=2)
    again = parse_keyring(rotated.to_json())
    assert again == rotated
    assert again.kids == (LEGACY_KID, "20260101000000")
    assert json.loads(rotated.to_json())["note"] == "kept"
    assert json.loads(rotated.to_json())[MASTER_KEY_FIELD] == MASTER


def test_retiring_the_legacy_key_drops_the_master_key_field() -> None:
    ring = parse_keyring({MASTER_KEY_FIELD: MASTER}).rotated(
        "20260101000000", "n" * 64, retire_after_rotations=1
    )
    ring = ring.rotated("20260201000000", "o" * 64, retire_after_rotations=1)
    assert ring.kids == ("20260101000000", "20260201000000")
    assert MASTER_KEY_FIELD not in json.loads(ring.to_json())


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", "not JSON"),
        ([], "not a JSON object"),
        ({}, "neither keys nor master_key"),
        ({MASTER_KEY_FIELD: "short"}, "shorter than"),
        ({"keys": [], "current_kid": "0"}, "non-empty list"),
        ({"keys": [{"kid": "0", "key": MASTER}]}, "current_kid is missing"),
        ({"keys": [{"kid": "x1", "key": MASTER}], "current_kid": "x1"}, "not a legacy kid"),
        ({"keys": [{"kid": "0", "key": MASTER}, {"kid": "0", "key": MASTER}], "current_kid": "0"}, "twice"),
        (
            {
                "keys": [{"kid": "20260101000000", "key": MASTER}, {"kid": "0", "key": MASTER}],
                "current_kid": "0",
            },
            "oldest first",
        ),
        (
            {
                "keys": [{"kid": "0", "key": MASTER}, {"kid": "20260101000000", "key": MASTER}],
                "current_kid": "0",
            },
            "not the newest",
        ),
    ],
)
def test_a_malformed_keyring_is_refused_without_showing_key_material(document: Any, reason: str) -> None:
    with pytest.raises(MalformedKeyring, match=reason) as refused:
        parse_keyring(document)
    assert MASTER not in str(refused.value)


def test_kids_are_rotation_times_that_always_increase() -> None:
    legacy = parse_keyring({MASTER_KEY_FIELD: MASTER})
    moment = datetime(2026, 12, 4, 10, 0, 0, 500, tzinfo=UTC)
    first = next_kid(legacy, moment)
    assert first == "20261204100000"
    ring = legacy.rotated(first, "n" * 64, retire_after_rotations=3)
    # The same second again, or a clock running behind: one second after the newest kid.
    assert next_kid(ring, moment) == "20261204100001"
    assert next_kid(ring, datetime(2020, 1, 1, tzinfo=UTC)) == "20261204100001"
    with pytest.raises(ValueError, match="not newer"):
        ring.rotated(first, "o" * 64, retire_after_rotations=3)
    with pytest.raises(ValueError, match="at least one rotation"):
        ring.rotated("20261204100005", "o" * 64, retire_after_rotations=0)


def test_only_a_kid_newer_than_every_known_one_may_be_learned_by_reading_again() -> None:
    ring = Keyring((("0", MASTER), ("20260101000000", "n" * 64)), "20260101000000")
    assert ring.may_know_later("20260201000000")
    assert not ring.may_know_later("20251231000000")
    assert not ring.may_know_later("abc")


# --- Made before keyrings --------------------------------------------------------------------------------


def test_api_key_hashes_and_cursors_made_before_keyrings_still_verify(standin: StandIn) -> None:
    secret = _legacy_secret(standin)
    master = _master_key(standin, secret)
    settings = _settings(secret)
    # What the code before keyrings stored and handed out, computed its way.
    pepper = hmac.new(master.encode(), b"api-key-pepper", hashlib.sha256).digest()
    stored = hmac.new(pepper, b"the secret part", hashlib.sha256).hexdigest()
    assert keyed_digest(settings, "api-key-pepper", "the secret part", made_like=stored) == stored
    # New hashes under the legacy key keep that format, which older containers still check.
    assert keyed_digest(settings, "api-key-pepper", "the secret part") == stored

    signing = hmac.new(master.encode(), b"cursor-signing", hashlib.sha256).digest()
    payload = json.dumps(
        {"b": "binding", "p": {"pk": {"S": "x"}}}, separators=(",", ":"), sort_keys=True
    ).encode()
    signature = hmac.new(signing, payload, hashlib.sha256).digest()[:16]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    codec = CursorCodec(PurposeKeys(settings, "cursor-signing"))
    assert codec.decode(f"{b64(payload)}.{b64(signature)}", "binding") == {"pk": {"S": "x"}}
    assert codec.encode({"pk": {"S": "x"}}, "binding") == f"{b64(payload)}.{b64(signature)}"


# --- One container's copy --------------------------------------------------------------------------------


def _reads(calls: list[str]) -> Any:
    from tests.aws_calls import AwsCall

    def count(call: AwsCall) -> Any:
        if call.operation == "GetSecretValue":
            calls.append(call.params.get("VersionStage", ""))
        return call.proceed()

    return count


def test_a_container_reads_the_secret_once_per_cache_time(standin: StandIn) -> None:
    from tests.aws_calls import intercepting_aws_calls

    keyring = ContainerKeyring(_legacy_secret(standin), cache_seconds=300, refresh_cooldown_seconds=15)
    calls: list[str] = []
    with intercepting_aws_calls(_reads(calls)):
        for _ in range(5):
            keyring.current_key("cursor-signing")
            keyring.key("api-key-pepper", LEGACY_KID)
    # Always the version in use: during a rotation the newest version is the pending one.
    assert calls == ["AWSCURRENT"]


def test_a_new_kid_within_the_cooldown_is_deferred_then_learned(standin: StandIn) -> None:
    """The unlucky case: a read forced by a made-up kid just before a rotation, then the rotation's real
    new kid before the cooldown has passed."""
    from tests.aws_calls import intercepting_aws_calls

    secret = _legacy_secret(standin)
    function_arn = rotation_function_arn(standin.endpoint)
    clock = FakeClock()
    keyring = ContainerKeyring(secret, cache_seconds=300, refresh_cooldown_seconds=15, clock=clock)
    keyring.current_key("cursor-signing")
    with pytest.raises(RetiredKey):
        keyring.key("cursor-signing", "99991231235959")
    rotate(standin.endpoint, secret, function_arn)
    newest = ContainerKeyring(secret, cache_seconds=300, refresh_cooldown_seconds=15).keyring().current_kid

    clock.now += 5
    calls: list[str] = []
    with intercepting_aws_calls(_reads(calls)):
        with pytest.raises(ServiceUnavailable) as deferred:
            keyring.key("cursor-signing", newest)
        assert deferred.value.headers == {"Retry-After": "10"}
        # The made-up kid the last read looked for stays refused without a read.
        with pytest.raises(RetiredKey):
            keyring.key("cursor-signing", "99991231235959")
        assert calls == []
        clock.now += 10
        assert keyring.key("cursor-signing", newest)
        assert keyring.key("cursor-signing", newest)
    assert calls == ["AWSCURRENT"]
    assert keyring.current_key("cursor-signing")[0] == newest


def test_a_kid_older_than_the_ring_is_retired_without_reading_again(standin: StandIn) -> None:
    from tests.aws_calls import intercepting_aws_calls

    secret = _legacy_secret(standin)
    function_arn = rotation_function_arn(standin.endpoint)
    rotate(standin.endpoint, secret, function_arn)
    keyring = ContainerKeyring(secret, cache_seconds=300, refresh_cooldown_seconds=15)
    keyring.current_key("cursor-signing")
    calls: list[str] = []
    with intercepting_aws_calls(_reads(calls)), pytest.raises(RetiredKey):
        keyring.key("cursor-signing", "20000101000000")
    assert calls == []


def test_an_unusable_secret_is_a_503_that_names_no_key_material(
    standin: StandIn, app_log: io.StringIO
) -> None:
    manager = aws_client("secretsmanager", standin.endpoint)
    secret: str = manager.create_secret(
        Name=f"stratus-keyring-{uuid.uuid4().hex[:10]}/app",
        SecretString=json.dumps({MASTER_KEY_FIELD: "short-and-secret"}),
    )["ARN"]
    keyring = ContainerKeyring(secret, cache_seconds=300, refresh_cooldown_seconds=15)
    with pytest.raises(ServiceUnavailable):
        keyring.current_key("cursor-signing")
    assert "shorter than" in app_log.getvalue()
    assert "short-and-secret" not in app_log.getvalue()


def test_a_cursor_whose_key_retired_is_an_invalid_cursor(standin: StandIn) -> None:
    secret = _legacy_secret(standin)
    function_arn = rotation_function_arn(standin.endpoint)
    settings = _settings(secret)
    old = CursorCodec(PurposeKeys(settings, "cursor-signing")).encode("position", "binding")
    assert old is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KEY_RETIREMENT_ROTATIONS", "1")
        rotate(standin.endpoint, secret, function_arn)
        rotate(standin.endpoint, secret, function_arn)
    later = CursorCodec(PurposeKeys(_settings(secret), "cursor-signing"))
    with pytest.raises(InvalidCursor, match="no longer valid"):
        later.decode(old, "binding")
