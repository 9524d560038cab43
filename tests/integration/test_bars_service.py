"""The nightly update end to end: bars + report services on a real nats-server and chDB, a local
Polygon-shaped HTTP server as the provider, progress watched on NATS, status over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from libs.bars.nightly import NightlyUpdate, plan_request, status_table
from libs.bars.store import count_bars, read_bars
from libs.config import Settings
from proto import subjects
from services.runtime import Stack
from tests.fixtures.bars_providers.server import ProviderStub, Reply

NY = ZoneInfo("America/New_York")
DAYS = ("2024-03-08", "2024-03-11")
SESSION_BINS = {"5min": 78, "15min": 26, "30min": 13, "1h": 7, "2h": 4, "4h": 2, "daily": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def polygon_minutes(base: float, days: tuple[str, ...] = DAYS, pre_market: int = 15) -> dict[str, Any]:
    """A Polygon aggregates body: every minute of the New York sessions of `days`, plus pre-market."""
    results = []
    for day in days:
        open_ = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(9, 30), NY)
        for m in range(-pre_market, 390):
            t = open_ + dt.timedelta(minutes=m)
            px = base + (m % 37) / 100
            results.append(
                {"t": int(t.timestamp() * 1000), "o": px, "h": px + 0.05, "l": px - 0.05, "c": px + 0.01, "v": 100 + m}
            )
    return {"ticker": "X", "status": "OK", "resultsCount": len(results), "results": results}


def agg_path(ticker: str, days: tuple[str, ...] = DAYS) -> str:
    """Polygon's path for the New York sessions of `days` (09:30 on the first to 16:00 on the last), in
    Unix ms: what the nightly update asks for a run of missing days."""
    lo = dt.datetime.combine(dt.date.fromisoformat(days[0]), dt.time(9, 30), NY)
    hi = dt.datetime.combine(dt.date.fromisoformat(days[-1]), dt.time(16, 0), NY)
    return f"/v2/aggs/ticker/{ticker}/range/1/minute/{int(lo.timestamp()) * 1000}/{int(hi.timestamp()) * 1000 - 1}"


@pytest.fixture
def stub() -> Any:
    with ProviderStub() as s:
        yield s


@pytest.fixture
def bar_settings(settings: Settings, stub: ProviderStub) -> Settings:
    return msgspec.structs.replace(
        settings,
        http_port=free_port(),
        bars_providers="polygon",
        polygon_api_key="test-key",
        polygon_host=stub.url,
        polygon_requests_per_minute=60_000.0,
    )


async def wait_complete(http: httpx.AsyncClient, request_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        r = await http.get(f"/nightly-update/status/{request_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["is_complete"]:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def test_nightly_update_over_nats_and_http_with_one_failing_symbol(
    bar_settings: Settings, stub: ProviderStub
) -> None:
    stub.add(agg_path("AAPL"), Reply(200, polygon_minutes(170.0)))
    stub.add(agg_path("MSFT"), Reply(200, polygon_minutes(400.0, days=DAYS[:1])))  # only the 8th: the 11th is missing
    stub.add(
        agg_path("TSLA"), Reply(403, {"status": "NOT_AUTHORIZED", "message": "You are not entitled to this data."})
    )
    stack = await Stack.open(bar_settings)
    try:
        await stack.start("bars")
        await stack.start("report")
        watcher = await stack.connect("watcher")
        progress: list[dict[str, Any]] = []

        async def on_progress(msg: Any) -> None:
            progress.append(msgspec.json.decode(msg.data))

        await watcher.nc.subscribe(subjects.NIGHTLY_ALL, cb=on_progress)
        base = f"http://127.0.0.1:{bar_settings.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            body = {
                "symbols": ["AAPL", "MSFT", "TSLA"],
                "start_date": DAYS[0],
                "end_date": DAYS[-1],
                "force_validation": True,
                "enable_resampling": True,
                "max_concurrent_symbols": 2,
            }
            r = await http.post("/nightly-update/start", json=body)
            assert r.status_code == 200, r.text
            started = r.json()
            assert started["status"] == "started" and started["message"] == "Nightly update started for 3 symbols"
            rid = started["request_id"]
            final = await wait_complete(http, rid)
            await watcher.nc.flush()

            assert final["status"] == "completed_with_errors" and final["symbols_count"] == 3
            p = final["progress"]
            assert (p["total_symbols"], p["completed_symbols"], p["progress_percentage"]) == (3, 3, 100.0)
            assert p["symbols_in_progress"] == [] and p["estimated_time_remaining_seconds"] == 0.0
            res = final["symbol_results"]
            assert res["AAPL"]["status"] == "completed" and res["AAPL"]["provider"] == "polygon"
            assert res["AAPL"]["bars_stored"] == 780 and res["AAPL"]["completeness_percentage"] == 100.0
            assert res["AAPL"]["resampled"] == {tf: 2 * n for tf, n in SESSION_BINS.items()}
            assert res["MSFT"]["status"] == "completed" and res["MSFT"]["bars_stored"] == 390
            assert (res["MSFT"]["days_valid"], res["MSFT"]["days_invalid"]) == (1, 1)
            assert res["TSLA"]["status"] == "failed"
            assert "polygon TSLA" in res["TSLA"]["error"] and "HTTP 403" in res["TSLA"]["error"]
            assert "test-key" not in r.text and "test-key" not in res["TSLA"]["error"]

            # what is in ClickHouse: session minutes only (no pre-market), and every timeframe
            store = stack.store
            assert store is not None
            assert count_bars(store, "AAPL") == 780 and count_bars(store, "MSFT") == 390
            assert count_bars(store, "TSLA") == 0
            assert {tf: count_bars(store, "AAPL", tf) for tf in SESSION_BINS} == res["AAPL"]["resampled"]
            first = read_bars(store, "AAPL", limit=1)["ts"][0]
            assert first == dt.datetime(2024, 3, 8, 9, 30, tzinfo=NY).astimezone(dt.UTC)
            daily = read_bars(store, "AAPL", "daily")
            aapl_1m = read_bars(store, "AAPL")
            day1 = aapl_1m.filter(aapl_1m["ts"] < dt.datetime(2024, 3, 9, tzinfo=dt.UTC))
            assert daily["volume"][0] == day1["volume"].sum() and daily["high"][0] == day1["high"].max()

            # progress on NATS: every step, the counts climbing to 3 of 3, the final status last
            assert {m["request_id"] for m in progress} == {rid}
            steps = {m["progress"]["current_step"] for m in progress}
            assert {"Downloading 1-minute data", "Storing 1-minute bars", "Resampling to all timeframes"} <= steps
            done = [m["progress"]["completed_symbols"] for m in progress]
            assert done == sorted(done) and done[-1] == 3
            assert progress[-1]["status"] == "completed_with_errors" and progress[-1]["is_complete"]
            assert stub.hits(agg_path("TSLA")) == 1  # a 403 is not retried

            r = await http.get(f"/nightly-update/status/{rid}/progress")
            assert r.status_code == 200 and r.json()["symbols"]["TSLA"]["status"] == "failed"
            r = await http.get("/nightly-update/active")
            assert r.status_code == 200 and r.json() == []
            r = await http.get("/nightly-update/status/nope-123")
            assert r.status_code == 404 and r.json() == {"detail": "unknown request_id 'nope-123'"}
            r = await http.post("/nightly-update/start", json={"symbols": [], "start_date": "2024-03-08"})
            assert r.status_code == 422 and "symbols must not be an empty list" in r.json()["detail"]
            r = await http.post("/nightly-update/start", json={"start_date": "08/03/2024"})
            assert r.status_code == 422
            assert r.json()["detail"] == "start_date must be a date YYYY-MM-DD, got '08/03/2024'"

            # the status survives a restart of the bars service (read back from ClickHouse)
            await stack.stop_service("bars")
            await stack.start("bars")
            r = await http.get(f"/nightly-update/status/{rid}")
            assert r.status_code == 200
            again = r.json()
            assert again["status"] == "completed_with_errors"
            assert again["symbol_results"]["AAPL"]["bars_stored"] == 780
            assert again["symbol_results"]["TSLA"]["error"] == res["TSLA"]["error"]

            # with the bars service gone the API says so
            await stack.stop_service("bars")
            r = await http.get(f"/nightly-update/status/{rid}")
            assert r.status_code == 503 and "bars service is not running" in r.json()["detail"]
    finally:
        await stack.close()


async def test_no_provider_configured_refuses_the_update_up_front(settings: Settings) -> None:
    port = free_port()
    stack = await Stack.open(msgspec.structs.replace(settings, http_port=port, bars_providers="polygon,fmp,tiingo"))
    try:
        bars = await stack.start("bars")
        await stack.start("report")
        bus = await stack.connect("client")
        body = {"symbols": ["AAPL"], "start_date": "2024-03-08", "end_date": "2024-03-08"}
        reply = await bus.nc.request(subjects.svc("bars", "nightly_start"), msgspec.json.encode(body), timeout=10)
        assert reply.headers and reply.headers.get("MT-Error") == "1"
        err = msgspec.json.decode(reply.data)
        assert err["code"] == 503
        for key in ("MT_POLYGON_API_KEY", "MT_FMP_API_KEY", "MT_TIINGO_API_KEY"):
            assert key in err["error"]
        assert bars.updates == {} and bars.tasks == {}  # nothing was started
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.post("/nightly-update/start", json=body)
            assert r.status_code == 503, r.text
            assert "MT_POLYGON_API_KEY, MT_FMP_API_KEY or MT_TIINGO_API_KEY" in r.json()["detail"]
            bad = await http.post("/nightly-update/start", json={"symbols": []})  # a bad field still says so
            assert bad.status_code == 422 and "symbols must not be an empty list" in bad.json()["detail"]
            future = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
            r = await http.post("/nightly-update/start", json={"symbols": ["AAPL"], "end_date": future})
            assert r.status_code == 422 and f"end_date {future} is in the future" in r.json()["detail"]
            assert (await http.get("/nightly-update/active")).json() == []
        reply = await bus.nc.request(subjects.svc("bars", "nightly_frobnicate"), b"{}", timeout=10)
        assert reply.headers and reply.headers.get("MT-Error") == "1"
        assert "unknown verb 'nightly_frobnicate'" in msgspec.json.decode(reply.data)["error"]
    finally:
        await stack.close()


async def wait_for(pred: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_overlapping_updates_skip_a_running_symbol_and_finished_updates_leave_memory(
    bar_settings: Settings, stub: ProviderStub
) -> None:
    entered, release = threading.Event(), threading.Event()

    def held_aapl(query: dict[str, str]) -> Reply:
        entered.set()
        release.wait(30)
        return Reply(200, polygon_minutes(170.0))

    stub.add(agg_path("AAPL"), held_aapl)
    stub.add(agg_path("MSFT"), Reply(200, polygon_minutes(400.0)))
    stack = await Stack.open(bar_settings)
    try:
        bars = await stack.start("bars")
        await stack.start("report")
        base = f"http://127.0.0.1:{bar_settings.http_port}"
        days = {"start_date": DAYS[0], "end_date": DAYS[-1]}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            first = (await http.post("/nightly-update/start", json={"symbols": ["AAPL"], **days})).json()["request_id"]
            assert await asyncio.to_thread(entered.wait, 30)
            r = await http.post("/nightly-update/start", json={"symbols": ["AAPL", "MSFT"], **days})
            second = r.json()["request_id"]
            done = await wait_complete(http, second)
            assert done["status"] == "completed"
            aapl = done["symbol_results"]["AAPL"]
            assert (aapl["status"], aapl["message"]) == ("skipped", f"running in {first}")
            assert done["symbol_results"]["MSFT"]["status"] == "completed"
            assert done["progress"]["skipped_symbols"] == 1
            active = (await http.get("/nightly-update/active")).json()
            assert [a["request_id"] for a in active] == [first]
            release.set()
            final = await wait_complete(http, first)
            assert final["symbol_results"]["AAPL"]["status"] == "completed"
            assert final["symbol_results"]["AAPL"]["bars_stored"] == 780
            assert stub.hits(agg_path("AAPL")) == 1  # asked once, by the update that held it

            # finished updates are dropped from memory; their status comes back from ClickHouse
            await wait_for(lambda: not bars.updates)
            assert bars._saved == {}
            again = (await http.get(f"/nightly-update/status/{first}")).json()
            assert again["status"] == "completed" and again["symbol_results"] == final["symbol_results"]
            assert (await http.get(f"/nightly-update/status/{second}")).json()["symbol_results"]["AAPL"]["message"] == (
                f"running in {first}"
            )
    finally:
        release.set()
        await stack.close()


async def test_an_update_cut_short_by_a_restart_reads_back_as_failed(bar_settings: Settings) -> None:
    stack = await Stack.open(bar_settings)
    try:
        assert stack.store is not None
        # what the service saves when an update starts; the process then died before saving more
        plan = plan_request({"symbols": ["AAPL"], "start_date": DAYS[0], "end_date": DAYS[-1]}, bar_settings)
        running = NightlyUpdate("ghost-1", plan, stack.store, fetcher=None).status()
        assert not running.is_complete
        stack.store.insert_arrow("nightly_updates", status_table(running, 1))
        await stack.start("bars")
        client = await stack.connect("client")
        reply = await client.nc.request(
            subjects.svc("bars", "nightly_status"), msgspec.json.encode({"request_id": "ghost-1"}), timeout=10
        )
        status = msgspec.json.decode(reply.data)
        assert (status["status"], status["is_complete"]) == ("failed", True)
        assert status["message"] == "interrupted: the bars service stopped before the update finished"
        assert status["request"]["symbols"] == ["AAPL"]
    finally:
        await stack.close()


async def test_a_bad_asset_overrides_setting_stops_the_bars_service(settings: Settings) -> None:
    stack = await Stack.open(msgspec.structs.replace(settings, http_port=0, bars_asset_overrides="XAUUSD"))
    try:
        with pytest.raises(ValueError, match="MT_BARS_ASSET_OVERRIDES: 'XAUUSD' is not SYMBOL=CLASS"):
            await stack.start("bars")
    finally:
        await stack.close()
