"""Day statistics: stylised facts on series with known properties, minute series, time-weighted
spread and depth against hand computations, skipped bad quotes, degenerate input, comparison table."""

from __future__ import annotations

import math
import warnings

import msgspec
import numpy as np
import pytest

from libs.data.lobster import EMPTY_ASK, EMPTY_BID, LobsterDay
from libs.sim import stats
from proto.sim import DayStats

OPEN, CLOSE = 34_200.0, 57_600.0


def prices(returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    """Minute mids whose consecutive log returns are `returns`."""
    return start * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, 1e-3, n)
    r = np.empty(n)
    r[0] = e[0]
    for i in range(1, n):
        r[i] = phi * r[i - 1] + e[i]
    return r


def garch(n: int, seed: int, alpha: float = 0.15, beta: float = 0.8, df: int = 8) -> np.ndarray:
    """GARCH(1,1) returns with unit-variance Student-t innovations."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(df, n) / math.sqrt(df / (df - 2))
    r = np.empty(n)
    var = 1e-6
    for i in range(n):
        r[i] = math.sqrt(var) * z[i]
        var = 5e-8 + alpha * r[i] ** 2 + beta * var
    return r


def test_iid_normal_returns_have_no_excess_kurtosis_or_autocorrelation() -> None:
    rng = np.random.default_rng(1)
    mid = prices(rng.normal(0.0, 1e-3, 5000))
    f = stats.stylised_facts(mid, rng.uniform(100, 200, mid.size))
    # standard errors: sqrt(24/n) = 0.07 for kurtosis, 1/sqrt(n) = 0.014 for the correlations
    assert abs(f["kurtosis_excess"]) < 0.3
    assert abs(f["acf1_returns"]) < 0.06
    assert abs(f["acf1_abs_returns"]) < 0.06
    assert abs(f["corr_volume_abs_return"]) < 0.06


def test_facts_match_a_plain_python_computation() -> None:
    rng = np.random.default_rng(2)
    mid = prices(rng.standard_t(5, 60) * 1e-3)
    vol = rng.uniform(0, 100, mid.size)
    r = [math.log(mid[i + 1] / mid[i]) for i in range(len(mid) - 1)]
    n = len(r)
    mean = sum(r) / n
    m2 = sum((x - mean) ** 2 for x in r) / n
    m4 = sum((x - mean) ** 4 for x in r) / n
    acf1 = sum((r[i] - mean) * (r[i + 1] - mean) for i in range(n - 1)) / (n - 1) / m2
    a = [abs(x) for x in r]
    am = sum(a) / n
    acf1_abs = sum((a[i] - am) * (a[i + 1] - am) for i in range(n - 1)) / (n - 1) / (sum((x - am) ** 2 for x in a) / n)
    v = list(vol[1:])  # return i happens during minute i + 1
    vm = sum(v) / n
    cov = sum((v[i] - vm) * (a[i] - am) for i in range(n))
    corr = cov / math.sqrt(sum((x - vm) ** 2 for x in v) * sum((x - am) ** 2 for x in a))
    f = stats.stylised_facts(mid, vol)
    assert f["kurtosis_excess"] == pytest.approx(m4 / m2**2 - 3, rel=1e-9)
    assert f["acf1_returns"] == pytest.approx(acf1, rel=1e-9)
    assert f["acf1_abs_returns"] == pytest.approx(acf1_abs, rel=1e-9)
    assert f["corr_volume_abs_return"] == pytest.approx(corr, rel=1e-9)
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (n - 1))
    assert stats.minute_vol_bps(mid) == pytest.approx(sd * 1e4, rel=1e-9)


def test_ar1_autocorrelation_is_phi() -> None:
    for phi in (0.5, -0.3):
        r = ar1(5000, phi, seed=3)
        f = stats.stylised_facts(prices(r), np.ones(r.size + 1))
        assert f["acf1_returns"] == pytest.approx(phi, abs=0.05)


def test_garch_returns_cluster_and_have_fat_tails() -> None:
    r = garch(10_000, seed=4)
    f = stats.stylised_facts(prices(r), np.ones(r.size + 1))
    assert f["acf1_abs_returns"] > 0.1
    assert f["kurtosis_excess"] > 1
    assert abs(f["acf1_returns"]) < 0.1


def test_volume_built_on_abs_returns_correlates_with_them() -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(0.0, 1e-3, 2000)
    vol = np.empty(r.size + 1)
    vol[0] = 500.0
    vol[1:] = 500.0 + 4e5 * np.abs(r) + rng.normal(0, 100, r.size)
    f = stats.stylised_facts(prices(r), vol)
    assert f["corr_volume_abs_return"] > 0.5
    # the pairing matters: the same volume shifted by one minute does not correlate
    assert abs(stats.stylised_facts(prices(r), np.roll(vol, -1))["corr_volume_abs_return"]) < 0.1


def test_degenerate_input_gives_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = stats.stylised_facts(np.full(100, 50.0), np.arange(100.0))
        short = stats.stylised_facts(prices(np.array([1e-3, -2e-3, 5e-4, 1e-3, -1e-3])), np.ones(6))
        no_mid = stats.stylised_facts(np.full(50, np.nan), np.ones(50))
        flat_volume = stats.stylised_facts(prices(np.random.default_rng(6).normal(0, 1e-3, 99)), np.ones(100))
    for f in (flat, short, no_mid):
        assert set(f) == set(stats.STYLISED_FACTS) and all(math.isnan(v) for v in f.values())
    assert math.isnan(flat_volume["corr_volume_abs_return"]) and math.isfinite(flat_volume["acf1_returns"])
    assert stats.minute_vol_bps(np.full(100, 50.0)) == 0.0
    with pytest.raises(ValueError, match="minute_volume has 3 minutes, minute_mid 4"):
        stats.stylised_facts(np.ones(4), np.ones(3))


def test_valid_returns_drop_the_hkex_lunch() -> None:
    assert stats.valid_returns("XNYS").all() and stats.valid_returns("XNYS").size == 389
    hk = stats.valid_returns("XHKG")
    assert hk.size == 329 and np.flatnonzero(~hk).tolist() == [149]  # 11:59 -> 13:00 minute ends
    rng = np.random.default_rng(7)
    mid = prices(rng.normal(0, 1e-4, 329))
    mid[150:] *= 1.05  # a 5% gap over lunch
    vol = np.ones(330)
    masked = stats.stylised_facts(mid, vol, hk)
    unmasked = stats.stylised_facts(mid, vol)
    assert abs(masked["kurtosis_excess"]) < 1.5
    assert unmasked["kurtosis_excess"] > 50
    assert stats.minute_vol_bps(mid, hk) < 2 < stats.minute_vol_bps(mid)
    # lag-1 pairs stay within a window: morning returns 0..148, afternoon 150..328
    r = [math.log(mid[i + 1] / mid[i]) for i in range(329) if i != 149]
    mean = sum(r) / len(r)
    var = sum((x - mean) ** 2 for x in r) / len(r)
    pairs = [(r[i], r[i + 1]) for i in range(len(r) - 1) if i != 148]  # r[148] and r[149] straddle lunch
    acf1 = sum((x - mean) * (y - mean) for x, y in pairs) / len(pairs) / var
    assert masked["acf1_returns"] == pytest.approx(acf1, rel=1e-9)
    with pytest.raises(ValueError, match="one per return"):
        stats.stylised_facts(mid, vol, hk[:-1])


def test_minute_series_forward_fills_and_bins_volume() -> None:
    t = np.array([OPEN + 30, OPEN + 90, OPEN + 120, OPEN + 180])
    mid = np.array([100.0, 101.0, np.nan, 103.0])
    trade_t = np.array([OPEN - 1, OPEN, OPEN + 59.9, OPEN + 60, CLOSE - 1, CLOSE])
    qty = np.array([7.0, 1.0, 2.0, 4.0, 8.0, 9.0])
    mm, vol = stats.minute_series("XNYS", t, mid, trade_t, qty)
    assert mm.size == vol.size == 390
    # minute ends 09:31, 09:32, 09:33: the NaN quote at 09:32 is ignored, a quote at the end counts
    assert mm[:3].tolist() == [100.0, 101.0, 103.0] and np.all(mm[3:] == 103.0)
    assert vol[0] == 3.0 and vol[1] == 4.0 and vol[389] == 8.0 and vol.sum() == 15.0
    late, _ = stats.minute_series("XNYS", np.array([OPEN + 150]), np.array([50.0]), np.array([]), np.array([]))
    assert np.all(late == 50.0)  # minutes before the first quote take the first mid
    with pytest.raises(ValueError, match="non-decreasing"):
        stats.minute_series("XNYS", np.array([2.0, 1.0]), np.ones(2), np.array([]), np.array([]))


def a(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def test_day_stats_time_weights_and_skips_bad_quotes() -> None:
    t = np.array([OPEN - 200, OPEN + 100, OPEN + 200, OPEN + 300, OPEN + 400, CLOSE + 400])
    bid_px = a(10_000, 10_000, 10_500, EMPTY_BID, 10_300, 1)
    bid_sz = a(100, 50, 10, 0, 10, 1)
    ask_px = a(10_200, 10_400, 10_400, 10_400, 10_400, 99_999)
    ask_sz = a(300, 150, 10, 20, 30, 1)
    trade_t = np.array([OPEN - 100, OPEN + 50, OPEN + 70, CLOSE - 600, CLOSE + 1])
    trade_q = np.array([1000, 100, 300, 50, 1000])
    s = stats.day_stats("XNYS", 100, t, bid_px, bid_sz, ask_px, ask_sz, trade_t, trade_q, n_limit=11, n_cancel=7)
    # [open, +100) 2 ticks, depth 200; [+100, +200) 4 ticks, depth 100; [+200, +400) crossed then
    # one-sided: skipped; [+400, close) 1 tick, depth 20; the quote after the close weighs nothing
    live = 100 + 100 + (CLOSE - OPEN - 400)
    assert s.spread_ticks_mean == pytest.approx((100 * 2 + 100 * 4 + (CLOSE - OPEN - 400) * 1) / live, rel=1e-12)
    assert s.depth_touch_mean == pytest.approx((100 * 200 + 100 * 100 + (CLOSE - OPEN - 400) * 20) / live, rel=1e-12)
    assert s.limit_rate_per_s == 11 / 23_400 and s.cancel_rate_per_s == 7 / 23_400
    assert s.trade_rate_per_s == 3 / 23_400 and s.daily_volume == 450
    assert s.trade_size_mean == 150 and s.trade_size_p50 == 100
    assert s.trade_size_p90 == pytest.approx(100 + 0.8 * (300 - 100))
    # minute mids (ends 09:31, 09:32, ...): 10100, 10200 x 5 (bad quotes ignored), then 10350
    r = [0.0] * 389
    r[0], r[5] = math.log(10_200 / 10_100), math.log(10_350 / 10_200)
    mean = sum(r) / len(r)
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
    assert s.minute_vol_bps == pytest.approx(sd * 1e4, rel=1e-9)


def test_day_stats_weights_only_session_time_over_the_lunch_break() -> None:
    h = 3600.0
    t = np.array([11 * h, 13.5 * h])
    s = stats.day_stats(
        "XHKG", 100, t, a(10_000, 10_000), a(1, 1), a(10_200, 10_600), a(1, 1), *([np.array([])] * 2), 0, 0
    )
    # 11:00-12:00 and 13:00-13:30 at 2 ticks, 13:30-16:00 at 6 ticks; 12:00-13:00 is no trading time
    assert s.spread_ticks_mean == pytest.approx((5400 * 2 + 9000 * 6) / 14_400, rel=1e-12)
    assert s.trade_rate_per_s == 0 and s.daily_volume == 0 and math.isnan(s.trade_size_mean)


def test_day_stats_with_no_valid_quote_and_bad_input() -> None:
    e = np.array([])
    s = stats.day_stats("XNYS", 100, np.array([OPEN]), a(EMPTY_BID), a(0), a(EMPTY_ASK), a(0), e, e, 0, 0)
    assert math.isnan(s.spread_ticks_mean) and math.isnan(s.depth_touch_mean) and math.isnan(s.kurtosis_excess)
    one = np.array([OPEN])
    with pytest.raises(ValueError, match="tick"):
        stats.day_stats("XNYS", 0, one, a(1), a(1), a(2), a(1), e, e, 0, 0)
    with pytest.raises(ValueError, match="differ in length"):
        stats.day_stats("XNYS", 100, one, a(1, 1), a(1), a(2), a(1), e, e, 0, 0)
    with pytest.raises(ValueError, match="trade sizes must be positive"):
        stats.day_stats("XNYS", 100, one, a(1), a(1), a(2), a(1), one, np.array([0.0]), 0, 0)
    with pytest.raises(ValueError, match="unknown market"):
        stats.day_stats("XLON", 100, one, a(1), a(1), a(2), a(1), e, e, 0, 0)  # type: ignore[arg-type]


def test_day_stats_from_a_small_lobster_day_counts_by_type() -> None:
    typ = np.array([1, 1, 1, 2, 3, 4, 5, 7, 1, 4], dtype=np.int8)
    time = np.array([OPEN - 5, OPEN, OPEN + 1, OPEN + 2, OPEN + 3, OPEN + 4, OPEN + 5, OPEN + 6, OPEN + 7, CLOSE])
    book = np.tile(np.array([10_100, 5, 10_000, 7], dtype=np.int64), (typ.size, 1))
    size = np.array([10, 20, 30, 5, 20, 40, 60, 0, 70, 80], dtype=np.int64)
    day = LobsterDay(
        symbol="TEST",
        date="2012-06-21",
        levels=1,
        time=time,
        type=typ,
        order_id=np.arange(typ.size, dtype=np.int64),
        size=size,
        price=np.full(typ.size, 10_000, dtype=np.int64),
        direction=np.ones(typ.size, dtype=np.int8),
        book=book,
        source="TEST_2012-06-21_34200000_57600000_message_1.csv",
    )
    s = stats.day_stats_from_lobster(day, "XNYS")
    # in session: adds at +0, +1, +7 (the pre-open one is out); cancels +2, +3; executions +4, +5
    assert s.limit_rate_per_s == 3 / 23_400 and s.cancel_rate_per_s == 2 / 23_400
    assert s.trade_rate_per_s == 2 / 23_400 and s.daily_volume == 100 and s.trade_size_mean == 50
    assert s.spread_ticks_mean == pytest.approx(1.0) and s.depth_touch_mean == pytest.approx(6.0)


def _stats(**kw: float) -> DayStats:
    base = {f.name: 1.0 for f in msgspec.structs.fields(DayStats)} | {"daily_volume": 1000}
    return DayStats(**(base | kw))  # type: ignore[arg-type]


def test_compare_and_render() -> None:
    real = _stats(spread_ticks_mean=2.0, kurtosis_excess=0.0, acf1_returns=float("nan"))
    sim = _stats(spread_ticks_mean=3.0, kurtosis_excess=1.0, daily_volume=1500)
    rows = {name: (r, s, ratio) for name, r, s, ratio in stats.compare_stats(real, sim)}
    assert list(rows) == [f.name for f in msgspec.structs.fields(DayStats)]
    assert rows["spread_ticks_mean"] == (2.0, 3.0, 1.5)
    assert rows["daily_volume"] == (1000.0, 1500.0, 1.5)
    assert math.isnan(rows["kurtosis_excess"][2]) and math.isnan(rows["acf1_returns"][2])
    text = stats.render_comparison(stats.compare_stats(real, sim))
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows) and lines[0].split() == ["statistic", "real", "sim", "sim/real"]
    assert len({len(line) for line in lines}) == 1  # aligned: every line has the same width
    assert any(line.split() == ["spread_ticks_mean", "2", "3", "1.500"] for line in lines)
