"""A virtual clock for replay: maps event (market) time onto wall time.

`speed=None` replays as fast as possible (never sleeps); `speed=N` replays N times faster
than the market moved: the event at `event_ts` is released at
`wall_start + (event_ts - first_ts) / N`, where the first event waited for fixes both
anchors. Sleep and the wall clock are injectable so tests control time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[object]]


def check_speed(speed: float | None) -> float | None:
    """Return `speed` if it is None or a positive finite number, else raise ValueError naming it."""
    if speed is None:
        return None
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise ValueError(f"speed={speed!r} is not a number (0 or None: as fast as possible)")
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(
            f"speed={speed!r} must be a positive finite multiple of real time (0 or None: as fast as possible)"
        )
    return float(speed)


class VirtualClock:
    """Releases events at their market time scaled by `speed`; knows the current virtual time.

    Virtual time never runs backwards: an event older than one already waited for is
    released at once, and `now_ns()` is never earlier than the latest event released.
    """

    def __init__(
        self,
        speed: float | None = None,
        *,
        start_ns: int | None = None,
        sleep: Sleep = asyncio.sleep,
        wall_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """`start_ns` is the virtual time `now_ns()` reports before the first event (optional)."""
        self._speed = check_speed(speed)
        self._sleep = sleep
        self._wall_ns = wall_ns
        self._first_ts: int | None = None
        self._wall_start = 0
        self._last_ts = start_ns

    @property
    def speed(self) -> float | None:
        """Multiple of real time, or None for as fast as possible."""
        return self._speed

    @property
    def started(self) -> bool:
        """True once the first event has anchored market time to wall time."""
        return self._first_ts is not None

    def start(self, event_ts_ns: int) -> None:
        """Anchor market time `event_ts_ns` to wall time now (done by the first `wait_until`)."""
        self._first_ts = event_ts_ns
        self._wall_start = self._wall_ns()
        if self._last_ts is None or event_ts_ns > self._last_ts:
            self._last_ts = event_ts_ns

    def wall_due_ns(self, event_ts_ns: int) -> int:
        """The wall time (in `wall_ns` terms) at which `event_ts_ns` is due; now if unpaced."""
        if self._first_ts is None:
            raise RuntimeError("the clock has not started: call wait_until or start first")
        if self._speed is None:
            return self._wall_ns()
        return self._wall_start + round((event_ts_ns - self._first_ts) / self._speed)

    async def wait_until(self, event_ts_ns: int) -> None:
        """Return when the event at market time `event_ts_ns` is due (at once when unpaced)."""
        if self._first_ts is None:
            self.start(event_ts_ns)
        elif self._speed is not None:
            delay_ns = self.wall_due_ns(event_ts_ns) - self._wall_ns()
            if delay_ns > 0:
                await self._sleep(delay_ns / 1e9)
        if self._last_ts is None or event_ts_ns > self._last_ts:
            self._last_ts = event_ts_ns

    def now_ns(self) -> int:
        """Current virtual (market) time in UTC nanoseconds.

        Unpaced it is the latest event released; paced it advances with the wall clock from
        the first event, at `speed` times real time.
        """
        if self._first_ts is None:
            if self._last_ts is None:
                raise RuntimeError("the clock has not started and has no start_ns: no virtual time yet")
            return self._last_ts
        assert self._last_ts is not None
        if self._speed is None:
            return self._last_ts
        elapsed = self._wall_ns() - self._wall_start
        return max(self._last_ts, self._first_ts + round(elapsed * self._speed))
