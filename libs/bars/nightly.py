"""The nightly bar update: for each symbol find what is missing, fetch it, validate, store, resample.

Pure of NATS: `NightlyUpdate.run()` works through the symbols (at most `max_concurrent_symbols`
at once) and calls `on_progress(status)` at every step, so a service can publish and persist the
status. One symbol's failure (a provider error, a bad response) is recorded in its result and
the others go on; the update ends `completed` (none failed), `completed_with_errors` (some
completed, some failed) or `failed` (some failed and none completed — the others skipped or
without data — or the workflow itself broke). A symbol ends `completed`, `failed`, `no_data`
(every provider that covers its asset class answered, none had bars: not a failure) or
`skipped` (another update was already working on it, see `SymbolClaims`).

One symbol is worked on by one update at a time: an update starting a symbol that another
running update holds skips it with the message `running in <request_id>` instead of waiting,
so two overlapping updates never call a provider twice for the same bars (Polygon's free plan
allows 5 requests a minute); the holder's run fills the data.

The asset class of each symbol is the request's `asset_class` (one class for every symbol, or
{symbol: class}), else the setting MT_BARS_ASSET_OVERRIDES, else the rule of `libs.bars.assets`.

Per symbol: the range is [start_date, end_date] when given, else [the day of the last stored
bar (or today − history_days), yesterday]; `missing_days` (the calendar's trading days without
a complete set of stored minutes) says what to fetch. Missing days close together (≤ 5 days
apart) are fetched in one provider call, asked for by the sessions' exact UTC bounds (first
open to last close; each provider turns them into its own date convention); only bars inside
the missing days' sessions are kept (no pre/post-market equity bars). With `force_validation`
each fetched day is checked against its session (`validate_day`: bars on whole minutes inside
the session) and the completeness recorded; with `enable_resampling` the fetched range is
resampled to every timeframe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa

from libs.bars import completeness
from libs.bars import store as bars_store
from libs.bars.assets import asset_class, check_override, parse_overrides, resolve_assets
from libs.bars.calendars import Session, sessions
from libs.bars.limits import MAX_DAYS, MAX_SYMBOLS, check_size
from libs.bars.providers.base import ProviderError
from libs.bars.timeutil import parse_date, to_ns
from libs.config import Settings
from libs.store import Store
from libs.store.tables import NIGHTLY_UPDATES

__all__ = ["MAX_DAYS", "MAX_SYMBOLS", "NightlyPlan", "NightlyRequest", "NightlyStatus", "NightlyUpdate", "SymbolClaims"]

UpdateState = Literal["started", "in_progress", "completed", "completed_with_errors", "failed"]
SymbolState = Literal["pending", "in_progress", "completed", "failed", "no_data", "skipped"]
FINISHED: tuple[str, ...] = ("completed", "failed", "no_data", "skipped")
"""Symbol states that count as done."""
GROUP_GAP_DAYS = 5

STEP_CHECK = "Checking existing data"
STEP_FETCH = "Downloading 1-minute data"
STEP_VALIDATE = "Validating against the trading calendar"
STEP_STORE = "Storing 1-minute bars"
STEP_RESAMPLE = "Resampling to all timeframes"
STEP_DONE = "Done"
STEP_NO_DATA = "No data"


class RequestError(ValueError):
    """A nightly-update request that cannot be run as asked; names the field and the value."""


class NightlyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /nightly-update/start` (every field optional)."""

    symbols: list[str] | None = None
    start_date: str | None = None
    end_date: str | None = None
    force_validation: bool = True
    enable_resampling: bool = True
    max_concurrent_symbols: int | None = None
    asset_class: str | dict[str, str] | None = None
    """One asset class for every symbol, or {symbol: class}; overrides MT_BARS_ASSET_OVERRIDES and the rule."""


class NightlyPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A checked request with the settings' defaults filled in."""

    symbols: list[str]
    start_date: dt.date | None
    end_date: dt.date | None
    force_validation: bool
    enable_resampling: bool
    max_concurrent_symbols: int
    history_days: int
    asset_classes: dict[str, str] = msgspec.field(default_factory=dict)
    """Each symbol's asset class, resolved when the request was checked."""
    asset_override: str | dict[str, str] | None = None
    """The request's `asset_class` as given (echoed in the status)."""


