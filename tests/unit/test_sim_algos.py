"""Execution algorithms: parsing the API's exec_algos entries and their child-order schedules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from libs.sim.algos import algo_children, parse_algo, split_by_weight
from libs.sim.sessions import minute_index, session_minutes

H = 3600.0
DAY = "2025-09-01"
FLAT_NY = [1 / 390] * 390
FLAT_HK = [1 / 330] * 330


def twap(**kw: Any) -> dict[str, Any]:
    return {"type": "twap", **kw}


def at(hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(2025, 9, 1, hh, mm, ss)


# ---------------------------------------------------------------------------------------------
# twap / vwap parsing
# ---------------------------------------------------------------------------------------------


def test_reference_twap_example() -> None:
    cfg = {
        "type": "twap",
        "order_size": 50000,
        "horizon": "02:00:00",
        "start_time": "09:30:00",
        "frequency": "00:00:30",
        "side": "sell",
        "random_offset": True,
    }
    spec = parse_algo(cfg, DAY, "XHKG")
    assert (spec.type, spec.side, spec.order_size) == ("twap", -1, 50000)
    assert (spec.start_s, spec.horizon_s, spec.frequency_s, spec.random_offset_s) == (9.5 * H, 7200.0, 30.0, 30.0)
    assert spec.label.startswith("twap_") and len(spec.label) == 13 and int(spec.label[5:], 16) >= 0


def test_defaults() -> None:
    spec = parse_algo(twap(order_size=100_000, horizon="01:00:00"), DAY, "XNYS")
    assert spec.start_s == 9.5 * H  # market open
    assert spec.frequency_s == 1.0
    assert spec.random_offset_s == 1.0  # True = uniform in [0, frequency)
    assert spec.side == 1


@pytest.mark.parametrize(
    ("order_size", "side", "expected"),
    [(100, None, 1), (-100, None, -1), (100, "sell", -1), (100, "buy", 1), (-100, "sell", -1)],
)
def test_side(order_size: int, side: str | None, expected: int) -> None:
    cfg = twap(order_size=order_size, horizon="00:01:00", frequency="1m")
    if side is not None:
        cfg["side"] = side
    spec = parse_algo(cfg, DAY, "XNYS")
    assert spec.side == expected and spec.order_size == 100


def test_random_offset_forms() -> None:
    base = twap(order_size=100, horizon="00:01:00", frequency="00:00:10")
    assert parse_algo({**base, "random_offset": False}, DAY, "XNYS").random_offset_s == 0.0
    assert parse_algo({**base, "random_offset": "500ms"}, DAY, "XNYS").random_offset_s == 0.5
    assert parse_algo({**base, "random_offset": dt.timedelta(seconds=3)}, DAY, "XNYS").random_offset_s == 3.0


def test_label_identifies_the_normalised_spec() -> None:
    short = parse_algo(twap(order_size=600, horizon="00:10:00"), DAY, "XNYS")
    spelled = parse_algo(
        twap(order_size=600, horizon="600s", start_time="09:30", frequency="1s", random_offset="00:00:01"), DAY, "XNYS"
    )
    assert short.label == spelled.label
    assert parse_algo(twap(order_size=600, horizon="00:10:00"), DAY, "XNYS", index=5).label == short.label
    assert parse_algo(twap(order_size=601, horizon="00:10:00"), DAY, "XNYS").label != short.label
    assert parse_algo({"type": "vwap", "order_size": 600, "horizon": "00:10:00"}, DAY, "XNYS").label.startswith("vwap_")


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        ({"order_size": 100, "horizon": "01:00:00"}, r"missing 'type'; one of twap, vwap, css"),
        ({"type": "pov", "order_size": 100}, r"unknown algo type 'pov'; known: twap, vwap, css"),
        (twap(order_size=100, horizon="00:01:00", urgency=3), r"unknown key\(s\) 'urgency' for twap; allowed: type"),
        ({"type": "css", "orders": [], "horizon": "01:00:00"}, r"unknown key\(s\) 'horizon' for css"),
        (twap(horizon="01:00:00"), "twap needs 'order_size'"),
        ({"type": "vwap", "order_size": 100}, "vwap needs 'horizon'"),
        (twap(order_size=1.5, horizon="00:00:01"), "order_size must be an integer number of shares, got float"),
        (twap(order_size="100", horizon="00:00:01"), "order_size must be an integer number of shares, got str"),
        (twap(order_size=True, horizon="00:00:01"), "order_size must be an integer number of shares, got bool"),
        (twap(order_size=0, horizon="00:00:01"), "order_size must not be zero"),
        (twap(order_size=-100, side="buy", horizon="00:00:01"), "side 'buy' disagrees with order_size -100"),
        (twap(order_size=100, side="short", horizon="00:00:01"), "side must be 'buy' or 'sell', got 'short'"),
        (twap(order_size=100, horizon="two hours"), "horizon 'two hours' is not a duration"),
        (twap(order_size=100, horizon="00:00:00"), "horizon '00:00:00' must be greater than zero"),
        (twap(order_size=100, horizon="00:01:00", frequency="0s"), "frequency '0s' must be greater than zero"),
        (twap(order_size=100, horizon="00:01:00", start_time="12:30:00"), "start_time 12:30:00 is outside trading"),
        (twap(order_size=100, horizon="00:01:00", start_time="08:00:00"), "start_time 08:00:00 is outside trading"),
        (twap(order_size=100, horizon="00:01:00", start_time="half past nine"), "is not a time of day"),
        (
            twap(order_size=10_000, horizon="02:00:00", start_time="15:00:00"),
            "horizon 02:00:00 ends at 17:00:00, after the close 16:00:00",
        ),
        (twap(order_size=100, horizon="00:00:30", frequency="1m"), "frequency 60s is longer than the horizon 30s"),
        (twap(order_size=100, horizon="00:10:00"), "order_size 100 is smaller than the 600 child orders"),
        (twap(order_size=10**9, horizon="06:00:00", frequency="100ms"), r"makes 216000 children \(max 100000\)"),
        (twap(order_size=100, horizon="00:01:00", frequency="1m", random_offset="soon"), "random_offset 'soon'"),
        (twap(order_size=100, horizon="00:01:00", frequency="1m", random_offset=-1), "random_offset -1 must not be"),
        (
            twap(order_size=100, horizon="00:10:00", frequency="1m", random_offset="01:00:00"),
            "random_offset 3600s is longer than the frequency 60s",
        ),
        (twap(order_size=10**12, horizon="00:10:00", frequency="1m"), "order_size 1000000000000 is more than"),
    ],
)
def test_rejects(cfg: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_algo(cfg, DAY, "XHKG")


def test_side_is_case_insensitive() -> None:
    assert parse_algo(twap(order_size=100, side="SELL", horizon="00:01:00", frequency="1m"), DAY, "XHKG").side == -1


def test_error_names_the_entry_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^exec_algos\[3\]: unknown algo type"):
        parse_algo({"type": "TWAP"}, DAY, "XNYS", index=3)
    with pytest.raises(ValueError, match="an algo config must be a dict, got list"):
        parse_algo([("type", "twap")], DAY, "XNYS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cal_date '2025-13-01' is not a YYYY-MM-DD date"):
        parse_algo(twap(order_size=100, horizon="00:01:00", frequency="1m"), "2025-13-01", "XNYS")
    with pytest.raises(ValueError, match="unknown market 'XLON'"):
        parse_algo(twap(order_size=100, horizon="00:01:00", frequency="1m"), DAY, "XLON")  # type: ignore[arg-type]


def test_horizon_ending_exactly_at_the_close_is_fine() -> None:
    spec = parse_algo(twap(order_size=3600, horizon="01:00:00", start_time="15:00:00"), DAY, "XNYS")
    times, sizes = algo_children(spec, "XNYS", FLAT_NY, seed=1)
    assert times.size == 3600 and times.max() < 16 * H and sizes.sum() == 3600


# ---------------------------------------------------------------------------------------------
# twap / vwap children
# ---------------------------------------------------------------------------------------------


def test_twap_children_by_hand() -> None:
    """10 shares in 4 children a second apart from 10:00: 3, 3, 2, 2 (remainder to the first)."""
    cfg = twap(order_size=10, horizon="00:00:04", frequency="1s", start_time="10:00:00", random_offset=False)
    times, sizes = algo_children(parse_algo(cfg, DAY, "XNYS"), "XNYS", FLAT_NY, seed=7)
    assert times.tolist() == [36000.0, 36001.0, 36002.0, 36003.0]
    assert sizes.tolist() == [3, 3, 2, 2]
    assert sizes.dtype.kind == "i"


def test_twap_random_offsets_are_reproducible_and_inside_the_slot() -> None:
    cfg = twap(order_size=-50_000, horizon="02:00:00", frequency="00:00:30", start_time="10:00:00")
    spec = parse_algo(cfg, DAY, "XNYS")
    t1, s1 = algo_children(spec, "XNYS", FLAT_NY, seed=42)
    t2, s2 = algo_children(spec, "XNYS", FLAT_NY, seed=42)
    t3, _ = algo_children(spec, "XNYS", FLAT_NY, seed=43)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(t1, t3)
    grid = 10 * H + 30.0 * np.arange(240)
    offsets = t1 - grid
    assert offsets.min() >= 0.0 and offsets.max() < 30.0
    assert offsets.std() > 5.0  # really spread over the slot (uniform on [0, 30) has std 8.7)
    assert np.all(np.diff(t1) > 0)
    assert s1.sum() == 50_000 and s1.min() > 0  # sizes are positive shares; the side is in the spec


def test_twap_short_offset() -> None:
    cfg = twap(order_size=600, horizon="00:10:00", start_time="10:00:00", random_offset="250ms")
    times, _ = algo_children(parse_algo(cfg, DAY, "XNYS"), "XNYS", FLAT_NY, seed=3)
    offsets = times - (10 * H + np.arange(600))
    assert offsets.min() >= 0.0 and offsets.max() < 0.25


def test_twap_hkex_lunch_children_are_dropped() -> None:
    """24,000 shares every 30 s over 11:00-13:00 on HKEX: the 120 lunch children are not traded."""
    cfg = twap(order_size=24_000, horizon="02:00:00", frequency="00:00:30", start_time="11:00:00", random_offset=False)
    spec = parse_algo(cfg, DAY, "XHKG")
    times, sizes = algo_children(spec, "XHKG", FLAT_HK, seed=1)
    assert times.size == 120 and sizes.sum() == 12_000
    assert times.max() < 12 * H
    ny_times, ny_sizes = algo_children(parse_algo(cfg, DAY, "XNYS"), "XNYS", FLAT_NY, seed=1)
    assert ny_times.size == 240 and ny_sizes.sum() == 24_000


def test_vwap_children_by_hand() -> None:
    """Two children at 10:00 and 10:01 (session minutes 30 and 31) with volumes 1:3 -> 25 and 75."""
    profile = np.full(390, 0.001)
    profile[30], profile[31] = 0.1, 0.3
    cfg = {
        "type": "vwap",
        "order_size": 100,
        "horizon": "00:02:00",
        "frequency": "1m",
        "start_time": "10:00:00",
        "random_offset": False,
    }
    times, sizes = algo_children(parse_algo(cfg, DAY, "XNYS"), "XNYS", profile.tolist(), seed=0)
    assert times.tolist() == [36000.0, 36060.0]
    assert sizes.tolist() == [25, 75]


def test_vwap_largest_remainder_by_hand() -> None:
    """7 shares by 0.2 : 0.3 : 0.5 is 1.4, 2.1, 3.5 -> 1, 2, 3 and the spare share to the 0.5."""
    profile = np.zeros(330)
    profile[:3] = [0.2, 0.3, 0.5]
    cfg = {"type": "vwap", "order_size": 7, "horizon": "00:03:00", "frequency": "60s", "random_offset": False}
    _, sizes = algo_children(parse_algo(cfg, DAY, "XHKG"), "XHKG", profile, seed=0)
    assert sizes.tolist() == [1, 2, 4]


def test_vwap_gives_the_lunch_break_no_weight() -> None:
    """Children at 11:59, 12:00, 12:01 on HKEX: only 11:59 is in the session and it takes the whole order."""
    base = {"order_size": 900, "horizon": "00:03:00", "frequency": "60s", "start_time": "11:59:00"}
    base["random_offset"] = False
    times, sizes = algo_children(parse_algo({"type": "vwap", **base}, DAY, "XHKG"), "XHKG", FLAT_HK, seed=0)
    assert times.tolist() == [11 * H + 59 * 60] and sizes.tolist() == [900]
    # twap keeps its even split, so two thirds are not traded
    times, sizes = algo_children(parse_algo({"type": "twap", **base}, DAY, "XHKG"), "XHKG", FLAT_HK, seed=0)
    assert times.tolist() == [11 * H + 59 * 60] and sizes.tolist() == [300]


def test_vwap_total_is_exact_for_random_profiles() -> None:
    rng = np.random.default_rng(5)
    grid = 10 * H + 20.0 * np.arange(540)  # every 20 s over 10:00-13:00
    for total in (1_000, 12_345, 99_999):
        profile = rng.gamma(0.5, size=390)
        profile /= profile.sum()
        cfg = {"type": "vwap", "order_size": total, "horizon": "03:00:00", "frequency": "00:00:20"}
        spec = parse_algo({**cfg, "start_time": "10:00:00", "random_offset": False}, DAY, "XNYS")
        times, sizes = algo_children(spec, "XNYS", profile, seed=total)
        assert sizes.sum() == total and sizes.min() > 0  # children of zero shares are not sent
        # each child is within one share of its exact proportional size (volume of its minute)
        weights = profile[((grid - 9.5 * H) // 60).astype(int)]
        exact = total * weights / weights.sum()
        slot = np.searchsorted(grid, times)
        np.testing.assert_array_equal(grid[slot], times)
        assert np.abs(sizes - exact[slot]).max() < 1.0
        assert np.all(exact[np.setdiff1d(np.arange(540), slot)] < 1.0)


def test_vwap_quiet_window_falls_back_to_even_split() -> None:
    profile = np.zeros(390)
    profile[200] = 1.0
    cfg = {"type": "vwap", "order_size": 10, "horizon": "00:04:00", "frequency": "1m", "random_offset": False}
    _, sizes = algo_children(parse_algo(cfg, DAY, "XNYS"), "XNYS", profile, seed=0)
    assert sizes.tolist() == [3, 3, 2, 2]


def test_vwap_checks_the_profile() -> None:
    spec = parse_algo({"type": "vwap", "order_size": 100, "horizon": "00:01:00", "frequency": "1m"}, DAY, "XHKG")
    with pytest.raises(ValueError, match="volume_profile has 390 entries; a XHKG session has 330 minutes"):
        algo_children(spec, "XHKG", FLAT_NY, seed=0)
    bad = list(FLAT_HK)
    bad[4] = -0.1
    with pytest.raises(ValueError, match="volume_profile must hold finite, non-negative"):
        algo_children(spec, "XHKG", bad, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        algo_children(spec, "XHKG", FLAT_HK, seed=-1)


def test_session_minutes() -> None:
    assert len(session_minutes("XNYS")) == 390 and len(session_minutes("XHKG")) == 330
    t = np.array([9.5 * H, 9.5 * H + 59.9, 9.5 * H + 60, 12 * H - 1, 12 * H, 13 * H, 16 * H - 1, 16 * H])
    assert minute_index("XHKG", t).tolist() == [0, 0, 1, 149, -1, 150, 329, -1]


def test_split_by_weight() -> None:
    assert split_by_weight(10, np.array([1.0, 1.0, 1.0])).tolist() == [4, 3, 3]
    assert split_by_weight(5, np.array([0.0, 1.0, 0.0])).tolist() == [0, 5, 0]
    assert split_by_weight(3, np.array([1 / 3, 1 / 3, 1 / 3])).tolist() == [1, 1, 1]


# ---------------------------------------------------------------------------------------------
# css
# ---------------------------------------------------------------------------------------------


def reference_schedule() -> list[tuple[dt.datetime, int]]:
    """The API's make_schedule(10_000, 09:30, 12:00, 2025-09-01): 100 orders of 100 shares, evenly spaced."""
    start, end = at(9, 30), at(12, 0)
    return [(start + (end - start) * i / 99, 100) for i in range(100)]


