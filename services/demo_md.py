"""The demo's market-data part: file replays and a generator through the bus into ClickHouse, the
OHLCV bar manager on real bars (import, resampling, completeness), and the bars HTTP API.

Runs on a demo stack whose recorder and report services are up; returns the lines it prints.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import httpx

from libs.bars import completeness
from libs.bars.importer import import_file
from libs.bus.admin import wait_idle
from libs.data.paths import AMZN_DAY, data_dir
from proto import streams
from services.ingest import generators, replay_files
from services.runtime import Stack

BITSTAMP_DIR = Path("orders/bitstamp_btcusd_l3_2026-05-02")
BTC_BARS = Path("bars/BTC-PERP_1m_2022-01.csv")
GOOG_BARS = Path("bars/GOOG_daily_2004_2013.csv")
GENERATOR = "heston:crypto?seed=7"
RECORDER_MD = [(streams.MD.name, "recorder-md")]


async def market_data_demo(stack: Stack, http_port: int) -> str:
    """Replay, generate, import and query; one line (or a few) per step."""
    out = ["market data"]
    root = data_dir()
    bus = await stack.connect("demo-md")
    publish = generators.bus_publisher(bus)

    async def stored(what: str, run: object) -> None:
        t0 = time.perf_counter()
        stats = await run  # type: ignore[misc]
        if not await wait_idle(bus, RECORDER_MD, timeout_s=300, quiet_s=0.05):
            raise RuntimeError(f"{what}: the recorder did not store everything in 300 s")
        rows = f"{stats.book_rows:,} book rows + {stats.trade_rows:,} trades"
        out.append(f"  {what}: {rows} onto NATS and into ClickHouse in {time.perf_counter() - t0:.2f} s")

    amzn = sorted((root / AMZN_DAY).glob("*_message_*.csv"))
    if amzn:
        await stored("LOBSTER AMZN 2012-06-21 (full day, L1)", replay_files.replay_lobster(publish, amzn[0]))
    if (root / BITSTAMP_DIR).exists():
        run = replay_files.replay_bitstamp(publish, root / BITSTAMP_DIR)
        await stored("Bitstamp BTC/USD L3, 30 min rebuilt by the matching engine (top 10)", run)
    spec = generators.parse_spec(GENERATOR)
    gen = await generators.run_generator(publish, spec, None, 3_600.0, start_ns=1_767_225_600 * 10**9)
    out.append(
        f"  generator {GENERATOR}: 1 market hour -> {gen.book_rows:,} book rows, {gen.trade_rows:,} trades, "
        f"{gen.bar_rows} one-minute bars in {gen.seconds:.2f} s"
    )
    if not (root / BTC_BARS).exists():
        out.append(f"  OHLCV: skipped, no bars at {root / BTC_BARS} (set MT_DATA_DIR)")
        return "\n".join(out)
    btc = await asyncio.to_thread(import_file, stack.store, root / BTC_BARS, "BTC-PERP")
    goog = await asyncio.to_thread(import_file, stack.store, root / GOOG_BARS, "GOOG")
    tfs = " | ".join(f"{tf} {n:,}" for tf, n in btc.resampled.items())
    out.append(f"  OHLCV import: BTC-PERP {btc.rows_written:,} 1-minute bars ({btc.asset_class}) -> {tfs}")
    out.append(f"  OHLCV import: GOOG {goog.rows_written:,} daily bars ({goog.asset_class})")
    report = await asyncio.to_thread(
        completeness.analyse, stack.store, ["BTC-PERP"], dt.date(2022, 1, 1), dt.date(2022, 2, 1)
    )
    btc_days = report.symbol_completeness["BTC-PERP"]
    bad = [d for d in btc_days.validation_results if not d.is_valid]
    out.append(
        f"  completeness BTC-PERP 2022-01-01..02-01: {btc_days.valid_days}/{btc_days.total_trading_days} days "
        f"complete, {btc_days.completeness_percentage}% of {btc_days.total_expected_candles:,} minutes; "
        f"needs attention: {report.symbols_needing_attention or 'none'}"
    )
    for day in bad:
        gaps = ", ".join(f"{g.minutes:,} from {g.start:%H:%M} UTC" for g in day.gaps[:3])
        out.append(f"    {day.date}: {day.missing_candles:,} minutes missing: {gaps}")
    url = f"http://127.0.0.1:{http_port}/trading-data/data/BTC-PERP"
    params = {"timeframe": "4h", "start_date": "2022-01-10", "order_by": "asc", "page_size": "3"}
    async with httpx.AsyncClient(timeout=30) as client:
        page = (await client.get(url, params=params)).raise_for_status().json()
    total = page["pagination"]["total_items"]
    out.append(f"  GET /trading-data/data/BTC-PERP?timeframe=4h&start_date=2022-01-10&page_size=3 (of {total}):")
    for c in page["candles"]:
        out.append(
            f"    {c['date']}  O {c['open']:.0f}  H {c['high']:.0f}  L {c['low']:.0f}  C {c['close']:.0f}"
            f"  V {c['volume']:,.0f}"
        )
    return "\n".join(out)
