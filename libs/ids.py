"""Event ids and wall time: unique ids that sort by creation time, made fast.

An id is ULID-shaped: 48 bits of Unix milliseconds then 80 bits of randomness, written as
26 Crockford base32 characters, so sorting ids as strings sorts them by time. Within one
millisecond the random part is incremented (monotonic ULID), so ids made one after another
in a process also sort in creation order.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time

_B32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = bytes.maketrans(_B32, _CROCKFORD)
_RAND_BITS = 80
_RAND_MAX = (1 << _RAND_BITS) - 1

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _reset_after_fork() -> None:
    """A forked child must not continue its parent's sequence (it would repeat its ids)."""
    global _last_ms, _last_rand
    _last_ms = -1
    _last_rand = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def now_ns() -> int:
    """Wall-clock time now, UTC nanoseconds since the Unix epoch."""
    return time.time_ns()


def new_id() -> str:
    """A new unique id, 26 characters, sortable by creation time (monotonic in a process)."""
    global _last_ms, _last_rand
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms > _last_ms:
            rand = random.getrandbits(_RAND_BITS)
        else:
            # Same millisecond (or the clock stepped back): keep the order by counting up.
            ms = _last_ms
            rand = _last_rand + 1
            if rand > _RAND_MAX:
                ms += 1
                rand = random.getrandbits(_RAND_BITS)
        _last_ms = ms
        _last_rand = rand
    # 20 bytes = 32 base32 characters; the last 26 carry the low 130 bits (48 + 80 + 2 zero).
    raw = ((ms << _RAND_BITS) | rand).to_bytes(20, "big")
    return base64.b32encode(raw)[6:].translate(_TO_CROCKFORD).decode("ascii")


def id_time_ms(event_id: str) -> int:
    """The Unix millisecond an id was made in (its first 10 characters)."""
    ms = 0
    for ch in event_id[:10].upper().encode("ascii"):
        ms = (ms << 5) | _CROCKFORD.index(ch)
    return ms
