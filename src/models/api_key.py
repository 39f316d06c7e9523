"""Personal API keys: only a keyed hash of the secret is stored; lookup by key id is one GetItem.

The owner's profile item lists their active keys (key id -> valid until) under a version: minting adds
to that list and revoking removes from it in the same transaction as the key item, so the list is exact,
bounded (MAX_ACTIVE_KEYS), and ending a user's sessions revokes every active key in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, UnicodeSetAttribute, UTCDateTimeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from models.profile import UserProfile, profile_key
from models.table import INDEX_KEYS, StratusItem, page_of, plain_map, raise_refusal

_SK = "APIKEY"
_PROFILE_SK = "PROFILE"
# Expired and revoked keys stay readable for this long (audit, "why was I refused"), then TTL removes them.
RETENTION_AFTER_END = timedelta(days=30)
MAX_ACTIVE_KEYS = 20
# How long a key without a recorded end (minted before ends were mandatory) lives after its creation.
LEGACY_LIFETIME = timedelta(days=366)


def _key(key_id: str) -> str:
    return f"APIKEY#{key_id}"


def owner_index_key(owner_subject: str) -> str:
    return f"USER#{owner_subject}#APIKEYS"


class ApiKey(StratusItem, discriminator="ApiKey"):
    """pk=APIKEY#<key id>, sk=APIKEY; gsi1: USER#<owner>#APIKEYS / <created iso>#<key id> lists by owner."""

    key_id = UnicodeAttribute()
    owner_subject = UnicodeAttribute()
    name = UnicodeAttribute()
    display_prefix = UnicodeAttribute()
    # `<kid>$<hex>`: the kid of the pepper that made it (bare hex: the legacy pepper, app_secrets.py).
    secret_hash = UnicodeAttribute()
    scopes = UnicodeSetAttribute()
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)
    # When the owner's account was last confirmed live in the directory for this key.
    owner_checked_at = UTCDateTimeAttribute(null=True)
    # Listed among the owner's active keys on their profile item. Keys minted before that list existed
    # are not, and are checked against the owner's revocation time instead (see services.api_keys).
    listed = BooleanAttribute(null=True)

    def ends_at(self) -> datetime:
        return self.valid_until or (self.created_at + LEGACY_LIFETIME)


@dataclass(frozen=True)
class KeyHolder:
    """What the owner's profile item says about their keys, read consistently."""

    subject: str
    sessions_revoked_at: datetime | None
    # Key id -> valid until, expired ones included until a write prunes them.
    listed_keys: dict[str, datetime]
    version: int

    def active_keys(self, now: datetime) -> dict[str, datetime]:
        return {key_id: until for key_id, until in self.listed_keys.items() if until > now}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def get_key_holder(owner_subject: str) -> KeyHolder:
    """One strongly consistent GetItem of the owner's profile item (which may not exist yet)."""
    try:
        item = UserProfile.get(
            profile_key(owner_subject),
            _PROFILE_SK,
            consistent_read=True,
            attributes_to_get=["sessions_revoked_at", "api_keys", "api_keys_version"],
        )
    except UserProfile.DoesNotExist:
        return KeyHolder(owner_subject, None, {}, 0)
    listed = {
        str(key_id): datetime.fromtimestamp(int(until), UTC)
        for key_id, until in plain_map(item.api_keys).items()
    }
    return KeyHolder(owner_subject, item.sessions_revoked_at, listed, int(item.api_keys_version or 0))


def _holder_unchanged(holder: KeyHolder) -> Condition:
    """The profile item's key list is still the version `holder` read, and so is its revocation time."""
    condition: Condition = (
        UserProfile.api_keys_version == holder.version
        if holder.version
        else UserProfile.api_keys_version.does_not_exist()
    )
    if holder.sessions_revoked_at is None:
        condition &= UserProfile.sessions_revoked_at.does_not_exist()
    else:
        condition &= UserProfile.sessions_revoked_at == holder.sessions_revoked_at
    return condition


def _holder_update(holder: KeyHolder, listed: dict[str, datetime], *extra: Action) -> list[Action]:
    actions: list[Action] = [
        UserProfile.entity.set(UserProfile),
        UserProfile.api_keys_version.set(holder.version + 1),
        *extra,
    ]
    if listed:
        actions.append(UserProfile.api_keys.set({key_id: _epoch(until) for key_id, until in listed.items()}))
    else:
        actions.append(UserProfile.api_keys.remove())
    return actions


def _connection() -> Connection:
    return StratusItem._get_connection().connection


