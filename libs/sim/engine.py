"""The simulation engine's Python face: one calibrated day (`simulate_day`), and one Monte
Carlo run as the workers execute it (`run_task`): the day, its output files, its market
statistics and, for an algo run, the execution metrics against the baseline day with the
same seed (common random numbers: the baseline is re-simulated, bit for bit the same day
the baseline sim id holds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np

from libs.lob.core import new_book
from libs.sim import abm
from libs.sim.algos import algo_children
from libs.sim.exec_metrics import asof, exec_metrics
from libs.sim.params import AgentParams, exogenous_paths, kernel_params, truncated_quantiles
from libs.sim.scenarios import scenario_children
from libs.sim.sessions import in_session, minute_index, session_minutes, to_utc_ns, windows
from libs.sim.stats import day_stats, minute_series
from proto.sim import AlgoSpec, Calibration, DayStats, ScenarioSpec, SimTask
from proto.units import PRICE_SCALE

FILES = ("mid_price_by_min", "trades", "algo_fills", "l1", "metrics")
SCENARIO_WINDOW_S = 600.0
"""A scenario's price move is measured over this long after its start."""
"""The output files of every run (`get_sim_data(sim_id, file=...)`)."""


@dataclass(frozen=True)
class SimDay:
    """One simulated day, in kernel units (seconds of day, $0.0001 prices)."""

    calibration: Calibration
    seed: int
    t_open: float
    trades: np.ndarray
    """Rows of (ts ns of day, price, qty, aggressor side, maker population, taker population)."""
    l1: np.ndarray
    """Per second of the session span: best bid, bid size, best ask, ask size at its end."""
    counters: np.ndarray
    mm_inventory: np.ndarray
    value_positions: np.ndarray

    @property
    def l1_t(self) -> np.ndarray:
        """Time (seconds of day) of each L1 row: the end of its second."""
        return self.t_open + 1.0 + np.arange(len(self.l1), dtype=np.float64)

    @property
    def trade_t(self) -> np.ndarray:
        return self.trades[:, abm.TR_TS] / 1e9

    def mid(self) -> np.ndarray:
        """Mid per L1 row (NaN while a side is empty), in $0.0001."""
        bid, ask = self.l1[:, 0].astype(np.float64), self.l1[:, 2].astype(np.float64)
        return np.where((bid > 0) & (ask > 0), 0.5 * (bid + ask), np.nan)

    def algo_fills(self) -> np.ndarray:
        return self.trades[self.trades[:, abm.TR_TAKER_POP] == abm.ALGO]

    def stats(self) -> DayStats:
        """The day judged by the statistics its calibration was estimated with. Rates count
        what a LOBSTER file of the same depth records: limit orders arriving at or inside the
        touch and cancels of orders resting at the touch (the calibration day is level 1)."""
        cal = self.calibration
        inside = in_session(cal.market, self.l1_t - 1.0)
        t = self.l1_t[inside]
        b, a = self.l1[inside, 0], self.l1[inside, 2]
        return day_stats(
            cal.market,
            cal.tick,
            t,
            b,
            self.l1[inside, 1],
            a,
            self.l1[inside, 3],
            self.trade_t,
            self.trades[:, abm.TR_QTY].astype(np.float64),
            int(self.counters[abm.C_LIMIT_TOUCH]),
            int(self.counters[abm.C_CANCEL_TOUCH]),
        )


