"""Execution algorithms: an `exec_algos` entry of a simulation request, validated into an AlgoSpec
and cut into child market orders.

Config keys are those of the hosted simulation API:

| key           | twap / vwap                       | css                                   |
|---------------|-----------------------------------|---------------------------------------|
| type          | "twap" / "vwap" (required)        | "css" (required)                      |
| order_size    | int, required; < 0 means sell     | - (the schedule's total)              |
| side          | "buy"/"sell", optional            | "buy"/"sell", optional                |
| horizon       | HH:MM:SS, required                | -                                     |
| start_time    | HH:MM:SS, default the market open | -                                     |
| frequency     | duration, default 00:00:01        | -                                     |
| random_offset | True (uniform in [0, frequency)), False (none) or a duration; default True | - |
| orders        | -                                 | the schedule, required                |

Side: a negative size (order_size, or every schedule size) means sell, and `side` must then not
say "buy"; with positive sizes `side` picks the side (default buy).

Decisions: a horizon that ends after the day's last close is an error (not clipped), and so is a
twap/vwap whose order_size is smaller than its number of children (floor(horizon / frequency)), which
would leave children of zero shares. A css schedule may list its orders in any order: it is sorted
by time (stably, so equal times keep their order). A css schedule takes `type`, `orders` and `side`
only: its children go at exactly the listed times.

Children that fall outside continuous trading (the HKEX lunch break, at or after a close: windows
are open <= t < close as in `libs.sim.sessions`) are dropped: their quantity is simply not traded,
which lowers the fill ratio. So the last order of a css schedule ending at exactly 12:00:00 on
XHKG is dropped. vwap gives such children no
weight (the market trades nothing then), so its whole order goes to children inside trading hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast, get_args
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import polars as pl

from libs.sim import sessions
from libs.sim.sessions import minute_index, session_minutes, timezone
from libs.sim.timeparse import (
    describe_windows,
    format_time_of_day,
    in_windows,
    parse_duration,
    parse_time_of_day,
    window_of,
)
from proto.sim import AlgoSpec, AlgoType, Market

ALGO_TYPES: tuple[str, ...] = get_args(AlgoType)
KEYS: dict[str, tuple[str, ...]] = {
    "twap": ("type", "order_size", "side", "horizon", "start_time", "frequency", "random_offset"),
    "vwap": ("type", "order_size", "side", "horizon", "start_time", "frequency", "random_offset"),
    "css": ("type", "orders", "side"),
}
DEFAULT_FREQUENCY = "00:00:01"
MAX_CHILDREN = 100_000
MAX_ORDER_SIZE = 1_000_000_000
"""A parent order larger than this is a typo, not an execution."""
"""Most child orders one algo may send (one a second over a whole XNYS day is 23,400)."""
OFFSET_STREAM = 0xA160
"""Spawn key of the random-offset stream, so it is not the engine's own Generator(seed) stream."""
SCHEDULE_FORMS = (
    "a pandas Series with a DatetimeIndex, a polars DataFrame with one datetime and one integer column, "
    "a dict {datetime or ISO string: size} or a list of (datetime or ISO string, size) pairs"
)


def parse_algo(cfg: Mapping[str, Any], cal_date: str, market: Market, index: int = 0) -> AlgoSpec:
    """The validated algo of one `exec_algos` entry; ValueError starting `exec_algos[index]:` naming the problem."""
    try:
        return _parse_algo(cfg, cal_date, market)
    except ValueError as e:
        raise ValueError(f"exec_algos[{index}]: {e}") from e


def _parse_algo(cfg: Mapping[str, Any], cal_date: str, market: Market) -> AlgoSpec:
    windows = sessions.windows(market)
    day = _parse_date(cal_date)
    if not isinstance(cfg, Mapping):
        raise ValueError(f"an algo config must be a dict, got {type(cfg).__name__}")
    if "type" not in cfg:
        raise ValueError(f"missing 'type'; one of {', '.join(ALGO_TYPES)}")
    kind = cfg["type"]
    if not isinstance(kind, str) or kind not in ALGO_TYPES:
        raise ValueError(f"unknown algo type {kind!r}; known: {', '.join(ALGO_TYPES)}")
    unknown = sorted(str(k) for k in cfg if k not in KEYS[kind])
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} for {kind}; allowed: {', '.join(KEYS[kind])}")
    side_param = _parse_side(cfg.get("side"))
    if kind == "css":
        if "orders" not in cfg:
            raise ValueError("css needs 'orders', the schedule of (datetime, size)")
        spec = _parse_css(cfg["orders"], day, market, windows, side_param)
    else:
        spec = _parse_sliced(kind, cfg, windows, side_param)
    return msgspec.structs.replace(spec, label=f"{kind}_{algo_hash(spec)}")


