"""Password guessing kept expensive for the guesser and cheap for the server.

`LoginThrottle` counts failed log-ins per account and per client address over a sliding window
and refuses further attempts (429 with Retry-After) before any password is hashed. `HashSlots`
bounds how many password hashes run at once (each argon2 hash holds 64 MiB), and how many
requests may wait for one, so memory cannot grow with the number of attackers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, TypeVar

import anyio
import anyio.to_thread

from .errors import ApiError
from .quotas import QuotaExceeded

T = TypeVar("T")


class LoginThrottle:
    """At most `per_account` failed log-ins per account and `per_address` per client address
    within `window_seconds`; a success clears the account's count."""

    def __init__(self, per_account: int = 10, per_address: int = 30, window_seconds: float = 900.0,
                 max_tracked: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.per_account, self.per_address, self.window = per_account, per_address, window_seconds
        self.max_tracked = max_tracked
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, account: str, address: str) -> None:
        """QuotaExceeded (429) when the account or the address has used up its failed attempts."""
        now = self.clock()
        with self._lock:
            for key, limit, what in ((f"a:{account}", self.per_account, "this account"),
                                     (f"ip:{address}", self.per_address, "your address")):
                times = self._recent(key, now)
                if times is not None and len(times) >= limit:
                    retry = max(1, math.ceil(times[0] + self.window - now))
                    raise QuotaExceeded("too_many_attempts", f"too many failed log-ins for {what}; "
                                        f"try again in {retry} s", retry)

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"a:{account}", f"ip:{address}"):
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_tracked:  # bounded memory: forget the stalest
                self._failures.popitem(last=False)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(f"a:{account}", None)


class HashSlots:
    """Password hashing in worker threads, at most `concurrent` at once and `waiting` queued;
    beyond that 503 `busy` with Retry-After."""

    def __init__(self, concurrent: int = 2, waiting: int = 64):
        self.limiter = anyio.CapacityLimiter(concurrent)
        self.waiting = waiting

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        stats = self.limiter.statistics()
        if stats.borrowed_tokens >= self.limiter.total_tokens and stats.tasks_waiting >= self.waiting:
            raise ApiError(503, "busy", "the server is busy checking passwords; try again shortly",
                           {"Retry-After": "1"})
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