class SymbolResult(msgspec.Struct, kw_only=True):
    """What the update did for one symbol."""

    symbol: str
    status: SymbolState = "pending"
    asset_class: str = ""
    current_step: str = ""
    steps: list[str] = msgspec.field(default_factory=list)
    start_date: str | None = None
    end_date: str | None = None
    days_missing: int = 0
    days_fetched: int = 0
    bars_fetched: int = 0
    bars_stored: int = 0
    provider: str = ""
    days_valid: int = 0
    days_invalid: int = 0
    completeness_percentage: float | None = None
    """Stored minutes over expected minutes across the fetched days (with force_validation)."""
    resampled: dict[str, int] = msgspec.field(default_factory=dict)
    error: str = ""
    message: str = ""
    """Why a symbol ended `no_data` or `skipped` (`running in <request_id>`)."""
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None


class Progress(msgspec.Struct, kw_only=True):
    """The reference `progress` object."""

    total_symbols: int
    completed_symbols: int
    current_symbol: str | None
    current_step: str | None
    progress_percentage: float
    estimated_time_remaining_seconds: float | None
    symbols_in_progress: list[str]
    failed_symbols: int = 0
    skipped_symbols: int = 0
    no_data_symbols: int = 0


class NightlyStatus(msgspec.Struct, kw_only=True):
    """Status of one update: what `GET /nightly-update/status/{id}` returns and NATS carries."""

    request_id: str
    status: UpdateState
    started_at: str
    finished_at: str | None
    symbols_count: int
    is_complete: bool
    progress: Progress
    message: str = ""
    request: dict[str, Any] = msgspec.field(default_factory=dict)
    symbol_results: dict[str, SymbolResult] = msgspec.field(default_factory=dict)


def iso(when: dt.datetime) -> str:
    """UTC ISO time with a Z, to the second."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_request(body: dict[str, Any], settings: Settings, *, today: dt.date | None = None) -> NightlyPlan:
    """Check a start request and fill in defaults from settings; RequestError names the bad field.

    Dates after `today` (default: today in UTC) are refused, not clamped: a `start_date` or
    `end_date` in the future is a RequestError naming the field and the value (today itself is
    allowed; its minutes count only up to now, see `libs.bars.completeness`).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        req = msgspec.convert(body, NightlyRequest)
    except msgspec.ValidationError as e:
        raise RequestError(f"bad nightly update request: {e}") from None
    if req.symbols is None:
        symbols = [s.strip() for s in settings.bars_default_symbols.split(",") if s.strip()]
    else:
        symbols = req.symbols
        if not symbols:
            raise RequestError("symbols must not be an empty list (leave it out for the default symbols)")
    clean: list[str] = []
    for s in symbols:
        if not isinstance(s, str) or not s.strip() or any(c in s.strip() for c in " *>\t\n"):
            raise RequestError(f"symbols: {s!r} is not a valid symbol")
        if s.strip() not in clean:
            clean.append(s.strip())
    try:
        start = parse_date(req.start_date, "start_date") if req.start_date is not None else None
        end = parse_date(req.end_date, "end_date") if req.end_date is not None else None
        if start is not None and end is not None and start > end:
            raise RequestError(f"start_date {req.start_date} is after end_date {req.end_date}")
        for name, day in (("start_date", start), ("end_date", end)):
            if day is not None and day > today:
                raise RequestError(f"{name} {day.isoformat()} is in the future (today is {today.isoformat()} UTC)")
        check_size(len(clean), start, end)
        override = check_override(req.asset_class, clean)
        assets = resolve_assets(clean, override, parse_overrides(settings.bars_asset_overrides))
    except RequestError:
        raise
    except ValueError as e:
        raise RequestError(str(e)) from None
    limit = req.max_concurrent_symbols
    if limit is None:
        limit = settings.bars_max_concurrent_symbols
    elif limit < 1 or limit > 100:
        raise RequestError(f"max_concurrent_symbols must be 1..100, got {limit}")
    return NightlyPlan(
        symbols=clean,
        start_date=start,
        end_date=end,
        force_validation=req.force_validation,
        enable_resampling=req.enable_resampling,
        max_concurrent_symbols=limit,
        history_days=settings.bars_history_days,
        asset_classes=dict(assets),
        asset_override=req.asset_class,
    )


