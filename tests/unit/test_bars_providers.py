"""Bar providers against a real local HTTP server playing recorded responses in each provider's shape."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pytest

from libs import config
from libs.bars.providers import (
    FmpProvider,
    PolygonProvider,
    ProviderChain,
    ProviderError,
    TiingoProvider,
    build_chain,
    provider_names,
)
from libs.bars.providers.polygon import polygon_ticker
from libs.retry import RetryPolicy
from tests.conftest import needs_data
from tests.fixtures.bars_providers.server import ProviderStub, Reply, recorded
from tests.fixtures.bars_providers.shapes import fmp_btc_day

KEY = "sekrit-key-123"
FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=1.0, jitter=0.0)
NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def poly_path(ticker: str, lo: dt.datetime, hi: dt.datetime) -> str:
    """Polygon's aggregates path for [lo, hi): Unix ms of lo and of the last ms before hi."""
    return f"/v2/aggs/ticker/{ticker}/range/1/minute/{int(lo.timestamp()) * 1000}/{int(hi.timestamp()) * 1000 - 1}"


# the UTC days 2024-03-08..2024-03-11 (what fetch_minutes(date(2024, 3, 8), date(2024, 3, 11)) asks for)
POLY_AAPL = poly_path("AAPL", dt.datetime(2024, 3, 8, tzinfo=UTC), dt.datetime(2024, 3, 12, tzinfo=UTC))