def _parse_sliced(
    kind: str, cfg: Mapping[str, Any], windows: tuple[tuple[float, float], ...], side_param: int | None
) -> AlgoSpec:
    for key in ("order_size", "horizon"):
        if key not in cfg:
            raise ValueError(f"{kind} needs '{key}'")
    size = cfg["order_size"]
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"order_size must be an integer number of shares, got {type(size).__name__} {size!r}")
    size = int(size)
    if size == 0:
        raise ValueError("order_size must not be zero")
    side = _agree(side_param, -1 if size < 0 else 1, f"order_size {size}")
    horizon = parse_duration(cfg["horizon"], positive=True, name="horizon")
    start = parse_time_of_day(cfg.get("start_time", format_time_of_day(windows[0][0])), name="start_time")
    if window_of(start, windows) is None:
        raise ValueError(
            f"start_time {format_time_of_day(start)} is outside trading hours ({describe_windows(windows)})"
        )
    close = windows[-1][1]
    if start + horizon > close + 1e-9:
        raise ValueError(
            f"start_time {format_time_of_day(start)} + horizon {format_time_of_day(horizon)} ends at "
            f"{format_time_of_day(start + horizon)}, after the close {format_time_of_day(close)}"
        )
    frequency = parse_duration(cfg.get("frequency", DEFAULT_FREQUENCY), positive=True, name="frequency")
    if frequency > horizon:
        raise ValueError(f"frequency {frequency:g}s is longer than the horizon {horizon:g}s: no child orders")
    n = child_count(horizon, frequency)
    if n > MAX_CHILDREN:
        raise ValueError(f"horizon / frequency = {horizon:g}s / {frequency:g}s makes {n} children (max {MAX_CHILDREN})")
    if abs(size) < n:
        raise ValueError(
            f"order_size {abs(size)} is smaller than the {n} child orders (horizon / frequency); "
            "use a longer frequency or a larger order"
        )
    offset = cfg.get("random_offset", True)
    if isinstance(offset, bool):
        offset_s = frequency if offset else 0.0
    else:
        offset_s = parse_duration(offset, name="random_offset")
        if offset_s > frequency:
            raise ValueError(
                f"random_offset {offset_s:g}s is longer than the frequency {frequency:g}s: "
                "children would overtake each other (and the last could pass the horizon)"
            )
    if abs(size) > MAX_ORDER_SIZE:
        raise ValueError(f"order_size {abs(size)} is more than {MAX_ORDER_SIZE:,} shares")
    return AlgoSpec(
        type=cast(AlgoType, kind),
        side=side,
        order_size=abs(size),
        start_s=start,
        horizon_s=horizon,
        frequency_s=frequency,
        random_offset_s=offset_s,
        label="",
    )


def _parse_css(
    orders: object, day: dt.date, market: Market, windows: tuple[tuple[float, float], ...], side_param: int | None
) -> AlgoSpec:
    times, sizes = _schedule_arrays(orders, timezone(market))
    if times.size == 0:
        raise ValueError("the css schedule is empty")
    if times.size > MAX_CHILDREN:
        raise ValueError(f"the css schedule has {times.size} orders, more than {MAX_CHILDREN}")
    days = times.astype("datetime64[D]")
    off_day = days != np.datetime64(day, "D")
    if off_day.any():
        i = int(np.argmax(off_day))
        raise ValueError(f"schedule time {times[i]} is not on cal_date {day.isoformat()}")
    seconds = (times - days).astype(np.int64) / 1e9
    if (sizes == 0).any():
        i = int(np.argmax(sizes == 0))
        raise ValueError(f"schedule size at {times[i]} is zero; sizes must be non-zero integers")
    if (sizes > 0).any() and (sizes < 0).any():
        raise ValueError("schedule sizes mix signs (buys and sells); use one sign for the whole schedule")
    side = _agree(side_param, -1 if sizes[0] < 0 else 1, "negative schedule sizes")
    order = np.argsort(seconds, kind="stable")
    seconds, qty = seconds[order], np.abs(sizes[order])
    if not in_windows(seconds, windows).any():
        raise ValueError(f"no schedule time is inside trading hours ({describe_windows(windows)}); nothing would trade")
    return AlgoSpec(
        type="css",
        side=side,
        order_size=int(qty.sum()),
        start_s=float(seconds[0]),
        horizon_s=float(seconds[-1] - seconds[0]),
        frequency_s=0.0,
        random_offset_s=0.0,
        schedule_s=[float(s) for s in seconds],
        schedule_qty=[int(q) for q in qty],
        label="",
    )


