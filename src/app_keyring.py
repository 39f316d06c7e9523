"""The app secret's keyring as Secrets Manager holds it: versioned keys (kid -> key material), the current
kid, and how a rotation adds a key and retires old ones. Standard library only: the app (app_secrets.py)
and the rotation function (functions/rotate_app_secret.py) share it, and the rotation function imports
nothing else of the app.

The secret is JSON: `{"keys": [{"kid": ..., "key": ...}, ...], "current_kid": ...}`, oldest key first. A
secret from before keyrings holds one `master_key` (what the template's GenerateSecretString makes): it
reads as a keyring of that one key under LEGACY_KID, so deployed stacks need no migration. The first
rotation writes the new layout and keeps `master_key` until the legacy key retires, so that a rollback to
code from before keyrings still reads its key meanwhile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MASTER_KEY_FIELD = "master_key"
KEYS_FIELD = "keys"
CURRENT_KID_FIELD = "current_kid"
# The kid of the single `master_key`, and of everything made before keyrings (cursors without a kid,
# API-key hashes without one). It sorts before every rotation's kid.
LEGACY_KID = "0"
# A rotation's kid is the UTC time it was made, so that kids sort by age: a kid newer than the current one
# is a key another container has already seen, an older unknown one was retired.
_KID_TIME_FORMAT = "%Y%m%d%H%M%S"
KID_PATTERN = re.compile(r"^(?:0|\d{14})$")
MIN_KEY_LENGTH = 32


class MalformedKeyring(ValueError):
    """The secret is not a keyring this code can use. The message never holds key material."""


@dataclass(frozen=True)
class Keyring:
    """Keys oldest first; `current_kid` signs and hashes, every key in `keys` verifies."""

    keys: tuple[tuple[str, str], ...]
    current_kid: str
    # Other fields of the secret, kept as they are by a rotation.
    other_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self.keys)

    def material(self, kid: str) -> str | None:
        return next((key for known, key in self.keys if known == kid), None)

    @property
    def current_material(self) -> str:
        material = self.material(self.current_kid)
        assert material is not None  # parse_keyring and rotated() guarantee it
        return material

    def may_know_later(self, kid: str) -> bool:
        """Whether an unknown `kid` can be a key made after this keyring was read (so that reading the
        secret again may find it), rather than a retired or made-up one."""
        return KID_PATTERN.match(kid) is not None and kid > max(self.kids)

    def rotated(self, new_kid: str, new_material: str, retire_after_rotations: int) -> Keyring:
        """This keyring plus a new current key; keys that stopped being current more than
        `retire_after_rotations` rotations ago are retired (the ring keeps that many besides the new one)."""
        if retire_after_rotations < 1:
            raise ValueError("keys must stay accepted for at least one rotation")
        if new_kid in self.kids or new_kid <= max(self.kids):
            raise ValueError(f"kid {new_kid} is not newer than every kid of the keyring")
        keys = (*self.keys, (new_kid, new_material))[-(retire_after_rotations + 1) :]
        other_fields = dict(self.other_fields)
        if LEGACY_KID not in {kid for kid, _ in keys}:
            other_fields.pop(MASTER_KEY_FIELD, None)
        return _checked(Keyring(keys=keys, current_kid=new_kid, other_fields=other_fields))

    def to_json(self) -> str:
        document = {
            **self.other_fields,
            KEYS_FIELD: [{"kid": kid, "key": key} for kid, key in self.keys],
            CURRENT_KID_FIELD: self.current_kid,
        }
        return json.dumps(document)


def parse_keyring(document: Any) -> Keyring:
    """The keyring in a secret's value (its JSON text, or that text already decoded)."""
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError:
            raise MalformedKeyring("the secret is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedKeyring("the secret is not a JSON object")
    if KEYS_FIELD not in document:
        master = document.get(MASTER_KEY_FIELD)
        if not isinstance(master, str):
            raise MalformedKeyring(f"the secret has neither {KEYS_FIELD} nor {MASTER_KEY_FIELD}")
        others = {name: value for name, value in document.items() if name != MASTER_KEY_FIELD}
        # master_key stays among the other fields: a rotation keeps it while the legacy key is in the ring.
        return _checked(Keyring(((LEGACY_KID, master),), LEGACY_KID, {MASTER_KEY_FIELD: master, **others}))
    entries = document[KEYS_FIELD]
    if not isinstance(entries, list) or not entries:
        raise MalformedKeyring(f"{KEYS_FIELD} is not a non-empty list")
    keys: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise MalformedKeyring(f"an entry of {KEYS_FIELD} has no kid")
        if not isinstance(entry.get("key"), str):
            raise MalformedKeyring(f"key {entry['kid']} has no key material")
        keys.append((entry["kid"], entry["key"]))
    current = document.get(CURRENT_KID_FIELD)
    if not isinstance(current, str):
        raise MalformedKeyring(f"{CURRENT_KID_FIELD} is missing")
    others = {name: value for name, value in document.items() if name not in {KEYS_FIELD, CURRENT_KID_FIELD}}
    return _checked(Keyring(tuple(keys), current, others))


def _checked(keyring: Keyring) -> Keyring:
    kids = keyring.kids
    if len(set(kids)) != len(kids):
        raise MalformedKeyring("a kid appears twice")
    for kid, key in keyring.keys:
        if not KID_PATTERN.match(kid):
            raise MalformedKeyring(f"kid {kid!r} is not a legacy kid nor a rotation time")
        if len(key) < MIN_KEY_LENGTH:
            raise MalformedKeyring(f"key {kid} is shorter than {MIN_KEY_LENGTH} characters")
    if list(kids) != sorted(kids):
        raise MalformedKeyring("keys are not ordered oldest first")
    if keyring.current_kid != kids[-1]:
        raise MalformedKeyring(f"the current kid {keyring.current_kid} is not the newest key")
    return keyring


def next_kid(keyring: Keyring, now: datetime | None = None) -> str:
    """A kid for a key made now: the time, or one second after the newest kid when that is not earlier
    (two rotations within a second, or a clock behind the one that made the newest key)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    newest = max(keyring.kids)
    if newest != LEGACY_KID:
        after_newest = datetime.strptime(newest, _KID_TIME_FORMAT).replace(tzinfo=UTC) + timedelta(seconds=1)
        moment = max(moment, after_newest)
    return moment.strftime(_KID_TIME_FORMAT)
