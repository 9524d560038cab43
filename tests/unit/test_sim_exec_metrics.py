"""Execution metrics against hand-computed examples (prices in, dollars and bps out)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from libs.sim.exec_metrics import EXEC_METRIC_KEYS, exec_metrics

PX = 10_000  # $0.0001 units per dollar
H = 3600.0
FLAT_T = np.array([10 * H, 11 * H])
FLAT_MID = np.array([100.0, 100.0]) * PX


def run(**kw: Any) -> dict[str, float]:
    args: dict[str, Any] = {
        "side": 1,
        "requested": 1000,
        "fill_t": np.array([]),
        "fill_px": np.array([], dtype=np.int64),
        "fill_qty": np.array([], dtype=np.int64),
        "arrival_mid": 100.0 * PX,
        "path_t": FLAT_T,
        "algo_mid": FLAT_MID,
        "base_mid": FLAT_MID,
        "start_s": 10 * H,
        "end_s": 11 * H,
    }
    args.update(kw)
    return exec_metrics(**args)


def test_buy_fully_filled() -> None:
    """400 @ $100.10 and 600 @ $100.20 against a $100.00 arrival mid: avg $100.16, 16 bps, $160."""
    m = run(
        fill_t=np.array([10 * H + 1, 10 * H + 2]),
        fill_px=np.array([1_001_000, 1_002_000]),
        fill_qty=np.array([400, 600]),
    )
    assert set(m) == set(EXEC_METRIC_KEYS) and all(isinstance(v, float) for v in m.values())
    assert m["avg_fill_price"] == pytest.approx(100.16)
    assert m["filled_qty"] == 1000 and m["n_fills"] == 2 and m["fill_ratio"] == 1.0
    assert m["slippage_bps"] == pytest.approx(16.0)
    assert m["implementation_shortfall_usd"] == pytest.approx(160.0)
    assert m["implementation_shortfall_bps"] == pytest.approx(16.0)


def test_sell_half_filled_pays_opportunity_cost() -> None:
    """Sell 1000, 500 @ $99.90; arrival $100.00, algo mid at end $99.50.

    executed: 500 * (100.00 - 99.90) = $50; unfilled: 500 * (100.00 - 99.50) = $250; IS $300 =
    300 / (1000 * 100) = 30 bps. Slippage of the fills: 0.10 / 100 = 10 bps.
    """
    algo = np.array([100.0, 99.8, 99.5]) * PX
    m = run(
        side=-1,
        fill_t=np.array([10 * H + 5]),
        fill_px=np.array([999_000]),
        fill_qty=np.array([500]),
        path_t=np.array([10 * H, 10.5 * H, 11 * H]),
        algo_mid=algo,
        base_mid=np.array([100.0, 100.0, 100.0]) * PX,
    )
    assert m["avg_fill_price"] == pytest.approx(99.90)
    assert m["fill_ratio"] == 0.5
    assert m["slippage_bps"] == pytest.approx(10.0)
    assert m["implementation_shortfall_usd"] == pytest.approx(300.0)
    assert m["implementation_shortfall_bps"] == pytest.approx(30.0)


def test_selling_above_arrival_is_a_negative_cost() -> None:
    m = run(side=-1, fill_t=np.array([10 * H]), fill_px=np.array([1_002_000]), fill_qty=np.array([1000]))
    assert m["slippage_bps"] == pytest.approx(-20.0)
    assert m["implementation_shortfall_usd"] == pytest.approx(-200.0)


def test_market_impact_against_the_baseline() -> None:
    """A buy pushing the mid up 10, 20 then 5 bps over the baseline; the as-of point for end_s 10:02:30 is 10:02."""
    t = np.array([10 * H, 10 * H + 60, 10 * H + 120, 10 * H + 180, 16 * H - 1])
    base = np.array([100.0, 101.0, 102.0, 103.0, 104.0]) * PX
    algo = base * np.array([1.0, 1.001, 1.002, 1.0005, 1.0005])
    m = run(path_t=t, algo_mid=algo, base_mid=base, start_s=10 * H + 60, end_s=10 * H + 150)
    assert m["market_impact_bps"] == pytest.approx(20.0)
    assert m["market_impact_avg_bps"] == pytest.approx((10.0 + 20.0) / 2)
    assert m["market_impact_close_bps"] == pytest.approx(5.0)
    # a sell that moved the mid up did the opposite of pushing it: negative impact
    sell = run(side=-1, path_t=t, algo_mid=algo, base_mid=base, start_s=10 * H + 60, end_s=10 * H + 150)
    assert sell["market_impact_bps"] == pytest.approx(-20.0)


def test_nan_where_undefined() -> None:
    m = run(algo_mid=np.array([100.0, 99.0]) * PX)  # no fills; mid fell 1% by end
    assert math.isnan(m["avg_fill_price"]) and math.isnan(m["slippage_bps"])
    assert m["filled_qty"] == 0 and m["n_fills"] == 0 and m["fill_ratio"] == 0
    # buying nothing while the price fell: the opportunity "cost" is a $1,000 gain
    assert m["implementation_shortfall_usd"] == pytest.approx(-1000.0)
    no_arrival = run(arrival_mid=float("nan"), fill_t=[10 * H], fill_px=[1_000_000], fill_qty=[1000])
    assert math.isnan(no_arrival["slippage_bps"]) and math.isnan(no_arrival["implementation_shortfall_bps"])
    assert no_arrival["avg_fill_price"] == pytest.approx(100.0)
    early = run(start_s=9.5 * H, end_s=9.75 * H)  # before the first path point
    assert math.isnan(early["market_impact_bps"]) and math.isnan(early["market_impact_avg_bps"])
    assert early["market_impact_close_bps"] == 0.0
    empty = run(path_t=np.array([]), algo_mid=np.array([]), base_mid=np.array([]))
    assert math.isnan(empty["market_impact_close_bps"]) and math.isnan(empty["implementation_shortfall_usd"])
    one_sided = run(algo_mid=np.array([np.nan, 101.0 * PX]))  # empty book at 10:00: skipped in the average
    assert one_sided["market_impact_avg_bps"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"side": 0}, r"side must be \+1 \(buy\) or -1 \(sell\)"),
        ({"requested": 0}, "requested must be a positive integer"),
        ({"requested": 10.5}, "requested must be a positive integer"),
        ({"fill_t": [1.0], "fill_px": [1, 2], "fill_qty": [1]}, "fill_t, fill_px, fill_qty must be 1-D of one length"),
        ({"fill_t": [1.0], "fill_px": [1_000_000], "fill_qty": [-5]}, "non-negative quantities"),
        ({"fill_t": [1.0], "fill_px": [0], "fill_qty": [5]}, "finite positive prices"),
        ({"fill_t": [1.0], "fill_px": [1_000_000], "fill_qty": [1001]}, "filled 1001 shares, more than the 1000"),
        ({"algo_mid": np.array([1.0])}, "path_t, algo_mid, base_mid must be 1-D of one length"),
        ({"path_t": np.array([11 * H, 10 * H])}, "path_t must be sorted"),
        ({"start_s": 12 * H}, "end_s .* must not be before start_s"),
        ({"arrival_mid": 0.0}, "arrival_mid must be a positive price"),
    ],
)
def test_rejects(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        run(**kw)
