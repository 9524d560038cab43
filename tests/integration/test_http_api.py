"""The report service's HTTP API over real HTTP (uvicorn in the service's loop) on a real chDB:
trading data paging, stored symbols, the completeness report, bad parameters, and the old routes."""

from __future__ import annotations

import datetime as dt
import math
import re
import socket
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import polars as pl
import pytest
import structlog.testing

from libs.bars.store import write_bars
from libs.config import Settings
from libs.users.secretbox import admin_token
from services.runtime import Stack

NY = ZoneInfo("America/New_York")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session(day: str, minutes: int = 390, base: float = 100.0) -> pl.DataFrame:
    open_ = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(9, 30), NY).astimezone(dt.UTC)
    ts = [open_ + dt.timedelta(minutes=m) for m in range(minutes)]
    px = [base + m / 100 for m in range(minutes)]
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(pl.Datetime("ns", "UTC")),
            "open": px,
            "high": [p + 0.5 for p in px],
            "low": [p - 0.5 for p in px],
            "close": [p + 0.25 for p in px],
            "volume": [float(1000 + m) for m in range(minutes)],
        }
    )


AAPL = pl.concat([session("2024-03-08"), session("2024-03-11", minutes=195, base=200.0)])


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Stack]]:
    port = free_port()
    stack = await Stack.open(msgspec.structs.replace(settings, http_port=port))
    try:
        assert stack.store is not None
        write_bars(stack.store, "AAPL", AAPL, "1min", source="test")
        write_bars(stack.store, "MSFT", session("2024-03-08").head(5), "1min", source="test")
        write_bars(stack.store, "SPY", session("2024-03-08").head(3), "5min", source="test")
        await stack.start("report")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http, stack
    finally:
        await stack.close()


def candle(row: dict[str, Any]) -> dict[str, Any]:
    """The API's candle for a frame row, built independently of the server (values to 8 decimals)."""
    ts = row["ts"].astimezone(dt.UTC)
    return {
        "date": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{c: float(f"{row[c]:.8f}") for c in ("open", "high", "low", "close", "volume")},
    }


async def test_trading_data_pages_in_both_orders(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    rows = AAPL.sort("ts").to_dicts()
    r = await http.get("/trading-data/data/AAPL", params={"page_size": 100})
    assert r.status_code == 200
    body = r.json()
    assert body["symbol"] == "AAPL" and body["timeframe"] == "1min"
    newest_first = [candle(x) for x in reversed(rows)]
    assert body["candles"] == newest_first[:100]  # default order_by is desc
    assert body["pagination"] == {
        "page": 1,
        "page_size": 100,
        "total_items": 585,
        "total_pages": math.ceil(585 / 100),
        "has_next": True,
        "has_previous": False,
    }
    assert body["start_date"] == newest_first[99]["date"] and body["end_date"] == newest_first[0]["date"]

    r = await http.get("/trading-data/data/AAPL", params={"order_by": "asc", "page": 6, "page_size": 100})
    body = r.json()
    assert body["candles"] == [candle(x) for x in rows[500:]]
    assert body["pagination"]["has_next"] is False and body["pagination"]["has_previous"] is True

    r = await http.get(
        "/trading-data/data/AAPL", params={"start_date": "2024-03-11", "end_date": "2024-03-11", "order_by": "asc"}
    )
    body = r.json()
    day2 = [candle(x) for x in rows if x["ts"].date() == dt.date(2024, 3, 11)]
    assert body["candles"] == day2 and body["pagination"]["total_items"] == 195 == len(day2)

    r = await http.get("/trading-data/data/AAPL", params={"start_date": "2024-03-09", "end_date": "2024-03-10"})
    assert r.status_code == 200 and r.json()["candles"] == [] and r.json()["pagination"]["total_pages"] == 0


async def test_symbols_by_timeframe(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    assert (await http.get("/trading-data/symbols")).json() == ["AAPL", "MSFT"]
    assert (await http.get("/trading-data/symbols", params={"timeframe": "5min"})).json() == ["SPY"]


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("/trading-data/data/AAPL", {"timeframe": "3min"}, 422, "timeframe: unknown timeframe '3min'"),
        ("/trading-data/data/AAPL", {"page_size": "10001"}, 422, "page_size must be 1..10000, got 10001"),
        ("/trading-data/data/AAPL", {"page_size": "0"}, 422, "page_size must be 1..10000, got 0"),
        ("/trading-data/data/AAPL", {"page": "0"}, 422, "page must be 1..1000000, got 0"),
        ("/trading-data/data/AAPL", {"page": "two"}, 422, "page must be an integer, got 'two'"),
        ("/trading-data/data/AAPL", {"start_date": "2024-02-30"}, 422, "start_date must be a date YYYY-MM-DD"),
        ("/trading-data/data/AAPL", {"order_by": "newest"}, 422, "order_by must be 'asc' or 'desc', got 'newest'"),
        ("/trading-data/data/AAPL", {"start_date": "2024-03-12", "end_date": "2024-03-08"}, 422,
         "start_date 2024-03-12 is after end_date 2024-03-08"),
        ("/trading-data/data/NOPE", {}, 404, "symbol 'NOPE': no 1min bars stored"),
        ("/trading-data/symbols", {"timeframe": "weekly"}, 422, "timeframe: unknown timeframe 'weekly'"),
        ("/no/such/route", {}, 404, "Not Found: GET /no/such/route"),
    ],
)  # fmt: skip
async def test_bad_parameters_are_named(
    api: tuple[httpx.AsyncClient, Stack], path: str, params: dict[str, str], status: int, detail: str
) -> None:
    http, _ = api
    r = await http.get(path, params=params)
    assert r.status_code == status
    assert detail in r.json()["detail"]


