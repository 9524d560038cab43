"""Statistics of a trading day, computed the same way from a real LOBSTER day and a simulated one.

A calibration's targets and a simulated day's verdict are both `DayStats`: time-weighted spread
and touch depth, message and trade rates, trade sizes, 1-minute volatility and four stylised
facts of 1-minute mid returns (fat tails, no linear autocorrelation, volatility clustering, the
volume-volatility link). Returns are taken between the ends of consecutive session minutes; a
return that spans a break between windows (the HKEX lunch) is not a 1-minute return and is
left out (`valid_returns`).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from libs.data.lobster import ADD, CANCEL, DELETE, EMPTY_ASK, EXECUTE, EXECUTE_HIDDEN, HALT, LobsterDay
from libs.sim import sessions
from proto.sim import DayStats, Market

MIN_RETURNS = 10
"""Fewer valid 1-minute returns than this and the stylised facts are NaN."""

NAN = float("nan")
STYLISED_FACTS = ("kurtosis_excess", "acf1_returns", "acf1_abs_returns", "corr_volume_abs_return")


def _f64(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return arr


def _check_times(name: str, t: np.ndarray) -> None:
    if t.size and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0)):
        raise ValueError(f"{name}: times must be finite and non-decreasing")


def minute_series(
    market: Market, t_s: np.ndarray, mid: np.ndarray, trade_t_s: np.ndarray, trade_qty: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per session minute: the last mid at or before the minute's end, and the volume traded in it.

    Mids are forward-filled; minutes before the first quote take the first mid. Non-finite or
    non-positive mids (no two-sided quote) are ignored; with none at all every mid is NaN.
    Quote times must be non-decreasing; trades outside the session are not counted.
    """
    t, m = _f64("t_s", t_s), _f64("mid", mid)
    tt, tq = _f64("trade_t_s", trade_t_s), _f64("trade_qty", trade_qty)
    if t.size != m.size:
        raise ValueError(f"t_s and mid differ in length ({t.size} vs {m.size})")
    if tt.size != tq.size:
        raise ValueError(f"trade_t_s and trade_qty differ in length ({tt.size} vs {tq.size})")
    _check_times("t_s", t)
    starts = sessions.session_minutes(market)
    ok = np.isfinite(m) & (m > 0)
    t, m = t[ok], m[ok]
    if m.size:
        last = np.searchsorted(t, starts + sessions.MINUTE_S, side="right") - 1
        minute_mid = m[np.maximum(last, 0)]
    else:
        minute_mid = np.full(starts.size, np.nan)
    idx = sessions.minute_index(market, tt)
    inside = idx >= 0
    volume = np.bincount(idx[inside], weights=tq[inside], minlength=starts.size).astype(np.float64)
    return minute_mid, volume


def valid_returns(market: Market) -> np.ndarray:
    """Which of the (minutes - 1) returns between consecutive session minutes are 1-minute returns.

    False for a return spanning a break between windows (HKEX: 12:00 to 13:01 across lunch).
    """
    return np.diff(sessions.session_minutes(market)) == sessions.MINUTE_S


def stylised_facts(
    minute_mid: np.ndarray, minute_volume: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, float]:
    """Excess kurtosis, lag-1 autocorrelation of returns and of |returns|, corr(volume, |return|).

    Return i is log(mid[i + 1] / mid[i]), paired with the volume of minute i + 1. `valid` (one
    flag per return, see `valid_returns`) drops returns across breaks; non-finite returns are
    dropped too. A lag-1 pair counts only when both returns are valid, so no pair straddles a
    break. Moments are population moments (kurtosis = m4 / m2^2 - 3; acf1 = mean of lag-1
    products of deviations / variance). Fewer than MIN_RETURNS valid returns, or a statistic
    with zero variance (constant price or volume), gives NaN.
    """
    r, ok = _returns(minute_mid, valid)
    v = _f64("minute_volume", minute_volume)
    if v.size != r.size + 1:
        raise ValueError(f"minute_volume has {v.size} minutes, minute_mid {r.size + 1}")
    ok &= np.isfinite(v[1:])
    out = dict.fromkeys(STYLISED_FACTS, NAN)
    if ok.sum() < MIN_RETURNS:
        return out
    x = r[ok]
    d = x - x.mean()
    m2 = float(np.mean(d * d))
    if m2 > 0:
        out["kurtosis_excess"] = float(np.mean(d**4)) / (m2 * m2) - 3.0
        out["acf1_returns"] = _acf1(r, ok)
    out["acf1_abs_returns"] = _acf1(np.abs(r), ok)
    out["corr_volume_abs_return"] = _pearson(v[1:][ok], np.abs(x))
    return out