def put_api_key(
    *,
    holder: KeyHolder,
    key_id: str,
    name: str,
    display_prefix: str,
    secret_hash: str,
    scopes: set[str],
    valid_until: datetime,
) -> ApiKey:
    """One transaction: the key item, and the owner's key list with it (expired entries pruned), on the
    condition that the list and the owner's revocation time are what `holder` read. Raises
    ConditionNotMet when either changed meanwhile (a concurrent mint, revocation or end of sessions)."""
    now = datetime.now(UTC)
    item = ApiKey(
        _key(key_id),
        _SK,
        key_id=key_id,
        owner_subject=holder.subject,
        name=name,
        display_prefix=display_prefix,
        secret_hash=secret_hash,
        scopes=scopes,
        created_at=now,
        valid_until=valid_until,
        listed=True,
        gsi1pk=owner_index_key(holder.subject),
        # Fixed width, so that the sort key orders moments as strings (isoformat drops a zero fraction).
        gsi1sk=f"{now.isoformat(timespec='microseconds')}#{key_id}",
        expires_at=valid_until + RETENTION_AFTER_END,
    )
    listed = {**holder.active_keys(now), key_id: valid_until}
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.update(
                UserProfile(profile_key(holder.subject), _PROFILE_SK),
                actions=_holder_update(holder, listed),
                condition=_holder_unchanged(holder),
            )
            transaction.save(item, condition=ApiKey.pk.does_not_exist())
    except TransactWriteError as error:
        raise_refusal(error)
    return item


def get_api_key(key_id: str) -> ApiKey | None:
    """Strongly consistent: a revocation a moment ago is seen."""
    try:
        return ApiKey.get(_key(key_id), _SK, consistent_read=True)
    except ApiKey.DoesNotExist:
        return None


def list_api_keys(
    owner_subject: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[ApiKey], dict[str, Any] | None]:
    """One page on gsi1, newest first; the key to resume after it, or None when nothing follows."""
    result = ApiKey.gsi1.query(
        owner_index_key(owner_subject),
        scan_index_forward=False,
        limit=limit + 1,
        last_evaluated_key=start_key,
        page_size=limit + 1,
    )
    return page_of((item for item in result if isinstance(item, ApiKey)), limit, INDEX_KEYS["gsi1"])


def _revoked(now: datetime) -> list[Action]:
    return [ApiKey.revoked_at.set(now), ApiKey.expires_at.set(now + RETENTION_AFTER_END)]


def revoke_api_key(holder: KeyHolder, key_id: str) -> bool:
    """Marks the key revoked and drops it from the owner's list, in one transaction, if `holder.subject`
    owns it. False when it does not exist or is someone else's; raises ConditionNotMet when the owner's
    list changed meanwhile."""
    now = datetime.now(UTC)
    listed = {k: until for k, until in holder.active_keys(now).items() if k != key_id}
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.update(
                ApiKey(_key(key_id), _SK),
                actions=_revoked(now),
                condition=ApiKey.pk.exists() & (ApiKey.owner_subject == holder.subject),
            )
            transaction.update(
                UserProfile(profile_key(holder.subject), _PROFILE_SK),
                actions=_holder_update(holder, listed),
                condition=_holder_unchanged(holder),
            )
    except TransactWriteError as error:
        reasons = [reason.code if reason else None for reason in error.cancellation_reasons or ()]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return False
        raise_refusal(error)
    return True


def end_key_sessions(holder: KeyHolder, revoked_at: datetime) -> int:
    """Records that the owner's sessions ended at `revoked_at` (a later time already recorded is kept) and
    revokes every active key, all in one transaction of at most MAX_ACTIVE_KEYS + 1 items. Returns how many
    keys it revoked; raises ConditionNotMet when the owner's list changed meanwhile."""
    now = datetime.now(UTC)
    active = holder.active_keys(now)
    ended = max(revoked_at, holder.sessions_revoked_at or revoked_at)
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.update(
                UserProfile(profile_key(holder.subject), _PROFILE_SK),
                actions=_holder_update(holder, {}, UserProfile.sessions_revoked_at.set(ended)),
                condition=_holder_unchanged(holder),
            )
            for key_id in sorted(active):
                transaction.update(
                    ApiKey(_key(key_id), _SK), actions=_revoked(now), condition=ApiKey.pk.exists()
                )
    except TransactWriteError as error:
        raise_refusal(error)
    return len(active)


def touch_api_key(key_id: str, now: datetime, *, last_used: bool, owner_checked: bool) -> None:
    """Records use (at most once a minute, see the caller) and/or that the owner was confirmed live;
    a key revoked meanwhile is left alone."""
    actions: list[Action] = []
    if last_used:
        actions.append(ApiKey.last_used_at.set(now))
    if owner_checked:
        actions.append(ApiKey.owner_checked_at.set(now))
    if not actions:
        return
    try:
        ApiKey(_key(key_id), _SK).update(
            actions=actions, condition=ApiKey.pk.exists() & ApiKey.revoked_at.does_not_exist()
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
