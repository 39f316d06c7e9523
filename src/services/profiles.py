"""The caller's own profile: created from the directory on first access, changed only by its owner."""

from __future__ import annotations

from typing import Any

import models
from auth import Principal
from directory import get_user
from errors import Forbidden, NotFound, ServiceUnavailable
from settings import Settings


def _require_person(principal: Principal) -> str:
    if principal.is_machine:
        raise Forbidden("Machine clients have no profile.")
    return principal.subject


def get_or_create_profile(principal: Principal, settings: Settings) -> models.profile.UserProfile:
    subject = _require_person(principal)
    profile = models.profile.get_profile(subject)
    if profile is not None:
        return profile
    # Access tokens carry no email: the directory is asked once, when the profile is first made.
    email: str | None = None
    name: str | None = None
    try:
        user = get_user(settings.cognito_user_pool_id, principal.username or subject)
        email, name = user.email, user.name
    except (NotFound, ServiceUnavailable):
        pass
    display_name = name or (email.split("@", 1)[0] if email else "New user")
    return models.profile.create_profile(subject, email, display_name)


def change_profile(
    principal: Principal, settings: Settings, display_name: str | None, preferences: dict[str, Any] | None
) -> models.profile.UserProfile:
    subject = _require_person(principal)
    get_or_create_profile(principal, settings)
    updated = models.profile.update_profile(subject, display_name=display_name, preferences=preferences)
    if updated is None:
        raise NotFound("The profile does not exist.")
    return updated
