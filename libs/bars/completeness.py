"""Completeness of stored 1-minute bars against the trading calendar: per day, per symbol, and a report.

A day is its session (`libs.bars.calendars`): every minute from open to close is one expected
bar. Stored bars in the session on a minute boundary are actual; the runs of expected minutes
with no bar are gaps. Bars of the day that are outside the session are `unexpected_candles`
(pre/post-market for equities). The day a bar belongs to: us_equity, its New York calendar
date (a bar on a weekend or holiday counts on the next session); crypto, its UTC date; forex,
its trade date (weekend bars count on Monday). A day is valid when no minute is missing.

Minutes that have not happened yet are not expected: a session is clipped at `now` (the bars
whose minute has closed by then), so today is measured up to now and a later session expects
nothing. A symbol with no 1-minute bars stored at all is listed in `symbols_without_1min_bars`
(added to the reference's fields) and named in a recommendation, with the ones stored only at
other timeframes (e.g. imported daily bars).

Field names mirror the reference API's JSON (`POST /data-analysis/completeness`).
"""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np
import pandas as pd

from libs.bars.assets import AssetClass, AssetOverride, check_asset, check_override, resolve_assets
from libs.bars.calendars import XNYS_FIRST, Session, SessionArrays, check_range, session_arrays, sessions
from libs.bars.limits import check_size
from libs.bars.store import check_symbol
from libs.bars.timeutil import DAY_NS, MINUTE_NS, NY, from_ns, to_ns
from libs.store import Store
from libs.store.sql import quote_string

THRESHOLD_PCT = 95.0
"""Symbols under this completeness are listed in `symbols_needing_attention`."""


class Gap(msgspec.Struct):
    """A run of missing 1-minute bars: [start, end) — `start` is the first missing bar's open, `end`
    the open of the next bar that should follow the run (a present bar or the session close)."""

    start: dt.datetime
    end: dt.datetime
    minutes: int


class DayValidation(msgspec.Struct):
    """One session of one symbol: expected vs actual 1-minute bars, the gaps, bars outside the session."""

    date: dt.date
    expected_candles: int
    actual_candles: int
    missing_candles: int
    is_valid: bool
    early_close: bool
    gaps: list[Gap]
    unexpected_candles: int


class SymbolCompleteness(msgspec.Struct):
    """A symbol's completeness over the analysed sessions (`validation_results` empty without details)."""

    total_trading_days: int
    valid_days: int
    invalid_days: int
    completeness_percentage: float
    total_expected_candles: int
    total_actual_candles: int
    missing_candles: int
    validation_results: list[DayValidation]
    asset_class: str = ""
    unexpected_candles: int = 0


class CompletenessReport(msgspec.Struct):
    """The answer of `POST /data-analysis/completeness`: per symbol, overall, and what needs attention."""

    analysis_period: dict[str, str]
    symbol_completeness: dict[str, SymbolCompleteness]
    overall_statistics: dict
    symbols_needing_attention: list[str]
    recommendations: list[str]
    symbols_without_1min_bars: list[str] = msgspec.field(default_factory=list)
    """Symbols with no 1-minute bar stored at all (at any date)."""