def _schedule_arrays(orders: object, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(datetime64[ns] local times, int64 signed sizes) of any accepted schedule form."""
    if isinstance(orders, pl.DataFrame):
        return _polars_schedule(orders, tz)
    if isinstance(orders, Mapping):
        return _pairs_schedule(list(orders.items()), tz)
    if isinstance(orders, list | tuple):
        pairs = []
        for i, item in enumerate(orders):
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise ValueError(f"schedule item {i} must be a (datetime, size) pair, got {item!r}")
            pairs.append((item[0], item[1]))
        return _pairs_schedule(pairs, tz)
    if hasattr(orders, "index") and hasattr(orders, "to_numpy"):
        return _series_schedule(orders, tz)
    raise ValueError(f"orders must be {SCHEDULE_FORMS}; got {type(orders).__name__}")


def _series_schedule(series: Any, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """A pandas Series (duck-typed: pandas is optional) indexed by datetimes."""
    values = np.asarray(series.to_numpy())
    if values.ndim != 1:
        raise ValueError(f"orders must be a Series (one column of sizes), got shape {values.shape}")
    index = series.index
    if getattr(index, "tz", None) is not None:
        index = index.tz_convert(tz).tz_localize(None)
    times = np.asarray(getattr(index, "values", index))
    if times.dtype.kind != "M" or values.dtype.kind not in "iu":
        return _pairs_schedule(list(zip(list(index), values.tolist(), strict=True)), tz)
    if np.isnat(times).any():
        raise ValueError("the schedule's index holds a missing time (NaT)")
    return times.astype("datetime64[ns]"), values.astype(np.int64)


def _polars_schedule(df: pl.DataFrame, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """A polars DataFrame with exactly one datetime column and one integer column."""
    time_cols = [c for c, t in df.schema.items() if isinstance(t, pl.Datetime)]
    size_cols = [c for c, t in df.schema.items() if t.is_integer()]
    if len(time_cols) != 1 or len(size_cols) != 1:
        raise ValueError(
            f"a polars schedule needs exactly one datetime column and one integer column, got {dict(df.schema)}"
        )
    col = df.get_column(time_cols[0])
    if getattr(col.dtype, "time_zone", None) is not None:
        col = col.dt.convert_time_zone(tz).dt.replace_time_zone(None)
    sizes = df.get_column(size_cols[0])
    if col.null_count() or sizes.null_count():
        raise ValueError("the polars schedule holds nulls")
    return col.to_numpy().astype("datetime64[ns]"), sizes.to_numpy().astype(np.int64)


def _pairs_schedule(pairs: list[tuple[object, object]], tz: str) -> tuple[np.ndarray, np.ndarray]:
    times = np.empty(len(pairs), dtype="datetime64[ns]")
    sizes = np.empty(len(pairs), dtype=np.int64)
    for i, (t, q) in enumerate(pairs):
        times[i] = np.datetime64(_local_datetime(t, tz), "ns")
        if isinstance(q, bool) or not isinstance(q, int | np.integer):
            raise ValueError(f"schedule size at {t} must be an integer number of shares, got {type(q).__name__} {q!r}")
        sizes[i] = int(q)
    return times, sizes


def _local_datetime(t: object, tz: str) -> dt.datetime:
    """A naive datetime in the market's local time (an aware one is converted to it)."""
    if isinstance(t, np.datetime64):
        if np.isnat(t):
            raise ValueError("the schedule holds a missing time (NaT)")
        t = t.astype("datetime64[us]").item()
    if isinstance(t, str):
        text = t.strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"schedule time {t!r} is not an ISO datetime like '2025-09-01T09:30:00'") from None
        if len(text) <= 10:
            raise ValueError(f"schedule time {t!r} has no time of day; give date and time")
        t = parsed
    if isinstance(t, dt.datetime):
        if t != t:  # pandas NaT is a datetime that is not equal to itself
            raise ValueError("the schedule holds a missing time (NaT)")
        return t.astimezone(ZoneInfo(tz)).replace(tzinfo=None) if t.tzinfo is not None else t
    raise ValueError(
        f"schedule time {t!r} must be a full datetime (date and time) or an ISO string, got {type(t).__name__}"
    )


