"""A LOBSTER day as the book and trade events a live Nasdaq feed would publish.

Every message row gives one `BookBatch` row: the file's N-level book after that message
(venue "nasdaq", instrument the file's symbol, source "replay", `levels=N`). An empty
LOBSTER level (price +/-9999999999, size 0) becomes price 0 size 0. LOBSTER prices are
dollars x 10,000, which is `proto.units.PRICE_SCALE`, so they pass through unchanged; sizes
are shares. Executions (type 4 visible, 5 hidden) give `TradeBatch` rows at the resting
order's price and executed size; the aggressor is the opposite of the resting order's
direction (a buy limit order executed means a seller took liquidity: -1).

Times are seconds after midnight New York time on the date in the file name, converted to
UTC nanoseconds with that day's offset (2012-06-21 is EDT: 09:30 ET is 13:30 UTC) by
`libs.sim.sessions.to_utc_ns` (the XNYS session clock).
Everything is computed column-wise with numpy; batches only slice the columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.data.lobster import EMPTY_ASK, EMPTY_BID, EXECUTE, EXECUTE_HIDDEN, LobsterDay, _read, load_lobster
from libs.replay.columns import book_batch, trade_batch
from libs.replay.pacing import DEFAULT_BATCH_ROWS, Chunk, chunk_bounds, rows_in
from libs.sim.sessions import to_utc_ns
from proto.events import BookBatch, TradeBatch

VENUE = "nasdaq"
SOURCE = "replay"
MARKET = "XNYS"
"""LOBSTER files are Nasdaq days: New York session time."""


@dataclass(frozen=True)
class LobsterColumns:
    """A LOBSTER day converted: book rows (n, levels) per column and the execution rows."""

    instrument: str
    levels: int
    ts: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    trade_row: np.ndarray
    """Message row (0-based) of each trade, ascending."""
    trade_ts: np.ndarray
    trade_px: np.ndarray
    trade_sz: np.ndarray
    trade_aggressor: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.ts)


def lobster_columns(day: LobsterDay) -> LobsterColumns:
    """Convert a loaded day (see `libs.data.lobster.load_lobster`) into event columns."""
    n, levels = len(day), day.levels
    ts = to_utc_ns(day.date, MARKET, day.time)
    book = day.book.reshape(n, levels, 4)
    ask_px, ask_sz, bid_px, bid_sz = (np.ascontiguousarray(book[:, :, k]) for k in range(4))
    ask_empty = ask_px >= EMPTY_ASK
    bid_empty = bid_px <= EMPTY_BID
    ask_px[ask_empty] = 0
    ask_sz[ask_empty] = 0
    bid_px[bid_empty] = 0
    bid_sz[bid_empty] = 0
    trade_row = np.flatnonzero((day.type == EXECUTE) | (day.type == EXECUTE_HIDDEN))
    return LobsterColumns(
        instrument=day.symbol,
        levels=levels,
        ts=ts,
        bid_px=bid_px,
        bid_sz=bid_sz,
        ask_px=ask_px,
        ask_sz=ask_sz,
        trade_row=trade_row,
        trade_ts=ts[trade_row],
        trade_px=day.price[trade_row],
        trade_sz=day.size[trade_row],
        trade_aggressor=-day.direction[trade_row].astype(np.int64),
    )


def load_lobster_columns(message_file: Path | str, orderbook_file: Path | str | None = None) -> LobsterColumns:
    """Load and convert a LOBSTER day from its message file (or its folder).

    `orderbook_file` defaults to the message file's sibling; a different one is checked to
    have the same level count and row count.
    """
    day = load_lobster(message_file)
    if orderbook_file is not None:
        day = _with_orderbook(day, Path(orderbook_file))
    return lobster_columns(day)


def _with_orderbook(day: LobsterDay, path: Path) -> LobsterDay:
    """`day` with its book read from `path` instead (the same CSV reader, same level count, same rows)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such LOBSTER order-book file")
    book = _read(path, 4 * day.levels).astype(np.int64)
    if len(book) != len(day):
        raise ValueError(f"{path.name}: {len(book)} order-book rows but {day.source} has {len(day)} messages")
    return LobsterDay(**{**day.__dict__, "book": book})


def lobster_chunks(
    cols: LobsterColumns,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    span_ns: int | None = None,
    venue: str = VENUE,
    source: str = SOURCE,
) -> Iterator[Chunk]:
    """The day as publishes: per chunk of message rows, its `BookBatch` then its `TradeBatch`
    (when the chunk holds executions); see `libs.replay.pacing` for `span_ns`."""
    bounds = chunk_bounds(cols.ts, batch_rows, span_ns)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        out: list[BookBatch | TradeBatch] = [book_batch(cols, a, b, venue=venue, source=source)]
        t = rows_in(cols.trade_row, a, b)
        if t.stop > t.start:
            out.append(trade_batch(cols, t, venue=venue, source=source))
        yield Chunk(int(cols.ts[b - 1]), out)  # type: ignore[arg-type]
