"""From a Calibration to the agent kernel's inputs: the population sizes and behaviour
parameters (`AgentParams`), and the day's exogenous paths (fundamental value, activity).

The mapping, in one place so it can be read and argued with:
- market orders arrive at the calibrated trade rate / `EXECUTIONS_PER_MARKET_ORDER` and take
  the calibrated trade sizes; limit orders arrive at the calibrated limit rate;
- market makers quote half the calibrated spread around their estimate, with the touch depth
  split between them;
- the fundamental's 1-minute volatility is the calibrated one; its variance, like every
  arrival rate, scales with activity = the calibrated intraday profile x a stochastic factor
  (log-OU, 20-minute memory) plus rare jumps. That shared driver is what gives the day
  volatility clustering, fat tails and the volume-volatility link.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from numba import njit

from libs.sim import abm
from libs.sim.sessions import session_minutes, windows
from proto.sim import Calibration

EXECUTIONS_PER_MARKET_ORDER = 1.3
"""A marketable order is reported as one execution per resting order it hits."""


@dataclass(frozen=True)
class AgentParams:
    """Populations (RMSC04-sized by default) and behaviour knobs not taken from data."""

    n_noise: int = 1000
    n_value: int = 100
    n_mm: int = 2
    n_momentum: int = 12
    n_meanrev: int = 10
    market_flow_noise: float = 0.6
    """Share of market-order flow from noise traders; the rest is split value/momentum."""
    value_rate_share: float = 0.35
    mm_period_s: float = 1.0
    mm_requote_ticks: float = 2.0
    """A maker leaves a quote alone until its reference has moved this far."""
    mm_spread_factor: float = 1.55
    """Maker half spread as a multiple of half the calibrated spread (orders inside the
    spread from other agents narrow the quoted spread back towards the calibrated one)."""
    mm_levels: int = 4
    mm_step_ticks: float = 2.0
    mm_skew_ticks_per_share: float = 0.01
    mm_max_inventory: int = 5000
    mm_obs_noise_ticks: float = 0.5
    value_obs_noise_ticks: float = 2.0
    value_threshold_ticks: float = 3.0
    value_max_position: int = 3000
    momentum_rate_per_agent: float = 1.0 / 30.0
    momentum_threshold: float = 2.0
    """In 1-minute standard deviations."""
    meanrev_rate_per_agent: float = 1.0 / 60.0
    meanrev_threshold: float = 6.0
    meanrev_halflife_s: float = 1800.0
    deep_prob: float = 0.35
    """Share of noise limit orders placed behind the touch (the L1 calibration cannot see them)."""
    deep_mean_ticks: float = 4.0
    latency_noise_s: float = 0.050
    latency_value_s: float = 0.020
    latency_mm_s: float = 0.001
    latency_momentum_s: float = 0.010
    latency_external_s: float = 0.001
    latency_jitter_s: float = 0.005
    algo_collar_bps: float = 50.0
    """An algo child is an IOC priced this far through the touch."""
    scenario_levels: int = 10
    """Resting liquidity = shares in this many best levels of the side a scenario hits."""
    impact_minute_vols: float = 0.5
    """Market makers move their reference by this many 1-minute standard deviations per
    average minute's volume of net aggressive buying (Kyle's lambda)."""
    impact_halflife_s: float = 1800.0
    value_impact_share: float = 0.4
    """How much of the flow-inferred impact value traders believe (the rest they trade against):
    at 0 they know the fundamental exactly and arbitrage every impact away within minutes."""
    activity_sigma: float = 0.9
    activity_memory_s: float = 1200.0
    jump_rate_per_hour: float = 0.5
    jump_size_minute_vols: float = 4.0
    fundamental_halflife_s: float = 4 * 3600.0
    """The fundamental mean-reverts (weakly) to the opening mid."""

    def replace(self, **changes: float) -> AgentParams:
        """A copy with some knobs changed; unknown names are an error."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise ValueError(f"unknown agent parameter(s) {bad}; known: {sorted(known)}")
        return AgentParams(**{**asdict(self), **changes})


def truncated_quantiles(q: list[float], cap: float = 3.0) -> np.ndarray:
    """Deciles with the maximum capped at `cap` x the 90th percentile: the kernel interpolates
    linearly inside each decile, so one 33,570-share order would otherwise inflate the whole
    top decile's mean."""
    out = np.asarray(q, np.float64).copy()
    if out.size >= 2:
        out[-1] = min(out[-1], max(cap * out[-2], out[-2]))
    return out


