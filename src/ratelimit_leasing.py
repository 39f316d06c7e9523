"""Leased fixed windows: a `limits` strategy that takes a window's budget from the shared counter a slice at a
time and spends each slice in this container, so that most limited requests make no DynamoDB call at all.

How a container draws on a key's budget for the current window:
- it admits from its own slice while the slice lasts (no call);
- when the slice is spent it leases another with one conditional UpdateItem (`DynamoDBStorage.lease`): the
  table hands it out only while the window's total leased stays within the limit, so all containers
  together never admit more than the limit;
- a slice is at most a tenth of what the window had left at the previous lease, so slices shrink as the
  budget runs low and the last requests of a window are leased one by one; and at most twice the
  previous slice, so a container that serves a caller once holds no tokens it does not spend;
- once the table says the budget is gone, the container refuses locally until the window ends: slices are
  never handed back, so a spent budget stays spent for the rest of its window and those refusals are exact.

Unspent tokens expire with their window. Returning them would cost a call on some later request that has
nothing to do with the caller, and would make a spent budget come back, so a container could no longer
refuse without asking the table again. What this costs: a container the caller stops reaching keeps its
unspent slice until the window ends; the other containers admit that much less. limits has no strategy of
this kind (each of its strategies makes one storage call per hit), hence this one, written to its
`RateLimiter` interface.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem
from limits.storage import Storage
from limits.strategies import RateLimiter
from limits.util import WindowStats

from ratelimit_storage import Lease

# A slice is at most this fraction of what the window had left: smaller slices strand fewer tokens in a
# container the caller leaves, larger ones cost fewer leases (make bench: calls per limited request).
SLICE_DIVISOR = 10
# A lease can lose the race for the last tokens to other containers; after this many attempts in one
# request the request is refused as if the budget were spent (a retry a moment later is answered exactly).
LEASE_ATTEMPTS = 3
# The keys whose slices this container remembers; beyond it, keys whose windows have ended are forgotten.
TRACKED_KEYS = 4096


class LeaseStorage(Protocol):
    """A storage that hands out slices of a window's budget (ratelimit_storage.DynamoDBStorage)."""

    def lease(self, key: str, window_start: int, period: int, limit: int, amount: int) -> Lease: ...


@dataclass(slots=True)
class _Slice:
    """This container's share of one key's budget in one window."""

    window_start: int
    window_end: int
    # Tokens leased and not yet spent here.
    tokens: int = 0
    # The window's total leased by every container, as of this container's last answer from the table.
    leased: int = 0
    # The size of the last slice leased for this key (kept across windows: it sets the next one's growth).
    last_slice: int = 0
    # The table refused even the smallest slice: the budget is spent until the window ends.
    spent: bool = False


def supports_leases(storage: Storage) -> bool:
    return callable(getattr(storage, "lease", None))


class LeasedFixedWindowRateLimiter(RateLimiter):
    """Fixed windows aligned to the epoch, like limits' FixedWindowRateLimiter, spent from leased slices.

    One instance per container. `hit` costs a DynamoDB call only when this container's slice is spent;
    `test` and `get_window_stats` never make one (they answer from the slice).
    """

    def __init__(self, storage: Storage) -> None:
        if not supports_leases(storage):
            raise NotImplementedError(f"{type(storage).__name__} cannot lease slices of a budget")
        super().__init__(storage)
        self._leases: LeaseStorage = storage  # type: ignore[assignment]
        self._slices: dict[str, _Slice] = {}
        # Lambda runs one request at a time per container; uvicorn and tests may not.
        self._lock = threading.Lock()

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        with self._lock:
            share = self._current(key, item)
            if share.tokens >= cost:
                share.tokens -= cost
                return True
            if share.spent:
                return False
            return self._lease_and_spend(key, item, share, cost)

    def _lease_and_spend(self, key: str, item: RateLimitItem, share: _Slice, cost: int) -> bool:
        needed = cost - share.tokens
        for _ in range(LEASE_ATTEMPTS):
            left = item.amount - share.leased
            if left < needed:
                share.spent = True
                return False
            growth = 2 * share.last_slice if share.last_slice else 1
            amount = min(left, max(needed, min(math.ceil(left / SLICE_DIVISOR), growth)))
            answer = self._leases.lease(key, share.window_start, item.get_expiry(), item.amount, amount)
            share.leased = max(share.leased, answer.leased)
            if answer.granted:
                share.tokens += answer.granted - cost
                share.last_slice = answer.granted
                return True
        # Other containers took what was left each time: what is left now is unknown, and refusing is the
        # side that never admits more than the limit.
        return False

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Whether a hit could be admitted, as far as this container knows (no call)."""
        with self._lock:
            share = self._current(item.key_for(*identifiers), item)
            return share.tokens >= cost or (not share.spent and item.amount - share.leased >= cost)

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """(reset, remaining) from this container's view, without a call: its unspent tokens plus what the
        window had left at its last lease. Exact when one container serves the caller; with several, it
        lags behind what the others leased since (at most a slice each) and counts their unspent tokens as
        spent. 0 once the budget is spent."""
        with self._lock:
            share = self._current(item.key_for(*identifiers), item)
            remaining = 0 if share.spent else share.tokens + max(0, item.amount - share.leased)
            return WindowStats(float(share.window_end), remaining)

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        key = item.key_for(*identifiers)
        with self._lock:
            self._slices.pop(key, None)
        self.storage.clear(key)

    def _current(self, key: str, item: RateLimitItem) -> _Slice:
        """This container's slice of `key` in the window under way (a new, empty one when a window began)."""
        period = item.get_expiry()
        now = time.time()
        window_start = int(now) // period * period
        share = self._slices.get(key)
        if share is None or share.window_start != window_start:
            last_slice = share.last_slice if share is not None else 0
            share = _Slice(window_start, window_start + period, last_slice=last_slice)
            if key not in self._slices and len(self._slices) >= TRACKED_KEYS:
                self._forget_ended_windows(now)
            self._slices[key] = share
        return share

    def _forget_ended_windows(self, now: float) -> None:
        ended = [key for key, share in self._slices.items() if share.window_end <= now]
        for key in ended:
            del self._slices[key]
        # Still full (every key busy in its window): the oldest entries go, and with them their unspent
        # tokens, which only ever makes this container admit less.
        while len(self._slices) >= TRACKED_KEYS:
            del self._slices[next(iter(self._slices))]
