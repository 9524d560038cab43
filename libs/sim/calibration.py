"""Estimate the simulator's parameters for one (symbol, date) from a real LOBSTER day.

Everything is vectorised numpy over the message and book columns; the whole AMZN day (57,515
events) calibrates in a few milliseconds after loading.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import time

import msgspec
import numpy as np

from libs.data.lobster import ADD, DELETE, EMPTY_ASK, EMPTY_BID, EXECUTE, EXECUTE_HIDDEN, HALT, LobsterDay
from libs.sim import sessions
from libs.sim.stats import day_stats_from_lobster, valid_quotes
from proto.sim import Calibration, Market

QUANTILES = np.linspace(0.0, 1.0, 11)
"""The quantile grid of every distribution a calibration carries: 0, 0.1, ..., 1."""

_SOURCE = re.compile(r"^(?P<symbol>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_")


def calibrate(day: LobsterDay, market: Market | None = None, tick: int = 100, now_ns: int | None = None) -> Calibration:
    """A complete Calibration of `day` (market from the symbol when not given; tick in $0.0001).

    Raises ValueError for an empty day, a bad tick, a date or market that does not fit the day,
    no message in the session, no valid two-sided quote, no limit order, no execution, or no
    order both added and deleted within the file (no cancel lifetime to estimate).
    """
    if len(day) == 0:
        raise ValueError(f"{day.source}: the day has no messages")
    if isinstance(tick, bool) or not isinstance(tick, int | np.integer) or tick <= 0:
        raise ValueError(f"tick must be a positive integer ($0.0001 units), got {tick!r}")
    market = _check_market(day, market)
    _check_date(day)

    typ, t = day.type, day.time
    keep = typ != HALT
    inside = keep & sessions.in_session(market, t)
    if not inside.any():
        lo, hi = sessions.open_s(market), sessions.close_s(market)
        raise ValueError(
            f"{day.source}: no message inside the {market} session [{lo:.0f}, {hi:.0f}) s; "
            f"the file spans {t[0]:.3f} to {t[-1]:.3f} s"
        )
    ap, az, bp, bs = day.level(1)
    quoted = keep & valid_quotes(bp, bs, ap, az)
    if not quoted.any():
        raise ValueError(f"{day.source}: no valid two-sided quote (every level-1 book is empty, one-sided or crossed)")
    adds = inside & (typ == ADD)
    if not adds.any():
        raise ValueError(f"{day.source}: no limit order (type {ADD}) in the session")
    execs = inside & np.isin(typ, (EXECUTE, EXECUTE_HIDDEN))
    if not execs.any():
        raise ValueError(f"{day.source}: no execution (type {EXECUTE} or {EXECUTE_HIDDEN}) in the session")

    minutes = sessions.session_minutes(market).size
    volume = np.bincount(sessions.minute_index(market, t[execs]), weights=day.size[execs], minlength=minutes)
    activity = np.bincount(sessions.minute_index(market, t[inside]), minlength=minutes).astype(np.float64)

    cal = Calibration(
        symbol=day.symbol,
        cal_date=day.date,
        market=market,
        cal_hash="",
        source=day.source,
        tick=int(tick),
        open_mid=_open_mid(t, bp, ap, quoted, sessions.open_s(market)),
        stats=day_stats_from_lobster(day, market, int(tick)),
        limit_offset_ticks=_quantiles(_limit_offsets(day, adds, int(tick))),
        order_size_q=_quantiles(day.size[adds]),
        trade_size_q=_quantiles(day.size[execs]),
        cancel_lifetime_s=_cancel_lifetime(day, keep),
        volume_profile=(volume / volume.sum()).tolist(),
        activity_profile=(activity / activity.mean()).tolist(),
        created_at=time.time_ns() if now_ns is None else int(now_ns),
    )
    return msgspec.structs.replace(cal, cal_hash=calibration_hash(cal))


def calibration_hash(cal: Calibration) -> str:
    """8 hex digits of sha256 over the calibration with `cal_hash` and `created_at` blanked.

    JSON (msgspec) is the encoding: deterministic field order and float text, and every NaN
    encodes alike (null), so the same data always gives the same hash.
    """
    blank = msgspec.structs.replace(cal, cal_hash="", created_at=0)
    return hashlib.sha256(msgspec.json.encode(blank)).hexdigest()[:8]


def _check_market(day: LobsterDay, market: Market | None) -> Market:
    """The day's market: the symbol's when not given; a given one must be a known market that fits it."""
    implied = sessions.market_for_symbol(day.symbol)
    if market is None:
        return implied
    sessions.windows(market)  # unknown market -> ValueError listing the known ones
    if market != implied:
        raise ValueError(f"{day.source}: market {market} does not fit symbol {day.symbol!r}, which trades on {implied}")
    return market


def _check_date(day: LobsterDay) -> None:
    """The date must be a weekday in YYYY-MM-DD and agree with the symbol and date in the file name."""
    try:
        date = dt.date.fromisoformat(day.date)
    except (TypeError, ValueError):
        raise ValueError(f"{day.source}: date must be YYYY-MM-DD, got {day.date!r}") from None
    if date.weekday() >= 5:
        raise ValueError(f"{day.source}: {day.date} is a {date:%A}, not a trading day")
    m = _SOURCE.match(day.source)
    if m and (m["date"] != day.date or m["symbol"] != day.symbol):
        raise ValueError(
            f"{day.source}: the file name says {m['symbol']} on {m['date']}, the day says {day.symbol} on {day.date}"
        )


def _open_mid(t: np.ndarray, bid: np.ndarray, ask: np.ndarray, quoted: np.ndarray, open_s: float) -> int:
    """The mid in force at the open: the last valid quote at or before it, else the first after it."""
    rows = np.flatnonzero(quoted)
    before = rows[t[rows] <= open_s]
    k = before[-1] if before.size else rows[0]
    return int((bid[k] + ask[k]) // 2)


def _limit_offsets(day: LobsterDay, adds: np.ndarray, tick: int) -> np.ndarray:
    """Ticks behind the same-side best of the book before each new limit order (negative: inside).

    Orders on the first row (no book before them) or facing an empty same side are left out.
    """
    ap, az, bp, bs = day.level(1)
    k = np.flatnonzero(adds)
    k = k[k > 0]
    prev = k - 1
    buy = day.direction[k] == 1
    has_side = np.where(buy, (bs[prev] > 0) & (bp[prev] > EMPTY_BID), (az[prev] > 0) & (ap[prev] < EMPTY_ASK))
    offset = np.where(buy, bp[prev] - day.price[k], day.price[k] - ap[prev]) / tick
    return offset[has_side]


def _cancel_lifetime(day: LobsterDay, keep: np.ndarray) -> float:
    """Mean seconds from add to full delete, over orders both added and deleted within the file."""
    add_rows = np.flatnonzero(keep & (day.type == ADD))
    del_rows = np.flatnonzero(keep & (day.type == DELETE))
    ids, first = np.unique(day.order_id[add_rows], return_index=True)
    add_rows = add_rows[first]
    if ids.size == 0 or del_rows.size == 0:
        raise ValueError(f"{day.source}: no order is both added and deleted within the file; no cancel lifetime")
    pos = np.minimum(np.searchsorted(ids, day.order_id[del_rows]), ids.size - 1)
    matched = (ids[pos] == day.order_id[del_rows]) & (add_rows[pos] < del_rows)
    if not matched.any():
        raise ValueError(f"{day.source}: no order is both added and deleted within the file; no cancel lifetime")
    return float(np.mean(day.time[del_rows[matched]] - day.time[add_rows[pos[matched]]]))


def _quantiles(x: np.ndarray) -> list[float]:
    """Quantiles of `x` on the 0, 0.1, ..., 1 grid (numpy's linear interpolation)."""
    if x.size == 0:
        raise ValueError("no values to take quantiles of")
    return np.quantile(x.astype(np.float64), QUANTILES).tolist()


def check_calibration(cal: Calibration) -> None:
    """Refuse a calibration the engine could not run (one arriving from outside, e.g. over the
    job API): ValueError naming every bad field."""
    errors: list[str] = []
    if cal.tick <= 0:
        errors.append(f"tick must be positive, got {cal.tick}")
    if cal.open_mid <= 0:
        errors.append(f"open_mid must be a positive price, got {cal.open_mid}")
    stats = msgspec.structs.asdict(cal.stats)
    for name in ("spread_ticks_mean", "depth_touch_mean", "limit_rate_per_s", "trade_rate_per_s", "minute_vol_bps"):
        value = stats[name]
        if not (math.isfinite(value) and value > 0):
            errors.append(f"stats.{name} must be a positive number, got {value!r}")
    if not (math.isfinite(cal.cancel_lifetime_s) and cal.cancel_lifetime_s > 0):
        errors.append(f"cancel_lifetime_s must be a positive number, got {cal.cancel_lifetime_s!r}")
    for name in ("limit_offset_ticks", "order_size_q", "trade_size_q"):
        q = np.asarray(getattr(cal, name), np.float64)
        if q.size != len(QUANTILES) or not np.isfinite(q).all() or (np.diff(q) < 0).any():
            errors.append(f"{name} must be {len(QUANTILES)} finite, non-decreasing quantiles")
        elif name != "limit_offset_ticks" and q[0] <= 0:
            errors.append(f"{name} must be positive sizes, got a minimum of {q[0]:g}")
    for name in ("volume_profile", "activity_profile"):
        p = np.asarray(getattr(cal, name), np.float64)
        if not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            errors.append(f"{name} must be finite, non-negative and not all zero")
    if errors:
        raise ValueError(f"calibration {cal.symbol} {cal.cal_date}: " + "; ".join(errors))
