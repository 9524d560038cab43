"""File replay through a real nats-server into chDB: the AMZN LOBSTER day, Bitstamp L3 and a bar file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from libs.bus import Bus
from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import subjects
from proto.events import BarBatch, BookBatch, TradeBatch
from services.ingest.replay_files import replay_bars, replay_bitstamp, replay_lobster
from services.recorder.service import CONSUMERS
from services.runtime import Stack
from tests.conftest import needs_data

RECORDERS = [(stream, durable) for durable, stream, _, _ in CONSUMERS]


def publisher(bus: Bus):  # type: ignore[no-untyped-def]
    async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
        await bus.publish_many((subjects.of_batch(b), b) for b in batches)

    return publish


async def test_lobster_day_bitstamp_and_bars_land_in_clickhouse(settings: Settings) -> None:
    amzn = needs_data("lobster", "AMZN_2012-06-21_L1_fullday")
    goog = needs_data("bars", "GOOG_daily_2004_2013.csv")
    bitstamp = needs_data("orders", "bitstamp_btcusd_l3_2026-05-02")
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("replay")
        publish = publisher(bus)
        lob = await replay_lobster(publish, amzn)
        bars = await replay_bars(publish, goog, symbol="GOOG", venue="file")
        bs = await replay_bitstamp(publish, bitstamp, levels=5)
        assert await wait_idle(bus, RECORDERS, timeout_s=120)
        store = stack.store
        assert store is not None

        book = pd.read_csv(next(amzn.glob("*_orderbook_1.csv")), header=None).to_numpy(np.int64)
        msgs = pd.read_csv(next(amzn.glob("*_message_1.csv")), header=None)
        got = store.query_df(
            "SELECT bid_px, ask_px, bid_sz, ask_sz FROM {db}.book_tops FINAL "
            "WHERE venue = 'nasdaq' AND instrument = 'AMZN' ORDER BY ts, batch_id, row"
        )
        assert got.height == lob.book_rows == 57_515
        np.testing.assert_array_equal(got["bid_px"].to_numpy(), np.where(book[:, 2] < 0, 0, book[:, 2]))
        np.testing.assert_array_equal(got["ask_px"].to_numpy(), np.where(book[:, 0] >= 9_999_999_999, 0, book[:, 0]))
        np.testing.assert_array_equal(got["bid_sz"].to_numpy(), book[:, 3])
        trades = store.query_df(
            "SELECT count() AS n, sum(size) AS shares FROM {db}.md_trades FINAL WHERE venue = 'nasdaq'"
        ).row(0)
        ex = msgs[msgs[1].isin([4, 5])]
        assert trades == (len(ex), int(ex[3].sum()))

        goog_df = pd.read_csv(goog, index_col=0)
        ohlcv = store.query_df(
            "SELECT ts, open, close, volume FROM {db}.ohlcv FINAL WHERE symbol = 'GOOG' AND timeframe = 'daily' "
            "ORDER BY ts"
        )
        assert ohlcv.height == bars.bar_rows == len(goog_df)
        np.testing.assert_array_equal(ohlcv["close"].to_numpy(), goog_df["Close"].to_numpy(float))
        assert str(ohlcv["ts"][0].date()) == goog_df.index[0]

        bs_rows = store.query_df(
            "SELECT count() AS n FROM {db}.book_tops FINAL WHERE venue = 'bitstamp' AND instrument = 'BTCUSD'"
        ).row(0)[0]
        bs_trades = store.query_df("SELECT count() AS n FROM {db}.md_trades FINAL WHERE venue = 'bitstamp'").row(0)[0]
        assert (bs_rows, bs_trades) == (bs.book_rows, 284)
    finally:
        await stack.close()
