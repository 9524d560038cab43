"""The latest order book per (venue, instrument), kept from BookBatch events.

Detect holds one to price opportunities (paper keeps its own columnar history, `libs.paper.books`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.book import check_ladder, no_asks_from_yes_bids
from proto.events import BookBatch, Outcome


@dataclass
class BookState:
    """The latest book of one instrument on one venue, in YES terms, best level first."""

    book_ts: int
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray

    def ladder(self, outcome: Outcome) -> tuple[np.ndarray, np.ndarray]:
        """The asks to buy `outcome` from: the YES asks, or for NO the YES bids reflected."""
        if outcome == "yes":
            return self.ask_px, self.ask_sz
        return no_asks_from_yes_bids(self.bid_px, self.bid_sz)


Books = dict[tuple[str, str], BookState]


def apply_row(books: Books, batch: BookBatch, r: int) -> str:
    """Make row r of the batch its instrument's latest book; returns the instrument."""
    lv = batch.levels
    s = slice(r * lv, (r + 1) * lv)
    instrument = batch.instruments[batch.inst_idx[r]]
    books[(batch.venue, instrument)] = BookState(
        batch.book_ts[r],
        np.asarray(batch.bid_px[s], np.int64),
        np.asarray(batch.bid_sz[s], np.int64),
        np.asarray(batch.ask_px[s], np.int64),
        np.asarray(batch.ask_sz[s], np.int64),
    )
    return instrument


def check_batch(batch: BookBatch) -> None:
    """Reject a batch that would corrupt a book, naming the batch, field, row and value.

    Column lengths must agree with rows x levels, every inst_idx must name an instrument,
    and each row's ladders must be priced inside (0, 1) in walking order.
    """
    rows, lv = len(batch.book_ts), batch.levels
    if lv < 1:
        raise ValueError(f"BookBatch {batch.id!r}: levels={lv} must be at least 1")
    if len(batch.inst_idx) != rows:
        raise ValueError(f"BookBatch {batch.id!r}: inst_idx has {len(batch.inst_idx)} rows, book_ts {rows}")
    for field in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        n = len(getattr(batch, field))
        if n != rows * lv:
            raise ValueError(f"BookBatch {batch.id!r}: {field} has {n} values, expected rows x levels = {rows * lv}")
    for r, idx in enumerate(batch.inst_idx):
        if not 0 <= idx < len(batch.instruments):
            raise ValueError(
                f"BookBatch {batch.id!r}: inst_idx[{r}]={idx} is outside instruments (len {len(batch.instruments)})"
            )
        s = slice(r * lv, (r + 1) * lv)
        where = f"BookBatch {batch.id!r} row {r} {batch.venue}"
        check_ladder(batch.bid_px[s], batch.bid_sz[s], "sell", name=f"{where} bids")
        check_ladder(batch.ask_px[s], batch.ask_sz[s], "buy", name=f"{where} asks")