def test_reference_css_example_from_a_list_of_datetimes() -> None:
    spec = parse_algo({"type": "css", "orders": reference_schedule()}, DAY, "XHKG")
    assert spec.type == "css" and spec.side == 1
    assert spec.order_size == 10_000
    assert len(spec.schedule_s) == 100 and spec.schedule_qty == [100] * 100
    assert spec.start_s == 9.5 * H and spec.schedule_s[-1] == 12 * H
    assert spec.schedule_s[1] == pytest.approx(9.5 * H + 9000 / 99, abs=1e-6)  # 09:31:30.909
    assert spec.label.startswith("css_")
    times, sizes = algo_children(spec, "XHKG", FLAT_HK, seed=0)
    # the order at exactly 12:00:00 is at the close of the morning session: dropped
    assert times.size == 99 and sizes.sum() == 9_900


def test_css_schedule_forms_agree() -> None:
    pairs = reference_schedule()
    expected = parse_algo({"type": "css", "orders": pairs}, DAY, "XHKG")
    as_dict = {t: q for t, q in pairs}
    as_iso = [(t.isoformat(), q) for t, q in pairs]
    frame = pl.DataFrame({"ts": [t for t, _ in pairs], "qty": [q for _, q in pairs]})
    for orders in (as_dict, as_iso, tuple(pairs), frame):
        spec = parse_algo({"type": "css", "orders": orders}, DAY, "XHKG")
        assert spec.schedule_qty == expected.schedule_qty
        np.testing.assert_allclose(spec.schedule_s, expected.schedule_s, atol=1e-6)


