"""Replayed rows as events: any converted file (LOBSTER, Bitstamp) that holds its book rows and
trades column by column becomes `BookBatch` / `TradeBatch` slices the same way."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from libs.ids import new_id, now_ns
from proto.events import BookBatch, TradeBatch


class BookColumns(Protocol):
    """A converted recording: one instrument's book rows (n, levels) and its trades, as arrays."""

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


def book_batch(cols: BookColumns, a: int, b: int, *, venue: str, source: str) -> BookBatch:
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


def trade_batch(cols: BookColumns, t: slice, *, venue: str, source: str) -> TradeBatch:
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