def _returns(minute_mid: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Log returns between consecutive minutes and which of them count."""
    m = _f64("minute_mid", minute_mid)
    if m.size == 0:
        raise ValueError("minute_mid is empty")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(m[1:] / m[:-1])
    ok = np.isfinite(r)
    if valid is not None:
        mask = np.asarray(valid, dtype=np.bool_)
        if mask.shape != r.shape:
            raise ValueError(f"valid has {mask.size} flags, expected one per return ({r.size})")
        ok &= mask
    return np.where(ok, r, 0.0), ok


def _acf1(x: np.ndarray, ok: np.ndarray) -> float:
    """Lag-1 autocorrelation over the valid entries, pairs only where both neighbours are valid."""
    xs = x[ok]
    d = x - xs.mean()
    var = float(np.mean(d[ok] ** 2))
    pair = ok[:-1] & ok[1:]
    if var <= 0 or not pair.any():
        return NAN
    return float(np.mean((d[:-1] * d[1:])[pair])) / var


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db)))
    return float(np.sum(da * db)) / den if den > 0 else NAN


def minute_vol_bps(minute_mid: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Standard deviation (ddof 1) of the valid 1-minute log returns, in basis points."""
    r, ok = _returns(minute_mid, valid)
    return float(np.std(r[ok], ddof=1)) * 1e4 if ok.sum() >= 2 else NAN


def valid_quotes(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray) -> np.ndarray:
    """Quotes with both sides present (positive sizes, real prices) and ask above bid.

    Empty LOBSTER levels (EMPTY_BID / EMPTY_ASK, size 0) and locked or crossed books are invalid.
    """
    return (bid_sz > 0) & (ask_sz > 0) & (bid_px > 0) & (ask_px < EMPTY_ASK) & (ask_px > bid_px)


def day_stats(
    market: Market,
    tick: int,
    quote_t_s: np.ndarray,
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    trade_t_s: np.ndarray,
    trade_qty: np.ndarray,
    n_limit: int,
    n_cancel: int,
) -> DayStats:
    """The statistics of one session from its event-level top of book, trades and order counts.

    Each quote holds from its time until the next quote (the last until the close); spread and
    depth are weighted by how much of that interval lies in the session, skipping intervals where
    the book is one-sided, empty or crossed. Rates are per session second (`n_limit`, `n_cancel`
    are the caller's in-session counts); trades outside the session are ignored. With no valid
    quote in the session, spread and depth are NaN; with no trade, the trade sizes are NaN.
    """
    if not isinstance(tick, int | np.integer) or tick <= 0:
        raise ValueError(f"tick must be a positive integer ($0.0001 units), got {tick!r}")
    if n_limit < 0 or n_cancel < 0:
        raise ValueError(f"n_limit and n_cancel must be non-negative, got {n_limit}, {n_cancel}")
    t = _f64("quote_t_s", quote_t_s)
    cols = [np.asarray(c) for c in (bid_px, bid_sz, ask_px, ask_sz)]
    if any(c.shape != t.shape for c in cols):
        raise ValueError(f"quote arrays differ in length from quote_t_s ({t.size})")
    _check_times("quote_t_s", t)
    bp, bs, ap, az = (c.astype(np.float64) for c in cols)
    tt, tq = _f64("trade_t_s", trade_t_s), _f64("trade_qty", trade_qty)
    if tt.size != tq.size:
        raise ValueError(f"trade_t_s and trade_qty differ in length ({tt.size} vs {tq.size})")
    if tq.size and np.any(tq <= 0):
        raise ValueError("trade_qty: trade sizes must be positive")

    seconds = sessions.session_seconds(market)
    ok = valid_quotes(*cols)
    clock = sessions.session_clock(market, np.append(t, sessions.close_s(market)))
    w = np.where(ok, np.diff(clock), 0.0)
    wsum = float(w.sum())
    spread = float(np.sum(w * (ap - bp))) / wsum / tick if wsum > 0 else NAN
    depth = float(np.sum(w * (bs + az))) / wsum / 2 if wsum > 0 else NAN

    traded = sessions.in_session(market, tt)
    qty = tq[traded]
    mid = np.where(ok, (ap + bp) / 2, np.nan)
    minute_mid, minute_volume = minute_series(market, t, mid, tt, tq)
    valid = valid_returns(market)
    facts = stylised_facts(minute_mid, minute_volume, valid)
    return DayStats(
        spread_ticks_mean=spread,
        depth_touch_mean=depth,
        limit_rate_per_s=n_limit / seconds,
        cancel_rate_per_s=n_cancel / seconds,
        trade_rate_per_s=qty.size / seconds,
        trade_size_mean=float(qty.mean()) if qty.size else NAN,
        trade_size_p50=float(np.quantile(qty, 0.5)) if qty.size else NAN,
        trade_size_p90=float(np.quantile(qty, 0.9)) if qty.size else NAN,
        minute_vol_bps=minute_vol_bps(minute_mid, valid),
        daily_volume=round(float(qty.sum())),
        **facts,
    )


def day_stats_from_lobster(day: LobsterDay, market: Market, tick: int = 100) -> DayStats:
    """`day_stats` of a LOBSTER day: level 1 are the quotes, executions (4, 5) the trades, adds (1)
    the limit orders, partial cancels and deletes (2, 3) the cancels; halt rows (7) are skipped and
    only in-session messages are counted."""
    if len(day) == 0:
        raise ValueError(f"{day.source}: the day has no messages")
    ap, az, bp, bs = day.level(1)
    keep = day.type != HALT
    inside = sessions.in_session(market, day.time)
    trade = np.isin(day.type, (EXECUTE, EXECUTE_HIDDEN))
    return day_stats(
        market,
        tick,
        day.time[keep],
        bp[keep],
        bs[keep],
        ap[keep],
        az[keep],
        day.time[trade],
        day.size[trade],
        n_limit=int(np.count_nonzero(inside & (day.type == ADD))),
        n_cancel=int(np.count_nonzero(inside & np.isin(day.type, (CANCEL, DELETE)))),
    )


def compare_stats(real: DayStats, sim: DayStats) -> list[tuple[str, float, float, float]]:
    """Every statistic as (name, real, sim, sim / real); the ratio is NaN when real is 0 or NaN."""
    rows = []
    for name in msgspec.structs.fields(DayStats):
        a, b = float(getattr(real, name.name)), float(getattr(sim, name.name))
        ratio = b / a if a != 0 and math.isfinite(a) and math.isfinite(b) else NAN
        rows.append((name.name, a, b, ratio))
    return rows


def render_comparison(rows: list[tuple[str, float, float, float]]) -> str:
    """An aligned text table of `compare_stats` rows: how close the simulated day is to the real one."""
    header = ("statistic", "real", "sim", "sim/real")
    body = [(name, f"{a:.6g}", f"{b:.6g}", f"{r:.3f}") for name, a, b, r in rows]
    width = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
    lines = []
    for row in [header, *body]:
        lines.append(
            "  ".join([row[0].ljust(width[0]), *(c.rjust(w) for c, w in zip(row[1:], width[1:], strict=True))])
        )
    lines.insert(1, "  ".join("-" * w for w in width))
    return "\n".join(lines)