def kernel_params(cal: Calibration, ap: AgentParams, scenario_side: int = 0) -> np.ndarray:
    """The kernel's parameter vector for a calibration."""
    st = cal.stats
    P = np.zeros(abm.P_COUNT, np.float64)
    tick = cal.tick
    mkt_rate = st.trade_rate_per_s / EXECUTIONS_PER_MARKET_ORDER
    P[abm.P_TICK] = tick
    P[abm.P_N_NOISE] = ap.n_noise
    P[abm.P_N_VALUE] = ap.n_value
    P[abm.P_N_MM] = ap.n_mm
    P[abm.P_N_MOM] = ap.n_momentum
    P[abm.P_N_MEANREV] = ap.n_meanrev
    P[abm.P_RATE_NOISE_LIMIT] = st.limit_rate_per_s
    P[abm.P_RATE_NOISE_MKT] = mkt_rate * ap.market_flow_noise
    P[abm.P_RATE_VALUE] = mkt_rate * (1.0 - ap.market_flow_noise) / max(ap.value_rate_share, 1e-9)
    P[abm.P_RATE_MOM] = ap.momentum_rate_per_agent * ap.n_momentum
    P[abm.P_RATE_MEANREV] = ap.meanrev_rate_per_agent * ap.n_meanrev
    P[abm.P_MM_PERIOD] = ap.mm_period_s
    P[abm.P_MM_HALF_SPREAD] = max(1.0, ap.mm_spread_factor * st.spread_ticks_mean / 2.0)
    P[abm.P_MM_LEVELS] = ap.mm_levels
    P[abm.P_MM_STEP] = ap.mm_step_ticks
    P[abm.P_MM_SIZE] = max(1.0, st.depth_touch_mean / max(ap.n_mm, 1))
    P[abm.P_MM_SKEW] = ap.mm_skew_ticks_per_share
    P[abm.P_MM_MAX_INV] = ap.mm_max_inventory
    P[abm.P_MM_OBS_NOISE] = ap.mm_obs_noise_ticks * tick
    P[abm.P_VALUE_OBS_NOISE] = ap.value_obs_noise_ticks * tick
    P[abm.P_VALUE_THRESHOLD] = ap.value_threshold_ticks * tick
    P[abm.P_VALUE_MAX_POS] = ap.value_max_position
    P[abm.P_MOM_THRESHOLD] = ap.momentum_threshold
    P[abm.P_MEANREV_THRESHOLD] = ap.meanrev_threshold
    P[abm.P_MEANREV_HALFLIFE] = ap.meanrev_halflife_s
    P[abm.P_LIFETIME] = max(cal.cancel_lifetime_s, 0.1)
    P[abm.P_DEEP_MEAN] = ap.deep_mean_ticks
    P[abm.P_DEEP_PROB] = ap.deep_prob
    P[abm.P_SIZE_CAP] = 3.0 * cal.order_size_q[9]
    P[abm.P_MM_REQUOTE] = ap.mm_requote_ticks
    minute_volume = max(st.daily_volume / 390.0, 1.0)
    P[abm.P_IMPACT_LAMBDA] = ap.impact_minute_vols * max(st.minute_vol_bps, 0.1) * 1e-4 * cal.open_mid / minute_volume
    P[abm.P_IMPACT_HALFLIFE] = ap.impact_halflife_s
    P[abm.P_VALUE_IMPACT_SHARE] = ap.value_impact_share
    P[abm.P_LAT_NOISE] = ap.latency_noise_s
    P[abm.P_LAT_VALUE] = ap.latency_value_s
    P[abm.P_LAT_MM] = ap.latency_mm_s
    P[abm.P_LAT_MOM] = ap.latency_momentum_s
    P[abm.P_LAT_EXT] = ap.latency_external_s
    P[abm.P_LAT_JITTER] = ap.latency_jitter_s
    P[abm.P_ALGO_COLLAR] = ap.algo_collar_bps
    P[abm.P_SCEN_SIDE] = scenario_side
    P[abm.P_SCEN_LEVELS] = ap.scenario_levels
    P[abm.P_MINUTE_VOL] = max(st.minute_vol_bps, 0.1) * 1e-4
    return P


def exogenous_paths(cal: Calibration, ap: AgentParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fundamental value and the activity factor, one value per second of the session
    span (open of the first window to close of the last, lunch included)."""
    w = windows(cal.market)
    n = int(w[-1][1] - w[0][0])
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0xF00D,))))
    # intraday profile: the calibrated per-minute activity, on the session's minutes
    prof = np.asarray(cal.activity_profile, np.float64)
    prof = prof / prof.mean() if prof.size and prof.mean() > 0 else np.ones(1)
    sec = np.arange(n)
    minute = np.minimum(_session_minute(cal.market, w[0][0] + sec), prof.size - 1)
    profile = np.where(minute >= 0, prof[np.maximum(minute, 0)], 1.0)
    profile = np.maximum(profile, 0.2)
    # stochastic activity: log-OU with unit mean
    phi = math.exp(-1.0 / ap.activity_memory_s)
    sd = ap.activity_sigma
    shocks = rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)
    shocks[0] = rng.standard_normal() * sd
    x = _ar1(shocks, phi, 0.0)
    act = profile * np.exp(x - 0.5 * sd * sd)
    act = act / act.mean()
    # fundamental: variance per second proportional to activity, plus rare jumps
    f0 = float(cal.open_mid)
    sigma_s = max(cal.stats.minute_vol_bps, 0.1) * 1e-4 * f0 / math.sqrt(60.0)
    jump_p = ap.jump_rate_per_hour / 3600.0
    jumps = (rng.random(n) < jump_p) * rng.standard_normal(n) * ap.jump_size_minute_vols * sigma_s * math.sqrt(60.0)
    incr = sigma_s * np.sqrt(act) * rng.standard_normal(n) + jumps
    incr[0] = 0.0
    kappa = math.log(2.0) / ap.fundamental_halflife_s
    # f[i] - f0 = (1 - kappa) (f[i-1] - f0) + incr[i]
    f = f0 + _ar1(incr, 1.0 - kappa, 0.0)
    return np.maximum(f, cal.tick), act


@njit(cache=True)
def _ar1(shocks: np.ndarray, phi: float, x0: float) -> np.ndarray:
    """x[i] = phi x[i-1] + shocks[i], x[-1] = x0."""
    x = np.empty(shocks.shape[0])
    prev = x0
    for i in range(shocks.shape[0]):
        prev = phi * prev + shocks[i]
        x[i] = prev
    return x


def _session_minute(market: str, t: np.ndarray) -> np.ndarray:
    """Session-minute index of each time; times in a break take the minute before it."""
    starts = session_minutes(market)  # type: ignore[arg-type]
    return np.searchsorted(starts, t, side="right") - 1
