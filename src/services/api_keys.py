"""Personal API keys: issue (secret shown once), list, revoke, and authenticate `X-API-Key` requests.

A key reads `stratus_<key id>_<secret>`. Only HMAC-SHA256(pepper, secret) is stored, with the kid of the
pepper that made it (app_secrets.keyed_digest), the peppers living in Secrets Manager, so a copy of the
table alone cannot be used to forge or test keys. A key outlives rotations until its pepper retires.

Every key ends (90 days unless asked otherwise, at most 366), a person holds at most 20 active keys, and
a key stops working when its owner's sessions end (sign-out everywhere, disabling, demotion: the keys are
revoked in the same transaction that records it) or, within OWNER_RECHECK, when the directory no longer
has the owner enabled (an account disabled or deleted outside the app).
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import Request

import directory
import models
from app_secrets import RetiredKey, keyed_digest
from auth import Principal
from errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthorized, UnprocessableContent
from observability import logger
from pagination import CursorCodec
from services.accounts import end_sessions, live_directory_entry, refuse_ended_session
from settings import Settings

KEY_PREFIX = "stratus"
_KEY_FORMAT = re.compile(r"^stratus_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=366)
MAX_ACTIVE_KEYS = models.api_key.MAX_ACTIVE_KEYS
# How often a key's use confirms, in the directory, that its owner can still sign in; and for how long a
# confirmation still admits the key while the directory cannot be reached.
OWNER_RECHECK = timedelta(minutes=5)
OWNER_RECHECK_GRACE = timedelta(hours=1)
# A mint or a revocation races only the same person's other key changes: a few tries settle it.
_KEY_LIST_ATTEMPTS = 3


def _secret_hash(settings: Settings, secret: str, made_like: str | None = None) -> str:
    """Under the current pepper, or under the pepper that made the stored hash `made_like`."""
    return keyed_digest(settings, "api-key-pepper", secret, made_like)


def key_end(valid_until: datetime | None, now: datetime) -> datetime:
    """When a key asked to end at `valid_until` (None: the default lifetime) ends; 422 outside the
    allowed range."""
    until = valid_until if valid_until is not None else now + DEFAULT_LIFETIME
    if until <= now or until - now > MAX_LIFETIME:
        raise UnprocessableContent(
            f"An API key must end in the future and within {MAX_LIFETIME.days} days (default "
            f"{DEFAULT_LIFETIME.days})."
        )
    return until


def issue_api_key(
    principal: Principal, settings: Settings, name: str, scopes: set[str], valid_until: datetime | None
) -> tuple[models.api_key.ApiKey, str]:
    """Returns the stored key and the full secret, which is never stored nor shown again.

    One Cognito call (the account is live), one consistent GetItem (the person's key list and when their
    sessions last ended) and one transaction (the key and the list, on the condition that neither the
    list nor that time changed): a disabling or sign-out that lands meanwhile either refuses this mint
    or finds the new key and revokes it."""
    if principal.auth_method != "jwt" or principal.is_machine:
        raise Forbidden("API keys are issued to signed-in people only.")
    missing = scopes - principal.scopes
    if missing:
        raise Forbidden(f"You cannot grant scopes you do not hold: {', '.join(sorted(missing))}.")
    until = key_end(valid_until, datetime.now(UTC))
    live_directory_entry(principal, settings)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    secret_hash = _secret_hash(settings, secret)
    for _ in range(_KEY_LIST_ATTEMPTS):
        holder = models.api_key.get_key_holder(principal.subject)
        refuse_ended_session(principal, holder.sessions_revoked_at)
        if len(holder.active_keys(datetime.now(UTC))) >= MAX_ACTIVE_KEYS:
            raise Conflict(f"You have {MAX_ACTIVE_KEYS} active API keys, the most allowed: revoke one first.")
        try:
            item = models.api_key.put_api_key(
                holder=holder,
                key_id=key_id,
                name=name,
                display_prefix=f"{KEY_PREFIX}_{key_id}",
                secret_hash=secret_hash,
                scopes=scopes,
                valid_until=until,
            )
        except models.table.ConditionNotMet:
            continue
        return item, f"{KEY_PREFIX}_{key_id}_{secret}"
    raise Conflict("Your API keys changed concurrently; try again.")


def my_api_keys(
    principal: Principal, limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.api_key.ApiKey], str | None]:
    """One page of the caller's keys, newest first; no cursor after the last page."""
    start_key = codec.decode(cursor, binding)
    items, last_key = models.api_key.list_api_keys(principal.subject, limit, start_key)
    return items, codec.encode(last_key, binding)


