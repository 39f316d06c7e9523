"""Tests that need a tool from outside the lock (chromium, the SAM CLI, uv) skip on a developer machine
that lacks it, with the remedy in the reason, and fail in CI, where a skip would hide a missing check."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_prerequisite(reason: str, remedy: str) -> NoReturn:
    if running_in_ci():
        pytest.fail(f"{reason}; CI must provide it ({remedy})")
    pytest.skip(f"{reason} ({remedy})")
