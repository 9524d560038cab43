"""Replay of the Fed December 2025 "no change" market, quoted on Polymarket and Kalshi.

The CSV (../shared/data/prediction_markets/fed_dec2025_nochange_poly_vs_kalshi/) has one
row per 30 minutes with each venue's best YES bid, best NO bid and the size at each. Every
row becomes one top-of-book row per venue, in YES terms: YES bid = best YES bid (size =
depth at it), YES ask = 1 - best NO bid (size = depth at the best NO bid). The file's
depth aggregates (top 3 levels, within 5c, total) carry no prices, so only level 1 is
replayed. Polymarket depths are fractional shares, floored to whole contracts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from libs.data.paths import data_dir
from libs.ids import new_id, now_ns
from proto.events import BookBatch
from proto.units import PRICE_SCALE

FED_INSTRUMENT = "FED-DEC25-NOCHANGE"
"""Both venues use this instrument id so the detector pairs their books."""
VENUES = ("polymarket", "kalshi")
SOURCE = "replay"
DATA_SET = Path("prediction_markets/fed_dec2025_nochange_poly_vs_kalshi/fed_nochange_30min_preprocessed.csv")
"""The file, relative to the data folder (`<repo>/../shared/data` or `MT_DATA_DIR`)."""

_PREFIX = {"polymarket": "poly", "kalshi": "kalshi"}
TS_COLUMN = "timestamp_ms"
VENUE_COLUMNS = tuple(
    f"{_PREFIX[v]}_{what}_{side}" for v in VENUES for what in ("best_bid", "depth_best") for side in ("yes", "no")
)
REQUIRED_COLUMNS = (TS_COLUMN, *VENUE_COLUMNS)
_MAX_DEPTH = 2.0**53
"""Depths at or above this are out of range (not exact as floats, nor plausible)."""


def default_path() -> Path:
    """Where the Fed CSV is expected."""
    return data_dir() / DATA_SET


@dataclass(frozen=True, slots=True)
class VenueBook:
    """One venue's top of book for every row, as int64 arrays (price 0 and size 0 = empty side)."""

    venue: str
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    empty_bid_rows: int
    """Rows whose YES bid was null, NaN, out of range or floored to size 0 (left empty)."""
    empty_ask_rows: int
    """Rows whose YES ask (from the NO bid) was null, NaN, out of range or size 0 (left empty)."""
    empty_rows: int
    """Rows with at least one side empty."""


@dataclass(frozen=True, slots=True)
class FedReplay:
    """The whole Fed data set as integer arrays, ready to be cut into BookBatch messages."""

    path: Path
    book_ts: np.ndarray
    """Market time of each row, UTC ns (int64, non-decreasing)."""
    books: dict[str, VenueBook]
    """Per venue ("polymarket", "kalshi")."""

    @property
    def rows(self) -> int:
        """Number of CSV rows (each gives one book row per venue)."""
        return len(self.book_ts)

    @property
    def start_ns(self) -> int:
        """Market time of the first row (UTC ns)."""
        return int(self.book_ts[0])

    @property
    def end_ns(self) -> int:
        """Market time of the last row (UTC ns)."""
        return int(self.book_ts[-1])

    @property
    def span_ns(self) -> int:
        """Market time covered, first row to last (ns)."""
        return self.end_ns - self.start_ns

    @property
    def empty_rows(self) -> dict[str, int]:
        """Per venue, rows with a side left empty because its value was missing or out of range."""
        return {v: b.empty_rows for v, b in self.books.items()}

    def batches(self, batch_rows: int) -> Iterator[tuple[int, BookBatch, BookBatch]]:
        """Yield (market time of the chunk's last row, polymarket batch, kalshi batch).

        Chunks are `batch_rows` consecutive rows: the whole file in one message when
        replaying as fast as possible, one row per message when paced by a virtual clock.
        """
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ValueError(f"batch_rows={batch_rows!r} must be a positive integer")
        poly, kalshi = self.books["polymarket"], self.books["kalshi"]
        for lo in range(0, self.rows, batch_rows):
            hi = min(lo + batch_rows, self.rows)
            ts = self.book_ts[lo:hi].tolist()
            yield ts[-1], _batch(poly, ts, lo, hi), _batch(kalshi, ts, lo, hi)


def _batch(book: VenueBook, ts: list[int], lo: int, hi: int) -> BookBatch:
    """Rows lo:hi of one venue as a BookBatch (1 level)."""
    return BookBatch(
        id=new_id(),
        ts=now_ns(),
        venue=book.venue,
        source=SOURCE,
        levels=1,
        instruments=[FED_INSTRUMENT],
        inst_idx=[0] * (hi - lo),
        book_ts=ts,
        bid_px=book.bid_px[lo:hi].tolist(),
        bid_sz=book.bid_sz[lo:hi].tolist(),
        ask_px=book.ask_px[lo:hi].tolist(),
        ask_sz=book.ask_sz[lo:hi].tolist(),
    )


