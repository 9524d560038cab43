"""The nightly-update workflow (libs.bars.nightly): request checks, day grouping, and whole runs on a
real chDB with an in-process bar source (providers themselves are tested over HTTP elsewhere)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pytest

from libs import config
from libs.bars.nightly import (
    NightlyStatus,
    NightlyUpdate,
    RequestError,
    SymbolClaims,
    group_days,
    plan_request,
    status_table,
)
from libs.bars.providers import ProviderError
from libs.bars.store import count_bars, read_bars
from libs.store import Store, open_store
from tests.conftest import needs_data

NY = ZoneInfo("America/New_York")
_seq = itertools.count()
SETTINGS = config.load({}, bars_default_symbols="AAPL, MSFT", bars_max_concurrent_symbols=3, bars_history_days=10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"symbols": []}, "symbols must not be an empty list"),
        ({"symbols": ["AAPL", "BAD SYM"]}, "symbols: 'BAD SYM' is not a valid symbol"),
        ({"start_date": "2024-13-01"}, "start_date must be a date YYYY-MM-DD, got '2024-13-01'"),
        ({"start_date": "2024-03-11", "end_date": "2024-03-08"}, "start_date 2024-03-11 is after end_date 2024-03-08"),
        ({"max_concurrent_symbols": 0}, "max_concurrent_symbols must be 1..100, got 0"),
        ({"symbols": "AAPL"}, "Expected `array | null`, got `str` - at `$.symbols`"),
        ({"symbol": ["AAPL"]}, "unknown field `symbol`"),
        ({"force_validation": "yes"}, "at `$.force_validation`"),
    ],
)
def test_bad_requests_name_the_field_and_value(body: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError) as info:
        plan_request(body, SETTINGS)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"end_date": "2024-03-12"}, "end_date 2024-03-12 is in the future (today is 2024-03-11 UTC)"),
        ({"start_date": "2024-03-12"}, "start_date 2024-03-12 is in the future (today is 2024-03-11 UTC)"),
        ({"start_date": "2024-03-20", "end_date": "2024-03-21"}, "start_date 2024-03-20 is in the future"),
    ],
)
def test_future_dates_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError) as info:
        plan_request(body, SETTINGS, today=dt.date(2024, 3, 11))
    assert message in str(info.value)
    plan = plan_request({"start_date": "2024-03-11", "end_date": "2024-03-11"}, SETTINGS, today=dt.date(2024, 3, 11))
    assert plan.end_date == dt.date(2024, 3, 11)  # today itself is allowed


def test_a_future_end_date_is_refused_with_the_real_clock() -> None:
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    with pytest.raises(RequestError, match=f"end_date {later} is in the future"):
        plan_request({"end_date": later}, SETTINGS)


def test_defaults_come_from_settings() -> None:
    plan = plan_request({}, SETTINGS)
    assert plan.symbols == ["AAPL", "MSFT"]
    assert plan.max_concurrent_symbols == 3 and plan.history_days == 10
    assert plan.start_date is None and plan.end_date is None and plan.force_validation and plan.enable_resampling
    plan = plan_request(
        {"symbols": ["X", "X", " Y "], "start_date": "2024-01-02", "max_concurrent_symbols": 2}, SETTINGS
    )
    assert plan.symbols == ["X", "Y"] and plan.start_date == dt.date(2024, 1, 2) and plan.max_concurrent_symbols == 2


def test_group_days_joins_close_days() -> None:
    d = dt.date
    days = [d(2024, 3, 11), d(2024, 3, 8), d(2024, 3, 20), d(2024, 3, 12), d(2024, 3, 8)]
    assert group_days(days) == [(d(2024, 3, 8), d(2024, 3, 12)), (d(2024, 3, 20), d(2024, 3, 20))]


# -- whole runs on chDB ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nightly_home")


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    s = open_store(config.load({}, home=home, clickhouse_database=f"nightly_{next(_seq)}"))
    try:
        s.migrate()
        yield s
        s.command("DROP DATABASE IF EXISTS {db}")
    finally:
        s.close()


def equity_minutes(days: list[str], *, pre_market: int = 0) -> pl.DataFrame:
    """Every minute 09:30-16:00 New York of each day (and `pre_market` minutes before the open)."""
    ts = []
    for day in days:
        open_ = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(9, 30), NY)
        ts += [open_ + dt.timedelta(minutes=m) for m in range(-pre_market, 390)]
    n = len(ts)
    px = [100.0 + (i % 50) / 10 for i in range(n)]
    return pl.DataFrame(
        {
            "ts": pl.Series([t.astimezone(dt.UTC) for t in ts]).cast(pl.Datetime("ns", "UTC")),
            "open": px,
            "high": [p + 0.2 for p in px],
            "low": [p - 0.2 for p in px],
            "close": [p + 0.1 for p in px],
            "volume": [float(100 + i) for i in range(n)],
        }
    )


def btc_minutes(first: str, last: str) -> pl.DataFrame:
    csv = pd.read_csv(needs_data("bars", "BTC-PERP_1m_2022-01.csv"))
    csv["ts"] = pd.to_datetime(csv["timestamp"], utc=True)
    end = pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1)
    part = csv[(csv.ts >= pd.Timestamp(first, tz="UTC")) & (csv.ts < end)]
    return pl.from_pandas(part[["ts", "open", "high", "low", "close", "volume"]]).with_columns(
        pl.col("ts").cast(pl.Datetime("ns", "UTC"))
    )


class Source:
    """An in-process bar source with the ProviderChain interface; records calls and concurrency."""

    def __init__(self, frames: dict[str, pl.DataFrame], failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.frames = frames
        self.failing = failing
        self.calls: list[tuple[str, dt.date, dt.date, str | None]] = []
        self.active = 0
        self.most_active = 0

    async def fetch_minutes(
        self, symbol: str, start: dt.date, end: dt.date, *, asset: str | None = None
    ) -> tuple[pl.DataFrame, str]:
        self.calls.append((symbol, start, end, asset))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            for _ in range(100):  # hold the fetch a while so a concurrent one can overlap (up to 1 s)
                if self.active >= 2:
                    break
                await asyncio.sleep(0.01)
            if symbol in self.failing:
                raise ProviderError("polygon", symbol, "GET /v2/aggs/...: HTTP 403 (the plan does not cover this)")
            return self.frames[symbol], "recorded"
        finally:
            self.active -= 1


async def test_a_run_fetches_validates_stores_and_resamples_and_isolates_a_failure(store: Store) -> None:
    source = Source(
        {
            "AAPL": equity_minutes(["2024-03-08", "2024-03-11"], pre_market=30),
            "MSFT": equity_minutes(["2024-03-08", "2024-03-11"]).head(390 + 195),  # half of the 11th missing
        },
        failing={"TSLA"},
    )
    seen: list[NightlyStatus] = []

    async def on_progress(status: NightlyStatus) -> None:
        seen.append(status)

    plan = plan_request(
        {"symbols": ["AAPL", "MSFT", "TSLA"], "start_date": "2024-03-08", "end_date": "2024-03-11",
         "max_concurrent_symbols": 2},
        SETTINGS,
    )  # fmt: skip
    final = await NightlyUpdate("r1", plan, store, source, on_progress=on_progress).run()

    assert final.status == "completed_with_errors" and final.is_complete and final.finished_at
    assert source.most_active == 2
    aapl, msft, tsla = (final.symbol_results[s] for s in ("AAPL", "MSFT", "TSLA"))
    # AAPL: two full sessions; the 30 pre-market minutes a provider sends are not kept
    assert (aapl.status, aapl.days_missing, aapl.days_fetched, aapl.bars_fetched) == ("completed", 2, 2, 780)
    assert aapl.bars_stored == 780 and count_bars(store, "AAPL") == 780
    assert aapl.completeness_percentage == 100.0 and (aapl.days_valid, aapl.days_invalid) == (2, 0)
    session_bins = {"5min": 78, "15min": 26, "30min": 13, "1h": 7, "2h": 4, "4h": 2, "daily": 1}
    assert aapl.resampled == {tf: 2 * n for tf, n in session_bins.items()}
    assert {tf: count_bars(store, "AAPL", tf) for tf in session_bins} == aapl.resampled
    stored = read_bars(store, "AAPL")
    first = dt.datetime(2024, 3, 8, 9, 30, tzinfo=NY).astimezone(dt.UTC)
    assert stored["ts"][0] == first
    assert aapl.steps == [
        "Checking existing data",
        "Downloading 1-minute data",
        "Validating against the trading calendar",
        "Storing 1-minute bars",
        "Resampling to all timeframes",
    ]
    # one provider call for both days, by the sessions' UTC bounds: 09:30 EST on the 8th to 16:00 EDT on the 11th
    assert [c[:4] for c in source.calls if c[0] == "AAPL"] == [
        ("AAPL", dt.datetime(2024, 3, 8, 9, 30, tzinfo=NY), dt.datetime(2024, 3, 11, 16, 0, tzinfo=NY), "us_equity")
    ]
    # MSFT: the 11th is half there: stored, flagged invalid
    assert (msft.status, msft.days_valid, msft.days_invalid, msft.bars_stored) == ("completed", 1, 1, 585)
    assert msft.completeness_percentage == round(100 * 585 / 780, 2)
    # TSLA failed alone, with the provider's error
    assert tsla.status == "failed" and "polygon TSLA" in tsla.error and "HTTP 403" in tsla.error
    assert count_bars(store, "TSLA") == 0
    assert final.progress.failed_symbols == 1 and final.progress.completed_symbols == 3

    pcts = [s.progress.progress_percentage for s in seen]
    assert pcts == sorted(pcts) and pcts[-1] == 100.0
    assert {33.3, 66.7} <= set(pcts)
    assert any(len(s.progress.symbols_in_progress) == 2 for s in seen)
    assert any(s.progress.current_step == "Downloading 1-minute data" for s in seen)
    mid = [s for s in seen if s.progress.completed_symbols == 1]
    assert mid and all(s.progress.estimated_time_remaining_seconds is not None for s in mid)
    assert final.progress.estimated_time_remaining_seconds == 0.0

    # a second run finds nothing missing for AAPL and fetches nothing; MSFT's half day is fetched again
    source.calls.clear()
    plan = plan_request({"symbols": ["AAPL", "MSFT"], "start_date": "2024-03-08", "end_date": "2024-03-11"}, SETTINGS)
    again = await NightlyUpdate("r2", plan, store, source).run()
    assert again.status == "completed"
    assert again.symbol_results["AAPL"].days_missing == 0
    assert again.symbol_results["MSFT"].days_missing == 1
    assert [c[0] for c in source.calls] == ["MSFT"]


async def test_crypto_from_last_stored_day_and_all_failed(store: Store) -> None:
    btc = btc_minutes("2022-01-10", "2022-01-11")
    source = Source({"BTC-PERP": btc}, failing={"ETH-PERP"})
    plan = plan_request({"symbols": ["BTC-PERP"], "start_date": "2022-01-10", "end_date": "2022-01-11"}, SETTINGS)
    final = await NightlyUpdate("c1", plan, store, source).run()
    r = final.symbol_results["BTC-PERP"]
    assert (final.status, r.asset_class, r.bars_stored) == ("completed", "crypto", len(btc))
    assert r.resampled == {"5min": 576, "15min": 192, "30min": 96, "1h": 48, "2h": 24, "4h": 12, "daily": 2}
    assert read_bars(store, "BTC-PERP")["close"].to_list() == btc["close"].to_list()

    # no start_date: from the day of the last stored bar; an end before it means nothing to do
    plan = plan_request({"symbols": ["BTC-PERP"], "end_date": "2022-01-11"}, SETTINGS)
    later = await NightlyUpdate("c2", plan, store, source, today=dt.date(2022, 1, 12)).run()
    assert later.symbol_results["BTC-PERP"].start_date == "2022-01-11"
    assert later.symbol_results["BTC-PERP"].days_missing == 0

    plan = plan_request({"symbols": ["ETH-PERP"], "start_date": "2022-01-10", "end_date": "2022-01-10"}, SETTINGS)
    failed = await NightlyUpdate("c3", plan, store, source).run()
    assert failed.status == "failed" and failed.message == "every symbol failed (1)"


def test_status_row_round_trips_through_its_arrow_schema() -> None:
    plan = plan_request({"symbols": ["AAPL"]}, SETTINGS)
    status = NightlyUpdate("q1", plan, store=None, fetcher=None).status()  # type: ignore[arg-type]
    table = status_table(status, 7)
    assert table.num_rows == 1 and table["request_id"][0].as_py() == "q1" and table["version"][0].as_py() == 7
    assert table["finished_at"][0].as_py() is None and table["is_complete"][0].as_py() is False


# -- asset classes, overlapping updates, no data, validation of what was fetched ------------------------


def test_asset_class_field_and_setting_choose_the_calendar() -> None:
    settings = config.load({"MT_BARS_ASSET_OVERRIDES": "GOLDSPOT=forex"}, bars_default_symbols="AAPL")
    plan = plan_request({"symbols": ["BTCUSD", "GOLDSPOT", "MYCOIN"], "asset_class": {"mycoin": "crypto"}}, settings)
    assert plan.asset_classes == {"BTCUSD": "crypto", "GOLDSPOT": "forex", "MYCOIN": "crypto"}
    plan = plan_request({"symbols": ["AAPL", "GOLDSPOT"], "asset_class": "crypto"}, settings)
    assert plan.asset_classes == {"AAPL": "crypto", "GOLDSPOT": "crypto"}
    status = NightlyUpdate("a1", plan, store=None, fetcher=None).status()  # type: ignore[arg-type]
    assert status.request["asset_class"] == "crypto"
    with pytest.raises(RequestError, match="asset_class: 'MSFT' is not one of the requested symbols"):
        plan_request({"symbols": ["AAPL"], "asset_class": {"MSFT": "crypto"}}, settings)
    with pytest.raises(RequestError, match="asset_class: unknown asset class 'coin'"):
        plan_request({"symbols": ["AAPL"], "asset_class": "coin"}, settings)
    bad = config.load({"MT_BARS_ASSET_OVERRIDES": "GOLDSPOT"})
    with pytest.raises(RequestError, match="MT_BARS_ASSET_OVERRIDES: 'GOLDSPOT' is not SYMBOL=CLASS"):
        plan_request({"symbols": ["AAPL"]}, bad)
    with pytest.raises(RequestError, match="symbols: 1001 symbols, at most 1000 per request"):
        plan_request({"symbols": [f"S{i}" for i in range(1001)]}, settings)
    with pytest.raises(RequestError, match=r"start_date\.\.end_date spans 3661 days, at most 3660"):
        plan_request({"start_date": "2000-01-01", "end_date": "2010-01-08"}, settings)


async def test_a_symbol_classed_crypto_by_override_is_fetched_as_crypto(store: Store) -> None:
    btc = btc_minutes("2022-01-10", "2022-01-10")
    source = Source({"MYCOIN": btc})
    plan = plan_request(
        {"symbols": ["MYCOIN"], "start_date": "2022-01-10", "end_date": "2022-01-10", "asset_class": "crypto"},
        SETTINGS,
    )
    final = await NightlyUpdate("o1", plan, store, source).run()
    r = final.symbol_results["MYCOIN"]
    assert (r.status, r.asset_class, r.bars_stored, r.completeness_percentage) == ("completed", "crypto", 1440, 100.0)
    utc_day = (dt.datetime(2022, 1, 10, tzinfo=dt.UTC), dt.datetime(2022, 1, 11, tzinfo=dt.UTC))
    assert source.calls == [("MYCOIN", *utc_day, "crypto")]


class Gate(Source):
    """A source whose fetches wait until `release` is set (to hold a symbol in one update)."""

    def __init__(self, frames: dict[str, pl.DataFrame]) -> None:
        super().__init__(frames)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch_minutes(
        self, symbol: str, start: Any, end: Any, *, asset: str | None = None
    ) -> tuple[pl.DataFrame, str]:
        self.calls.append((symbol, start, end, asset))
        self.entered.set()
        await self.release.wait()
        return self.frames[symbol], "recorded"


async def test_two_updates_never_fetch_the_same_symbol_at_once(store: Store) -> None:
    days = {"start_date": "2024-03-08", "end_date": "2024-03-08"}
    source = Gate({"AAPL": equity_minutes(["2024-03-08"]), "MSFT": equity_minutes(["2024-03-08"])})
    claims = SymbolClaims()
    first = NightlyUpdate("u1", plan_request({"symbols": ["AAPL"], **days}, SETTINGS), store, source, claims=claims)
    running = asyncio.create_task(first.run())
    await asyncio.wait_for(source.entered.wait(), 10)
    assert claims.held() == {"AAPL": "u1"}
    second_plan = plan_request({"symbols": ["aapl", "MSFT"], **days}, SETTINGS)
    second = asyncio.create_task(NightlyUpdate("u2", second_plan, store, source, claims=claims).run())
    while not any(c[0] == "MSFT" for c in source.calls):
        await asyncio.sleep(0.01)
    source.release.set()
    done_first, done_second = await asyncio.wait_for(asyncio.gather(running, second), 30)
    skipped = done_second.symbol_results["aapl"]
    assert (skipped.status, skipped.message, skipped.current_step) == (
        "skipped",
        "running in u1",
        "Skipped: running in u1",
    )
    assert done_second.status == "completed" and "aapl running in u1" in done_second.message
    assert done_second.progress.skipped_symbols == 1 and done_second.progress.completed_symbols == 2
    assert done_first.symbol_results["AAPL"].status == "completed"
    assert [c[0] for c in source.calls] == ["AAPL", "MSFT"]  # AAPL asked for once
    assert claims.held() == {}  # both released


async def test_no_bars_anywhere_is_no_data_not_a_failure(store: Store) -> None:
    source = Source({"QUIET": pl.DataFrame(schema=equity_minutes(["2024-03-08"]).schema)})
    plan = plan_request({"symbols": ["QUIET"], "start_date": "2024-03-08", "end_date": "2024-03-08"}, SETTINGS)
    final = await NightlyUpdate("n1", plan, store, source).run()
    r = final.symbol_results["QUIET"]
    assert (final.status, r.status, r.error, r.current_step) == ("completed", "no_data", "", "No data")
    assert r.message == "no provider had bars for the 1 missing day(s) 2024-03-08..2024-03-08"
    assert final.progress.no_data_symbols == 1 and final.progress.failed_symbols == 0


async def test_validation_counts_only_bars_on_whole_minutes(store: Store) -> None:
    day = equity_minutes(["2024-03-08"])
    off_minute = day.with_columns(
        pl.when(pl.int_range(pl.len()) == 100).then(pl.col("ts") + pl.duration(seconds=30, time_unit="ns"))
        .otherwise(pl.col("ts")).alias("ts")
    )  # fmt: skip
    source = Source({"AAPL": off_minute})
    plan = plan_request({"symbols": ["AAPL"], "start_date": "2024-03-08", "end_date": "2024-03-08"}, SETTINGS)
    r = (await NightlyUpdate("v1", plan, store, source).run()).symbol_results["AAPL"]
    assert (r.days_valid, r.days_invalid) == (0, 1)
    assert r.completeness_percentage == round(100 * 389 / 390, 2)


async def test_fmp_crypto_day_is_complete_through_the_nightly_update(store: Store) -> None:
    """FMP's dates are New York dates; a UTC crypto day through FMP must come back whole (1440 minutes)."""
    from libs.bars.providers import FmpProvider, ProviderChain
    from libs.retry import RetryPolicy
    from tests.fixtures.bars_providers.server import ProviderStub
    from tests.fixtures.bars_providers.shapes import fmp_btc_day

    want, chart = fmp_btc_day("2022-01-10", "2022-01-11")
    with ProviderStub() as stub:
        stub.add("/stable/historical-chart/1min", chart)
        chain = ProviderChain([FmpProvider(stub.url, "k", policy=RetryPolicy(attempts=2, base_s=0.01))])
        plan = plan_request({"symbols": ["BTCUSD"], "start_date": "2022-01-10", "end_date": "2022-01-11"}, SETTINGS)
        final = await NightlyUpdate("f1", plan, store, chain).run()
        await chain.aclose()
    r = final.symbol_results["BTCUSD"]
    assert (r.status, r.asset_class, r.provider) == ("completed", "crypto", "fmp")
    assert (r.days_valid, r.days_invalid, r.completeness_percentage) == (2, 0, 100.0)
    assert r.bars_stored == len(want) == 2880
    assert read_bars(store, "BTCUSD")["close"].to_list() == want["close"].tolist()