async def test_completeness_report(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    body = {"symbols": ["AAPL"], "start_date": "2024-03-08", "end_date": "2024-03-11", "include_details": True}
    r = await http.post("/data-analysis/completeness", json=body)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["analysis_period"] == {"start_date": "2024-03-08", "end_date": "2024-03-11"}
    aapl = report["symbol_completeness"]["AAPL"]
    assert (aapl["total_trading_days"], aapl["valid_days"], aapl["invalid_days"]) == (2, 1, 1)
    assert (aapl["total_expected_candles"], aapl["total_actual_candles"], aapl["missing_candles"]) == (780, 585, 195)
    assert aapl["completeness_percentage"] == pytest.approx(75.0)
    assert report["symbols_needing_attention"] == ["AAPL"]
    days = {d["date"]: d for d in aapl["validation_results"]}
    assert days["2024-03-11"]["missing_candles"] == 195 and days["2024-03-08"]["is_valid"] is True

    bad = [
        ({"symbols": [], "start_date": "2024-03-08", "end_date": "2024-03-11"}, "symbols must be a non-empty list"),
        ({"symbols": ["AAPL"], "end_date": "2024-03-11"}, "start_date is required"),
        ({"symbols": ["AAPL"], "start_date": "2024-03-11", "end_date": "2024-03-08"}, "is after end_date"),
        ({"symbols": ["AAPL"], "start_date": "3/8/2024", "end_date": "2024-03-08"}, "start_date must be a date"),
        ({"symbols": ["AAPL"], "start_date": "2024-03-08", "end_date": "2024-03-08", "include_details": "yes"},
         "include_details must be true or false"),
    ]  # fmt: skip
    for payload, detail in bad:
        r = await http.post("/data-analysis/completeness", json=payload)
        assert r.status_code == 422 and detail in r.json()["detail"], (payload, r.text)
    r = await http.post("/data-analysis/completeness", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]


async def test_old_routes_and_the_nightly_routes_without_the_bars_service(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    r = await http.get("/health")
    assert (r.status_code, r.text) == (200, "ok\n")
    # the run report lists every user's runs: the admin token only
    assert (await http.get("/report")).status_code == 401
    assert (await http.get("/report.txt", headers={"Authorization": "Bearer not-the-admin-token"})).status_code == 401
    admin = {"Authorization": f"Bearer {admin_token(stack.settings)}"}
    r = await http.get("/report", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["rows"]["ohlcv"] == 585 + 5 + 3
    r = await http.get("/report.txt", headers=admin)
    assert r.status_code == 200 and "MarketTwin run report" in r.text
    r = await http.post("/nightly-update/start", json={"symbols": ["AAPL"]})
    assert r.status_code == 503 and "bars service is not running" in r.json()["detail"]
    r = await http.post("/health")
    assert r.status_code == 405


# -- review fixes -----------------------------------------------------------------------------------------


async def test_symbols_with_a_slash(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    assert stack.store is not None
    write_bars(stack.store, "EUR/USD", session("2024-03-08").head(4), "1min", source="test")
    write_bars(stack.store, "BTC/USD", session("2024-03-08").head(6), "1min", source="test")
    for path, symbol, n in (
        ("/trading-data/data/EUR%2FUSD", "EUR/USD", 4),
        ("/trading-data/data/BTC/USD", "BTC/USD", 6),
    ):
        r = await http.get(path)
        assert r.status_code == 200, r.text
        assert r.json()["symbol"] == symbol and r.json()["pagination"]["total_items"] == n


async def test_pages_past_the_end_are_empty_and_huge_pages_are_refused(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    r = await http.get("/trading-data/data/AAPL", params={"page": 7, "page_size": 100})
    assert r.status_code == 200
    assert r.json()["candles"] == [] and r.json()["start_date"] is None
    assert r.json()["pagination"] == {
        "page": 7, "page_size": 100, "total_items": 585, "total_pages": 6, "has_next": False, "has_previous": True,
    }  # fmt: skip
    r = await http.get("/trading-data/data/AAPL", params={"page": 1_000_000, "page_size": 10_000})
    assert r.status_code == 200 and r.json()["candles"] == [] and r.json()["pagination"]["total_pages"] == 1
    for page in (10**20, 1_000_001):
        r = await http.get("/trading-data/data/AAPL", params={"page": page})
        assert r.status_code == 422 and r.json() == {"detail": f"page must be 1..1000000, got {page}"}


async def test_an_unexpected_error_is_a_generic_500_with_a_logged_reference(
    api: tuple[httpx.AsyncClient, Stack],
) -> None:
    http, stack = api
    assert stack.store is not None
    stack.store.command("DROP TABLE {db}.ohlcv")  # every bar query now fails inside ClickHouse
    with structlog.testing.capture_logs() as logs:
        r = await http.get("/trading-data/data/AAPL")
    assert r.status_code == 500
    detail = r.json()["detail"]
    m = re.fullmatch(r"internal error, see the report service log \(ref (\w+)\)", detail)
    assert m, detail
    assert "SELECT" not in r.text and "ohlcv" not in r.text
    (entry,) = [e for e in logs if e["event"] == "http request failed"]
    assert entry["ref"] == m.group(1) and entry["path"] == "/trading-data/data/AAPL"
    assert "ohlcv" in entry["error"]  # the detail is in the log, under the same reference


async def test_completeness_asset_class_and_size_limits(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    assert stack.store is not None
    day = pl.DataFrame(
        {"ts": pl.datetime_range(dt.datetime(2024, 3, 9), dt.datetime(2024, 3, 9, 23, 59), "1m", time_zone="UTC",
                                 eager=True).cast(pl.Datetime("ns", "UTC")),
         "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
    )  # fmt: skip
    write_bars(stack.store, "MYCOIN", day, "1min", source="test")
    body = {"symbols": ["MYCOIN"], "start_date": "2024-03-09", "end_date": "2024-03-09"}
    r = await http.post("/data-analysis/completeness", json=body)
    assert r.json()["symbol_completeness"]["MYCOIN"]["total_trading_days"] == 0  # an equity: Saturday is closed
    for override in ("crypto", {"mycoin": "crypto"}):
        r = await http.post("/data-analysis/completeness", json=body | {"asset_class": override})
        got = r.json()["symbol_completeness"]["MYCOIN"]
        assert (got["asset_class"], got["total_expected_candles"], got["total_actual_candles"]) == (
            "crypto",
            1440,
            1440,
        )
    bad = [
        (body | {"asset_class": "coins"}, "asset_class: unknown asset class 'coins'"),
        (body | {"asset_class": {"AAPL": "crypto"}}, "asset_class: 'AAPL' is not one of the requested symbols"),
        (body | {"symbols": [f"S{i}" for i in range(1001)]}, "symbols: 1001 symbols, at most 1000 per request"),
        (body | {"start_date": "2000-01-01", "end_date": "2010-01-08"}, "spans 3661 days, at most 3660"),
        (body | {"symbols": [f"S{i}" for i in range(28)], "start_date": "2000-01-01", "end_date": "2009-12-31"},
         "28 symbols x 3653 days = 102284 symbol-days, at most 100000 per report"),
    ]  # fmt: skip
    for payload, detail in bad:
        r = await http.post("/data-analysis/completeness", json=payload)
        assert r.status_code == 422 and detail in r.json()["detail"], (detail, r.text)


async def test_port_in_use_fails_start_and_the_server_restarts_cleanly(settings: Settings) -> None:
    port = free_port()
    stack = await Stack.open(msgspec.structs.replace(settings, http_port=port))
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen(1)
            with pytest.raises(OSError, match=f"report: cannot listen on 127.0.0.1:{port}"):
                await stack.start("report")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(2):  # start, serve, stop; then the same again on the same port
                await stack.start("report")
                assert (await http.get("/health")).text == "ok\n"
                await stack.stop_service("report")
                with pytest.raises(httpx.ConnectError):
                    await http.get("/health")
    finally:
        await stack.close()


async def test_a_bad_asset_overrides_setting_stops_the_service(settings: Settings) -> None:
    stack = await Stack.open(
        msgspec.structs.replace(settings, http_port=free_port(), bars_asset_overrides="BTCUSD=coin")
    )
    try:
        with pytest.raises(ValueError, match="MT_BARS_ASSET_OVERRIDES: 'BTCUSD=coin': unknown asset class 'coin'"):
            await stack.start("report")
    finally:
        await stack.close()


async def test_candle_values_are_rounded_to_8_decimals(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    assert stack.store is not None
    noisy = session("2024-03-08", minutes=2).with_columns(
        pl.Series("open", [0.1 + 0.2, 1.234567891234]),
        pl.Series("high", [1.0 + 1e-12, 2.0]),
        pl.Series("low", [0.1, 0.5]),
        pl.Series("close", [0.7 + 0.1, 1.5]),
        pl.Series("volume", [21.972900000000003, 1e-9]),
    )
    write_bars(stack.store, "NOISY", noisy, "1min", source="test")
    r = await http.get("/trading-data/data/NOISY", params={"order_by": "asc"})
    assert r.status_code == 200
    assert '"volume":21.9729' in r.text and "21.972900000000003" not in r.text
    values = [{k: c[k] for k in ("open", "high", "low", "close", "volume")} for c in r.json()["candles"]]
    assert values == [
        {"open": 0.3, "high": 1.0, "low": 0.1, "close": 0.8, "volume": 21.9729},
        {"open": 1.23456789, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 0.0},
    ]