class Log:
    """Collects structured log calls (what with_retries and the chain log)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))


@pytest.fixture
def stub() -> Any:
    with ProviderStub() as s:
        yield s


def expected_aapl() -> pl.DataFrame:
    """The recorded AAPL bars, times converted from New York wall time independently (zoneinfo)."""
    rows = []
    for day, offset in (("2024-03-08", 0), ("2024-03-11", 0)):
        for i in range(3):
            local = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(9, 30 + i + offset), NY)
            rows.append(local.astimezone(dt.UTC))
    raw = recorded("tiingo_aapl_1min.json")
    return pl.DataFrame(
        {
            "ts": pl.Series(rows).cast(pl.Datetime("ns", "UTC")),
            **{c: [float(r[c]) for r in raw] for c in ("open", "high", "low", "close", "volume")},
        }
    )


def test_dst_offsets_of_the_fixture_are_what_new_york_had() -> None:
    ts = expected_aapl()["ts"].to_list()
    assert ts[0].hour == 14 and ts[0].minute == 30  # 2024-03-08: EST, UTC-5
    assert ts[3].hour == 13 and ts[3].minute == 30  # 2024-03-11: EDT, UTC-4 (clocks changed on the 10th)


async def test_polygon_parses_recorded_equity_aggregates(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(200, recorded("polygon_aapl_1min.json")))
    p = PolygonProvider(stub.url, KEY, policy=FAST)
    frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11), asset="us_equity")
    await p.aclose()
    assert frame.equals(expected_aapl())
    path, query = stub.requests[0]
    assert path == POLY_AAPL
    assert query == {"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": KEY}


async def test_polygon_follows_next_url_over_real_btc_minutes(stub: ProviderStub) -> None:
    """Polygon-shaped X:BTCUSD pages built from the real BTC-PERP CSV; the frame must equal the CSV's rows."""
    csv = pd.read_csv(needs_data("bars", "BTC-PERP_1m_2022-01.csv"))
    csv["ts"] = pd.to_datetime(csv["timestamp"], utc=True)
    want = csv[(csv.ts >= "2022-01-10") & (csv.ts < "2022-01-12")].reset_index(drop=True)
    results = [
        {"t": int(r.ts.value // 1_000_000), "o": r.open, "h": r.high, "l": r.low, "c": r.close, "v": r.volume}
        for r in want.itertuples()
    ]
    path = poly_path("X:BTCUSD", dt.datetime(2022, 1, 10, tzinfo=UTC), dt.datetime(2022, 1, 12, tzinfo=UTC))
    page = 1000

    def pages(query: dict[str, str]) -> Reply:
        at = int(query.get("cursor", 0))
        body: dict[str, Any] = {
            "ticker": "X:BTCUSD",
            "status": "OK",
            "resultsCount": len(results[at : at + page]),
            "results": results[at : at + page],
        }
        if at + page < len(results):
            body["next_url"] = f"{stub.url}{path}?cursor={at + page}"
        return Reply(200, body)

    stub.add(path, pages)
    p = PolygonProvider(stub.url, KEY, policy=FAST)
    frame = await p.fetch_minutes("BTC-PERP", dt.date(2022, 1, 10), dt.date(2022, 1, 11), asset="crypto")
    await p.aclose()
    assert frame.height == len(want) == 2880
    assert frame["ts"].dt.epoch("ns").to_list() == [int(v) for v in want.ts.dt.as_unit("ns").astype("int64")]
    for ours, theirs in (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close"), ("volume", "volume")):
        assert frame[ours].to_list() == want[theirs].tolist()
    assert len(stub.requests) == 3
    assert all(q.get("apiKey") == KEY for _, q in stub.requests)  # next_url lacks the key: it is added back
    assert [q.get("cursor") for _, q in stub.requests] == [None, "1000", "2000"]


@pytest.mark.parametrize(
    ("symbol", "asset", "ticker"),
    [("BTC-PERP", "crypto", "X:BTCUSD"), ("ETHUSDT", "crypto", "X:ETHUSD"), ("EUR/USD", "forex", "C:EURUSD"),
     ("aapl", "us_equity", "AAPL"), ("X:SOLUSD", "crypto", "X:SOLUSD")],
)  # fmt: skip
def test_polygon_tickers(symbol: str, asset: str, ticker: str) -> None:
    assert polygon_ticker(symbol, asset) == ticker


async def test_fmp_converts_new_york_times_newest_first_and_chunks_the_range(stub: ProviderStub) -> None:
    body = recorded("fmp_aapl_1min.json")

    def chart(query: dict[str, str]) -> Reply:
        lo, hi = query["from"], query["to"]
        return Reply(200, [b for b in body if lo <= b["date"][:10] <= hi])

    stub.add("/stable/historical-chart/1min", chart)
    p = FmpProvider(stub.url, KEY, policy=FAST)
    p.chunk_days = 2
    frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert frame.equals(expected_aapl())
    # FMP's dates are New York dates: the UTC day 03-08 starts on 03-07 at 19:00 New York
    assert [(q["symbol"], q["from"], q["to"], q["apikey"]) for _, q in stub.requests] == [
        ("AAPL", "2024-03-07", "2024-03-08", KEY),
        ("AAPL", "2024-03-09", "2024-03-10", KEY),
        ("AAPL", "2024-03-11", "2024-03-11", KEY),
    ]


async def test_tiingo_parses_iex_intraday(stub: ProviderStub) -> None:
    stub.add("/iex/aapl/prices", Reply(200, recorded("tiingo_aapl_1min.json")))
    p = TiingoProvider(stub.url, KEY, policy=FAST)
    frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert frame.equals(expected_aapl())
    _, q = stub.requests[0]
    assert q == {  # a day more on each side (the API does not say which zone its dates are in)
        "startDate": "2024-03-07",
        "endDate": "2024-03-12",
        "resampleFreq": "1min",
        "columns": "open,high,low,close,volume",
        "token": KEY,
    }


async def test_tiingo_refuses_crypto_without_a_request(stub: ProviderStub) -> None:
    p = TiingoProvider(stub.url, KEY, policy=FAST)
    with pytest.raises(ProviderError, match="tiingo BTC-USD: has no crypto bars \\(covers us_equity\\)") as info:
        await p.fetch_minutes("BTC-USD", dt.date(2024, 3, 8), dt.date(2024, 3, 8), asset="crypto")
    assert info.value.unsupported and not p.supports("crypto") and p.supports("us_equity")
    assert stub.requests == []


async def test_429_then_success_honours_retry_after(stub: ProviderStub) -> None:
    stub.add(
        POLY_AAPL,
        Reply(429, {"status": "ERROR", "error": "too many requests"}, {"Retry-After": "0.2"}),
        Reply(200, recorded("polygon_aapl_1min.json")),
    )
    log = Log()
    p = PolygonProvider(stub.url, KEY, policy=FAST, log=log)
    frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert frame.height == 6 and stub.hits(POLY_AAPL) == 2
    (_, _, kw), *_ = log.lines
    assert kw["retry_in_s"] == 0.2 and "HTTP 429" in kw["error"]


async def test_500s_are_retried_until_success(stub: ProviderStub) -> None:
    stub.add(
        "/iex/aapl/prices",
        Reply(500, b"oops"),
        Reply(502, b"bad gateway"),
        Reply(200, recorded("tiingo_aapl_1min.json")),
    )
    p = TiingoProvider(stub.url, KEY, policy=FAST)
    frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert frame.height == 6 and stub.hits("/iex/aapl/prices") == 3


async def test_500_forever_gives_up_naming_provider_symbol_and_status(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(503, b"maintenance"))
    p = PolygonProvider(stub.url, KEY, policy=FAST)
    with pytest.raises(ProviderError) as info:
        await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert stub.hits(POLY_AAPL) == 3
    msg = str(info.value)
    assert msg.startswith("polygon AAPL:") and "gave up after 3 attempts" in msg and "HTTP 503" in msg
    assert info.value.status == 503


@pytest.mark.parametrize(
    ("cls", "path", "fixture", "status", "words"),
    [
        (PolygonProvider, POLY_AAPL, "polygon_unauthorized.json", 401, "HTTP 401 (check the API key)"),
        (FmpProvider, "/stable/historical-chart/1min", "fmp_invalid_key.json", 401, "Invalid API KEY"),
        (TiingoProvider, "/iex/aapl/prices", "tiingo_invalid_token.json", 403, "HTTP 403"),
        (TiingoProvider, "/iex/aapl/prices", "tiingo_invalid_token.json", 404, "HTTP 404"),
    ],
)
async def test_auth_and_not_found_are_not_retried(
    stub: ProviderStub, cls: Any, path: str, fixture: str, status: int, words: str
) -> None:
    stub.add(path, Reply(status, recorded(fixture)))
    p = cls(stub.url, KEY, policy=FAST)
    with pytest.raises(ProviderError) as info:
        await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert stub.hits(path) == 1
    assert str(info.value).startswith(f"{p.name} AAPL:") and words in str(info.value)
    assert info.value.status == status and KEY not in str(info.value)


@pytest.mark.parametrize(
    ("cls", "path", "body", "words"),
    [
        (PolygonProvider, POLY_AAPL, b"<html>gateway</html>", "the body is not JSON"),
        (PolygonProvider, POLY_AAPL, {"status": "OK", "results": [{"t": 1, "o": 1, "h": 1, "l": 1, "v": 1}]},
         "bar 0 field 'c' is None"),
        (PolygonProvider, POLY_AAPL, {"status": "ERROR", "error": "bad ticker"}, "status 'ERROR' bad ticker"),
        (PolygonProvider, POLY_AAPL, {"status": "OK", "results": {"t": 1}}, "results is dict, not a list"),
        (FmpProvider, "/stable/historical-chart/1min", [{"date": "2024-03-08T09:30", "open": 1, "high": 1,
         "low": 1, "close": 1, "volume": 1}], "field 'date' is '2024-03-08T09:30'"),
        (FmpProvider, "/stable/historical-chart/1min", [{"date": "2024-03-10 02:30:00", "open": 1, "high": 1,
         "low": 1, "close": 1, "volume": 1}], "does not exist in New York time"),
        (TiingoProvider, "/iex/aapl/prices", [{"date": "yesterday", "open": 1, "high": 1, "low": 1, "close": 1,
         "volume": 1}], "not an ISO time"),
        (TiingoProvider, "/iex/aapl/prices", [{"date": "2024-03-08T14:30:00.000Z", "open": "1", "high": 1,
         "low": 1, "close": 1, "volume": 1}], "field 'open' is '1', not a number"),
    ],
)  # fmt: skip
async def test_malformed_bodies_are_clear_errors_without_retry(
    stub: ProviderStub, cls: Any, path: str, body: Any, words: str
) -> None:
    stub.add(path, Reply(200, body))
    p = cls(stub.url, KEY, policy=FAST)
    with pytest.raises(ProviderError, match="AAPL") as info:
        await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await p.aclose()
    assert words in str(info.value)
    assert stub.hits(path) == 1


async def test_empty_results_are_an_empty_frame(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(200, recorded("polygon_empty.json")))
    stub.add("/iex/aapl/prices", Reply(200, []))
    for p in (PolygonProvider(stub.url, KEY, policy=FAST), TiingoProvider(stub.url, KEY, policy=FAST)):
        frame = await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
        await p.aclose()
        assert frame.height == 0 and frame.columns == ["ts", "open", "high", "low", "close", "volume"]


async def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = FmpProvider(f"http://127.0.0.1:{port}", KEY, policy=FAST)
    with pytest.raises(ProviderError, match=r"fmp AAPL: .*gave up after 3 attempts.*connection error") as info:
        await p.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 8))
    assert p.requests == 3 and KEY not in str(info.value)


async def test_chain_falls_back_in_priority_order_and_logs(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(401, recorded("polygon_unauthorized.json")))
    stub.add("/iex/aapl/prices", Reply(200, recorded("tiingo_aapl_1min.json")))
    log = Log()
    chain = ProviderChain(
        [PolygonProvider(stub.url, KEY, policy=FAST), TiingoProvider(stub.url, KEY, policy=FAST)], log=log
    )
    frame, name = await chain.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await chain.aclose()
    assert name == "tiingo" and frame.equals(expected_aapl())
    assert [(e, kw["provider"], kw["next"]) for _, e, kw in log.lines] == [("bar provider failed", "polygon", "tiingo")]


async def test_chain_reports_every_failure_and_no_configuration(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(401, recorded("polygon_unauthorized.json")))
    stub.add("/iex/aapl/prices", Reply(404, {"detail": "Not found."}))
    chain = ProviderChain([PolygonProvider(stub.url, KEY, policy=FAST), TiingoProvider(stub.url, KEY, policy=FAST)])
    with pytest.raises(ProviderError) as info:
        await chain.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11))
    await chain.aclose()
    assert "every provider failed" in str(info.value)
    assert "polygon AAPL" in str(info.value) and "HTTP 401" in str(info.value) and "tiingo AAPL" in str(info.value)
    empty = ProviderChain([], configured="polygon,fmp")
    with pytest.raises(ProviderError, match="no bar provider configured: set MT_POLYGON_API_KEY"):
        await empty.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 8))