def simulate_day(
    cal: Calibration,
    seed: int,
    scenario: ScenarioSpec | None = None,
    algo: AlgoSpec | None = None,
    agents: AgentParams | None = None,
) -> SimDay:
    """Simulate one trading day of a calibrated (symbol, date)."""
    ap = agents or AgentParams()
    w = np.asarray(windows(cal.market), np.float64)
    fundamental, activity = exogenous_paths(cal, ap, seed)
    scen_side = scenario.side if scenario is not None else 0
    P = kernel_params(cal, ap, scen_side)
    if scenario is not None and scenario.side != 0:
        scen_t, scen_frac = scenario_children(scenario, cal.market)
    else:
        scen_t, scen_frac = np.zeros(0), np.zeros(0)
    if algo is not None:
        algo_t, algo_qty = algo_children(algo, cal.market, cal.volume_profile, seed)
        algo_side = algo.side
    else:
        algo_t, algo_qty, algo_side = np.zeros(0), np.zeros(0, np.int64), 1
    trades, l1, counters, mm_inv, value_pos = abm.run_day(
        new_book(1 << 12, 1 << 10, 1 << 14),
        P,
        np.uint64(seed & 0xFFFFFFFFFFFFFFFF),
        w,
        fundamental,
        activity,
        np.asarray(cal.limit_offset_ticks, np.float64),
        truncated_quantiles(cal.order_size_q),
        truncated_quantiles(cal.trade_size_q),
        int(cal.open_mid),
        np.ascontiguousarray(scen_t, np.float64),
        np.ascontiguousarray(scen_frac, np.float64),
        np.ascontiguousarray(algo_t, np.float64),
        np.ascontiguousarray(algo_qty, np.float64),
        int(algo_side),
    )
    return SimDay(cal, seed, float(w[0, 0]), trades, l1, counters, mm_inv, value_pos)


@dataclass
class SimRun:
    """A finished Monte Carlo run: its output files (column -> array) and metrics."""

    sim_id: str
    files: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, float]


def day_metrics(day: SimDay, scenario: ScenarioSpec | None = None) -> dict[str, float]:
    """Market statistics of a simulated day, flat, for the metrics file; with a scenario, how
    far it moved the price (its direction, within `SCENARIO_WINDOW_S` of its start) and how
    much of the injection traded."""
    out = {f"market.{k}": float(v) for k, v in msgspec.structs.asdict(day.stats()).items()}
    c = day.counters
    out["market.n_trades"] = float(len(day.trades))
    out["market.limit_orders"] = float(c[abm.C_LIMIT])
    out["market.market_orders"] = float(c[abm.C_MARKET])
    out["market.cancels"] = float(c[abm.C_CANCEL])
    out["market.dropped_outside_hours"] = float(c[abm.C_DROPPED])
    out["market.events"] = float(c[abm.C_EVENTS])
    out["agents.market_maker_inventory_max_abs"] = float(np.abs(day.mm_inventory).max(initial=0))
    out["agents.value_position_mean_abs"] = float(np.abs(day.value_positions).mean())
    out["scenario.injected_qty"] = float(c[abm.C_SCEN_QTY])
    # what the injection really traded: market orders that find the side empty go unfilled
    scen = day.trades[:, abm.TR_TAKER_POP] == abm.SCENARIO
    out["scenario.filled_qty"] = float(day.trades[scen, abm.TR_QTY].sum())
    mid = day.mid()
    if scenario is not None and scenario.side != 0:
        at_start = asof(day.l1_t, mid, scenario.start_s)
        window = (day.l1_t > scenario.start_s) & (day.l1_t <= scenario.start_s + SCENARIO_WINDOW_S)
        path = mid[window & np.isfinite(mid)]
        out["scenario.move_bps"] = np.nan
        if path.size:
            extreme = path.max() if scenario.side > 0 else path.min()
            out["scenario.move_bps"] = float(scenario.side * (extreme - at_start) / at_start * 1e4)
    ok = np.isfinite(mid)
    if ok.any():
        out["market.close_mid"] = float(mid[ok][-1]) / PRICE_SCALE
        out["market.min_mid"] = float(mid[ok].min()) / PRICE_SCALE
        out["market.max_mid"] = float(mid[ok].max()) / PRICE_SCALE
    return out


