"""Event ids and wall time: unique ids that sort by creation time, made fast.

An id is ULID-shaped: 26 Crockford base32 characters, 48 bits of Unix milliseconds then 80
bits that are unique per process: 40 random bits drawn when the process starts (again in
a forked child) and a 40-bit counter started at a random value. Sorting ids as strings
sorts them by millisecond, and ids made in one process sort in creation order. The counter
(`next()` on an itertools.count is atomic) makes it thread-safe without a lock.
"""

from __future__ import annotations

import itertools
import os
import random
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
"""Two characters for every 10-bit value: 10 bits per lookup is what makes encoding fast."""


def _encode40(v: int) -> str:
    """8 Crockford characters of a 40-bit number, most significant first."""
    p = _PAIRS
    return p[v >> 30] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023]


def _time_prefix(ms: int) -> str:
    """10 characters of a millisecond time (50 bits, the top 2 zero)."""
    return _PAIRS[ms >> 40] + _encode40(ms & ((1 << 40) - 1))


class _State:
    """Per-process part of every id: random 40 bits and a counter from a random start."""

    def __init__(self) -> None:
        rng = random.SystemRandom()
        self.node = _encode40(rng.getrandbits(40))
        # Start in the lower half so 2**39 ids can follow before the counter would wrap.
        self.counter = itertools.count(rng.getrandbits(39))


_state = _State()
_cache: tuple[int, str] = (-1, "")


def _reset_after_fork() -> None:
    """A forked child must not continue its parent's sequence: it would repeat its ids."""
    global _state
    _state = _State()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def now_ns() -> int:
    """Wall-clock time now, UTC nanoseconds since the Unix epoch."""
    return time.time_ns()


def new_id() -> str:
    """A new unique id, 26 characters, sortable by creation time (in creation order per process)."""
    global _cache
    ms = time.time_ns() // 1_000_000
    cached = _cache  # one read of a tuple: consistent even when another thread replaces it
    if cached[0] != ms:
        cached = _cache = (ms, _time_prefix(ms))
    state = _state
    return cached[1] + state.node + _encode40(next(state.counter) & 0xFF_FFFF_FFFF)


def id_time_ms(event_id: str) -> int:
    """The Unix millisecond an id was made in (its first 10 characters)."""
    ms = 0
    for ch in event_id[:10].upper():
        ms = (ms << 5) | _CROCKFORD.index(ch)
    return ms
