"""Personal API keys: issue (secret shown once), list, revoke, and authenticate `X-API-Key` requests.

A key reads `stratus_<key id>_<secret>`. Only HMAC-SHA256(pepper, secret) is stored, with the kid of the
pepper that made it (app_secrets.keyed_digest), the peppers living in Secrets Manager, so a copy of the
table alone cannot be used to forge or test keys. A key outlives rotations until its pepper retires.
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
from errors import Forbidden, NotFound, Unauthorized, UnprocessableContent
from observability import logger
from pagination import CursorCodec
from settings import Settings

KEY_PREFIX = "stratus"
_KEY_FORMAT = re.compile(r"^stratus_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_LIFETIME = timedelta(days=366)


def _secret_hash(settings: Settings, secret: str, made_like: str | None = None) -> str:
    """Under the current pepper, or under the pepper that made the stored hash `made_like`."""
    return keyed_digest(settings, "api-key-pepper", secret, made_like)


def _refuse_disabled_account(principal: Principal, settings: Settings) -> None:
    # An access token outlives the disabling of its account by up to its lifetime; a key minted with it
    # would outlive it by up to a year. The directory has the last word.
    try:
        account = directory.lookup_user(
            settings.cognito_user_pool_id, principal.username or principal.subject
        )
    except NotFound:
        account = None
    # A deleted user's username can be given to someone new: the token's subject must be the account's.
    if account is None or account.subject != principal.subject:
        raise Forbidden("Your account no longer exists.")
    if not account.enabled:
        raise Forbidden("Your account is disabled.")


def signed_in_before_revocation(authenticated_at: datetime | None, revoked_at: datetime) -> bool:
    """Whether a token's sign-in predates the revocation of the user's sessions.

    Token times are whole seconds, rounded down; `revoked_at` is exact. Comparing with `revoked_at`
    rounded down too means a sign-in after the revocation always passes, even within the same second
    (refusing that second instead would refuse a user who signs in again at once). The price: a token
    issued less than a second before the revocation passes as well. An unknown sign-in time never does.
    """
    if authenticated_at is None:
        return True
    return authenticated_at < revoked_at.replace(microsecond=0)


def _refuse_revoked_session(principal: Principal) -> None:
    # Access tokens cannot be revoked for a verifier that checks them locally: after a sign-out
    # everywhere, a token keeps working until it expires. Only minting is checked (one GetItem, and
    # minting is rare), because a key minted with such a token would outlive the sign-out by up to a
    # year; checking every request would add a read to each of them for tokens that expire within the hour.
    revoked_at = models.profile.get_sessions_revoked_at(principal.subject)
    if revoked_at is not None and signed_in_before_revocation(principal.authenticated_at, revoked_at):
        raise Unauthorized("Your sessions were ended after you signed in with this token; sign in again.")


def issue_api_key(
    principal: Principal, settings: Settings, name: str, scopes: set[str], valid_until: datetime | None
) -> tuple[models.api_key.ApiKey, str]:
    """Returns the stored key and the full secret, which is never stored nor shown again."""
    if principal.auth_method != "jwt" or principal.is_machine:
        raise Forbidden("API keys are issued to signed-in people only.")
    missing = scopes - principal.scopes
    if missing:
        raise Forbidden(f"You cannot grant scopes you do not hold: {', '.join(sorted(missing))}.")
    if valid_until is not None:
        now = datetime.now(UTC)
        if valid_until <= now or valid_until - now > MAX_LIFETIME:
            raise UnprocessableContent("An API key must expire in the future and within a year.")
    _refuse_disabled_account(principal, settings)
    _refuse_revoked_session(principal)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    item = models.api_key.put_api_key(
        key_id=key_id,
        owner_subject=principal.subject,
        name=name,
        display_prefix=f"{KEY_PREFIX}_{key_id}",
        secret_hash=_secret_hash(settings, secret),
        scopes=scopes,
        valid_until=valid_until,
    )
    # Disabling or signing a user out records the revocation time, then revokes the keys it finds on the
    # owner index. A mint that passed the checks above before that but puts its key after the lookup would
    # keep a working key; checked again once the key exists, the action either finds the key or is seen
    # here. The index is eventually consistent, so a key put just before the lookup may be missing from
    # it; the action's second round, after the directory has answered, usually finds it. Left open: an
    # index lagging longer than that round trip. Closing it takes a transaction that puts the key and
    # lists it on the profile item under a condition on `sessions_revoked_at`, read back consistently.
    try:
        _refuse_disabled_account(principal, settings)
        _refuse_revoked_session(principal)
    except Exception:
        _withdraw(item)
        raise
    return item, f"{KEY_PREFIX}_{key_id}_{secret}"


def _withdraw(item: models.api_key.ApiKey) -> None:
    """Revokes a key whose mint was refused after its put. Its secret was never shown, so a key left
    unrevoked (the table refusing this too) still lets nobody in: it only looks alive in the list."""
    try:
        models.api_key.revoke_api_key(item.key_id, item.owner_subject)
    except Exception:
        logger.exception("a key refused after its put could not be revoked", key_id=item.key_id)


def my_api_keys(
    principal: Principal, limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.api_key.ApiKey], str | None]:
    """One page of the caller's keys, newest first; no cursor after the last page."""
    start_key = codec.decode(cursor, binding)
    items, last_key = models.api_key.list_api_keys(principal.subject, limit, start_key)
    return items, codec.encode(last_key, binding)


def revoke_my_api_key(principal: Principal, key_id: str) -> models.api_key.ApiKey:
    revoked = models.api_key.revoke_api_key(key_id, principal.subject)
    if revoked is None:
        # Someone else's key and no key at all look the same.
        raise NotFound("No such API key.")
    return revoked


async def authenticate_api_key(request: Request, presented: str) -> Principal:
    """`X-API-Key` → the owner's principal with the key's scopes; one GetItem per request."""
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
    if item.valid_until is not None and item.valid_until <= now:
        raise Unauthorized("The API key has expired.")
    if item.last_used_at is None or now - item.last_used_at >= LAST_USED_RESOLUTION:
        models.api_key.touch_last_used(key_id, now, now - LAST_USED_RESOLUTION)
    return Principal(
        subject=item.owner_subject,
        auth_method="api_key",
        scopes=frozenset(item.scopes or ()),
        key_id=key_id,
    )
