"""A Bitstamp L3 capture as the book and trade events a live Bitstamp feed would publish.

The order events drive the numba matching engine (`libs.lob.replay.replay_bitstamp` works
out which operations reproduce Bitstamp's own matching, then we re-apply them here), and the
top `levels` levels of each side are published as `BookBatch` rows (venue "bitstamp",
instrument "BTCUSD", source "replay"): one row per exchange millisecond at which the top
`levels` changed (changes deeper in the book, and events that change nothing, give no row).
The recorded trades are published as `TradeBatch` rows; the aggressor is the recorded taker
side.

Units: prices in `proto.units.PRICE_SCALE` units ($0.0001: $78,318.00 is 783_180_000, far
inside int64); sizes in satoshi (1e-8 BTC, `libs.data.bitstamp.AMOUNT_SCALE`), the finest
amount Bitstamp reports, so 0.5 BTC is 50_000_000. Times are Bitstamp's `exchange_timestamp`
(UTC ms) in ns. Empty levels are price 0 size 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from libs.data.bitstamp import BitstampCapture, load_bitstamp
from libs.lob import core
from libs.lob.replay import replay_bitstamp
from libs.replay.columns import book_batch, trade_batch
from libs.replay.pacing import DEFAULT_BATCH_ROWS, Chunk, chunk_bounds, rows_in
from proto.events import BookBatch, TradeBatch

VENUE = "bitstamp"
INSTRUMENT = "BTCUSD"
SOURCE = "replay"
DEFAULT_LEVELS = 10


@dataclass(frozen=True)
class BitstampColumns:
    """A capture converted: top-`levels` book rows (n, levels) per column, and the trades."""

    instrument: str
    levels: int
    ts: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    trade_ts: np.ndarray
    trade_px: np.ndarray
    trade_sz: np.ndarray
    trade_aggressor: np.ndarray
    events: int
    """Order events read (the engine's input)."""

    @property
    def rows(self) -> int:
        return len(self.ts)


@njit(cache=True)
def _snapshots(book, kind, ts, oid, side, price, qty, owner, levels, out_ts, bid_px, bid_sz, ask_px, ask_sz):  # type: ignore[no-untyped-def]
    """Apply ops in order; after the last op of each timestamp, write the top `levels` when they
    changed. Returns (book, rows written, first failed op or -1)."""
    n = kind.shape[0]
    rows = 0
    cur_bp = np.zeros(levels, np.int64)
    cur_bq = np.zeros(levels, np.int64)
    cur_ap = np.zeros(levels, np.int64)
    cur_aq = np.zeros(levels, np.int64)
    for i in range(n):
        while True:
            r = core.apply_op(book, kind[i], ts[i], oid[i], side[i], price[i], qty[i], owner[i])
            if r != core.NEED_GROW:
                break
            book = core.grow(book)
        if r < 0:
            return book, rows, i
        if i + 1 < n and ts[i + 1] == ts[i]:
            continue
        cur_bp[:] = 0
        cur_bq[:] = 0
        cur_ap[:] = 0
        cur_aq[:] = 0
        core.depth(book, core.BUY, levels, cur_bp, cur_bq)
        core.depth(book, core.SELL, levels, cur_ap, cur_aq)
        if rows > 0:
            same = True
            for k in range(levels):
                p = rows - 1
                if (
                    bid_px[p, k] != cur_bp[k]
                    or bid_sz[p, k] != cur_bq[k]
                    or ask_px[p, k] != cur_ap[k]
                    or ask_sz[p, k] != cur_aq[k]
                ):
                    same = False
                    break
            if same:
                continue
        out_ts[rows] = ts[i]
        bid_px[rows, :] = cur_bp
        bid_sz[rows, :] = cur_bq
        ask_px[rows, :] = cur_ap
        ask_sz[rows, :] = cur_aq
        rows += 1
    return book, rows, -1


def bitstamp_columns(capture: BitstampCapture, levels: int = DEFAULT_LEVELS) -> BitstampColumns:
    """Rebuild the book from the capture's order events and take its top `levels` after each change."""
    if levels < 1:
        raise ValueError(f"levels={levels!r} must be at least 1")
    replay = replay_bitstamp(capture.orders)
    ops = replay.ops
    n = len(ops)
    out_ts = np.zeros(n, np.int64)
    grids = [np.zeros((n, levels), np.int64) for _ in range(4)]
    book = core.new_book(1 << 14, 1 << 12)
    book, rows, failed = _snapshots(
        book, ops.kind, ops.ts, ops.oid, ops.side, ops.price, ops.qty, ops.owner, levels, out_ts, *grids
    )
    if failed >= 0:
        event = int(replay.op_event[failed])
        raise ValueError(f"{capture.orders.source} row {event + 2}: the engine refused the operation derived from it")
    t = capture.trades
    order = np.argsort(t.exchange_ts_ms, kind="stable")
    return BitstampColumns(
        instrument=INSTRUMENT,
        levels=levels,
        ts=out_ts[:rows].copy(),
        bid_px=grids[0][:rows].copy(),
        bid_sz=grids[1][:rows].copy(),
        ask_px=grids[2][:rows].copy(),
        ask_sz=grids[3][:rows].copy(),
        trade_ts=t.exchange_ts_ms[order] * 1_000_000,
        trade_px=t.price[order],
        trade_sz=t.amount[order],
        trade_aggressor=t.side[order].astype(np.int64),
        events=len(capture.orders),
    )


def load_bitstamp_columns(path: Path | str, levels: int = DEFAULT_LEVELS) -> BitstampColumns:
    """Load a capture directory and convert it."""
    return bitstamp_columns(load_bitstamp(path), levels)


def bitstamp_chunks(
    cols: BitstampColumns,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    span_ns: int | None = None,
    venue: str = VENUE,
    source: str = SOURCE,
) -> Iterator[Chunk]:
    """The capture as publishes: per chunk of book rows, its `BookBatch` then the trades up to
    its last row's time (trades after the last book row go with the last chunk)."""
    bounds = chunk_bounds(cols.ts, batch_rows, span_ns)
    # the book row each trade belongs to: the last one at or before the trade
    trade_key = np.maximum(np.searchsorted(cols.ts, cols.trade_ts, side="right") - 1, 0)
    last = len(bounds) - 2
    for k, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        out: list[BookBatch | TradeBatch] = [book_batch(cols, a, b, venue=venue, source=source)]
        t = rows_in(trade_key, a, b if k < last else np.iinfo(np.int64).max)
        due = int(cols.ts[b - 1])
        if t.stop > t.start:
            out.append(trade_batch(cols, t, venue=venue, source=source))
            due = max(due, int(cols.trade_ts[t.stop - 1]))
        yield Chunk(due, out)  # type: ignore[arg-type]
