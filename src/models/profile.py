"""A user's profile: created from token claims on first access, one item per user.

The item also holds when the user's sessions were last revoked (sign-out everywhere, disabling, demotion)
and which of their personal API keys are active (see models.api_key). Both may be recorded before the
user ever opened their profile: the item then holds only those (and its keys), and reads here treat it
as no profile until the profile is created around it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from models.table import StratusItem, plain_map


def profile_key(subject: str) -> str:
    return f"USER#{subject}"


_key = profile_key


_PROFILE_SK = "PROFILE"


class UserProfile(StratusItem, discriminator="UserProfile"):
    """pk=USER#<sub>, sk=PROFILE."""

    subject = UnicodeAttribute()
    email = UnicodeAttribute(null=True)
    display_name = UnicodeAttribute()
    preferences = MapAttribute[str, Any](default=dict)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = NumberAttribute(default=1)
    # Tokens from sign-ins before this instant may no longer mint API keys nor act as admins, and keys
    # minted before it no longer work (see services.api_keys).
    sessions_revoked_at = UTCDateTimeAttribute(null=True)
    # The owner's active API keys: key id -> valid until (epoch seconds). At most MAX_ACTIVE_KEYS; the
    # version changes with every change of the map, so concurrent mints and revocations cannot both win.
    api_keys = MapAttribute[str, Any](null=True)
    api_keys_version = NumberAttribute(null=True)

    @property
    def is_created(self) -> bool:
        """False for an item that holds only a revocation time."""
        return self.created_at is not None

    def preference_values(self) -> dict[str, Any]:
        return plain_map(self.preferences)


def get_profile(subject: str) -> UserProfile | None:
    try:
        profile = UserProfile.get(_key(subject), _PROFILE_SK)
    except UserProfile.DoesNotExist:
        return None
    return profile if profile.is_created else None


def create_profile(subject: str, email: str | None, display_name: str) -> UserProfile:
    """Conditional write; when a concurrent first request created it already, that one is returned.

    An update rather than a put: a revocation time recorded before the profile existed must survive it.
    """
    now = datetime.now(UTC)
    profile = UserProfile(_key(subject), _PROFILE_SK)
    actions: list[Action] = [
        UserProfile.entity.set(UserProfile),
        UserProfile.subject.set(subject),
        UserProfile.display_name.set(display_name),
        UserProfile.preferences.set({}),
        UserProfile.created_at.set(now),
        UserProfile.updated_at.set(now),
        UserProfile.version.set(1),
    ]
    if email is not None:
        actions.append(UserProfile.email.set(email))
    try:
        profile.update(actions=actions, condition=UserProfile.created_at.does_not_exist())
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        existing = get_profile(subject)
        if existing is None:
            raise
        return existing
    return profile


def update_profile(
    subject: str, *, display_name: str | None, preferences: dict[str, Any] | None
) -> UserProfile | None:
    """Updates only the given attributes in one UpdateItem; None when the profile does not exist."""
    profile = UserProfile(_key(subject), _PROFILE_SK)
    actions: list[Action] = [UserProfile.updated_at.set(datetime.now(UTC)), UserProfile.version.add(1)]
    if display_name is not None:
        actions.append(UserProfile.display_name.set(display_name))
    if preferences is not None:
        for name, value in preferences.items():
            # Each preference is its own path: concurrent updates to different preferences both land.
            actions.append(
                UserProfile.preferences[name].remove()
                if value is None
                else UserProfile.preferences[name].set(value)
            )
    try:
        profile.update(actions=actions, condition=UserProfile.created_at.exists())
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return profile


def record_sessions_revoked(subject: str, revoked_at: datetime) -> None:
    """One UpdateItem that needs no existing item: the user may never have opened their profile.

    A later time recorded meanwhile (another admin, at the same moment) is kept: the time only moves on.
    """
    item = UserProfile(_key(subject), _PROFILE_SK)
    later = UserProfile.sessions_revoked_at.does_not_exist() | (UserProfile.sessions_revoked_at < revoked_at)
    try:
        item.update(
            actions=[UserProfile.entity.set(UserProfile), UserProfile.sessions_revoked_at.set(revoked_at)],
            condition=later,
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise


def get_sessions_revoked_at(subject: str) -> datetime | None:
    """One strongly consistent GetItem: a revocation recorded a moment ago must be seen."""
    try:
        item = UserProfile.get(
            _key(subject), _PROFILE_SK, consistent_read=True, attributes_to_get=["sessions_revoked_at"]
        )
    except UserProfile.DoesNotExist:
        return None
    revoked_at: datetime | None = item.sessions_revoked_at
    return revoked_at