class SymbolClaims:
    """Which update is working on which symbol (one event loop, so a dict is the lock).

    `claim` gives a symbol to an update or names the update that holds it; `release` gives it
    back. Symbols are compared case-insensitively (providers upper-case tickers).
    """

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    def claim(self, symbol: str, request_id: str) -> str | None:
        """None when `request_id` now holds `symbol`, else the request id that already holds it."""
        key = symbol.strip().upper()
        holder = self._holders.setdefault(key, request_id)
        return None if holder == request_id else holder

    def release(self, symbol: str, request_id: str) -> None:
        """Give `symbol` back if `request_id` holds it."""
        key = symbol.strip().upper()
        if self._holders.get(key) == request_id:
            del self._holders[key]

    def held(self) -> dict[str, str]:
        """Symbol (upper case) -> the request id holding it."""
        return dict(self._holders)


def group_days(days: list[dt.date], gap: int = GROUP_GAP_DAYS) -> list[tuple[dt.date, dt.date]]:
    """Sorted days joined into (first, last) runs where neighbours are at most `gap` days apart."""
    runs: list[tuple[dt.date, dt.date]] = []
    for d in sorted(set(days)):
        if runs and (d - runs[-1][1]).days <= gap:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


class NightlyUpdate:
    """One run of the workflow over a plan; `status()` is its state at any moment."""

    def __init__(
        self,
        request_id: str,
        plan: NightlyPlan,
        store: Store,
        fetcher: Any,
        *,
        on_progress: Callable[[NightlyStatus], Awaitable[None]] | None = None,
        today: dt.date | None = None,
        log: Any = None,
        claims: SymbolClaims | None = None,
    ) -> None:
        self.request_id = request_id
        self.plan = plan
        self.store = store
        self.fetcher = fetcher
        self.on_progress = on_progress
        self.today = today or dt.datetime.now(dt.UTC).date()
        self.log = log
        self.started = dt.datetime.now(dt.UTC)
        self.finished: dt.datetime | None = None
        self.state: UpdateState = "started"
        self.message = f"Nightly update started for {len(plan.symbols)} symbols"
        self.results = {s: SymbolResult(symbol=s) for s in plan.symbols}
        self.in_progress: list[str] = []
        self.current: str | None = None
        self.durations: list[float] = []
        self.claims = claims if claims is not None else SymbolClaims()

    # -- status -------------------------------------------------------------------------------

    def progress(self) -> Progress:
        total = len(self.results)
        done = sum(1 for r in self.results.values() if r.status in FINISHED)
        failed = sum(1 for r in self.results.values() if r.status == "failed")
        eta: float | None = None
        if self.durations and done < total:
            per = sum(self.durations) / len(self.durations)
            lanes = max(1, min(self.plan.max_concurrent_symbols, total - done))
            eta = round(per * (total - done) / lanes, 1)
        elif done == total:
            eta = 0.0
        cur = self.results.get(self.current) if self.current else None
        return Progress(
            total_symbols=total,
            completed_symbols=done,
            current_symbol=self.current,
            current_step=cur.current_step if cur else None,
            progress_percentage=round(100.0 * done / total, 1) if total else 100.0,
            estimated_time_remaining_seconds=eta,
            symbols_in_progress=list(self.in_progress),
            failed_symbols=failed,
            skipped_symbols=sum(1 for r in self.results.values() if r.status == "skipped"),
            no_data_symbols=sum(1 for r in self.results.values() if r.status == "no_data"),
        )

    def status(self) -> NightlyStatus:
        p = self.plan
        return NightlyStatus(
            request_id=self.request_id,
            status=self.state,
            started_at=iso(self.started),
            finished_at=iso(self.finished) if self.finished else None,
            symbols_count=len(p.symbols),
            is_complete=self.finished is not None,
            progress=self.progress(),
            message=self.message,
            request={
                "symbols": p.symbols,
                "start_date": p.start_date.isoformat() if p.start_date else None,
                "end_date": p.end_date.isoformat() if p.end_date else None,
                "force_validation": p.force_validation,
                "enable_resampling": p.enable_resampling,
                "max_concurrent_symbols": p.max_concurrent_symbols,
                "asset_class": p.asset_override,
            },
            symbol_results={k: msgspec.structs.replace(v, steps=list(v.steps)) for k, v in self.results.items()},
        )

    async def _emit(self) -> None:
        if self.on_progress is None:
            return
        try:
            await self.on_progress(self.status())
        except Exception as e:  # a progress sink must never stop the update
            if self.log is not None:
                self.log.warning("nightly progress not delivered", request_id=self.request_id, error=str(e))

    async def _step(self, result: SymbolResult, step: str) -> None:
        result.current_step = step
        result.steps.append(step)
        self.current = result.symbol
        await self._emit()

    # -- the workflow -------------------------------------------------------------------------

    async def run(self) -> NightlyStatus:
        """Run every symbol (bounded concurrency) and return the final status."""
        self.state = "in_progress"
        await self._emit()
        gate = asyncio.Semaphore(self.plan.max_concurrent_symbols)

        async def one(symbol: str) -> None:
            async with gate:
                await self._symbol(self.results[symbol])

        try:
            await asyncio.gather(*(one(s) for s in self.plan.symbols))
        except Exception as e:  # a bug, not a symbol's failure (those are caught per symbol)
            self.state = "failed"
            self.message = f"nightly update failed: {type(e).__name__}: {e}"
        else:
            failed = [s for s, r in self.results.items() if r.status == "failed"]
            done = sum(1 for r in self.results.values() if r.status == "completed")
            if not failed:
                self.state, self.message = "completed", f"Nightly update completed for {len(self.results)} symbols"
            elif len(failed) == len(self.results):
                self.state, self.message = "failed", f"every symbol failed ({len(failed)})"
            elif done == 0:  # failures and nothing completed (the rest skipped or without data): not a partial success
                self.state = "failed"
                self.message = f"no symbol completed; {len(failed)} of {len(self.results)} failed: {', '.join(failed)}"
            else:
                self.state = "completed_with_errors"
                self.message = f"{len(failed)} of {len(self.results)} symbols failed: {', '.join(failed)}"
            notes = [f"{s} {r.message}" for s, r in self.results.items() if r.status in ("skipped", "no_data")]
            if notes:
                self.message += "; " + "; ".join(notes)
        self.finished = dt.datetime.now(dt.UTC)
        self.current = None
        await self._emit()
        return self.status()

    async def _symbol(self, r: SymbolResult) -> None:
        holder = self.claims.claim(r.symbol, self.request_id)
        if holder is not None:
            r.status, r.message = "skipped", f"running in {holder}"
            r.current_step = f"Skipped: running in {holder}"
            r.started_at = r.finished_at = iso(dt.datetime.now(dt.UTC))
            if self.log is not None:
                self.log.info("nightly symbol skipped", request_id=self.request_id, symbol=r.symbol, holder=holder)
            await self._emit()
            return
        t0 = time.monotonic()
        r.status = "in_progress"
        r.started_at = iso(dt.datetime.now(dt.UTC))
        self.in_progress.append(r.symbol)
        try:
            await self._work(r)
            if r.status == "in_progress":
                r.status = "completed"
        except asyncio.CancelledError:
            r.status, r.error = "failed", "cancelled"
            raise
        except Exception as e:
            known = isinstance(e, (ValueError, ProviderError))
            r.status, r.error = "failed", str(e) if known else f"{type(e).__name__}: {e}"
            if self.log is not None:
                self.log.warning("nightly symbol failed", request_id=self.request_id, symbol=r.symbol, error=r.error)
        finally:
            self.claims.release(r.symbol, self.request_id)
            r.duration_s = round(time.monotonic() - t0, 3)
            r.finished_at = iso(dt.datetime.now(dt.UTC))
            self.durations.append(r.duration_s)
            self.in_progress.remove(r.symbol)
            if r.status == "completed":
                r.current_step = STEP_DONE
            elif r.status == "no_data":
                r.current_step = STEP_NO_DATA
            else:
                r.current_step = f"Failed: {r.error[:200]}"
            await self._emit()

    async def _work(self, r: SymbolResult) -> None:
        symbol = r.symbol
        asset = self.plan.asset_classes.get(symbol) or asset_class(symbol)
        r.asset_class = asset
        await self._step(r, STEP_CHECK)
        start, end = await self._range(symbol)
        r.start_date, r.end_date = start.isoformat(), end.isoformat()
        if start > end:
            return
        missing = await asyncio.to_thread(completeness.missing_days, self.store, symbol, asset, start, end)
        r.days_missing = len(missing)
        if not missing:
            return
        by_day = {s.date: s for s in sessions(asset, min(missing), max(missing))}
        await self._step(r, STEP_FETCH)
        frames: list[pl.DataFrame] = []
        providers: list[str] = []
        for first, last in group_days(missing):
            days = [by_day[d] for d in missing if first <= d <= last and d in by_day]
            if not days:
                continue
            frame, provider = await self.fetcher.fetch_minutes(
                symbol, days[0].open_utc, days[-1].close_utc, asset=asset
            )
            if provider and provider not in providers:
                providers.append(provider)
            frames.append(_in_sessions(frame, days))
        frame = pl.concat(frames) if frames else pl.DataFrame()
        r.provider = ",".join(providers)
        r.bars_fetched = frame.height
        if frame.height == 0:
            r.status = "no_data"
            r.message = f"no provider had bars for the {len(missing)} missing day(s) {missing[0]}..{missing[-1]}"
            return
        frame = frame.sort("ts")
        ts = frame["ts"].dt.epoch("ns").to_numpy()
        fetched_days = [d for d in missing if d in by_day and _count(ts, by_day[d]) > 0]
        r.days_fetched = len(fetched_days)
        if self.plan.force_validation:
            await self._step(r, STEP_VALIDATE)
            expected = actual = 0
            now_ns = to_ns(dt.datetime.now(dt.UTC))  # today's minutes count up to now
            for d in missing:
                if d not in by_day:
                    continue
                sess = by_day[d]
                lo, hi = np.searchsorted(ts, [to_ns(sess.open_utc), to_ns(sess.close_utc)])
                check = completeness.validate_day(ts[lo:hi], sess, now_ns)
                r.days_valid += check.is_valid
                r.days_invalid += not check.is_valid
                expected += check.expected_candles
                actual += check.actual_candles
            r.completeness_percentage = round(100.0 * actual / expected, 2) if expected else None
        await self._step(r, STEP_STORE)
        source = r.provider or "provider"
        r.bars_stored = await asyncio.to_thread(
            bars_store.write_bars, self.store, symbol, frame, "1min", source=source, venue=source
        )
        if self.plan.enable_resampling:
            await self._step(r, STEP_RESAMPLE)
            r.resampled = await asyncio.to_thread(
                bars_store.resample_stored, self.store, symbol, asset, min(fetched_days), max(fetched_days)
            )

    async def _range(self, symbol: str) -> tuple[dt.date, dt.date]:
        """The days to look at: the request's, else from the last stored bar (or history_days back) to yesterday."""
        end = self.plan.end_date or (self.today - dt.timedelta(days=1))
        start = self.plan.start_date
        if start is None:
            last = await asyncio.to_thread(bars_store.last_bar_ts, self.store, symbol, "1min")
            start = last.date() if last is not None else self.today - dt.timedelta(days=self.plan.history_days)
        return start, end


