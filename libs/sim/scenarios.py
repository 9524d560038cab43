"""Stress scenarios: aggressive flow injected on top of the background agents, validated and cut
into child orders.

Names and parameters are those of the hosted simulation API. A scenario sends `n =
ceil(impact_multiplier / order_size_ratio)` child market orders, one every `order_freq` from
`start_time`; each is `order_size_ratio` of the resting liquidity the engine measures on the side
it hits at the scenario start, the last one the remainder, so they add up to `impact_multiplier`
times that liquidity. Children that fall outside continuous trading (at or after a close, in the
HKEX lunch break; windows are open <= t < close as in `libs.sim.sessions`) are dropped: that part
of the injection does not happen.

| scenario        | side | impact_multiplier | order_size_ratio | order_freq | start_time | children              |
|-----------------|------|-------------------|------------------|------------|------------|-----------------------|
| normal          |  0   | -                 | -                | -          | -          | none (takes no params)|
| flash_crash     | SELL | 15.0              | 0.25             | 500ms      | 11:00:00   | 60 over 30 s          |
| buy_panic       | BUY  | 15.0              | 0.25             | 500ms      | 11:00:00   | 60 over 30 s          |
| gradual_selloff | SELL | 12.0              | 0.1              | 30s        | 10:00:00   | 120 over 1 h          |
| trending_up     | BUY  | 39.0              | 0.1              | 60s        | 09:30:00   | 390, one a minute all day |
| trending_down   | SELL | 39.0              | 0.1              | 60s        | 09:30:00   | 390, one a minute all day |

The trends' 390 minutes are the XNYS day; on XHKG the 60 that fall in the lunch break
(12:00-12:59) are dropped. `normal` is stored as side 0, zero sizes and start_s at the open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from numbers import Real
from typing import Any, get_args

import msgspec
import numpy as np

from libs.sim import sessions
from libs.sim.timeparse import (
    describe_windows,
    format_time_of_day,
    in_windows,
    parse_duration,
    parse_time_of_day,
    window_of,
)
from proto.sim import Market, ScenarioName, ScenarioSpec

SCENARIOS: tuple[str, ...] = get_args(ScenarioName)
PARAMS = ("impact_multiplier", "order_size_ratio", "order_freq", "start_time")
MAX_CHILDREN = 100_000
"""Most child orders a scenario may send (a 500 ms order flow over a whole day is 46,800)."""


class ScenarioDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """A scenario's side and the parameters it runs with unless overridden."""

    side: int
    impact_multiplier: float
    order_size_ratio: float
    order_freq: str
    start_time: str


DEFAULTS: dict[str, ScenarioDefaults] = {
    "flash_crash": ScenarioDefaults(
        side=-1, impact_multiplier=15.0, order_size_ratio=0.25, order_freq="500ms", start_time="11:00:00"
    ),
    "buy_panic": ScenarioDefaults(
        side=1, impact_multiplier=15.0, order_size_ratio=0.25, order_freq="500ms", start_time="11:00:00"
    ),
    "gradual_selloff": ScenarioDefaults(
        side=-1, impact_multiplier=12.0, order_size_ratio=0.1, order_freq="30s", start_time="10:00:00"
    ),
    "trending_up": ScenarioDefaults(
        side=1, impact_multiplier=39.0, order_size_ratio=0.1, order_freq="60s", start_time="09:30:00"
    ),
    "trending_down": ScenarioDefaults(
        side=-1, impact_multiplier=39.0, order_size_ratio=0.1, order_freq="60s", start_time="09:30:00"
    ),
}


