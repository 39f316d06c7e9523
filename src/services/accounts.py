"""Whether the person behind a credential may still act: their account is live in the directory, and
their sessions were not ended after the token's sign-in; and ending a person's sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import directory
import models
from auth import Principal
from errors import Conflict, Forbidden, NotFound, Unauthorized
from settings import Settings

# Ending sessions races only a mint or revocation by the same person: a few tries always settle it.
_END_SESSIONS_ATTEMPTS = 5


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


def refuse_ended_session(principal: Principal, sessions_revoked_at: datetime | None) -> None:
    """401 for a token from a sign-in before the user's sessions were ended."""
    if sessions_revoked_at is not None and signed_in_before_revocation(
        principal.authenticated_at, sessions_revoked_at
    ):
        raise Unauthorized("Your sessions were ended after you signed in with this token; sign in again.")


def live_directory_entry(
    principal: Principal, settings: Settings, *, with_groups: bool = False
) -> directory.DirectoryUser:
    """The caller's account as the directory has it now: it exists, is the token's subject (a deleted
    user's username can be given to someone new) and is enabled; 403 otherwise. One Cognito call, two
    with the groups."""
    pool_id = settings.cognito_user_pool_id
    lookup = directory.get_user if with_groups else directory.lookup_user
    try:
        account = lookup(pool_id, principal.username or principal.subject)
    except NotFound:
        account = None
    if account is None or account.subject != principal.subject:
        raise Forbidden("Your account no longer exists.")
    if not account.enabled:
        raise Forbidden("Your account is disabled.")
    return account


def end_sessions(subject: str, at: datetime | None = None) -> int:
    """Records that the person's sessions ended (tokens from earlier sign-ins can no longer mint keys or
    act as admins) and revokes every active API key, in one transaction. Returns how many keys it
    revoked. Safe to repeat."""
    ended_at = at or datetime.now(UTC)
    for _ in range(_END_SESSIONS_ATTEMPTS):
        holder = models.api_key.get_key_holder(subject)
        try:
            return models.api_key.end_key_sessions(holder, ended_at)
        except models.table.ConditionNotMet:
            continue
    raise Conflict("The user's API keys kept changing while their sessions were ended; try again.")
