"""Password guessing kept expensive for the guesser and cheap for the server.

`LoginThrottle` counts failed log-ins per account and per client address over a sliding window
and refuses further attempts (429 with Retry-After) before any password is hashed. `HashSlots`
bounds how many password hashes run at once (each argon2 hash holds 64 MiB), and how many
requests may wait for one, so memory cannot grow with the number of attackers.
"""

from __future__ import annotations

import hashlib
import ipaddress
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


def address_group(address: str) -> str:
    """The unit a client address is counted in: an IPv4 address, or an IPv6 /64 (one host's
    usual allocation, so rotating through it gains nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def account_key(email: str) -> str:
    """A fixed-size key for an account as typed (case and spaces ignored), so long junk emails
    cost the throttle no more memory than real ones."""
    return hashlib.sha256(email.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]


class LoginThrottle:
    """At most `per_account` failed log-ins per account and `per_address` per client address
    (IPv6: per /64) within `window_seconds`. Each attempt is counted when it starts and forgiven
    when it succeeds, so concurrent guesses cannot all pass before the first one fails."""

    def __init__(self, per_account: int = 10, per_address: int = 30, window_seconds: float = 900.0,
                 max_tracked: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.per_account, self.per_address, self.window = per_account, per_address, window_seconds
        self.max_tracked = max_tracked
        self.clock = clock
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._attempts.get(key)
        if times is None:
            times = self._attempts[key] = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self._attempts.move_to_end(key)
        return times

    def attempt(self, email: str, address: str) -> tuple[str, str]:
        """Count one attempt; QuotaExceeded (429) instead when the account or the address has used
        up its failures. Returns the keys to pass to `succeeded`."""
        keys = (f"a:{account_key(email)}", f"ip:{address_group(address)}")
        now = self.clock()
        with self._lock:
            counted = [self._recent(key, now) for key in keys]
            for times, limit, what in zip(counted, (self.per_account, self.per_address), ("this account", "your address")):
                if len(times) >= limit:
                    retry = max(1, math.ceil(times[0] + self.window - now))
                    raise QuotaExceeded("too_many_attempts", f"too many failed log-ins for {what}; "
                                        f"try again in {retry} s", retry)
            for times in counted:
                times.append(now)
            while len(self._attempts) > self.max_tracked:  # bounded memory: forget the stalest
                self._attempts.popitem(last=False)
        return keys

    def succeeded(self, keys: tuple[str, str]) -> None:
        """The attempt was right: the account's failures are forgiven, the address's attempt too."""
        account, address = keys
        with self._lock:
            self._attempts.pop(account, None)
            times = self._attempts.get(address)
            if times:
                times.pop()


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
