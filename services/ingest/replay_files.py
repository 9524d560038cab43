"""Replay of recorded files (LOBSTER, Bitstamp L3, OHLCV bars) onto the bus on a virtual clock.

Each runner loads and converts its file off the event loop, then publishes chunk by chunk:
a chunk goes out when its last row is due on `libs.clock.VirtualClock(speed)` (None or 0:
as fast as possible; N: N x real time in market time), and paced chunks span at most
`flush_s` of wall time, so no row is published early and none waits long (see
`libs.replay.pacing`). `publish` receives the batches of one chunk in order (book before
trades) and should route them with `proto.subjects.of_batch`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from libs.clock import VirtualClock, check_speed
from libs.replay.bars import TIMEFRAME_NS, bar_chunks, load_bar_columns
from libs.replay.bitstamp import DEFAULT_LEVELS, bitstamp_chunks, load_bitstamp_columns
from libs.replay.lobster import load_lobster_columns, lobster_chunks
from libs.replay.pacing import DEFAULT_BATCH_ROWS, DEFAULT_FLUSH_S, Chunk, window_ns
from proto.events import BarBatch, BookBatch, TradeBatch
from services.ingest.stats import ReplayStats

Batch = BookBatch | TradeBatch | BarBatch
Publish = Callable[[Sequence[Batch]], Awaitable[None]]


async def _run(
    source: str, publish: Publish, chunks: Iterable[Chunk], speed: float | None, t_load: float
) -> ReplayStats:
    clock = VirtualClock(speed or None)
    stats = ReplayStats(source=source, load_seconds=t_load)
    t0 = time.perf_counter()
    for chunk in chunks:
        if not clock.started:  # anchor at the first ROW's time: the first chunk is due when its last row is
            clock.start(min(_first_ts(b) for b in chunk.batches))
        await clock.wait_until(chunk.due_ns)
        await publish(chunk.batches)
        stats.count(chunk.batches)
        for b in chunk.batches:
            first = _first_ts(b)
            stats.first_ts = first if stats.first_ts == 0 else min(stats.first_ts, first)
        stats.last_ts = max(stats.last_ts, chunk.due_ns)
    stats.seconds = time.perf_counter() - t0
    return stats


def _first_ts(b: Batch) -> int:
    """Market time of a batch's first row (a bar: its close, when the bar is due)."""
    if isinstance(b, BookBatch):
        return b.book_ts[0]
    if isinstance(b, TradeBatch):
        return b.trade_ts[0]
    return b.bar_ts[0] + TIMEFRAME_NS[b.timeframe]


def _span(speed: float | None, flush_s: float) -> int | None:
    return window_ns(check_speed(speed or None), flush_s)


async def replay_lobster(
    publish: Publish,
    message_file: Path,
    orderbook_file: Path | None = None,
    speed: float | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    flush_s: float = DEFAULT_FLUSH_S,
) -> ReplayStats:
    """Replay a LOBSTER day (message file or its folder): book rows on `md.book.nasdaq.<SYMBOL>`,
    executions on `md.trade.nasdaq.<SYMBOL>`."""
    span = _span(speed, flush_s)
    t0 = time.perf_counter()
    cols = await asyncio.to_thread(load_lobster_columns, message_file, orderbook_file)
    chunks = lobster_chunks(cols, batch_rows=batch_rows, span_ns=span)
    return await _run("lobster", publish, chunks, speed, time.perf_counter() - t0)


async def replay_bitstamp(
    publish: Publish,
    path: Path,
    speed: float | None = None,
    levels: int = DEFAULT_LEVELS,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    flush_s: float = DEFAULT_FLUSH_S,
) -> ReplayStats:
    """Replay a Bitstamp L3 capture directory: the rebuilt top-`levels` book on
    `md.book.bitstamp.BTCUSD`, the recorded trades on `md.trade.bitstamp.BTCUSD`."""
    span = _span(speed, flush_s)
    t0 = time.perf_counter()
    cols = await asyncio.to_thread(load_bitstamp_columns, path, levels)
    chunks = bitstamp_chunks(cols, batch_rows=batch_rows, span_ns=span)
    return await _run("bitstamp", publish, chunks, speed, time.perf_counter() - t0)


async def replay_bars(
    publish: Publish,
    path: Path,
    speed: float | None = None,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    venue: str = "file",
    tz: str = "UTC",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    flush_s: float = DEFAULT_FLUSH_S,
) -> ReplayStats:
    """Replay an OHLCV file (CSV/Parquet) as `BarBatch`es on `md.bar.<venue>.<symbol>.<timeframe>`;
    the symbol defaults to the file name's first `_` part, the timeframe to the inferred one."""
    span = _span(speed, flush_s)
    t0 = time.perf_counter()
    cols = await asyncio.to_thread(load_bar_columns, path, symbol=symbol, timeframe=timeframe, tz=tz)
    chunks = bar_chunks(cols, batch_rows=batch_rows, span_ns=span, venue=venue)
    return await _run("bars", publish, chunks, speed, time.perf_counter() - t0)
