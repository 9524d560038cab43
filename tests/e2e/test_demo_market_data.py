"""The demo's market-data part end to end: replays and a generator into ClickHouse, the bar
manager on real bars, and the bars HTTP API, checked against the files themselves."""

from __future__ import annotations

import datetime as dt

import msgspec
import polars as pl
import pytest

from libs.config import Settings
from libs.store import open_store
from services.demo import run_demo
from tests.conftest import needs_data


async def test_the_market_data_demo_stores_and_serves_what_the_files_hold(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    amzn = needs_data("lobster", "AMZN_2012-06-21_L1_fullday")
    btc_file = needs_data("bars", "BTC-PERP_1m_2022-01.csv")
    await run_demo(msgspec.structs.replace(settings, nats_url=None), synthetic_s=0, market_data=True)
    text = capsys.readouterr().out
    names = ["time", "type", "order_id", "size", "price", "direction"]
    messages = pl.read_csv(next(amzn.glob("*_message_*.csv")), has_header=False, new_columns=names)
    executions = messages.filter(pl.col("type").is_in([4, 5])).height
    assert f"{messages.height:,} book rows + {executions:,} trades onto NATS" in text

    btc = pl.read_csv(btc_file).with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    per_day = btc.group_by(pl.col("timestamp").dt.date().alias("d")).len()
    feb1 = per_day.filter(pl.col("d") == dt.date(2022, 2, 1))["len"][0]
    assert f"BTC-PERP {btc.height:,} 1-minute bars (crypto)" in text
    assert f"2022-02-01: {1440 - feb1:,} minutes missing" in text
    four_h = (
        btc.sort("timestamp")
        .group_by_dynamic("timestamp", every="4h")
        .agg(pl.col("open").first(), pl.col("close").last(), pl.col("volume").sum())
        .filter(pl.col("timestamp") == dt.datetime(2022, 1, 10, tzinfo=dt.UTC))
        .row(0, named=True)
    )
    assert f"2022-01-10T00:00:00Z  O {four_h['open']:.0f}" in text and f"C {four_h['close']:.0f}" in text

    store = open_store(msgspec.structs.replace(settings, nats_url=None))  # the demo closed its stack
    try:
        nasdaq = store.query_df("SELECT count() AS n FROM {db}.book_tops WHERE venue = 'nasdaq'")["n"][0]
        bars = store.query_df(
            "SELECT count() AS n FROM {db}.ohlcv FINAL WHERE symbol = 'BTC-PERP' AND timeframe = '1min'"
        )
    finally:
        store.close()
    assert nasdaq == messages.height
    assert bars["n"][0] == btc.height
