"""The agent-based market on the calibrated AMZN day: determinism, common random numbers,
scenarios, execution algorithms, trading hours, realism (stylised facts) and closeness."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np
import pytest

from libs.data.lobster import load_lobster
from libs.sim import abm
from libs.sim.algos import algo_children, parse_algo
from libs.sim.calibration import calibrate
from libs.sim.engine import FILES, algo_metrics, day_metrics, run_task, simulate_day
from libs.sim.params import AgentParams
from libs.sim.scenarios import parse_scenario
from libs.sim.stats import compare_stats
from proto.sim import Calibration, SimTask
from tests.conftest import needs_data

H = 3600.0


@pytest.fixture(scope="module")
def cal() -> Calibration:
    return calibrate(load_lobster(needs_data("lobster", "AMZN_2012-06-21_L1_fullday")))


def _mid_at(day, t: float) -> float:  # type: ignore[no-untyped-def]
    return float(day.mid()[np.searchsorted(day.l1_t, t) - 1])


def test_same_seed_gives_the_same_day_bit_for_bit(cal: Calibration) -> None:
    a, b, c = simulate_day(cal, 5), simulate_day(cal, 5), simulate_day(cal, 6)
    assert np.array_equal(a.trades, b.trades) and np.array_equal(a.l1, b.l1)
    assert len(a.trades) > 1000
    assert not np.array_equal(a.l1, c.l1)


def test_an_algo_run_is_its_baseline_until_the_algo_starts(cal: Calibration) -> None:
    algo = parse_algo(
        {"type": "twap", "order_size": -20000, "horizon": "01:00:00", "start_time": "11:00:00"}, cal.cal_date, "XNYS"
    )
    base, run = simulate_day(cal, 9), simulate_day(cal, 9, algo=algo)
    before = base.l1_t < 11 * H
    assert np.array_equal(base.l1[before], run.l1[before])
    assert not np.array_equal(base.l1[~before], run.l1[~before])
    early = base.trades[:, abm.TR_TS] < 11 * H * 1e9
    assert np.array_equal(base.trades[early], run.trades[: int(early.sum())])


def test_twap_sell_fills_on_the_sell_side_and_pushes_the_price_down(cal: Calibration) -> None:
    cfg = {
        "type": "twap",
        "order_size": -50000,
        "horizon": "02:00:00",
        "start_time": "10:00:00",
        "frequency": "00:00:30",
    }
    algo = parse_algo(cfg, cal.cal_date, "XNYS")
    impacts = []
    for seed in range(3):
        task = SimTask(
            job_id="j",
            sim_id="s",
            run=seed,
            seed=seed,
            calibration=cal,
            scenario=parse_scenario("normal", None, "XNYS"),
            algo=algo,
        )
        run = run_task(task)
        fills = run.files["algo_fills"]
        assert (fills["side"] == -1).all()
        assert 0 < fills["qty"].sum() <= 50000
        assert run.metrics["algo.filled_qty"] == fills["qty"].sum()
        assert run.metrics["algo.fill_ratio"] == pytest.approx(fills["qty"].sum() / 50000)
        children, qty = algo_children(algo, "XNYS", cal.volume_profile, seed)
        assert run.metrics["algo.children"] == len(children) == 240
        assert run.metrics["algo.scheduled_qty"] == qty.sum() == 50000
        avg = (fills["price"] * fills["qty"]).sum() / fills["qty"].sum() / 1e4
        assert run.metrics["algo.avg_fill_price"] == pytest.approx(avg)
        impacts.append(run.metrics["algo.market_impact_bps"])
    # selling 50k shares (6% of the day's volume) leaves the price below the baseline's
    assert np.mean(impacts) > 2.0


def test_flash_crash_depletes_the_bid_and_drops_the_price(cal: Calibration) -> None:
    crash = parse_scenario("flash_crash", None, "XNYS")
    drops, base_drops = [], []
    for seed in range(3):
        base, day = simulate_day(cal, seed), simulate_day(cal, seed, scenario=crash)
        assert day.counters[abm.C_SCEN_QTY] > 0
        window = (day.l1_t >= 11 * H) & (day.l1_t < 11 * H + 300)
        start = _mid_at(base, 11 * H)
        drops.append((start - np.nanmin(day.mid()[window])) / start * 1e4)
        base_drops.append((start - np.nanmin(base.mid()[window])) / start * 1e4)
        sold = day.trades[day.trades[:, abm.TR_TAKER_POP] == abm.SCENARIO]
        # market orders that find the bid side empty go unfilled: the book really ran dry
        assert (sold[:, abm.TR_SIDE] == -1).all() and 0 < sold[:, abm.TR_QTY].sum() <= day.counters[abm.C_SCEN_QTY]
        metrics = day_metrics(day, crash)
        assert metrics["scenario.filled_qty"] == sold[:, abm.TR_QTY].sum()
        after = (day.l1_t > 11 * H) & (day.l1_t <= 11 * H + 600)
        at_start = _mid_at(day, 11 * H + 1e-9)
        assert metrics["scenario.move_bps"] == pytest.approx((at_start - np.nanmin(day.mid()[after])) / at_start * 1e4)
        assert metrics["scenario.move_bps"] > 0
        assert metrics["scenario.injected_qty"] == day.counters[abm.C_SCEN_QTY]
    assert np.mean(drops) > np.mean(base_drops) + 15.0


def test_buy_panic_lifts_the_price(cal: Calibration) -> None:
    panic = parse_scenario("buy_panic", None, "XNYS")
    base, day = simulate_day(cal, 3), simulate_day(cal, 3, scenario=panic)
    window = (day.l1_t >= 11 * H) & (day.l1_t < 11 * H + 300)
    assert np.nanmax(day.mid()[window]) > np.nanmax(base.mid()[window])


def test_hkex_lunch_break_has_no_trading(cal: Calibration) -> None:
    hk = msgspec.structs.replace(
        cal,
        symbol="700.HK",
        market="XHKG",
        volume_profile=list(np.full(330, 1 / 330)),
        activity_profile=[1.0] * 330,
    )
    # a schedule with an order in the lunch break: that order is dropped, the others trade
    orders = [(f"2012-06-21T{t}", 300) for t in ("11:30:00", "12:30:00", "13:30:00")]
    algo = parse_algo({"type": "css", "orders": orders}, cal.cal_date, "XHKG")
    day = simulate_day(hk, 1, algo=algo)
    t = day.trade_t
    assert ((t >= 9.5 * H) & (t < 12 * H)).sum() > 100
    assert ((t >= 13 * H) & (t < 16 * H)).sum() > 100
    assert not ((t >= 12 * H) & (t < 13 * H)).any()
    fills = day.algo_fills()
    assert fills[:, abm.TR_QTY].sum() == 600
    fill_t = fills[:, abm.TR_TS] / 1e9
    assert set(np.round(fill_t / 60) * 60) <= {11.5 * H, 13.5 * H}


def test_a_calibrated_normal_day_shows_the_stylised_facts(cal: Calibration) -> None:
    facts = np.array(
        [
            [s.kurtosis_excess, s.acf1_returns, s.acf1_abs_returns, s.corr_volume_abs_return]
            for s in (simulate_day(cal, 1000 + seed).stats() for seed in range(20))
        ]
    )
    kurt, acf1, acf1_abs, corr_vol = facts.mean(axis=0)
    assert kurt > 1.0
    assert abs(acf1) < 0.1
    assert acf1_abs > 0.1
    assert corr_vol > 0.2


def test_the_simulated_day_is_close_to_the_real_one(cal: Calibration) -> None:
    days = [simulate_day(cal, seed).stats() for seed in range(5)]
    sim = {
        k: np.mean([msgspec.structs.asdict(d)[k] for d in days])
        for k in ("spread_ticks_mean", "minute_vol_bps", "daily_volume", "depth_touch_mean")
    }
    rows = {name: (real, got) for name, real, got, _ in compare_stats(cal.stats, days[0])}
    assert set(rows) >= set(sim)
    real = msgspec.structs.asdict(cal.stats)
    for key, value in sim.items():
        assert 0.7 < value / real[key] < 1.3, (key, value, real[key])


def test_run_task_writes_every_file_in_utc(cal: Calibration) -> None:
    task = SimTask(
        job_id="j", sim_id="s", run=0, seed=1, calibration=cal, scenario=parse_scenario("normal", None, "XNYS")
    )
    run = run_task(task)
    assert tuple(run.files) == FILES
    mids = run.files["mid_price_by_min"]
    assert len(mids["ts"]) == 390
    # 2012-06-21 09:30 New York (EDT) is 13:30 UTC
    first = dt.datetime.fromtimestamp(mids["ts"][0] / 1e9, dt.UTC)
    assert (first.hour, first.minute) == (13, 30)
    assert mids["volume"].sum() == run.files["trades"]["qty"].sum()
    assert len(run.files["l1"]["ts"]) == 23400
    assert (run.files["l1"]["bid_px"] < run.files["l1"]["ask_px"]).mean() > 0.99
    assert len(run.files["algo_fills"]["ts"]) == 0 and not run.files["trades"]["is_algo"].any()
    assert run.metrics["market.n_trades"] == len(run.files["trades"]["ts"])
    assert set(run.files["metrics"]) == set(run.metrics)
    # the makers manage inventory: they stop quoting the side that would take them past the limit
    limit = AgentParams().mm_max_inventory
    assert 0 < run.metrics["agents.market_maker_inventory_max_abs"] <= 2 * limit


def test_arrival_is_the_baseline_mid_at_the_algos_start_not_its_first_child(cal: Calibration) -> None:
    cfg = {
        "type": "twap",
        "order_size": -2000,
        "horizon": "00:30:00",
        "start_time": "10:00:00",
        "frequency": "00:01:00",
    }
    algo = parse_algo(cfg, cal.cal_date, "XNYS")  # random_offset on: the first child is after 10:00
    base, day = simulate_day(cal, 4), simulate_day(cal, 4, algo=algo)
    metrics = algo_metrics(day, base, algo)
    i = int(np.searchsorted(base.l1_t, 10 * H, side="right")) - 1
    assert metrics["algo.arrival_mid"] == pytest.approx(base.mid()[i] / 1e4)


def test_a_large_sell_moves_the_price_far_beyond_a_tiny_ones_noise(cal: Calibration) -> None:
    """Paired over seeds: the same markets, a 20,000-share and a 100-share TWAP sell."""
    sizes = {"big": -20000, "tiny": -100}
    impact: dict[str, list[float]] = {k: [] for k in sizes}
    for seed in range(4):
        base = simulate_day(cal, seed)
        for name, size in sizes.items():
            cfg = {
                "type": "twap",
                "order_size": size,
                "horizon": "01:00:00",
                "start_time": "10:30:00",
                "frequency": "00:01:00",
            }
            algo = parse_algo(cfg, cal.cal_date, "XNYS")
            impact[name].append(
                algo_metrics(simulate_day(cal, seed, algo=algo), base, algo)["algo.market_impact_avg_bps"]
            )
    assert np.mean(impact["big"]) > np.mean(impact["tiny"]) + 2.0
