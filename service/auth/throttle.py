"""Counting attempts in a moving window (login throttling, per-user rate limits; SPEC §9).

Built on the ``limits`` library: its moving-window strategy over Redis in production (one count
shared by every API process) and over process memory for the embedded default. When Redis does
not answer, the counts fall back to this process's memory for :data:`REDIS_RETRY_SECONDS` and
Redis is tried again after that: logins and requests keep being answered and still throttled,
per process, while Redis is down (docs/decisions.md "Login throttling").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

# ``limits`` is imported where it is first used: it adds ~0.3 s to every API process's start-up

log = logging.getLogger("qifu.throttle")

#: Seconds the counts stay in process memory after Redis failed, before Redis is tried again.
REDIS_RETRY_SECONDS = 5.0
#: Seconds a Redis command may take (connect, then answer) before it counts as failed.
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Limit:
    """At most ``amount`` events per ``seconds`` (a moving window), counted per key in ``name``."""

    name: str
    amount: int
    seconds: int

    def item(self) -> Any:
        """The ``limits`` item (a ``RateLimitItemPerSecond`` of ``seconds`` multiples)."""
        from limits import RateLimitItemPerSecond

        return RateLimitItemPerSecond(self.amount, self.seconds, namespace=f"qifu-{self.name}")


class Counter:
    """Moving-window counters in one storage: ``storage_url`` ``memory://`` (this process) or a
    Redis URL (``redis://host:port/db``, shared by every process using it). ``key_prefix``
    separates deployments (and tests) sharing one Redis.

    No method raises when Redis fails: this process's memory stands in meanwhile.
    """

    def __init__(self, storage_url: str = "memory://", key_prefix: str = "qifu") -> None:
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.storage_url = storage_url
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: Any = None  # a MovingWindowRateLimiter on Redis
        if not storage_url.startswith("memory"):
            storage = storage_from_string(storage_url, key_prefix=key_prefix, wrap_exceptions=True,
                                          socket_timeout=REDIS_TIMEOUT_SECONDS,
                                          socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_until = 0.0
        self._lock = threading.Lock()

    def _call(self, method: str, limit: Limit, key: str):
        shared = self._shared
        if shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return getattr(shared, method)(limit.item(), key)
            except Exception as exc:  # noqa: BLE001 - any storage failure: count in memory meanwhile
                with self._lock:
                    self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning("rate-limit storage unavailable (%s); counting in process memory for %.0f s",
                            type(exc).__name__, REDIS_RETRY_SECONDS)
        return getattr(self._memory, method)(limit.item(), key)

    def hit(self, limit: Limit, key: str) -> bool:
        """Count one event for ``key``; False (and nothing counted) when ``limit`` is reached."""
        return bool(self._call("hit", limit, key))

    def allows(self, limit: Limit, key: str) -> bool:
        """True when one more event for ``key`` would stay within ``limit`` (nothing counted)."""
        return bool(self._call("test", limit, key))

    def clear(self, limit: Limit, key: str) -> None:
        """Forget the events counted for ``key``."""
        self._call("clear", limit, key)
        if self._shared is not None:  # also what was counted in memory while Redis was down
            self._memory.clear(limit.item(), key)

    def retry_after(self, limit: Limit, key: str) -> int:
        """Whole seconds (at least 1) until ``key`` may have one more event under ``limit``."""
        stats = self._call("get_window_stats", limit, key)
        return max(1, math.ceil(stats.reset_time - time.time()))


class UserRequestLimit:
    """At most ``per_minute`` API requests per user and per API process, in fixed one-minute
    windows of the clock (SPEC §9 "rate limits per user"). Counted in this process's memory: no
    Redis round trip per request; with N API processes a user may make up to N times as many (the
    limit is meant for a runaway script, not for pacing people; docs/decisions.md "Login
    throttling").

    A counter per user, reset when the minute turns, rather than ``limits``' in-memory storage:
    that storage starts a timer thread every 10 ms while it is used, which cost every request of
    the API about 0.25 ms of CPU (bench/intake.py, docs/performance.md round 4). Login throttling,
    rare and shared between processes, keeps ``limits`` (:class:`Counter`).
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window = -1  # the current minute, as whole minutes since the epoch
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def hit(self, user_id: int) -> None:
        """Count one request of ``user_id`` in the current minute.

        Raises:
            TooManyRequests (429, ``Retry-After`` in seconds to the next minute): the user's
                requests of this minute are used up.
        """
        if self.per_minute <= 0:
            return
        from service import clock

        now = clock.now().timestamp()
        window = int(now // 60)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts.clear()
            count = self._counts.get(user_id, 0) + 1
            self._counts[user_id] = count
        if count > self.per_minute:
            from service.errors import TooManyRequests

            seconds = max(1, math.ceil((window + 1) * 60 - now))
            raise TooManyRequests(f"请求过于频繁（每分钟最多 {self.per_minute} 次），请 {seconds} 秒后再试",
                                  retry_after=seconds)


_user_limits: dict[int, UserRequestLimit] = {}


def user_request_limit(per_minute: int) -> UserRequestLimit:
    """The process-wide :class:`UserRequestLimit` for ``per_minute`` (one per value, so a change
    of settings takes effect; tests clear ``_user_limits``)."""
    limit = _user_limits.get(per_minute)
    if limit is None:
        limit = _user_limits[per_minute] = UserRequestLimit(per_minute)
    return limit
