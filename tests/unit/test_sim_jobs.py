"""Job validation and expansion (libs.sim.jobs): every bad input named, tasks in the reference order."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np
import pandas as pd
import pytest

from libs.client.serialise import algo_config, schedule_pairs
from libs.sim.ids import parse_sim_id, run_seed, sim_hash
from libs.sim.jobs import MAX_SIMS_PER_JOB, parse_request, pick_calibration, plan_job
from libs.sim.scenarios import parse_scenario, scenario_hash
from proto.sim import Calibration, DayStats

STATS = DayStats(
    spread_ticks_mean=1.2,
    depth_touch_mean=300.0,
    limit_rate_per_s=2.0,
    cancel_rate_per_s=1.8,
    trade_rate_per_s=0.3,
    trade_size_mean=100.0,
    trade_size_p50=100.0,
    trade_size_p90=200.0,
    minute_vol_bps=5.0,
    daily_volume=1_000_000,
    kurtosis_excess=1.0,
    acf1_returns=0.0,
    acf1_abs_returns=0.1,
    corr_volume_abs_return=0.2,
)
TWAP = {"type": "twap", "order_size": 6000, "horizon": "01:00:00", "start_time": "10:00:00", "frequency": "00:01:00"}
VWAP = {"type": "vwap", "order_size": -3000, "horizon": "00:30:00", "frequency": "00:00:30"}


def calibration(
    symbol: str = "AMZN", cal_date: str = "2012-06-21", created_at: int = 1, **change: object
) -> Calibration:
    """A calibration record (the job layer reads only its identity, market and status)."""
    market = "XHKG" if symbol.endswith(".HK") else "XNYS"
    minutes = 330 if market == "XHKG" else 390
    cal = Calibration(
        symbol=symbol,
        cal_date=cal_date,
        market=market,
        cal_hash=f"{abs(hash((symbol, cal_date, created_at))) % 16**8:08x}",
        source=f"{symbol}_{cal_date}_test",
        tick=100,
        open_mid=1_000_000,
        stats=STATS,
        limit_offset_ticks=[float(i) for i in range(11)],
        order_size_q=[100.0] * 11,
        trade_size_q=[100.0] * 11,
        cancel_lifetime_s=10.0,
        volume_profile=[1 / minutes] * minutes,
        activity_profile=[1.0] * minutes,
        created_at=created_at,
    )
    return msgspec.structs.replace(cal, **change)


CALS = [calibration(), calibration(cal_date="2012-06-22"), calibration("700.HK", "2025-09-01")]


def request(**body: object) -> dict[str, object]:
    return {"symbol": "AMZN", "cal_date": "2012-06-21"} | body


def test_defaults_follow_the_reference() -> None:
    req = parse_request(request())
    assert (req.n_runs, req.seed, req.scenario, req.scenario_params, req.exec_algos, req.cached) == (
        100,
        42,
        "normal",
        {},
        [],
        False,
    )


def test_tasks_are_baseline_runs_then_each_algo_with_shared_seeds() -> None:
    req = parse_request(request(n_runs=3, seed=7, exec_algos=[TWAP, VWAP], scenario="flash_crash"))
    plan = plan_job(req, CALS, job_id="J1")
    assert len(plan.sim_ids) == len(plan.tasks) == 9
    assert [t.sim_id for t in plan.tasks] == plan.sim_ids
    parsed = [parse_sim_id(s) for s in plan.sim_ids]
    assert [p.algo for p in parsed] == ["baseline"] * 3 + [plan.algos[0].label] * 3 + [plan.algos[1].label] * 3
    assert [p.run for p in parsed] == [0, 1, 2] * 3
    assert plan.algos[0].label.startswith("twap_") and plan.algos[1].label.startswith("vwap_")
    assert plan.algos[1].side == -1  # a negative order_size sells
    expected_scenario = parse_scenario("flash_crash", {}, "XNYS")
    for p in parsed:
        assert (p.symbol, p.cal_date, p.cal_hash, p.session) == ("AMZN", "2012-06-21", CALS[0].cal_hash, "0930-1600")
        assert p.sim_hash == sim_hash(7, 3)
        assert (p.scenario, p.scenario_hash) == ("flash_crash", scenario_hash(expected_scenario))
    for t in plan.tasks:  # common random numbers: the seed depends on the run index only
        assert t.seed == run_seed(7, t.run)
        assert t.job_id == "J1" and t.calibration == CALS[0] and t.scenario == expected_scenario
    assert [t.algo for t in plan.tasks] == [None] * 3 + [plan.algos[0]] * 3 + [plan.algos[1]] * 3


def test_the_same_request_gives_the_same_ids_and_a_change_gives_others() -> None:
    body = request(n_runs=2, exec_algos=[TWAP])
    first = plan_job(parse_request(body), CALS, "J1")
    again = plan_job(parse_request(body), CALS, "J2")
    assert first.sim_ids == again.sim_ids
    assert [t.seed for t in first.tasks] == [t.seed for t in again.tasks]
    market_changes = [
        request(n_runs=2, exec_algos=[TWAP], seed=43),
        request(n_runs=3, exec_algos=[TWAP]),
        request(n_runs=2, exec_algos=[TWAP], scenario="flash_crash"),
        request(n_runs=2, exec_algos=[TWAP], scenario="flash_crash", scenario_params={"impact_multiplier": 5.0}),
        request(n_runs=2, exec_algos=[TWAP], cal_date="2012-06-22"),
    ]
    seen = set(first.sim_ids)
    for changed in market_changes:
        ids = plan_job(parse_request(changed), CALS, "J").sim_ids
        assert not seen & set(ids), changed
        seen |= set(ids)
    # another algo: its own runs, the same baseline (the comparison runs against the same market)
    other_algo = plan_job(parse_request(request(n_runs=2, exec_algos=[TWAP | {"order_size": 6001}])), CALS, "J")
    assert other_algo.sim_ids[:2] == first.sim_ids[:2]
    assert not set(other_algo.sim_ids[2:]) & set(first.sim_ids)


def test_the_newest_complete_calibration_of_the_day_is_used() -> None:
    old, new = calibration(created_at=1), calibration(created_at=5)
    failed = calibration(created_at=9, status="failed")
    assert pick_calibration("AMZN", "2012-06-21", [old, new, failed]) == new


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"cal_date": "2012-06-21"}, "symbol is required"),
        ({"symbol": "AMZN"}, "cal_date is required"),
        (request(symbol=""), "symbol must be a non-empty string"),
        (request(symbol="A:B"), "without ':'"),
        (request(cal_date="21/06/2012"), "cal_date must be a YYYY-MM-DD date, got '21/06/2012'"),
        (request(cal_date="2012-02-30"), "cal_date must be a YYYY-MM-DD date"),
        (request(n_runs=0), "n_runs must be an integer from 1 to 10,000, got 0"),
        (request(n_runs=10_001), "got 10001"),
        (request(n_runs="ten"), "got 'ten'"),
        (request(n_runs=2.5), "got 2.5"),
        (request(n_runs=True), "got True"),
        (request(seed=-1), "seed must be an integer from 0 to 2**63 - 1, got -1"),
        (request(seed="42"), "seed must be an integer"),
        (request(seed=2**63), "seed must be an integer"),
        (request(scenario=5), "scenario must be a string, got int 5"),
        (request(scenario_params=[1]), "scenario_params must be an object, got list"),
        (request(exec_algos={"type": "twap"}), "exec_algos must be a list"),
        (request(scenario_params=[]), "scenario_params must be an object, got list"),
        (request(scenario_params=""), "scenario_params must be an object, got str"),
        (request(exec_algos={}), "exec_algos must be a list"),
        (request(exec_algos=0), "exec_algos must be a list"),
        (request(cached="yes"), "cached must be true or false"),
        (request(nruns=5), "unknown field(s) 'nruns'"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_request(body)
    assert named in str(info.value)


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ValueError) as info:
        parse_request(request(n_runs=0, seed=-5, scenario=1))
    message = str(info.value)
    assert "n_runs" in message and "seed" in message and "scenario" in message


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (request(symbol="MSFT"), "unknown symbol 'MSFT'; known: 700.HK, AMZN"),
        (request(cal_date="2012-06-25"), "calibrated dates for AMZN: 2012-06-21, 2012-06-22"),
        (request(scenario="meltdown"), "scenario: unknown scenario 'meltdown'; known: normal, flash_crash"),
        (request(scenario="normal", scenario_params={"impact_multiplier": 2}), "takes no scenario_params"),
        (request(scenario="flash_crash", scenario_params={"impact": 2}), "unknown scenario parameter(s) 'impact'"),
        (request(scenario="flash_crash", scenario_params={"start_time": "08:00:00"}), "outside XNYS trading hours"),
        (request(exec_algos=[TWAP, {"type": "iceberg"}]), "exec_algos[1]: unknown algo type 'iceberg'"),
        (request(exec_algos=[{"type": "twap", "order_size": 100}]), "exec_algos[0]: twap needs 'horizon'"),
        (request(exec_algos=[TWAP | {"horizon": "07:00:00"}]), "exec_algos[0]: start_time 10:00:00 + horizon"),
        (request(exec_algos=[{"type": "css", "orders": [["2012-06-21T09:30:00", "x"]]}]), "exec_algos[0]: schedule"),
        (request(exec_algos=[TWAP, TWAP]), "identical algo configs given twice"),
        (request(n_runs=10_000, exec_algos=[TWAP | {"order_size": 6000 + i} for i in range(5)]),
         f"n_runs 10,000 x (1 + 5 algos) = 60,000 sims; at most {MAX_SIMS_PER_JOB:,} per job"),
    ],
)  # fmt: skip
def test_bad_jobs_are_refused_naming_what_is_wrong(body: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as info:
        plan_job(parse_request(body), CALS, "J")
    assert named in str(info.value)


def test_no_calibration_at_all_says_how_to_make_one() -> None:
    with pytest.raises(ValueError, match="no calibration exists yet"):
        plan_job(parse_request(request()), [], "J")


def test_a_date_whose_only_calibration_is_incomplete_is_refused() -> None:
    cals = [calibration(), calibration(cal_date="2012-06-22", status="running")]
    with pytest.raises(ValueError, match="no complete calibration for AMZN on 2012-06-22"):
        plan_job(parse_request(request(cal_date="2012-06-22")), cals, "J")


def test_job_errors_are_reported_together() -> None:
    body = request(symbol="MSFT", scenario="meltdown", exec_algos=[{"type": "iceberg"}])
    with pytest.raises(ValueError) as info:
        plan_job(parse_request(body), CALS, "J")
    message = str(info.value)
    assert "unknown symbol 'MSFT'" in message and "meltdown" in message and "exec_algos[0]" in message


def test_a_css_schedule_travels_as_iso_pairs_and_parses_on_the_server() -> None:
    day = dt.date(2012, 6, 21)
    idx = pd.date_range(dt.datetime.combine(day, dt.time(9, 30)), dt.datetime.combine(day, dt.time(12, 0)), periods=11)
    series = pd.Series(np.full(11, 100), index=idx)
    pairs = schedule_pairs(series)
    assert pairs[0] == ["2012-06-21T09:30:00", 100] and pairs[-1] == ["2012-06-21T12:00:00", 100]
    assert all(isinstance(q, int) for _, q in pairs)
    cfg = algo_config({"type": "css", "orders": series, "side": "sell"})
    assert msgspec.json.decode(msgspec.json.encode(cfg)) == cfg  # plain JSON
    plan = plan_job(parse_request(request(n_runs=1, exec_algos=[cfg])), CALS, "J")
    algo = plan.algos[0]
    assert algo.side == -1 and algo.order_size == 1100
    assert algo.schedule_s == [9.5 * 3600 + i * 900 for i in range(11)]


def test_client_values_become_json() -> None:
    cfg = algo_config(
        {
            "type": "twap",
            "order_size": np.int64(500),
            "horizon": dt.timedelta(hours=1),
            "start_time": dt.time(10, 0),
            "random_offset": np.bool_(False),
        }
    )
    assert cfg == {
        "type": "twap",
        "order_size": 500,
        "horizon": 3600.0,
        "start_time": "10:00:00",
        "random_offset": False,
    }
    with pytest.raises(ValueError, match="cannot send"):
        algo_config({"type": "twap", "order_size": object()})