def revoke_my_api_key(principal: Principal, key_id: str) -> None:
    """One consistent GetItem (the key list) and one transaction (the key and the list)."""
    for _ in range(_KEY_LIST_ATTEMPTS):
        holder = models.api_key.get_key_holder(principal.subject)
        try:
            revoked = models.api_key.revoke_api_key(holder, key_id)
        except models.table.ConditionNotMet:
            continue
        if not revoked:
            # Someone else's key and no key at all look the same.
            raise NotFound("No such API key.")
        return
    raise Conflict("Your API keys changed concurrently; try again.")


def _owner_confirmed(item: models.api_key.ApiKey, settings: Settings, now: datetime) -> bool:
    """Whether the directory was asked about the key's owner now (True) or a recent answer stands
    (False). An owner the directory no longer has enabled ends their sessions here: 401."""
    checked_at = item.owner_checked_at
    if checked_at is not None and now - checked_at < OWNER_RECHECK:
        return False
    try:
        owner = directory.find_user_by_subject(settings.cognito_user_pool_id, item.owner_subject)
    except ServiceUnavailable:
        # Deny on doubt, with a grace: a key confirmed within the hour keeps working through an outage.
        if checked_at is not None and now - checked_at < OWNER_RECHECK_GRACE:
            logger.warning("the directory could not confirm a key's owner; a recent confirmation stands")
            return False
        raise
    if owner is None or not owner.enabled:
        end_sessions(item.owner_subject)
        logger.info("a key's owner can no longer sign in: their keys were revoked", key_id=item.key_id)
        raise Unauthorized("The API key's owner can no longer sign in.")
    return True


async def authenticate_api_key(request: Request, presented: str) -> Principal:
    """`X-API-Key` → the owner's principal with the key's scopes.

    One strongly consistent GetItem per request; at most once a minute per key an UpdateItem of its last
    use, and at most every OWNER_RECHECK one Cognito call confirming the owner (in the same UpdateItem).
    Keys minted before key lists existed also read their owner's revocation time (one more GetItem)."""
    match = _KEY_FORMAT.match(presented.strip())
    if match is None:
        raise Unauthorized("The API key is malformed.")
    key_id, secret = match.groups()
    item = models.api_key.get_api_key(key_id)
    settings: Settings = request.app.state.settings
    # Compute the hash even for an unknown id, so timing does not reveal which ids exist.
    try:
        presented_hash = _secret_hash(settings, secret, item.secret_hash if item else None)
    except RetiredKey:
        # Its pepper was retired by the secret's rotations: the key can no longer be checked.
        raise Unauthorized("The API key is not valid.") from None
    if item is None or not hmac.compare_digest(presented_hash, item.secret_hash):
        raise Unauthorized("The API key is not valid.")
    now = datetime.now(UTC)
    if item.revoked_at is not None:
        raise Unauthorized("The API key has been revoked.")
    if item.ends_at() <= now:
        raise Unauthorized("The API key has expired.")
    if not item.listed:
        sessions_revoked_at = models.api_key.get_key_holder(item.owner_subject).sessions_revoked_at
        if sessions_revoked_at is not None and item.created_at <= sessions_revoked_at:
            raise Unauthorized("The API key has been revoked.")
    owner_checked = _owner_confirmed(item, settings, now)
    last_used = item.last_used_at is None or now - item.last_used_at >= LAST_USED_RESOLUTION
    models.api_key.touch_api_key(key_id, now, last_used=last_used, owner_checked=owner_checked)
    return Principal(
        subject=item.owner_subject,
        auth_method="api_key",
        scopes=frozenset(item.scopes or ()),
        key_id=key_id,
    )
