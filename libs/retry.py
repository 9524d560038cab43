"""Rate limiting and retries with backoff for calls to outside services (venues, bar providers).

`RateLimiter` is an asyncio token bucket shared by every caller of one host; `with_retries`
retries a failing async call with exponential backoff and jitter, logging one clear line per
failure, and gives up with `RetriesExhausted` naming what was tried and the last error.
A server's Retry-After (`parse_retry_after`: delta-seconds or an HTTP date) is honoured in full,
even beyond the policy's `max_s` (the wait is then logged as such).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class RetriesExhausted(RuntimeError):
    """Every attempt of a call failed; the message names the call, the attempts and the last error."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempt(s): {type(last).__name__}: {last}")
        self.what = what
        self.attempts = attempts
        self.last = last


class RateLimiter:
    """A token bucket: at most `rate_per_s` acquisitions per second on average, bursts of `burst`."""

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s={rate_per_s!r} must be greater than 0")
        if burst < 1:
            raise ValueError(f"burst={burst!r} must be at least 1")
        self.rate = float(rate_per_s)
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is free and take it (callers are served in arrival order)."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP Retry-After header: delta-seconds ("120", "0.5") or an HTTP date
    ("Wed, 21 Oct 2015 07:28:00 GMT", counted from `now`, default the current UTC time; a date in
    the past is 0). None when the header is absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how patiently to retry: delay = min(max_s, base_s * 2**attempt) ± jitter.

    A server's Retry-After is not capped by `max_s`: the server knows when it will answer again.
    """

    attempts: int = 5
    """Calls in all, the first included (at least 1)."""
    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.1
    """Fraction of the delay drawn at random either way, so many clients do not retry in step."""

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"RetryPolicy attempts={self.attempts!r} must be an integer >= 1 (the first call counts)")
        for name in ("base_s", "max_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryPolicy {name}={value!r} must be a finite number of seconds >= 0")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ValueError(f"RetryPolicy jitter={self.jitter!r} must be within [0, 1)")

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (0-based); a server's Retry-After wins, in full."""
        if retry_after_s is not None and retry_after_s >= 0:
            return float(retry_after_s)
        d = min(self.max_s, self.base_s * 2**attempt)
        return max(0.0, d * (1 + random.uniform(-self.jitter, self.jitter)))


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After (seconds) an HTTP error carries, if any (`exc.retry_after_s`)."""
    value = getattr(exc, "retry_after_s", None)
    return float(value) if isinstance(value, (int, float)) else None


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    retry_on: Callable[[BaseException], bool] = lambda exc: True,
    limiter: RateLimiter | None = None,
    log: Any = None,
) -> T:
    """Await `call()` until it succeeds, retrying failures `retry_on` accepts with backoff.

    Each attempt first takes a token from `limiter`. Every failure is logged (warning) with
    `what`, the attempt and the error; a failure `retry_on` rejects is raised at once.
    """
    policy = policy or RetryPolicy()
    last: BaseException | None = None
    for attempt in range(policy.attempts):
        if limiter is not None:
            await limiter.acquire()
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            last = exc
            retry = retry_on(exc) and attempt + 1 < policy.attempts
            server_wait = retry_after_of(exc)
            wait = policy.delay(attempt, server_wait) if retry else 0.0
            if log is not None:
                log.warning(
                    "call failed",
                    call=what,
                    attempt=attempt + 1,
                    of=policy.attempts,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=round(wait, 3) if retry else None,
                )
                if retry and server_wait is not None and wait > policy.max_s:
                    log.warning(
                        "server asks for a long wait",
                        call=what,
                        retry_after_s=round(wait, 3),
                        max_s=policy.max_s,
                        note="Retry-After honoured in full, beyond the policy's max_s",
                    )
            if not retry_on(exc):
                raise
            if retry:
                await asyncio.sleep(wait)
    assert last is not None
    raise RetriesExhausted(what, policy.attempts, last)
