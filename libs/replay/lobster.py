"""A LOBSTER day as the book and trade events a live Nasdaq feed would publish.

Every message row gives one `BookBatch` row: the file's N-level book after that message
(venue "nasdaq", instrument the file's symbol, source "replay", `levels=N`). An empty
LOBSTER level (price +/-9999999999, size 0) becomes price 0 size 0. LOBSTER prices are
dollars x 10,000, which is `proto.units.PRICE_SCALE`, so they pass through unchanged; sizes
are shares. Executions (type 4 visible, 5 hidden) give `TradeBatch` rows at the resting
order's price and executed size; the aggressor is the opposite of the resting order's
direction (a buy limit order executed means a seller took liquidity: -1).

Times are seconds after midnight New York time on the date in the file name, converted to
UTC nanoseconds with that day's offset (2012-06-21 is EDT: 09:30 ET is 13:30 UTC).
Everything is computed column-wise with numpy; batches only slice the columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from libs.data.lobster import EMPTY_ASK, EMPTY_BID, EXECUTE, EXECUTE_HIDDEN, LobsterDay, load_lobster
from libs.ids import new_id, now_ns
from libs.replay.pacing import DEFAULT_BATCH_ROWS, Chunk, chunk_bounds, rows_in
from proto.events import BookBatch, TradeBatch

VENUE = "nasdaq"
SOURCE = "replay"
EXCHANGE_TZ = "America/New_York"


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


def midnight_utc_ns(date: str, tz: str = EXCHANGE_TZ) -> int:
    """UTC nanoseconds of local midnight of `date` (YYYY-MM-DD) in `tz`."""
    return int(pd.Timestamp(date).tz_localize(tz).tz_convert("UTC").value)


def seconds_to_utc_ns(date: str, seconds: np.ndarray, tz: str = EXCHANGE_TZ) -> np.ndarray:
    """Seconds after local midnight on `date` to UTC ns; DST-correct as long as the day has no clock change
    before the times given (US changes happen at 02:00, long before the market opens)."""
    base = pd.Timestamp(date).tz_localize(tz)
    wall = base.tz_localize(None)
    # Offsets of the local clock at each time: the same for the whole trading day, but take it per row anyway.
    local = pd.DatetimeIndex(wall + pd.to_timedelta(np.rint(seconds * 1e9).astype(np.int64), unit="ns"))
    return local.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").tz_convert("UTC").asi8.astype(np.int64)


def lobster_columns(day: LobsterDay) -> LobsterColumns:
    """Convert a loaded day (see `libs.data.lobster.load_lobster`) into event columns."""
    n, levels = len(day), day.levels
    ts = seconds_to_utc_ns(day.date, day.time)
    if (ts < 0).any():
        row = int(np.argmax(ts < 0)) + 1
        raise ValueError(f"{day.source} row {row}: time {day.time[row - 1]!r} does not exist in {EXCHANGE_TZ}")
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
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such LOBSTER order-book file")
    try:
        book = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2).astype(np.int64)
    except ValueError as exc:
        raise ValueError(f"{path.name}: not numeric CSV ({exc})") from exc
    if book.shape[1] % 4:
        raise ValueError(f"{path.name}: {book.shape[1]} columns, expected 4 per level")
    if len(book) != len(day):
        raise ValueError(f"{path.name}: {len(book)} order-book rows but {day.source} has {len(day)} messages")
    return LobsterDay(**{**day.__dict__, "book": book, "levels": book.shape[1] // 4})


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


def book_batch(cols: LobsterColumns, a: int, b: int, *, venue: str = VENUE, source: str = SOURCE) -> BookBatch:
    """Book rows a..b-1 as one message."""
    return BookBatch(
        id=new_id(),
        ts=now_ns(),
        venue=venue,
        source=source,
        levels=cols.levels,
        instruments=[cols.instrument],
        inst_idx=[0] * (b - a),
        book_ts=cols.ts[a:b].tolist(),
        bid_px=cols.bid_px[a:b].ravel().tolist(),
        bid_sz=cols.bid_sz[a:b].ravel().tolist(),
        ask_px=cols.ask_px[a:b].ravel().tolist(),
        ask_sz=cols.ask_sz[a:b].ravel().tolist(),
    )


def trade_batch(cols: LobsterColumns, t: slice, *, venue: str = VENUE, source: str = SOURCE) -> TradeBatch:
    """Trades t as one message."""
    return TradeBatch(
        id=new_id(),
        ts=now_ns(),
        venue=venue,
        source=source,
        instruments=[cols.instrument],
        inst_idx=[0] * (t.stop - t.start),
        trade_ts=cols.trade_ts[t].tolist(),
        px=cols.trade_px[t].tolist(),
        size=cols.trade_sz[t].tolist(),
        aggressor=cols.trade_aggressor[t].tolist(),
    )