def parse_scenario(name: str, params: dict[str, Any] | None, market: Market) -> ScenarioSpec:
    """The validated scenario `name` with `params` over its defaults; ValueError naming what is wrong."""
    windows = sessions.windows(market)
    if not isinstance(name, str) or name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"scenario_params must be a dict, got {type(params).__name__}")
    params = params or {}
    if name == "normal":
        if params:
            raise ValueError(f"scenario 'normal' injects nothing and takes no scenario_params, got {sorted(params)}")
        return ScenarioSpec(
            name="normal", side=0, impact_multiplier=0.0, order_size_ratio=0.0, order_freq_s=0.0, start_s=windows[0][0]
        )
    unknown = sorted(str(k) for k in params if k not in PARAMS)
    if unknown:
        raise ValueError(f"unknown scenario parameter(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(PARAMS)}")
    d = DEFAULTS[name]
    impact = _positive_number(params.get("impact_multiplier", d.impact_multiplier), "impact_multiplier")
    ratio = _positive_number(params.get("order_size_ratio", d.order_size_ratio), "order_size_ratio")
    if ratio > impact:
        raise ValueError(f"order_size_ratio {ratio} must not exceed impact_multiplier {impact}")
    n = n_children(impact, ratio)
    if n > MAX_CHILDREN:
        raise ValueError(
            f"impact_multiplier / order_size_ratio = {impact} / {ratio} makes {n} child orders (max {MAX_CHILDREN})"
        )
    freq = parse_duration(params.get("order_freq", d.order_freq), positive=True, name="order_freq")
    start_value = params.get("start_time", d.start_time)
    if not isinstance(start_value, str | dt.time):
        raise ValueError(f"start_time must be a string HH:MM:SS, got {type(start_value).__name__} {start_value!r}")
    start = parse_time_of_day(start_value, name="start_time")
    if window_of(start, windows) is None:
        raise ValueError(
            f"start_time {format_time_of_day(start)} is outside {market} trading hours ({describe_windows(windows)})"
        )
    close = windows[-1][1]
    late = sum(1 for k in range(n) if start + k * freq >= close)
    if late:
        raise ValueError(
            f"{name} from {format_time_of_day(start)} would send {late} of its {n} child orders at or after the "
            f"close {format_time_of_day(close)}; start earlier, send faster (order_freq) or inject less"
        )
    return ScenarioSpec(
        name=name, side=d.side, impact_multiplier=impact, order_size_ratio=ratio, order_freq_s=freq, start_s=start
    )


def _positive_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number greater than zero, got {value!r}")
    return x


def n_children(impact_multiplier: float, order_size_ratio: float) -> int:
    """ceil(impact / ratio), not fooled by float error (3.0 / 0.1 is 30.000000000000004)."""
    q = impact_multiplier / order_size_ratio
    nearest = round(q)
    return max(1, nearest if abs(q - nearest) <= 1e-9 * max(1.0, q) else math.ceil(q))


def scenario_children(spec: ScenarioSpec, market: Market) -> tuple[np.ndarray, np.ndarray]:
    """Child order times (seconds of day) and sizes as fractions of the resting liquidity at the
    scenario start; children outside trading hours are dropped. `normal` gives two empty arrays."""
    if spec.name == "normal" or spec.impact_multiplier <= 0:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
    n = n_children(spec.impact_multiplier, spec.order_size_ratio)
    times = spec.start_s + np.arange(n, dtype=np.float64) * spec.order_freq_s
    sizes = np.full(n, spec.order_size_ratio, dtype=np.float64)
    sizes[-1] = spec.impact_multiplier - math.fsum(sizes[:-1])
    keep = in_windows(times, sessions.windows(market))
    return times[keep], sizes[keep]


def scenario_hash(spec: ScenarioSpec) -> str:
    """8 hex digits identifying the spec (sha256 of its msgspec JSON), for `{scenario}_{hash}` in sim ids."""
    return hashlib.sha256(msgspec.json.encode(spec)).hexdigest()[:8]


def scenario_token(spec: ScenarioSpec) -> str:
    """`{scenario}_{hash}`, the scenario part of a sim id."""
    return f"{spec.name}_{scenario_hash(spec)}"
