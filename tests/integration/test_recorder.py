"""The recorder on a real nats-server and chDB: every event stored once, even across a restart."""

from __future__ import annotations

import asyncio

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import streams, subjects
from proto.events import BookBatch
from proto.paper import RunUpdate
from services.demo import RECORDERS
from services.runtime import Stack
from tests import factories


def batch(i: int, rows: int = 50) -> BookBatch:
    return BookBatch(
        id=f"batch-{i:05d}",
        ts=i,
        venue="kalshi",
        source="test",
        levels=1,
        instruments=["FED"],
        inst_idx=[0] * rows,
        book_ts=[i * 1_000 + r for r in range(rows)],
        bid_px=[4_000 + r for r in range(rows)],
        bid_sz=[10] * rows,
        ask_px=[4_100 + r for r in range(rows)],
        ask_sz=[20] * rows,
    )


def update(i: int) -> RunUpdate:
    """Step i of run-1: two decisions on intents 2i and 2i+1 (one taken, one at the daily cap), no trade."""
    return factories.run_update(
        f"up-{i}", factories.T0 + i, version=i + 1, decisions=factories.decisions(n=2, first=2 * i), trades=[]
    )


async def test_published_events_land_in_clickhouse(settings: Settings) -> None:
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")
        await bus.publish_many((subjects.book("kalshi", "FED"), batch(i)) for i in range(20))
        await bus.publish_many((subjects.paper("update", "run-1"), update(i)) for i in range(7))
        await bus.publish(subjects.bar("polygon", "AAPL", "1min"), factories.bars("bars-1"))
        await bus.publish(subjects.raw("kalshi"), factories.raw("raw-1"))
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        counts = stack.store.table_counts()
        assert counts["book_tops"] == 20 * 50
        assert counts["decisions"] == 14
        got = stack.store.query_df(
            "SELECT instrument, bid_px, ask_sz FROM {db}.book_tops WHERE batch_id = 'batch-00003' ORDER BY ts LIMIT 1"
        ).row(0)
        assert got == ("FED", 4_000, 20)
        reasons = stack.store.query_df(
            "SELECT reason, count() AS n FROM {db}.decisions FINAL GROUP BY reason ORDER BY reason"
        )
        assert reasons.rows() == [("daily_cap", 7), ("taken", 7)]
        assert stack.store.query_df("SELECT version FROM {db}.paper_runs FINAL").item() == 7
        bars = stack.store.query_df("SELECT symbol, close FROM {db}.ohlcv FINAL ORDER BY symbol, ts")
        assert bars.rows() == [("AAPL", 186.0), ("AAPL", 185.2), ("BTC-PERP", 46377.0)]
        raw = stack.store.query_df("SELECT status, hex(body) AS body FROM {db}.md_raw ORDER BY row")
        assert raw.rows() == [(s, b.hex().upper()) for s, b in zip([200, 429], factories.raw("x").body, strict=True)]
    finally:
        await stack.close()


async def test_recorder_restarted_mid_stream_loses_nothing_and_writes_nothing_twice(
    settings: Settings,
) -> None:
    # messages in flight when the recorder stopped come back after ack_wait: keep it short here
    stack = await Stack.open(msgspec.structs.replace(settings, ack_wait_s=2.0))
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")
        n = 400

        async def publish_slowly() -> None:
            for i in range(n):
                await bus.publish(subjects.book("kalshi", "FED"), batch(i))
                await asyncio.sleep(0.002)

        publisher = asyncio.create_task(publish_slowly())
        await asyncio.sleep(0.3)
        await stack.stop_service("recorder")  # mid-stream: some stored, some in flight, some not yet sent
        stored_while_down = stack.store.table_counts()["book_tops"]
        await stack.start("recorder")
        await publisher
        # the same batches again (a publisher retry): JetStream dedups on the event id
        await bus.publish_many((subjects.book("kalshi", "FED"), batch(i)) for i in range(0, n, 7))
        assert await wait_idle(bus, RECORDERS, timeout_s=60)
        assert 0 < stored_while_down < n * 50, "the restart was not mid-stream"
        assert stack.store.table_counts()["book_tops"] == n * 50
        dupes = stack.store.query_df(
            "SELECT count() AS n FROM (SELECT batch_id, row, count() AS c FROM {db}.book_tops FINAL "
            "GROUP BY batch_id, row HAVING c > 1)"
        ).item()
        assert dupes == 0
        info = await bus.js.stream_info(streams.MD.name)
        assert info.state.messages == n
    finally:
        await stack.close()


async def test_dead_letters_are_stored_with_their_reason(settings: Settings) -> None:
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")
        await bus.js.publish(subjects.paper("update", "R"), b"garbage")
        await bus.publish(subjects.paper("update", "R"), update(1))
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        await asyncio.sleep(0.3)
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        rows = stack.store.query_df("SELECT consumer, subject, reason FROM {db}.dead_letters").rows()
        assert len(rows) == 1
        consumer, subject, reason = rows[0]
        assert (consumer, subject) == ("recorder-paper", "paper.update.R")
        assert reason.startswith("decode:")
        assert stack.store.table_counts()["decisions"] == 2
    finally:
        await stack.close()