def _count(ts: np.ndarray, sess: Session) -> int:
    return int(((ts >= to_ns(sess.open_utc)) & (ts < to_ns(sess.close_utc))).sum())


def _in_sessions(frame: pl.DataFrame, days: list[Session]) -> pl.DataFrame:
    """Rows of `frame` whose bar opens inside one of the sessions `days`."""
    if frame.height == 0:
        return frame
    ts = frame["ts"].dt.epoch("ns").to_numpy()
    keep = np.zeros(len(ts), dtype=bool)
    for s in days:
        keep |= (ts >= to_ns(s.open_utc)) & (ts < to_ns(s.close_utc))
    return frame.filter(pl.Series(keep))


def status_table(status: NightlyStatus, version: int) -> pa.Table:
    """One `nightly_updates` row for a status (the whole status as JSON in `body`)."""

    def ts(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    return pa.table(
        {
            "request_id": [status.request_id],
            "version": [version],
            "status": [status.status],
            "started_at": [ts(status.started_at)],
            "finished_at": [ts(status.finished_at)],
            "symbols_count": [status.symbols_count],
            "is_complete": [status.is_complete],
            "body": [msgspec.json.encode(status).decode()],
        },
        schema=NIGHTLY_UPDATES,
    )


def load_status(store: Store, request_id: str) -> NightlyStatus | None:
    """The newest saved status of an update, or None."""
    rows = store.query_arrow(
        "SELECT body FROM {db}.nightly_updates FINAL WHERE request_id = {id:String}", {"id": request_id}
    )["body"].to_pylist()
    return msgspec.json.decode(rows[0], type=NightlyStatus) if rows else None


def load_recent(store: Store, limit: int = 50) -> list[NightlyStatus]:
    """The newest saved statuses, latest started first."""
    rows = store.query_arrow(
        "SELECT body FROM {db}.nightly_updates FINAL ORDER BY started_at DESC LIMIT {n:UInt32}", {"n": limit}
    )["body"].to_pylist()
    return [msgspec.json.decode(b, type=NightlyStatus) for b in rows]