def test_build_chain_uses_only_providers_with_keys_in_setting_order() -> None:
    s = config.load({}, bars_providers="tiingo,financial_modeling_prep,polygon", fmp_api_key="f", polygon_api_key="p")
    chain = build_chain(s)
    assert chain.names == ["fmp", "polygon"]
    assert build_chain(config.load({})).names == []
    with pytest.raises(ValueError, match="MT_BARS_PROVIDERS: unknown provider 'yahoo'"):
        provider_names("polygon,yahoo")


# -- asset classes a provider does not cover, UTC day bounds, rate limits --------------------------------


async def test_fmp_crypto_utc_day_is_fetched_whole_from_new_york_dates(stub: ProviderStub) -> None:
    want, chart = fmp_btc_day("2022-01-10", "2022-01-10")
    stub.add("/stable/historical-chart/1min", chart)
    p = FmpProvider(stub.url, KEY, policy=FAST)
    lo, hi = dt.datetime(2022, 1, 10, tzinfo=UTC), dt.datetime(2022, 1, 11, tzinfo=UTC)
    frame = await p.fetch_minutes("BTCUSD", lo, hi, asset="crypto")
    await p.aclose()
    assert frame.height == len(want) == 1440
    assert frame["ts"].dt.epoch("ns").to_list() == [int(v) for v in want.ts.dt.as_unit("ns").astype("int64")]
    assert frame["close"].to_list() == want["close"].tolist()
    # 2022-01-10 00:00 UTC is 2022-01-09 19:00 New York: both New York dates are asked for
    assert [(q["symbol"], q["from"], q["to"]) for _, q in stub.requests] == [("BTCUSD", "2022-01-09", "2022-01-10")]


