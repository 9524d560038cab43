"""The paper trader's view of the markets: a vectorised book history and the latest market facts.

`BookHistory` keeps, per (venue, instrument), the recent book rows as numpy arrays (book time,
and bid/ask price and size ladders, one row per update, `levels` columns). A `BookBatch` is
appended whole: its rows are validated column-wise (no per-row Python), grouped by instrument and
copied in with one slice assignment per instrument. `at(venue, instrument, ts)` is the latest row
with `book_ts <= ts` (binary search), so a fill uses the book as of the moment it happens, never one
from its future (a replay runs far ahead of the wall clock); `lookup` answers many such queries at
once and gathers the rows into one pool the engine's kernel reads.

Memory is bounded per instrument: rows older than `lookback_ns` (market time, behind the newest row)
are dropped, except the newest of them (it is still the book as of the start of the window), and at
most `max_rows` rows are kept. Buffers grow by doubling and are compacted in place.

Rows of one instrument normally arrive in time order; a row older than the newest held is merged
into place (a slow path that re-sorts that instrument's rows, stable, so a later row at the same
`book_ts` wins as the latest).

`MarketFacts` keeps the latest `MarketInfo` facts per (venue, instrument): the venue's status (a
closed, settled or finalized market fails exchange validation), the venue's own market id (Kalshi's
ticker with its '.' restored) and, for Polymarket, the instrument's own fee model when the venue
reports a taker fee rate (as detect prices it, so paper charges what detect priced).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.fees import POLYMARKET, FeeModel, polymarket_fee_model
from proto.events import BookBatch, MarketInfo
from proto.units import PRICE_SCALE

DEFAULT_MAX_ROWS = 2_048
SMALL_LOOKUP = 8
"""Lookups of up to this many queries go one by one (`BookHistory._lookup_few`)."""
"""Rows kept per instrument at most (a few minutes of a busy live feed; a replay's burst)."""

CLOSED_STATUSES = frozenset({"closed", "settled", "finalized", "determined", "inactive", "archived", "resolved"})
"""Market statuses (as the venues say them, lower case) in which nothing can be bought: Kalshi's
closed/settled/finalized/determined/inactive, Polymarket's closed/archived/inactive."""


@dataclass(frozen=True, slots=True)
class BookRow:
    """One instrument's book at one time, in YES terms, best level first (size 0: empty level)."""

    book_ts: int
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray

    def ladder(self, outcome: str) -> tuple[np.ndarray, np.ndarray]:
        """The asks to buy `outcome` from: the YES asks, or for NO the YES bids reflected (1 − bid)."""
        if outcome == "yes":
            return self.ask_px, self.ask_sz
        return np.where(self.bid_sz > 0, PRICE_SCALE - self.bid_px, 0), self.bid_sz.copy()


@dataclass(frozen=True, slots=True)
class Lookup:
    """The rows answering a set of `(key, ts)` queries, gathered into one pool.

    `row[q]` is the pool row of query q (−1: no book held that early), `book_ts[q]` its book time
    (0 when none). Pool arrays are (rows, levels) int64, shorter ladders padded with empty levels.
    """

    row: np.ndarray
    book_ts: np.ndarray
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray


class _Series:
    """The rows of one (venue, instrument): live rows are [start, n) of the buffers, sorted by time."""

    __slots__ = ("ask_px", "ask_sz", "bid_px", "bid_sz", "levels", "n", "start", "ts")

    def __init__(self, levels: int, capacity: int) -> None:
        self.levels = levels
        self.ts = np.zeros(capacity, np.int64)
        self.bid_px = np.zeros((capacity, levels), np.int64)
        self.bid_sz = np.zeros((capacity, levels), np.int64)
        self.ask_px = np.zeros((capacity, levels), np.int64)
        self.ask_sz = np.zeros((capacity, levels), np.int64)
        self.start = 0
        self.n = 0

    @property
    def rows(self) -> int:
        return self.n - self.start

    def newest(self) -> int | None:
        return int(self.ts[self.n - 1]) if self.n > self.start else None

    def latest_index(self, t: int) -> int:
        """The buffer row of the newest book at or before `t` (−1: none held that early)."""
        if self.n == self.start:
            return -1
        if t >= self.ts[self.n - 1]:
            return self.n - 1
        i = int(np.searchsorted(self.ts[self.start : self.n], t, "right")) - 1 + self.start
        return i if i >= self.start else -1

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.bid_px, self.bid_sz, self.ask_px, self.ask_sz

    def _reshape(self, capacity: int, levels: int) -> None:
        """Move the live rows to the front of buffers of `capacity` rows and `levels` columns."""
        live = self.n - self.start
        s = slice(self.start, self.n)
        old_levels = self.levels
        ts = np.zeros(capacity, np.int64)
        ts[:live] = self.ts[s]
        new = []
        for arr in self._arrays():
            a = np.zeros((capacity, levels), np.int64)
            a[:live, :old_levels] = arr[s]
            new.append(a)
        self.ts = ts
        self.bid_px, self.bid_sz, self.ask_px, self.ask_sz = new
        self.levels = levels
        self.start, self.n = 0, live

    def append(
        self,
        ts: np.ndarray,
        cols: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        max_rows: int,
        lookback_ns: int | None,
        hold_ns: int | None = None,
    ) -> None:
        """Add rows (ts ascending within `ts` is not required), then trim to the window: `lookback_ns`
        before the newest row, or before `hold_ns` when that is earlier (books still needed)."""
        m, levels = cols[0].shape
        if levels > self.levels:
            self._reshape(self.ts.shape[0], levels)
        if self.n + m > self.ts.shape[0]:  # compact (and grow, up to about twice max_rows)
            need = self.n - self.start + m
            self._reshape(max(need, min(max(16, 2 * need), 2 * max_rows)), self.levels)
        after_last = self.n == self.start or ts[0] >= self.ts[self.n - 1]
        in_order = after_last and (m == 1 or bool(np.all(ts[1:] >= ts[:-1])))
        e = self.n + m
        self.ts[self.n : e] = ts
        for dst, src in zip(self._arrays(), cols, strict=True):
            dst[self.n : e, :levels] = src
            if levels < self.levels:
                dst[self.n : e, levels:] = 0
        self.n = e
        if not in_order:  # a late row: re-sort this instrument's rows (stable: the later arrival wins ties)
            s = slice(self.start, self.n)
            order = np.argsort(self.ts[s], kind="stable")
            self.ts[s] = self.ts[s][order]
            for arr in self._arrays():
                arr[s] = arr[s][order]
        newest = int(self.ts[self.n - 1])
        keep_from = max(self.start, self.n - max_rows)
        if lookback_ns is not None:
            # the newest row at or before the window's start is still the book as of that start
            ref = newest if hold_ns is None else min(newest, hold_ns)
            first = int(np.searchsorted(self.ts[self.start : self.n], ref - lookback_ns, "right")) - 1
            keep_from = max(keep_from, self.start + max(first, 0))
        self.start = keep_from

    def index(self, ts: np.ndarray) -> np.ndarray:
        """Buffer index of the latest row with book_ts <= each ts (−1 when none)."""
        pos = np.searchsorted(self.ts[self.start : self.n], ts, "right") - 1
        return np.where(pos >= 0, pos + self.start, -1)


def check_book_batch(batch: BookBatch) -> tuple[np.ndarray, ...]:
    """The batch's columns as int64 arrays (book_ts, inst_idx, bid_px, bid_sz, ask_px, ask_sz as
    (rows, levels)), or ValueError naming the batch, field, row and value.

    The same rules as `libs.bookstate.check_batch`, column-wise: lengths agree with rows × levels,
    every inst_idx names an instrument, sizes are >= 0, non-empty levels are priced inside (0, 1),
    asks ascend and bids descend (over the non-empty levels).
    """
    rows, lv = len(batch.book_ts), batch.levels
    name = f"BookBatch {batch.id!r}"
    if lv < 1:
        raise ValueError(f"{name}: levels={lv} must be at least 1")
    if len(batch.inst_idx) != rows:
        raise ValueError(f"{name}: inst_idx has {len(batch.inst_idx)} rows, book_ts {rows}")
    for field in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        n = len(getattr(batch, field))
        if n != rows * lv:
            raise ValueError(f"{name}: {field} has {n} values, expected rows x levels = {rows * lv}")
    ts = np.asarray(batch.book_ts, np.int64)
    inst = np.asarray(batch.inst_idx, np.int64)
    if rows and (inst.min() < 0 or inst.max() >= len(batch.instruments)):
        r = int(np.flatnonzero((inst < 0) | (inst >= len(batch.instruments)))[0])
        raise ValueError(f"{name}: inst_idx[{r}]={int(inst[r])} is outside instruments (len {len(batch.instruments)})")
    cols = []
    for field in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        cols.append(np.asarray(getattr(batch, field), np.int64).reshape(rows, lv))
    bid_px, bid_sz, ask_px, ask_sz = cols
    for side, px, sz, ascending in (("bids", bid_px, bid_sz, False), ("asks", ask_px, ask_sz, True)):
        neg = sz < 0
        if neg.any():
            r, j = (int(x[0]) for x in np.nonzero(neg))
            raise ValueError(f"{name} row {r} {batch.venue} {side} sz[{j}]={int(sz[r, j])} must not be negative")
        live = sz > 0
        bad = live & ((px <= 0) | (px >= PRICE_SCALE))
        if bad.any():
            r, j = (int(x[0]) for x in np.nonzero(bad))
            raise ValueError(
                f"{name} row {r} {batch.venue} {side} px[{j}]={int(px[r, j])} must be inside (0, {PRICE_SCALE})"
            )
        if lv > 1:
            if ascending:  # each live ask >= every live ask before it
                run = np.maximum.accumulate(np.where(live, px, 0), axis=1)
                wrong = live[:, 1:] & (px[:, 1:] < run[:, :-1])
            else:  # each live bid <= every live bid before it
                run = np.minimum.accumulate(np.where(live, px, PRICE_SCALE), axis=1)
                wrong = live[:, 1:] & (px[:, 1:] > run[:, :-1])
            if wrong.any():
                r, j = (int(x[0]) for x in np.nonzero(wrong))
                order = "ascending (asks)" if ascending else "descending (bids)"
                raise ValueError(
                    f"{name} row {r} {batch.venue} {side} px[{j + 1}]={int(px[r, j + 1])} "
                    f"breaks the {order} level order"
                )
    return ts, inst, bid_px, bid_sz, ask_px, ask_sz


class BookHistory:
    """Recent books of every (venue, instrument), as arrays; `at` answers "the book as of ts"."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, lookback_ns: int | None = None) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows={max_rows} must be at least 1")
        self.max_rows = max_rows
        self.lookback_ns = lookback_ns
        self.hold_ns: int | None = -(2**62)
        """Market time the lookback window may not start after: the book time of the intents still to
        be decided (set by the paper service as it decides). A replay much faster than real time
        runs the books far ahead of the intents; without the hold, the books those intents fill on
        would be trimmed away before they are decided. Starts at "keep everything" (`max_rows`
        still bounds memory); None: trim by the newest row alone."""
        self._series: dict[tuple[str, str], _Series] = {}
        self.rows_added = 0

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._series

    def keys(self) -> list[tuple[str, str]]:
        return list(self._series)

    def rows(self, venue: str, instrument: str) -> int:
        """Rows held for one instrument."""
        s = self._series.get((venue, instrument))
        return s.rows if s is not None else 0

    def newest(self, venue: str, instrument: str) -> int | None:
        """book_ts of the newest row held (None: nothing held)."""
        s = self._series.get((venue, instrument))
        return s.newest() if s is not None else None

    def add(self, batch: BookBatch) -> int:
        """Append every row of a batch (validated first: ValueError leaves the history untouched)."""
        ts, inst, bid_px, bid_sz, ask_px, ask_sz = check_book_batch(batch)
        rows = len(ts)
        if not rows:
            return 0
        lv = batch.levels
        if inst.min() == inst.max():
            groups: list[tuple[int, np.ndarray | slice]] = [(int(inst[0]), slice(None))]
        else:
            order = np.argsort(inst, kind="stable")
            sorted_inst = inst[order]
            cuts = np.flatnonzero(np.diff(sorted_inst)) + 1
            groups = [(int(inst[g[0]]), g) for g in np.split(order, cuts)]
        for idx, sel in groups:
            key = (batch.venue, batch.instruments[idx])
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(lv, 16)
            series.append(
                ts[sel],
                (bid_px[sel], bid_sz[sel], ask_px[sel], ask_sz[sel]),
                self.max_rows,
                self.lookback_ns,
                self.hold_ns,
            )
        self.rows_added += rows
        return rows

    def at(self, venue: str, instrument: str, ts: int) -> BookRow | None:
        """The newest book at or before `ts`; None when none is held that early."""
        s = self._series.get((venue, instrument))
        if s is None:
            return None
        i = int(s.index(np.asarray([ts], np.int64))[0])
        if i < 0:
            return None
        return BookRow(int(s.ts[i]), s.bid_px[i].copy(), s.bid_sz[i].copy(), s.ask_px[i].copy(), s.ask_sz[i].copy())

    def row_at(
        self, venue: str, instrument: str, ts: int
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
        """`at` without copies, for the hot path: (book_ts, bid_px, bid_sz, ask_px, ask_sz, row): the
        instrument's whole (rows, levels) buffers and the row of the newest book at or before `ts`,
        valid until the next `add`; None when no book is held that early."""
        s = self._series.get((venue, instrument))
        i = -1 if s is None else s.latest_index(ts)
        if s is None or i < 0:
            return None
        return int(s.ts[i]), s.bid_px, s.bid_sz, s.ask_px, s.ask_sz, i

    def lookup(self, keys: list[tuple[str, str]], key_idx: np.ndarray, ts: np.ndarray) -> Lookup:
        """Answer queries q = (keys[key_idx[q]], ts[q]) at once: one binary search per key.

        A negative key_idx is a query with no instrument (its row is −1).
        """
        q = len(ts)
        if q <= SMALL_LOOKUP:
            return self._lookup_few(keys, key_idx, ts)
        row = np.full(q, -1, np.int64)
        book_ts = np.zeros(q, np.int64)
        found: list[tuple[_Series, np.ndarray, np.ndarray]] = []
        width = 1
        groups: dict[int, list[int]] = {}  # a batch names few instruments: one search per instrument
        for query, k in enumerate(key_idx.tolist()):
            if k >= 0:
                groups.setdefault(k, []).append(query)
        for k, queries in groups.items():
            s = self._series.get(keys[k])
            if s is None or s.rows == 0:
                continue
            group = np.array(queries, np.int64)
            idx = s.index(ts[group])
            ok = idx >= 0
            if ok.any():
                found.append((s, group[ok], idx[ok]))
                width = max(width, s.levels)
        total = sum(len(g) for _, g, _ in found)
        pool = [np.zeros((total, width), np.int64) for _ in range(4)]
        at = 0
        for s, group, idx in found:
            e = at + len(group)
            row[group] = np.arange(at, e)
            book_ts[group] = s.ts[idx]
            for dst, src in zip(pool, s._arrays(), strict=True):
                dst[at:e, : s.levels] = src[idx]
            at = e
        return Lookup(row, book_ts, *pool)

    def _lookup_few(self, keys: list[tuple[str, str]], key_idx: np.ndarray, ts: np.ndarray) -> Lookup:
        """`lookup` for a handful of queries (a batch of one or two orders), one by one: the
        same answers without the grouping's dozens of tiny numpy calls."""
        found: list[tuple[_Series, int]] = []
        row = [-1] * len(ts)
        book_ts = [0] * len(ts)
        width = 1
        for q, (k, t) in enumerate(zip(key_idx.tolist(), ts.tolist(), strict=True)):
            s = self._series.get(keys[k]) if k >= 0 else None
            i = -1 if s is None else s.latest_index(t)
            if i < 0:
                continue
            row[q] = len(found)
            book_ts[q] = int(s.ts[i])
            found.append((s, i))
            width = max(width, s.levels)
        pool = [np.zeros((len(found), width), np.int64) for _ in range(4)]
        for r, (s, i) in enumerate(found):
            for dst, src in zip(pool, s._arrays(), strict=True):
                dst[r, : s.levels] = src[i]
        return Lookup(np.array(row, np.int64), np.array(book_ts, np.int64), *pool)


class MarketFacts:
    """The latest MarketInfo facts per (venue, instrument): status, the venue's id, own fee model."""

    def __init__(self) -> None:
        self.status: dict[tuple[str, str], str] = {}
        self.market_id: dict[tuple[str, str], str] = {}
        self.fees: dict[tuple[str, str], FeeModel] = {}
        self.version = 0
        """Bumped on every change, so cached per-instrument lookups know to refresh."""

    def update(self, info: MarketInfo) -> None:
        """Take one MarketInfo (in stream order). A fee rate that is not a number raises ValueError
        naming it, before anything changes."""
        model = fee_model_of(info)
        key = (info.venue, info.instrument)
        if info.status:
            self.status[key] = info.status.strip().lower()
        if info.market_id:
            self.market_id[key] = info.market_id
        if model is None:
            self.fees.pop(key, None)
        else:
            self.fees[key] = model
        self.version += 1

    def closed(self, venue: str, instrument: str) -> str:
        """The venue's status when it says nothing can be bought ('' otherwise, or when unknown)."""
        status = self.status.get((venue, instrument), "")
        return status if status in CLOSED_STATUSES else ""


def fee_model_of(info: MarketInfo) -> FeeModel | None:
    """The per-instrument fee model a MarketInfo implies (Polymarket reporting a taker fee rate, or
    fees switched off), else None (the venue's default applies); ValueError for a rate that is not
    a number. The same rule as detect's, so paper charges the fees detect priced."""
    if info.venue != POLYMARKET:
        return None
    if info.taker_fee_rate:
        try:
            return polymarket_fee_model(info.taker_fee_rate, info.fee_exponent or 1)
        except ValueError as e:
            raise ValueError(
                f"MarketInfo {info.id!r} ({info.venue} {info.instrument}): taker_fee_rate={info.taker_fee_rate!r}, "
                f"fee_exponent={info.fee_exponent!r}: {e}"
            ) from None
    if info.fees_enabled is False:
        return polymarket_fee_model(0)
    return None