def test_css_from_the_reference_pandas_series() -> None:
    pd = pytest.importorskip("pandas")
    idx = pd.date_range(start=at(9, 30), end=at(12, 0), periods=100)
    schedule = pd.Series(np.full(100, 100), index=idx)
    spec = parse_algo({"type": "css", "orders": schedule}, DAY, "XHKG")
    assert spec.order_size == 10_000 and len(spec.schedule_s) == 100
    assert spec.schedule_s[0] == 9.5 * H and spec.schedule_s[-1] == 12 * H
    # a full day on HKEX: the orders inside the lunch break are dropped
    day = pd.Series(np.full(100, 100), index=pd.date_range(start=at(9, 30), end=at(16, 0), periods=100))
    times, sizes = algo_children(parse_algo({"type": "css", "orders": day}, DAY, "XHKG"), "XHKG", FLAT_HK, seed=0)
    step = 6.5 * H / 99
    t = 9.5 * H + step * np.arange(100)
    expected_kept = int((((t >= 9.5 * H) & (t < 12 * H)) | ((t >= 13 * H) & (t < 16 * H))).sum())
    assert times.size == expected_kept == 84 and sizes.sum() == 100 * expected_kept


def test_css_pandas_timezone_aware_index() -> None:
    pd = pytest.importorskip("pandas")
    idx = pd.DatetimeIndex([dt.datetime(2025, 9, 1, 1, 30), dt.datetime(2025, 9, 1, 5, 0)]).tz_localize("UTC")
    spec = parse_algo({"type": "css", "orders": pd.Series([10, 20], index=idx)}, DAY, "XHKG")
    assert spec.schedule_s == [9.5 * H, 13 * H]  # Hong Kong is UTC+8


