"""Per-user quotas (requests per day, media minutes per month) kept atomically in the database,
and a per-key rate limit kept in memory."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .db import Database, Usage, User, utcnow


class QuotaExceeded(Exception):
    def __init__(self, code: str, message: str, retry_after: int):
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, max(1, int(retry_after))


def day_period(now: datetime) -> str:
    return f"d:{now:%Y-%m-%d}"


def month_period(now: datetime) -> str:
    return f"m:{now:%Y-%m}"


def _seconds_to_next_day(now: datetime) -> float:
    return (datetime(now.year, now.month, now.day) + timedelta(days=1) - now).total_seconds()


def _seconds_to_next_month(now: datetime) -> float:
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    return (first - now).total_seconds()


@dataclass(frozen=True)
class Limits:
    requests_per_day: int | None
    media_minutes_per_month: float | None


@dataclass(frozen=True)
class Charge:
    """What one request took from the counters (to refund it when the analysis fails)."""

    user_id: str
    day: str
    month: str
    media_seconds: float


class Quotas:
    """Atomic charge and refund of the usage counters.

    A charge is one conditional UPDATE per counter (`... SET n = n + x WHERE n + x <= limit`),
    so concurrent requests, in one process or many, can never push a counter past its limit.
    """

    def __init__(self, db: Database, default: Limits):
        self.db, self.default = db, default

    def limits_for(self, user_id: str) -> Limits:
        with self.db.session() as s:
            user = s.get(User, user_id)
        return Limits(
            requests_per_day=user.requests_per_day if user and user.requests_per_day is not None else self.default.requests_per_day,
            media_minutes_per_month=(
                user.media_minutes_per_month
                if user and user.media_minutes_per_month is not None
                else self.default.media_minutes_per_month
            ),
        )

    def _ensure_rows(self, conn: Connection, user_id: str, periods: list[str]) -> None:
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        for period in periods:
            conn.execute(
                insert(Usage).values(user_id=user_id, period=period, requests=0, media_seconds=0.0).on_conflict_do_nothing()
            )

    def charge(self, user_id: str, media_seconds: float, now: datetime | None = None) -> Charge:
        """Count one request and `media_seconds` of media, or raise QuotaExceeded (and count nothing)."""
        now = now or utcnow()
        limits = self.limits_for(user_id)
        day, month = day_period(now), month_period(now)
        with self.db.engine.begin() as conn:
            self._ensure_rows(conn, user_id, [day, month])
            q = update(Usage).where(Usage.user_id == user_id, Usage.period == day).values(requests=Usage.requests + 1)
            if limits.requests_per_day is not None:
                q = q.where(Usage.requests + 1 <= limits.requests_per_day)
            if conn.execute(q).rowcount != 1:
                raise QuotaExceeded(
                    "daily_request_quota",
                    f"daily request quota reached ({limits.requests_per_day} per day)",
                    math.ceil(_seconds_to_next_day(now)),
                )
            q = update(Usage).where(Usage.user_id == user_id, Usage.period == month).values(
                media_seconds=Usage.media_seconds + media_seconds
            )
            if limits.media_minutes_per_month is not None:
                q = q.where(Usage.media_seconds + media_seconds <= limits.media_minutes_per_month * 60 + 1e-6)
            if conn.execute(q).rowcount != 1:
                # raising inside the block rolls back the request counted above
                raise QuotaExceeded(
                    "monthly_media_quota",
                    f"monthly media quota reached ({limits.media_minutes_per_month:g} minutes per month; "
                    f"this file is {media_seconds / 60:.1f} minutes)",
                    math.ceil(_seconds_to_next_month(now)),
                )
        return Charge(user_id, day, month, media_seconds)

    def refund(self, charge: Charge) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                update(Usage)
                .where(Usage.user_id == charge.user_id, Usage.period == charge.day, Usage.requests > 0)
                .values(requests=Usage.requests - 1)
            )
            conn.execute(
                update(Usage)
                .where(Usage.user_id == charge.user_id, Usage.period == charge.month)
                .values(media_seconds=Usage.media_seconds - charge.media_seconds)
            )

    def usage(self, user_id: str, now: datetime | None = None) -> dict:
        now = now or utcnow()
        day, month = day_period(now), month_period(now)
        with self.db.session() as s:
            rows = {u.period: u for u in s.scalars(select(Usage).where(Usage.user_id == user_id, Usage.period.in_([day, month])))}
        limits = self.limits_for(user_id)
        return {
            "requests_today": rows[day].requests if day in rows else 0,
            "requests_per_day": limits.requests_per_day,
            "media_minutes_month": round(max(0.0, rows[month].media_seconds) / 60, 3) if month in rows else 0.0,
            "media_minutes_per_month": limits.media_minutes_per_month,
            "day": day[2:],
            "month": month[2:],
        }


class RateLimiter:
    """At most `per_minute` requests per key in any 60 s (sliding window, this process)."""

    def __init__(self, per_minute: int | None, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.per_minute is None:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                raise QuotaExceeded(
                    "rate_limited",
                    f"too many requests with this key ({self.per_minute} per minute)",
                    math.ceil(hits[0] + 60 - now),
                )
            hits.append(now)