async def test_exact_bounds_cut_bars_outside_them(stub: ProviderStub) -> None:
    stub.add("/iex/aapl/prices", Reply(200, recorded("tiingo_aapl_1min.json")))
    p = TiingoProvider(stub.url, KEY, policy=FAST)
    lo = dt.datetime(2024, 3, 8, 9, 31, tzinfo=NY)  # the second bar of the 8th ...
    hi = dt.datetime(2024, 3, 11, 9, 32, tzinfo=NY)  # ... up to, not including, the third of the 11th
    frame = await p.fetch_minutes("AAPL", lo, hi, asset="us_equity")
    await p.aclose()
    assert frame.equals(expected_aapl().slice(1, 4))
    assert (stub.requests[0][1]["startDate"], stub.requests[0][1]["endDate"]) == ("2024-03-07", "2024-03-12")


async def test_chain_skips_a_provider_without_the_asset_class(stub: ProviderStub) -> None:
    """Crypto with Polygon empty and Tiingo (US equities only) configured: no data, Tiingo never asked."""
    path = poly_path("X:BTCUSD", dt.datetime(2024, 3, 8, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))
    stub.add(path, Reply(200, recorded("polygon_empty.json")))
    log = Log()
    chain = ProviderChain(
        [PolygonProvider(stub.url, KEY, policy=FAST), TiingoProvider(stub.url, KEY, policy=FAST)], log=log
    )
    frame, name = await chain.fetch_minutes("BTCUSD", dt.date(2024, 3, 8), dt.date(2024, 3, 8), asset="crypto")
    assert (frame.height, name) == (0, "")
    assert [p for p, _ in stub.requests] == [path]
    assert log.lines == []  # nothing failed

    only_tiingo = ProviderChain([TiingoProvider(stub.url, KEY, policy=FAST)])
    with pytest.raises(ProviderError, match=r"no configured provider has crypto bars \(tiingo covers us_equity\)"):
        await only_tiingo.fetch_minutes("BTCUSD", dt.date(2024, 3, 8), dt.date(2024, 3, 8), asset="crypto")
    await chain.aclose()
    await only_tiingo.aclose()
    assert len(stub.requests) == 1