def validate_day(minutes_utc_ns: np.ndarray, session: Session, now_ns: int | None = None) -> DayValidation:
    """Check one day's bar open times (UTC ns) against `session`: counts, gaps, unexpected bars.

    With `now_ns`, only the minutes that have closed by then are expected (the session is clipped
    at now); a bar of the session opening after that is neither counted nor unexpected.
    """
    m = np.unique(np.asarray(minutes_utc_ns, dtype=np.int64))
    o, c = to_ns(session.open_utc), to_ns(session.close_utc)
    expected = (c - o) // MINUTE_NS
    if now_ns is not None:
        expected = max(0, min(expected, (int(now_ns) - o) // MINUTE_NS))
    in_session = (m >= o) & (m < c) & ((m - o) % MINUTE_NS == 0)
    inside = in_session & (m < o + expected * MINUTE_NS)
    present = np.zeros(expected, dtype=bool)
    present[(m[inside] - o) // MINUTE_NS] = True
    actual = int(present.sum())
    edges = np.diff(np.concatenate(([0], (~present).astype(np.int8), [0])))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    gaps = [
        Gap(start=from_ns(o + s * MINUTE_NS), end=from_ns(o + e * MINUTE_NS), minutes=int(e - s))
        for s, e in zip(run_starts.tolist(), run_ends.tolist(), strict=True)
    ]
    return DayValidation(
        date=session.date,
        expected_candles=int(expected),
        actual_candles=actual,
        missing_candles=int(expected - actual),
        is_valid=actual == expected,
        early_close=session.early_close,
        gaps=gaps,
        unexpected_candles=int(len(m) - in_session.sum()),
    )


def _window_ends(asset: AssetClass, arr: SessionArrays) -> np.ndarray:
    """Where each session's day ends (UTC ns): the next New York midnight for equities, else the close."""
    if asset != "us_equity":
        return arr.close_ns
    local = pd.DatetimeIndex((arr.dates + 1).astype("datetime64[ns]"))
    return local.tz_localize(NY).tz_convert("UTC").as_unit("ns").asi8.astype(np.int64)


def _stored_minutes(store: Store, symbol: str, lo: int, hi: int) -> np.ndarray:
    rows = store.query_arrow(
        "SELECT toUnixTimestamp64Nano(ts) AS t FROM {db}.ohlcv FINAL "
        f"WHERE symbol = {quote_string(symbol)} AND timeframe = '1min' "
        f"AND ts >= fromUnixTimestamp64Nano(toInt64({lo}), 'UTC') "
        f"AND ts < fromUnixTimestamp64Nano(toInt64({hi}), 'UTC') ORDER BY t"
    )
    return rows["t"].to_numpy().astype(np.int64) if rows.num_rows else np.empty(0, np.int64)


def validate_stored(
    store: Store, symbol: str, asset: AssetClass, start: dt.date, end: dt.date, *, now: dt.datetime | None = None
) -> list[DayValidation]:
    """One DayValidation per session dated [start, end] of `symbol`'s stored 1-minute bars, clipped
    at `now` (default: the current time; minutes after it are not expected)."""
    symbol = check_symbol(symbol)
    check_asset(asset)
    check_range(start, end)
    days = sessions(asset, start, end)
    if not days:
        return []
    lookback = start - dt.timedelta(days=10)
    if asset == "us_equity":
        lookback = max(lookback, XNYS_FIRST)
    ext = session_arrays(asset, lookback, end)  # the sessions before `start` give the first day's start
    ends = _window_ends(asset, ext)
    first = len(ext) - len(days)
    fallback = ends[0] - DAY_NS if asset == "us_equity" else ext.open_ns[0]
    starts = np.concatenate(([fallback], ends[:-1]))[first:]
    ends = ends[first:]
    minutes = _stored_minutes(store, symbol, int(starts[0]), int(ends[-1]))
    cuts = np.searchsorted(minutes, np.concatenate((starts[:1], ends)), side="left")
    now_ns = to_ns(now if now is not None else dt.datetime.now(dt.UTC), "now")
    return [validate_day(minutes[cuts[i] : cuts[i + 1]], s, now_ns) for i, s in enumerate(days)]


def summarise(days: list[DayValidation], *, include_details: bool = True, asset: str = "") -> SymbolCompleteness:
    """A symbol's totals over its day validations."""
    expected = sum(d.expected_candles for d in days)
    actual = sum(d.actual_candles for d in days)
    valid = sum(d.is_valid for d in days)
    return SymbolCompleteness(
        total_trading_days=len(days),
        valid_days=valid,
        invalid_days=len(days) - valid,
        completeness_percentage=_pct(actual, expected),
        total_expected_candles=expected,
        total_actual_candles=actual,
        missing_candles=expected - actual,
        validation_results=days if include_details else [],
        asset_class=asset,
        unexpected_candles=sum(d.unexpected_candles for d in days),
    )


def _pct(actual: int, expected: int) -> float:
    """Percent of expected bars present, 2 decimals (for output only); 100 when nothing was expected."""
    return round(100.0 * actual / expected, 2) if expected else 100.0


def below_threshold(actual: int, expected: int, threshold_pct: float) -> bool:
    """True when actual/expected is under `threshold_pct` percent, compared before any rounding
    (94.9995% is under 95 although it prints as 95.0)."""
    return bool(expected) and 100.0 * actual < threshold_pct * expected


def analyse(
    store: Store,
    symbols: list[str],
    start: dt.date,
    end: dt.date,
    *,
    include_details: bool = True,
    threshold_pct: float = THRESHOLD_PCT,
    asset_override: AssetOverride = None,
    configured_assets: dict[str, str] | None = None,
    now: dt.datetime | None = None,
) -> CompletenessReport:
    """The completeness report of `symbols` over the sessions dated [start, end] (stored 1min bars).

    `asset_override` (one class, or {symbol: class}) and `configured_assets` (the setting
    MT_BARS_ASSET_OVERRIDES, parsed) override the asset-class rule, in that order. The request
    size is limited (`libs.bars.limits`: symbols, days, symbol-days). Minutes after `now`
    (default: the current time) are not expected.
    """
    now = now if now is not None else dt.datetime.now(dt.UTC)
    check_range(start, end)
    if not symbols:
        raise ValueError("symbols must name at least one symbol")
    if not 0.0 <= float(threshold_pct) <= 100.0:
        raise ValueError(f"threshold_pct must be between 0 and 100, got {threshold_pct!r}")
    unique = list(dict.fromkeys(check_symbol(s) for s in symbols))
    check_size(len(unique), start, end, synchronous=True)
    assets = resolve_assets(unique, check_override(asset_override, unique), configured_assets)
    per: dict[str, SymbolCompleteness] = {}
    for symbol in unique:
        days = validate_stored(store, symbol, assets[symbol], start, end, now=now)
        per[symbol] = summarise(days, include_details=include_details, asset=assets[symbol])
    attention = [
        s for s, c in per.items() if below_threshold(c.total_actual_candles, c.total_expected_candles, threshold_pct)
    ]
    expected = sum(c.total_expected_candles for c in per.values())
    actual = sum(c.total_actual_candles for c in per.values())
    stored = {s: _stored_timeframes(store, s) for s, c in per.items() if c.total_actual_candles == 0}
    without = [s for s, tfs in stored.items() if "1min" not in tfs]
    overall = {
        "total_symbols": len(per),
        "total_trading_days": sum(c.total_trading_days for c in per.values()),
        "total_valid_days": sum(c.valid_days for c in per.values()),
        "overall_completeness_percentage": _pct(actual, expected),
        "total_expected_candles": expected,
        "total_actual_candles": actual,
        "total_missing_candles": expected - actual,
        "total_unexpected_candles": sum(c.unexpected_candles for c in per.values()),
    }
    return CompletenessReport(
        analysis_period={"start_date": start.isoformat(), "end_date": end.isoformat()},
        symbol_completeness=per,
        overall_statistics=overall,
        symbols_needing_attention=attention,
        recommendations=_recommendations(per, attention, threshold_pct, {s: stored[s] for s in without}),
        symbols_without_1min_bars=without,
    )


def _stored_timeframes(store: Store, symbol: str) -> list[str]:
    """The timeframes `symbol` has any bar stored at (no FINAL: existence only)."""
    rows = store.query_arrow(
        f"SELECT DISTINCT timeframe FROM {{db}}.ohlcv WHERE symbol = {quote_string(symbol)} ORDER BY timeframe"
    )
    return [str(t) for t in rows["timeframe"].to_pylist()] if rows.num_rows else []


def _recommendations(
    per: dict[str, SymbolCompleteness], attention: list[str], threshold: float, without: dict[str, list[str]]
) -> list[str]:
    """The reference's recommendation lines, plus which symbols have no 1-minute bars at all."""
    out: list[str] = []
    if attention:
        out.append(f"{len(attention)} symbols have less than {threshold:g}% data completeness")
        out.append("Consider running a full data update to improve completeness")
    elif per:
        out.append(f"All symbols have at least {threshold:g}% data completeness")
    partial = [s for s, c in per.items() if c.invalid_days and s not in attention]
    if partial:
        out.append(f"Fill the missing minutes of {', '.join(partial)} (incomplete days despite passing the threshold)")
    extra = [s for s, c in per.items() if c.unexpected_candles]
    if extra:
        out.append(f"{', '.join(extra)} have bars outside the trading session (extended hours are not validated)")
    if without:
        line = f"{', '.join(without)}: no 1-minute bars stored"
        other = {s: tfs for s, tfs in without.items() if tfs}
        if other and all(tfs == ["daily"] for tfs in other.values()):
            line += f" (daily only: {', '.join(other)})"
        elif other:
            shown = ", ".join(s + " " + "/".join(t) for s, t in other.items())
            line += f" (other timeframes only: {shown})"
        out.append(line)
    return out


def missing_days(store: Store, symbol: str, asset: AssetClass, start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions dated [start, end] whose stored 1-minute bars are not complete (what an update must fetch)."""
    return [d.date for d in validate_stored(store, symbol, asset, start, end) if not d.is_valid]
