"""Password login: constant-cost verification and throttling of failed attempts (SPEC §9, issue 11).

Lockout semantics (docs/decisions.md "Login throttling"):

- every attempt on an account counts against it (``login_failures_per_account`` in
  ``login_failure_window_seconds``, a moving window) until it succeeds; a success forgets the
  account's count. Once the count is reached, every attempt on that account is refused with 429,
  also with the right password, until the oldest counted attempt leaves the window: refused
  attempts are not counted, so the lock ends at most one window after the first failure.
- failures from one client address count too (``login_failures_per_address``, higher: an office
  behind one NAT); successes do not.
- a refusal says the same for an unknown user as for a real one, and an unknown or inactive user's
  password is verified against a dummy Argon2 hash, so neither the answer nor its time tells
  whether an account exists.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

from sqlmodel import Session, select

from service.auth.security import dummy_password_hash, verify_password
from service.auth.throttle import Counter, Limit
from service.config import Settings, get_settings
from service.errors import TooManyRequests, Unauthenticated
from service.users.models import User


class LoginThrottle:
    """The login counters of one deployment: per account and per client address."""

    def __init__(self, settings: Settings, counter: Counter | None = None) -> None:
        self.counter = counter or Counter(settings.rate_limit_storage_url)
        window = settings.login_failure_window_seconds
        self.per_account = Limit("login-account", settings.login_failures_per_account, window)
        self.per_address = Limit("login-address", settings.login_failures_per_address, window)

    @staticmethod
    def _account(username: str) -> str:
        # bounded, printable keys whatever the user typed
        return hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()

    def start(self, username: str, address: str) -> None:
        """Admit one attempt on ``username`` from ``address`` (and count it against the account).

        Raises:
            TooManyRequests (429): either count is reached; ``retry_after`` seconds.
        """
        account = self._account(username)
        if not self.counter.allows(self.per_address, address):
            self._refuse(self.per_address, address)
        if not self.counter.hit(self.per_account, account):
            self._refuse(self.per_account, account)

    def failed(self, address: str) -> None:
        """Count a failed attempt from ``address`` (the account's was counted by :meth:`start`)."""
        self.counter.hit(self.per_address, address)

    def succeeded(self, username: str) -> None:
        """Forget the attempts counted against ``username``."""
        self.counter.clear(self.per_account, self._account(username))

    def _refuse(self, limit: Limit, key: str) -> None:
        seconds = self.counter.retry_after(limit, key)
        raise TooManyRequests(f"登录失败次数过多，请 {math.ceil(seconds / 60)} 分钟后再试", retry_after=seconds)


@lru_cache
def login_throttle() -> LoginThrottle:
    """The process-wide :class:`LoginThrottle` of the current settings (``cache_clear()`` after a
    change of settings, and between tests: the in-memory counts live here)."""
    return LoginThrottle(get_settings())


def authenticate(session: Session, username: str, password: str, address: str) -> User:
    """The active user whose ``username`` and ``password`` match, for a login from ``address``
    (the client's IP address).

    Every attempt verifies one Argon2 hash (the user's, or a dummy one for an unknown or inactive
    user) so that all failures cost the same time.

    Raises:
        TooManyRequests (429): too many attempts on this account or failures from this address
            (module docstring); the password is not checked.
        Unauthenticated (401): unknown user, inactive user or wrong password (one message).
    """
    throttle = login_throttle()
    throttle.start(username, address)
    user = session.exec(select(User).where(User.username == username)).first()
    known = user is not None and user.is_active
    matches = verify_password(password, user.password_hash if known else dummy_password_hash())
    if not (known and matches):
        throttle.failed(address)
        raise Unauthenticated("用户名或密码错误")
    throttle.succeeded(username)
    return user
