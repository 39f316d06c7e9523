"""The shape of every value the API accepts that ends up in a key, a sort key, a document path or an
expression: one `Annotated` type per kind, used for path parameters, query parameters and body fields
alike, so a value that could change the meaning of a DynamoDB expression is refused at the edge (422).
Free text, moments and dates are bounded here too."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

_ULID = "[0-9A-HJKMNP-TV-Z]{26}"

# A Cognito `sub` is always a UUID; it names people in `roles.<sub>` document paths and in index keys.
SubjectId = Annotated[
    str,
    StringConstraints(
        min_length=36,
        max_length=36,
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    ),
    Field(
        description="A user's subject (the `sub` of their tokens).",
        examples=["3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"],
    ),
]
ProjectId = Annotated[
    str,
    StringConstraints(min_length=26, max_length=26, pattern=f"^{_ULID}$"),
    Field(description="A project's id.", examples=["01JD8X4T9R2M5Q7W3Y6Z0A1B2C"]),
]
TaskId = Annotated[
    str,
    StringConstraints(min_length=53, max_length=53, pattern=rf"^{_ULID}\.{_ULID}$"),
    Field(
        description="A task's id (`<project id>.<task>`).",
        examples=["01JD8X4T9R2M5Q7W3Y6Z0A1B2C.01JD8X6F2K9N4P7R3T5V8W0X1Y"],
    ),
]
InvitationId = Annotated[
    str,
    StringConstraints(min_length=53, max_length=53, pattern=rf"^{_ULID}\.{_ULID}$"),
    Field(
        description="An invitation's id (`<project id>.<invitation>`).",
        examples=["01JD8X4T9R2M5Q7W3Y6Z0A1B2C.01JD8XA0B1C2D3E4F5G6H7J8K9"],
    ),
]
ApiKeyId = Annotated[
    str,
    StringConstraints(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$"),
    Field(description="An API key's id (from its prefix).", examples=["9f86d081884c7d65"]),
]
# What the admin routes take to name a user: a username, a `sub` or an email alias. It only reaches
# Cognito's admin calls (never a DynamoDB key), which take these characters.
DirectoryUserRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$"),
    Field(description="A username, a subject or an email address.", examples=["alice@example.com"]),
]
Tag = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]{0,31}$"),
    Field(description="A tag: 1-32 characters, a-z, 0-9 and '-'.", examples=["launch"]),
]
# Text: no control characters (tabs and line breaks only where text may span lines) and no bidirectional
# overrides or isolates, which make a name read differently from what it is (CVE-2021-42574's trick).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\t\n\r")


def _clean_text(value: str, *, multiline: bool) -> str:
    for character in value:
        if character in _BIDI_CONTROLS:
            raise ValueError("must not contain bidirectional override characters")
        if unicodedata.category(character) == "Cc" and not (multiline and character in _LINE_BREAKS):
            raise ValueError("must not contain control characters")
    return value


def _one_line(value: str) -> str:
    return _clean_text(value, multiline=False)


def _many_lines(value: str) -> str:
    return _clean_text(value, multiline=True)


# Used with Field's length bounds at each field: `name: OneLine = Field(min_length=1, max_length=100)`.
OneLine = Annotated[str, AfterValidator(_one_line)]
MultiLine = Annotated[str, AfterValidator(_many_lines)]

# Deliberately narrower than RFC 5321: one @, no spaces, a dot in the domain, and (like any one line of
# text) no control characters or bidirectional overrides: an address is shown to people and kept in keys.
Email = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
    ),
    AfterValidator(_one_line),
    Field(description="An email address.", examples=["newhire@example.com"]),
]


# Moments a client may send: with an offset (a naive time means nothing to a server in another zone) and
# within the range the API can store and compare.
EARLIEST_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_MOMENT = datetime(2999, 12, 31, tzinfo=UTC)


def _sane_moment(value: datetime) -> datetime:
    if not EARLIEST_MOMENT <= value <= LATEST_MOMENT:
        raise ValueError(f"must lie between {EARLIEST_MOMENT.date()} and {LATEST_MOMENT.date()}")
    return value.astimezone(UTC)


Moment = Annotated[
    AwareDatetime,
    AfterValidator(_sane_moment),
    Field(
        description="An RFC 3339 date-time with an offset (`Z` or `+hh:mm`).",
        examples=["2027-01-31T09:30:00Z"],
    ),
]

# Due dates sort as strings in index keys, where 9999-12-31 stands for "no due date".
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2999, 12, 31)


def _sane_date(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"must lie between {EARLIEST_DATE} and {LATEST_DATE}")
    return value


DueDate = Annotated[
    date,
    AfterValidator(_sane_date),
    Field(description="A calendar date (YYYY-MM-DD).", examples=["2027-01-31"]),
]