async def test_chain_with_a_failure_and_an_empty_answer_is_a_failure(stub: ProviderStub) -> None:
    stub.add(POLY_AAPL, Reply(200, recorded("polygon_empty.json")))
    stub.add("/iex/aapl/prices", Reply(403, recorded("tiingo_invalid_token.json")))
    chain = ProviderChain([PolygonProvider(stub.url, KEY, policy=FAST), TiingoProvider(stub.url, KEY, policy=FAST)])
    with pytest.raises(ProviderError) as info:
        await chain.fetch_minutes("AAPL", dt.date(2024, 3, 8), dt.date(2024, 3, 11), asset="us_equity")
    await chain.aclose()
    msg = str(info.value)
    assert "every provider failed" in msg and "tiingo AAPL" in msg and "HTTP 403" in msg
    assert "polygon AAPL: no bars in the range" in msg


def test_every_provider_gets_its_rate_limit_from_settings() -> None:
    s = config.load(
        {"MT_FMP_REQUESTS_PER_MINUTE": "120", "MT_TIINGO_REQUESTS_PER_MINUTE": "30"},
        polygon_api_key="p",
        fmp_api_key="f",
        tiingo_api_key="t",
        polygon_requests_per_minute=6.0,
    )
    chain = build_chain(s)
    rates = {p.name: p.limiter.rate * 60 for p in chain.providers}  # type: ignore[attr-defined]
    assert rates == pytest.approx({"polygon": 6.0, "fmp": 120.0, "tiingo": 30.0})
    defaults = config.load({})
    assert (defaults.fmp_requests_per_minute, defaults.tiingo_requests_per_minute) == (300.0, 8.0)
    with pytest.raises(ValueError, match=r"MT_FMP_REQUESTS_PER_MINUTE must be greater than 0, got 0\.0"):
        build_chain(config.load({"MT_FMP_REQUESTS_PER_MINUTE": "0"}, fmp_api_key="f"))
    with pytest.raises(config.ConfigError, match="MT_TIINGO_REQUESTS_PER_MINUTE='-1' must not be negative"):
        config.load({"MT_TIINGO_REQUESTS_PER_MINUTE": "-1"})
