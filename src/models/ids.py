"""Time-ordered, unguessable ids: 48-bit milliseconds + 80 random bits in Crockford base32 (26 chars), so
ids sort by creation in a sort key and cannot be enumerated."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))
