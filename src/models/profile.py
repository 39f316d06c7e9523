"""A user's profile: created from token claims on first access, one item per user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from models.table import StratusItem, plain_map


def _key(subject: str) -> str:
    return f"USER#{subject}"


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

    def preference_values(self) -> dict[str, Any]:
        return plain_map(self.preferences)


def get_profile(subject: str) -> UserProfile | None:
    try:
        return UserProfile.get(_key(subject), _PROFILE_SK)
    except UserProfile.DoesNotExist:
        return None


def create_profile(subject: str, email: str | None, display_name: str) -> UserProfile:
    """Conditional put; when a concurrent first request created it already, that one is returned."""
    now = datetime.now(UTC)
    profile = UserProfile(
        _key(subject),
        _PROFILE_SK,
        subject=subject,
        email=email,
        display_name=display_name,
        preferences={},
        created_at=now,
        updated_at=now,
    )
    try:
        profile.save(condition=UserProfile.pk.does_not_exist())
    except PutError as error:
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
        profile.update(actions=actions, condition=UserProfile.pk.exists())
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return profile
