"""The latest order book per (venue, instrument), kept from BookBatch events.

Both detect and paper hold one: detect to price opportunities, paper to fill against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.book import no_asks_from_yes_bids
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


def apply_batch(books: Books, batch: BookBatch) -> None:
    """Keep the latest row of every instrument in the batch (rows are in time order)."""
    last: dict[int, int] = {}
    for r, idx in enumerate(batch.inst_idx):
        last[idx] = r
    for r in last.values():
        apply_row(books, batch, r)