async def test_an_update_where_no_symbol_completed_is_failed_not_completed_with_errors(store: Store) -> None:
    days = {"start_date": "2024-03-08", "end_date": "2024-03-08"}
    failing = {"F1", "F2", "F3", "F4"}
    source = Source({"AAPL": equity_minutes(["2024-03-08"])}, failing=failing)
    claims = SymbolClaims()
    assert claims.claim("AAPL", "elsewhere") is None  # another update holds AAPL: this one skips it
    plan = plan_request({"symbols": ["AAPL", *sorted(failing)], **days}, SETTINGS)
    final = await NightlyUpdate("z1", plan, store, source, claims=claims).run()
    assert final.symbol_results["AAPL"].status == "skipped"
    assert sorted(s for s, r in final.symbol_results.items() if r.status == "failed") == sorted(failing)
    assert final.status == "failed"
    assert final.message.startswith("no symbol completed; 4 of 5 failed: F1, F2, F3, F4")

    # one completed and one failed is still a partial success
    claims.release("AAPL", "elsewhere")
    plan = plan_request({"symbols": ["AAPL", "F1"], **days}, SETTINGS)
    mixed = await NightlyUpdate("z2", plan, store, source, claims=claims).run()
    assert (mixed.status, mixed.message) == ("completed_with_errors", "1 of 2 symbols failed: F1")
