"""Virtual clock (with an injected fake wall clock and sleep) and event ids."""

from __future__ import annotations

import math

import pytest

from libs import ids
from libs.clock import VirtualClock, check_speed

S = 1_000_000_000


class FakeTime:
    """A wall clock that only moves when the clock under test sleeps (or a test says so)."""

    def __init__(self, start_ns: int = 5_000 * S) -> None:
        self.t = start_ns
        self.sleeps: list[float] = []

    def wall_ns(self) -> int:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += round(seconds * 1e9)


def make(speed: float | None, **kw: int) -> tuple[VirtualClock, FakeTime]:
    fake = FakeTime()
    return VirtualClock(speed, sleep=fake.sleep, wall_ns=fake.wall_ns, **kw), fake


async def test_unpaced_never_sleeps_and_tracks_latest_event() -> None:
    clock, fake = make(None)
    for ts in (100 * S, 200 * S, 150 * S, 10_000 * S):
        await clock.wait_until(ts)
    assert fake.sleeps == []
    assert clock.now_ns() == 10_000 * S


async def test_paced_sleeps_scaled_event_gaps() -> None:
    clock, fake = make(10)
    await clock.wait_until(1_000 * S)  # anchors: no sleep
    assert fake.sleeps == []
    await clock.wait_until(1_030 * S)  # 30 s of market time at 10x: 3 s
    await clock.wait_until(1_130 * S)  # 100 s more: 10 s
    assert fake.sleeps == pytest.approx([3.0, 10.0])
    assert clock.now_ns() == 1_130 * S


async def test_paced_catches_up_without_sleeping_when_late() -> None:
    clock, fake = make(2)
    await clock.wait_until(0)
    fake.t += 60 * S  # the consumer was slow for 60 s of wall time
    await clock.wait_until(100 * S)  # due 50 s after start: already late
    assert fake.sleeps == []
    await clock.wait_until(130 * S)  # due 65 s after start, it is 60 s: 5 s
    assert fake.sleeps == pytest.approx([5.0])


async def test_paced_now_advances_with_wall_time_and_never_goes_back() -> None:
    clock, fake = make(60)
    await clock.wait_until(1_000 * S)
    fake.t += 2 * S
    assert clock.now_ns() == 1_120 * S  # 2 s of wall at 60x
    await clock.wait_until(500 * S)  # older event: released at once, time does not go back
    assert fake.sleeps == []
    assert clock.now_ns() == 1_120 * S


async def test_start_ns_before_first_event() -> None:
    clock, _ = make(None, start_ns=42)
    assert clock.now_ns() == 42
    assert not clock.started
    with pytest.raises(RuntimeError, match="not started"):
        make(None)[0].now_ns()


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, "fast", True])
def test_bad_speed_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=f"speed={bad!r}"):
        VirtualClock(bad)  # type: ignore[arg-type]


def test_good_speeds() -> None:
    assert check_speed(None) is None
    assert check_speed(3) == 3.0
    assert VirtualClock(0.5).speed == 0.5


def test_ids_unique_sorted_and_time_stamped() -> None:
    before = ids.now_ns() // 1_000_000
    made = [ids.new_id() for _ in range(20_000)]
    after = ids.now_ns() // 1_000_000
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(i) == 26 for i in made)
    assert before <= ids.id_time_ms(made[0]) <= ids.id_time_ms(made[-1]) <= after


def test_now_ns_is_utc_nanoseconds() -> None:
    assert ids.now_ns() > 1_700_000_000 * S