def algo_metrics(day: SimDay, base: SimDay, algo: AlgoSpec) -> dict[str, float]:
    """Execution metrics of the algo run `day` against its baseline `base` (same seed)."""
    fills = day.algo_fills()
    # the decision time: the algo's start (a css: its first scheduled order), not its first child
    start = algo.start_s if algo.type != "css" else float(min(algo.schedule_s, default=algo.start_s))
    end = algo.start_s + algo.horizon_s if algo.type != "css" else float(max(algo.schedule_s, default=start))
    path_t = day.l1_t
    base_mid = base.mid()
    arrival = asof(path_t, base_mid, start)
    m = exec_metrics(
        algo.side,
        int(algo.order_size),
        fills[:, abm.TR_TS] / 1e9,
        fills[:, abm.TR_PRICE].astype(np.float64),
        fills[:, abm.TR_QTY].astype(np.float64),
        arrival,
        path_t,
        day.mid(),
        base_mid,
        start,
        end,
    )
    out = {f"algo.{k}": float(v) for k, v in m.items()}
    out["algo.arrival_mid"] = arrival / PRICE_SCALE
    out["algo.children"] = float(day.counters[abm.C_ALGO_CHILDREN])
    out["algo.scheduled_qty"] = float(day.counters[abm.C_ALGO_SENT])
    out["algo.unfilled_qty"] = float(algo.order_size - fills[:, abm.TR_QTY].sum())
    return out


def day_files(day: SimDay, metrics: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """The run's output files, in UTC nanoseconds and dollars where a reader expects them."""
    cal = day.calibration
    market = cal.market
    mid = day.mid()
    inside = in_session(market, day.l1_t - 1.0)
    t_l1 = day.l1_t[inside]
    minute_mid, minute_vol = minute_series(
        market, t_l1, mid[inside], day.trade_t, day.trades[:, abm.TR_QTY].astype(np.float64)
    )
    starts = session_minutes(market)
    midx = minute_index(market, day.trade_t)
    n_trades = np.bincount(midx[midx >= 0], minlength=len(starts)).astype(np.int64)
    tr = day.trades
    fills = day.algo_fills()
    return {
        "mid_price_by_min": {
            "ts": to_utc_ns(cal.cal_date, market, starts),
            "mid": minute_mid / PRICE_SCALE,  # at the end of the minute that starts at ts
            "volume": minute_vol.astype(np.int64),
            "n_trades": n_trades,
        },
        "trades": {
            "ts": to_utc_ns(cal.cal_date, market, tr[:, abm.TR_TS] / 1e9),
            "price": tr[:, abm.TR_PRICE].copy(),
            "qty": tr[:, abm.TR_QTY].copy(),
            "aggressor": tr[:, abm.TR_SIDE].copy(),
            "is_algo": (tr[:, abm.TR_TAKER_POP] == abm.ALGO).astype(np.int64),
        },
        "algo_fills": {
            "ts": to_utc_ns(cal.cal_date, market, fills[:, abm.TR_TS] / 1e9),
            "price": fills[:, abm.TR_PRICE].copy(),
            "qty": fills[:, abm.TR_QTY].copy(),
            "side": fills[:, abm.TR_SIDE].copy(),
        },
        "l1": {
            "ts": to_utc_ns(cal.cal_date, market, t_l1),
            "bid_px": day.l1[inside, 0].copy(),
            "bid_sz": day.l1[inside, 1].copy(),
            "ask_px": day.l1[inside, 2].copy(),
            "ask_sz": day.l1[inside, 3].copy(),
        },
        "metrics": {k: np.array([v], np.float64) for k, v in sorted(metrics.items())},
    }


def run_task(
    task: SimTask, progress: Callable[[float], None] | None = None, agents: AgentParams | None = None
) -> SimRun:
    """Run one Monte Carlo run: the day (with the task's scenario and algo), its files and
    metrics; an algo run also simulates its baseline day to measure impact and cost."""
    cal = task.calibration
    scenario = task.scenario if task.scenario.side != 0 else None
    day = simulate_day(cal, task.seed, scenario, task.algo, agents)
    if progress is not None:
        progress(0.5 if task.algo is not None else 0.9)
    metrics = day_metrics(day, scenario)
    if task.algo is not None:
        base = simulate_day(cal, task.seed, scenario, None, agents)
        metrics.update(algo_metrics(day, base, task.algo))
    if progress is not None:
        progress(1.0)
    return SimRun(task.sim_id, day_files(day, metrics), metrics)