def _parse_date(cal_date: str) -> dt.date:
    if not isinstance(cal_date, str):
        raise ValueError(f"cal_date must be a YYYY-MM-DD string, got {type(cal_date).__name__} {cal_date!r}")
    try:
        return dt.date.fromisoformat(cal_date)
    except ValueError:
        raise ValueError(f"cal_date {cal_date!r} is not a YYYY-MM-DD date") from None


def _parse_side(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("buy", "sell"):
        return 1 if value.lower() == "buy" else -1
    raise ValueError(f"side must be 'buy' or 'sell', got {value!r}")


def _agree(side_param: int | None, sign: int, what: str) -> int:
    """The side: `side` when given (it may turn positive sizes into a sell, not negative ones into a buy)."""
    if side_param is None:
        return sign
    if sign < 0 and side_param > 0:
        raise ValueError(f"side 'buy' disagrees with {what}, which means sell")
    return side_param


def algo_hash(spec: AlgoSpec) -> str:
    """8 hex digits identifying the spec apart from its label (sha256 of its msgspec JSON)."""
    return hashlib.sha256(msgspec.json.encode(msgspec.structs.replace(spec, label=""))).hexdigest()[:8]


def child_count(horizon_s: float, frequency_s: float) -> int:
    """floor(horizon / frequency), not fooled by float error (0.3 / 0.1 is 2.9999999999999996)."""
    q = horizon_s / frequency_s
    nearest = round(q)
    return int(nearest if abs(q - nearest) <= 1e-9 * max(1.0, q) else math.floor(q))


def split_by_weight(total: int, weights: np.ndarray) -> np.ndarray:
    """Non-negative integers proportional to `weights` summing exactly to `total` (largest remainder;
    ties go to the earlier entry)."""
    w = np.asarray(weights, dtype=np.float64)
    raw = total * (w / w.sum())
    out = np.floor(raw).astype(np.int64)
    frac = raw - out
    short = total - int(out.sum())
    if short > 0:
        out[np.argsort(-frac, kind="stable")[:short]] += 1
    elif short < 0:  # float error floored a value up; take back from the smallest remainders
        cand = np.flatnonzero(out > 0)
        out[cand[np.argsort(frac[cand], kind="stable")[:-short]]] -= 1
    return out


def algo_children(
    spec: AlgoSpec, market: Market, volume_profile: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Child order times (seconds of day, sorted) and positive share sizes; children outside
    trading hours are dropped. Random offsets come from a Generator seeded by `seed`."""
    windows = sessions.windows(market)
    if spec.type == "css":
        times = np.asarray(spec.schedule_s, dtype=np.float64)
        sizes = np.asarray(spec.schedule_qty, dtype=np.int64)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        n = child_count(spec.horizon_s, spec.frequency_s)
        times = spec.start_s + np.arange(n, dtype=np.float64) * spec.frequency_s
        if spec.random_offset_s > 0:
            rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(OFFSET_STREAM,)))
            times = times + rng.uniform(0.0, spec.random_offset_s, n)
        if spec.type == "twap":
            q, r = divmod(spec.order_size, n)
            sizes = np.full(n, q, dtype=np.int64)
            sizes[:r] += 1
        else:
            sizes = split_by_weight(spec.order_size, _vwap_weights(times, market, windows, volume_profile))
    order = np.argsort(times, kind="stable")
    times, sizes = times[order], sizes[order]
    keep = in_windows(times, windows) & (sizes > 0)
    return times[keep], sizes[keep]


def _vwap_weights(
    times: np.ndarray, market: Market, windows: Sequence[tuple[float, float]], volume_profile: Sequence[float]
) -> np.ndarray:
    """Each child's share of the day's volume in its minute; 0 outside trading hours. A window
    with no volume at all falls back to equal weights (a twap split)."""
    profile = np.asarray(volume_profile, dtype=np.float64)
    expected = len(session_minutes(market))
    if profile.ndim != 1 or profile.size != expected:
        raise ValueError(f"volume_profile has {profile.size} entries; a {market} session has {expected} minutes")
    if not np.isfinite(profile).all() or (profile < 0).any():
        raise ValueError("volume_profile must hold finite, non-negative fractions")
    idx = minute_index(market, times)
    inside = idx >= 0
    weights = np.where(inside, profile[np.maximum(idx, 0)], 0.0)
    if weights.sum() <= 0:
        weights = inside.astype(np.float64) if inside.any() else np.ones(times.size)
    return weights
