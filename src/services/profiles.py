"""The caller's own profile: created from the directory on first access, changed only by its owner."""

from __future__ import annotations

from typing import Any

import directory
import models
from auth import Principal
from errors import Forbidden, NotFound
from settings import Settings


def _require_person(principal: Principal) -> str:
    if principal.is_machine:
        raise Forbidden("Machine clients have no profile.")
    return principal.subject


def _directory_entry(principal: Principal, settings: Settings) -> directory.DirectoryUser:
    """The caller in the directory: by username when the token names one, else (API keys) by subject."""
    pool_id = settings.cognito_user_pool_id
    found: directory.DirectoryUser | None
    try:
        if principal.username:
            found = directory.lookup_user(pool_id, principal.username)
        else:
            found = directory.find_user_by_subject(pool_id, principal.subject)
    except NotFound:
        found = None
    # A deleted user's username can be given to someone new: their email must not land in the old
    # subject's profile.
    if found is None or found.subject != principal.subject:
        raise NotFound("The user directory has no account for you.")
    return found


def get_or_create_profile(principal: Principal, settings: Settings) -> models.profile.UserProfile:
    subject = _require_person(principal)
    profile = models.profile.get_profile(subject)
    if profile is not None:
        return profile
    # Access tokens carry no email: the directory is asked once, when the profile is first made. When it
    # cannot answer, nothing is stored (503): a profile made without it would keep a wrong email for good.
    user = _directory_entry(principal, settings)
    display_name = user.name or (user.email.split("@", 1)[0] if user.email else "New user")
    return models.profile.create_profile(subject, user.email, display_name)


def change_profile(
    principal: Principal, settings: Settings, display_name: str | None, preferences: dict[str, Any] | None
) -> models.profile.UserProfile:
    subject = _require_person(principal)
    get_or_create_profile(principal, settings)
    updated = models.profile.update_profile(subject, display_name=display_name, preferences=preferences)
    if updated is None:
        raise NotFound("The profile does not exist.")
    return updated