def test_css_timezone_aware_datetimes_become_market_time() -> None:
    """13:30 UTC on 2025-09-01 is 09:30 in New York (EDT, UTC-4)."""
    orders = [(dt.datetime(2025, 9, 1, 13, 30, tzinfo=dt.UTC), 5), ("2025-09-01T14:00:00+00:00", 5)]
    spec = parse_algo({"type": "css", "orders": orders}, DAY, "XNYS")
    assert spec.schedule_s == [9.5 * H, 10 * H]


def test_css_is_sorted_by_time() -> None:
    orders = {"2025-09-01T10:05:00": 5, "2025-09-01T10:00:00": 7, "2025-09-01 10:02:30": 1}
    spec = parse_algo({"type": "css", "orders": orders}, DAY, "XNYS")
    assert spec.schedule_s == [36000.0, 36150.0, 36300.0]
    assert spec.schedule_qty == [7, 1, 5]
    assert (spec.start_s, spec.horizon_s) == (36000.0, 300.0)
    times, sizes = algo_children(spec, "XNYS", FLAT_NY, seed=9)
    assert times.tolist() == [36000.0, 36150.0, 36300.0] and sizes.tolist() == [7, 1, 5]


def test_css_sell_schedule() -> None:
    spec = parse_algo({"type": "css", "orders": [(at(10, 0), -300), (at(10, 1), -200)]}, DAY, "XNYS")
    assert spec.side == -1 and spec.order_size == 500 and spec.schedule_qty == [300, 200]
    sell = parse_algo({"type": "css", "orders": [(at(10, 0), 300)], "side": "sell"}, DAY, "XNYS")
    assert sell.side == -1


