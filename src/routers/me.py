"""The caller's own profile."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from auth import CurrentUser
from dependencies import AppSettings
from routers.common import READS, WRITES, Timestamp
from routers.fields import OneLine
from services.profiles import change_profile, get_or_create_profile

if TYPE_CHECKING:
    from models.profile import UserProfile

router = APIRouter(prefix="/me", tags=["me"])

_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


@cache
def _time_zone_names() -> frozenset[str]:
    # available_timezones() walks the time zone database on disk at every call (~600 files): once per
    # container is enough, or every request naming a time zone would pay for the walk.
    return frozenset(available_timezones())


class Preferences(BaseModel):
    """Known preferences; send `null` for one to clear it."""

    model_config = ConfigDict(extra="forbid")

    theme: Literal["light", "dark", "system"] | None = None
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])
    locale: str | None = Field(default=None, max_length=10, examples=["en-GB"])

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None and value not in _time_zone_names():
            raise ValueError("not an IANA time zone name")
        return value

    @field_validator("locale")
    @classmethod
    def _locale_tag(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE.match(value):
            raise ValueError("use a language tag like en or en-GB")
        return value


class ProfilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: OneLine | None = Field(default=None, min_length=1, max_length=80)
    preferences: Preferences | None = None

    @field_validator("display_name")
    @classmethod
    def _visible_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must contain visible characters")
        return value.strip() if value else value


class Profile(BaseModel):
    subject: str
    email: str | None
    display_name: str
    preferences: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, item: UserProfile) -> Profile:
        return cls(
            subject=item.subject,
            email=item.email,
            display_name=item.display_name,
            preferences=item.preference_values(),
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


@router.get(
    "",
    response_model=Profile,
    summary="My profile (created on first access)",
    dependencies=READS,
)
async def read_my_profile(user: CurrentUser, settings: AppSettings) -> Profile:
    return Profile.of(get_or_create_profile(user, settings))


@router.patch(
    "",
    response_model=Profile,
    summary="Change my display name or preferences",
    dependencies=WRITES,
)
async def change_my_profile(patch: ProfilePatch, user: CurrentUser, settings: AppSettings) -> Profile:
    preferences = patch.preferences.model_dump(exclude_unset=True) if patch.preferences is not None else None
    return Profile.of(change_profile(user, settings, patch.display_name, preferences))