def _floats(df: pl.DataFrame, column: str) -> np.ndarray:
    """A column as float64 with NaN for null or unparseable values."""
    return df[column].cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()


def _checked(df: pl.DataFrame, column: str, lo: float, hi: float, lo_open: bool) -> np.ndarray:
    """A float column where null (an empty side) stays NaN and anything else must be a number in range.

    A value that does not parse, or lies outside the range, is a ValueError naming the data
    row, the column and the value: a file in cents instead of dollars must not replay as an
    empty market.
    """
    raw = df[column]
    values = raw.cast(pl.Float64, strict=False)
    bad = (values.is_null() & raw.is_not_null()).to_numpy()
    arr = values.fill_null(np.nan).to_numpy()
    with np.errstate(invalid="ignore"):
        bad |= ~np.isnan(arr) & ((arr <= lo if lo_open else arr < lo) | (arr >= hi) | ~np.isfinite(arr))
    if bad.any():
        i = int(np.argmax(bad))
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g})"
        raise ValueError(f"data row {i + 1}, column {column}: {raw[i]!r} is not a number in {bounds}")
    return arr


def _side(df: pl.DataFrame, px_col: str, depth_col: str, *, reflect: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer (price, size) of one side; a null price or depth is an empty side (0, 0).

    `reflect` turns a NO bid into the YES ask (1 - price). A depth under 1 floors to empty.
    """
    px_dollars = _checked(df, px_col, 0.0, 1.0, lo_open=True)
    depth = _checked(df, depth_col, 0.0, _MAX_DEPTH, lo_open=False)
    ok = ~np.isnan(px_dollars) & ~np.isnan(depth)
    px = np.rint(np.where(ok, px_dollars, 0.0) * PRICE_SCALE).astype(np.int64)
    sz = np.floor(np.where(ok, depth, 0.0)).astype(np.int64)
    if reflect:
        px = np.where(ok, PRICE_SCALE - px, 0)
    ok &= (sz > 0) & (px > 0) & (px < PRICE_SCALE)
    return np.where(ok, px, 0), np.where(ok, sz, 0)


def _venue(df: pl.DataFrame, venue: str) -> VenueBook:
    p = _PREFIX[venue]
    bid_px, bid_sz = _side(df, f"{p}_best_bid_yes", f"{p}_depth_best_yes", reflect=False)
    ask_px, ask_sz = _side(df, f"{p}_best_bid_no", f"{p}_depth_best_no", reflect=True)
    empty_bid, empty_ask = bid_sz == 0, ask_sz == 0
    return VenueBook(
        venue=venue,
        bid_px=bid_px,
        bid_sz=bid_sz,
        ask_px=ask_px,
        ask_sz=ask_sz,
        empty_bid_rows=int(empty_bid.sum()),
        empty_ask_rows=int(empty_ask.sum()),
        empty_rows=int((empty_bid | empty_ask).sum()),
    )


def load_fed(path: Path | None = None) -> FedReplay:
    """Read the Fed CSV into integer books for both venues (vectorised, no per-row Python).

    Raises FileNotFoundError naming the path when it is absent, ValueError naming missing
    columns or bad timestamps. Rows are put in time order if the file is not.
    """
    path = default_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Fed replay data not found at {path}: the data set lives in ../shared/data beside the "
            f"project checkout ({DATA_SET}); set MT_DATA_DIR to the data folder if it is elsewhere"
        )
    try:
        # Every column as text, parsed below: a stray value becomes an empty side, not a failed read.
        df = pl.read_csv(path, infer_schema_length=0)
    except pl.exceptions.NoDataError:
        raise ValueError(f"{path} is empty: expected columns {list(REQUIRED_COLUMNS)}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} (needs {list(REQUIRED_COLUMNS)})")
    if df.height == 0:
        raise ValueError(f"{path} has a header but no rows")
    ts_ms = _floats(df, TS_COLUMN)
    bad = np.flatnonzero(~np.isfinite(ts_ms) | (ts_ms < 0))
    if len(bad):
        first = df[TS_COLUMN][int(bad[0])]
        raise ValueError(
            f"{path}: {TS_COLUMN} is missing or invalid in {len(bad)} rows "
            f"(first at data row {int(bad[0]) + 1}: {first!r})"
        )
    book_ts = np.rint(ts_ms).astype(np.int64) * 1_000_000
    if np.any(np.diff(book_ts) < 0):
        order = np.argsort(book_ts, kind="stable")
        df, book_ts = df[order], book_ts[order]
    books = {v: _venue(df, v) for v in VENUES}
    return FedReplay(path=path, book_ts=book_ts, books=books)
