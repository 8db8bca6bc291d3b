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

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

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

    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.amount, self.seconds, namespace=f"qifu-{self.name}")


class Counter:
    """Moving-window counters in one storage: ``storage_url`` ``memory://`` (this process) or a
    Redis URL (``redis://host:port/db``, shared by every process using it). ``key_prefix``
    separates deployments (and tests) sharing one Redis.

    No method raises when Redis fails: this process's memory stands in meanwhile.
    """

    def __init__(self, storage_url: str = "memory://", key_prefix: str = "qifu") -> None:
        self.storage_url = storage_url
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
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
