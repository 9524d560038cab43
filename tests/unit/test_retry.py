"""Rate limiter and retry policy: pacing, backoff, give-up and non-retryable errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from libs.retry import RateLimiter, RetriesExhausted, RetryPolicy, parse_retry_after, with_retries


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


async def test_rate_limiter_spaces_calls_at_the_rate_after_the_burst() -> None:
    limiter = RateLimiter(rate_per_s=50, burst=2)
    t0 = time.monotonic()
    for _ in range(7):
        await limiter.acquire()
    # 2 free, then 5 more at 50/s: at least 0.1 s of waiting (a lower bound, not a speed claim)
    assert time.monotonic() - t0 >= 0.095


async def test_retries_until_success_and_logs_each_failure() -> None:
    calls: list[int] = []
    logged: list[dict] = []

    class Log:
        def warning(self, event: str, **kw: object) -> None:
            logged.append({"event": event, **kw})

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky(f"boom {len(calls)}")
        return "ok"

    got = await with_retries(call, what="GET /book", policy=RetryPolicy(base_s=0.001, max_s=0.01), log=Log())
    assert got == "ok"
    assert len(calls) == 3
    assert [e["attempt"] for e in logged] == [1, 2]
    assert logged[0]["call"] == "GET /book" and "Flaky: boom 1" in str(logged[0]["error"])


async def test_gives_up_naming_the_call_and_the_last_error() -> None:
    async def call() -> None:
        raise Flaky("still down")

    with pytest.raises(RetriesExhausted, match=r"GET /markets: gave up after 3 attempt\(s\): Flaky: still down"):
        await with_retries(call, what="GET /markets", policy=RetryPolicy(attempts=3, base_s=0.001))


async def test_a_non_retryable_error_is_raised_at_once() -> None:
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        raise Fatal("401 unauthorised")

    with pytest.raises(Fatal):
        await with_retries(call, what="x", retry_on=lambda e: not isinstance(e, Fatal))
    assert calls == [1]


def test_backoff_doubles_is_capped_and_honours_retry_after() -> None:
    p = RetryPolicy(base_s=1.0, max_s=5.0, jitter=0.0)
    assert [p.delay(a) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert p.delay(0, retry_after_s=3.0) == 3.0
    assert p.delay(0, retry_after_s=60.0) == 60.0  # the server's word, not capped at max_s


async def test_a_long_retry_after_is_waited_in_full_and_logged() -> None:
    logged: list[dict] = []
    slept: list[float] = []

    class Log:
        def warning(self, event: str, **kw: object) -> None:
            logged.append({"event": event, **kw})

    class Limited(Exception):
        retry_after_s = 0.3

    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Limited("429")
        return "ok"

    t0 = time.monotonic()
    got = await with_retries(call, what="GET /x", policy=RetryPolicy(base_s=0.001, max_s=0.05), log=Log())
    slept.append(time.monotonic() - t0)
    assert got == "ok" and len(calls) == 2
    assert slept[0] >= 0.29  # 0.3 s asked, policy max 0.05 s: the server wins
    long = [e for e in logged if e["event"] == "server asks for a long wait"]
    assert len(long) == 1 and long[0]["retry_after_s"] == 0.3 and long[0]["max_s"] == 0.05
    assert logged[0]["retry_in_s"] == 0.3


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now=now) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0  # already past
    assert parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now=now) == 10.0  # RFC 850 form
    for bad in (None, "", "soon", "-5", "nan", "inf"):
        assert parse_retry_after(bad, now=now) is None, bad


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"attempts": 0}, "attempts=0 must be an integer >= 1"),
        ({"attempts": -1}, "attempts=-1"),
        ({"base_s": -1.0}, "base_s=-1.0"),
        ({"max_s": float("nan")}, "max_s=nan"),
        ({"jitter": 1.5}, "jitter=1.5"),
    ],
)
def test_bad_retry_policies_are_refused_naming_the_field(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RetryPolicy(**kwargs)


def test_bad_limiter_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_s=0"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst=0"):
        RateLimiter(1, burst=0)


async def test_cancellation_is_not_retried() -> None:
    async def call() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await with_retries(call, what="x")
