"""Personal API keys: only a keyed hash of the secret is stored; lookup by key id is one GetItem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import UnicodeAttribute, UnicodeSetAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import UpdateError

from models.table import INDEX_KEYS, StratusItem, page_of

_SK = "APIKEY"
# Expired and revoked keys stay readable for this long (audit, "why was I refused"), then TTL removes them.
RETENTION_AFTER_END = timedelta(days=30)


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


def put_api_key(
    *,
    key_id: str,
    owner_subject: str,
    name: str,
    display_prefix: str,
    secret_hash: str,
    scopes: set[str],
    valid_until: datetime | None,
) -> ApiKey:
    now = datetime.now(UTC)
    item = ApiKey(
        _key(key_id),
        _SK,
        key_id=key_id,
        owner_subject=owner_subject,
        name=name,
        display_prefix=display_prefix,
        secret_hash=secret_hash,
        scopes=scopes,
        created_at=now,
        valid_until=valid_until,
        gsi1pk=owner_index_key(owner_subject),
        # Fixed width, so that the sort key orders moments as strings (isoformat drops a zero fraction).
        gsi1sk=f"{now.isoformat(timespec='microseconds')}#{key_id}",
        expires_at=(valid_until + RETENTION_AFTER_END) if valid_until else None,
    )
    item.save(condition=ApiKey.pk.does_not_exist())
    return item


def get_api_key(key_id: str) -> ApiKey | None:
    try:
        return ApiKey.get(_key(key_id), _SK)
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


def revoke_api_key(key_id: str, owner_subject: str) -> ApiKey | None:
    """Marks the key revoked if `owner_subject` owns it; None when it does not exist or is someone else's."""
    now = datetime.now(UTC)
    item = ApiKey(_key(key_id), _SK)
    try:
        item.update(
            actions=[ApiKey.revoked_at.set(now), ApiKey.expires_at.set(now + RETENTION_AFTER_END)],
            condition=ApiKey.pk.exists() & (ApiKey.owner_subject == owner_subject),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return item


def revoke_all_api_keys(owner_subject: str) -> list[str]:
    """Revokes every key of `owner_subject` not revoked yet; returns their ids.

    One Query on the owner's keys, then one conditional update per key: a key revoked meanwhile is left
    as it is (and not counted).
    """
    now = datetime.now(UTC)
    revoked: list[str] = []
    active = ApiKey.gsi1.query(
        owner_index_key(owner_subject), filter_condition=ApiKey.revoked_at.does_not_exist()
    )
    for key in active:
        if not isinstance(key, ApiKey):
            continue
        try:
            ApiKey(key.pk, key.sk).update(
                actions=[ApiKey.revoked_at.set(now), ApiKey.expires_at.set(now + RETENTION_AFTER_END)],
                condition=ApiKey.pk.exists()
                & ApiKey.revoked_at.does_not_exist()
                & (ApiKey.owner_subject == owner_subject),
            )
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            continue
        revoked.append(key.key_id)
    return revoked


def touch_last_used(key_id: str, now: datetime, not_since: datetime) -> None:
    """Records use at most once per window: the condition makes concurrent touches a no-op."""
    item = ApiKey(_key(key_id), _SK)
    try:
        item.update(
            actions=[ApiKey.last_used_at.set(now)],
            condition=ApiKey.pk.exists()
            & (ApiKey.last_used_at.does_not_exist() | (ApiKey.last_used_at < not_since)),
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