@pytest.mark.parametrize(
    ("orders", "fragment"),
    [
        ([], "the css schedule is empty"),
        ({}, "the css schedule is empty"),
        ([(at(10, 0), 100), (dt.datetime(2025, 9, 2, 10, 0), 100)], "schedule time 2025-09-02T10:00.* not on cal_date"),
        ([(at(10, 0), 1.5)], "schedule size at .* must be an integer number of shares, got float"),
        ([(at(10, 0), "100")], "must be an integer number of shares, got str"),
        ([(at(10, 0), 100), (at(10, 1), 0)], "schedule size at .* is zero"),
        ([(at(10, 0), 100), (at(10, 1), -100)], "schedule sizes mix signs"),
        ([(at(10, 0), 100, "x")], r"schedule item 0 must be a \(datetime, size\) pair"),
        ([at(10, 0)], r"schedule item 0 must be a \(datetime, size\) pair"),
        ([("2025-09-01", 100)], "'2025-09-01' has no time of day"),
        ([("10:00:00", 100)], "'10:00:00' is not an ISO datetime"),
        ([(dt.time(10, 0), 100)], "must be a full datetime"),
        ([(dt.date(2025, 9, 1), 100)], "must be a full datetime"),
        ([(at(12, 30), 100), (at(8, 0), 100)], "no schedule time is inside trading hours"),
        (42, "orders must be a pandas Series with a DatetimeIndex, a polars DataFrame"),
        ("2025-09-01T10:00:00", "orders must be a pandas Series"),
        (pl.DataFrame({"ts": [at(10, 0)], "a": [1], "b": [2]}), "exactly one datetime column and one integer column"),
        (pl.DataFrame({"ts": [at(10, 0)], "a": [1.0]}), "exactly one datetime column and one integer column"),
        (pl.DataFrame({"ts": [at(10, 0), None], "a": [1, 2]}), "the polars schedule holds nulls"),
    ],
)
def test_css_rejects(orders: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_algo({"type": "css", "orders": orders}, DAY, "XHKG")


def test_css_rejects_missing_orders_and_a_disagreeing_side() -> None:
    with pytest.raises(ValueError, match="css needs 'orders'"):
        parse_algo({"type": "css"}, DAY, "XNYS")
    with pytest.raises(ValueError, match="side 'buy' disagrees with negative schedule sizes"):
        parse_algo({"type": "css", "orders": [(at(10, 0), -5)], "side": "buy"}, DAY, "XNYS")


def test_css_rejects_a_bad_pandas_schedule() -> None:
    pd = pytest.importorskip("pandas")
    floats = pd.Series([1.5, 2.0], index=pd.DatetimeIndex([at(10, 0), at(10, 1)]))
    with pytest.raises(ValueError, match="must be an integer number of shares, got float"):
        parse_algo({"type": "css", "orders": floats}, DAY, "XNYS")
    with pytest.raises(ValueError, match="orders must be a Series"):
        parse_algo({"type": "css", "orders": pd.DataFrame({"a": [1], "b": [2]})}, DAY, "XNYS")
    with pytest.raises(ValueError, match="missing time"):
        parse_algo({"type": "css", "orders": pd.Series([1], index=pd.DatetimeIndex([pd.NaT]))}, DAY, "XNYS")
