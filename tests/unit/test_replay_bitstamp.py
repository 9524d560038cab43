"""Bitstamp L3 replay: the engine-rebuilt book agrees with a plain dict book of the same events,
and the published trades are the recorded ones."""

from __future__ import annotations

import collections

import numpy as np
import polars as pl
import pytest

from libs.data.bitstamp import AMOUNT_SCALE, CREATED, DELETED, load_bitstamp
from libs.replay.bitstamp import bitstamp_chunks, bitstamp_columns
from proto.events import BookBatch, TradeBatch
from proto.units import PRICE_SCALE
from tests.conftest import needs_data

CAPTURE = ("orders", "bitstamp_btcusd_l3_2026-05-02")
LEVELS = 5
MARKET_BUY = 999_999_999 * PRICE_SCALE


@pytest.fixture(scope="module")
def capture():  # type: ignore[no-untyped-def]
    return load_bitstamp(needs_data(*CAPTURE))


@pytest.fixture(scope="module")
def cols(capture):  # type: ignore[no-untyped-def]
    return bitstamp_columns(capture, levels=LEVELS)


def _dict_tops(capture, instants: set[int]) -> dict[int, tuple[list, list]]:  # type: ignore[no-untyped-def]
    """Top LEVELS levels of a dict book of the feed's own order states, after event row i for i in `instants`.

    Orders are what the feed says they are (created/changed/deleted). Instant orders (sell at 0, buy at the
    $999,999,999 marker) never rest. A snapshot order the live feed never mentions is stale once a recorded trade
    shows a taker got past it (a price through it, or its price with a maker queued behind it)."""
    o, t = capture.orders, capture.trades
    ts = o.exchange_ts_ms
    snap = int(np.argmin((ts == ts[0]) & (o.action == CREATED)))
    live = (np.arange(len(o)) >= snap) & ~((o.action == DELETED) & (ts == ts[-1]))
    mentioned = set(o.id[live].tolist())
    orders: dict[int, tuple[int, int, int]] = {}
    born: dict[int, int] = {}
    out = {}
    tp = 0
    for i in range(len(o)):
        oid = int(o.id[i])
        a = o.action[i]
        if a == CREATED:
            orders[oid] = (int(o.side[i]), int(o.price[i]), int(o.amount[i]))
            born.setdefault(oid, i)
        elif a == DELETED:
            orders.pop(oid, None)
        elif oid in orders:
            s, p, _ = orders[oid]
            orders[oid] = (s, p, int(o.amount[i]))
        while tp < len(t) and t.exchange_ts_ms[tp] <= ts[i]:
            px, sd = int(t.price[tp]), int(t.side[tp])
            maker = int(t.sell_order_id[tp] if sd == 1 else t.buy_order_id[tp])
            mb = born.get(maker, 1 << 60)
            for k, (s, p, _) in list(orders.items()):
                through = (p < px) if sd == 1 else (p > px)
                if k not in mentioned and s == -sd and (through or (p == px and born[k] < mb)):
                    del orders[k]
            tp += 1
        if i in instants:
            side_levels = []
            for side in (1, -1):
                lv: dict[int, int] = collections.defaultdict(int)
                for s, p, q in orders.values():
                    if s == side and q > 0 and 0 < p < MARKET_BUY:
                        lv[p] += q
                ps = sorted(lv, reverse=side == 1)[:LEVELS]
                side_levels.append([(p, lv[p]) for p in ps] + [(0, 0)] * (LEVELS - len(ps)))
            out[i] = (side_levels[0], side_levels[1])
    return out


def test_top_levels_agree_with_an_independent_dict_book(capture, cols) -> None:  # type: ignore[no-untyped-def]
    o = capture.orders
    ts = o.exchange_ts_ms * 1_000_000
    ends = np.flatnonzero(np.append(ts[1:] != ts[:-1], True))  # last event of each exchange millisecond
    ends = ends[(ends < len(o) - 1) & (ts[ends] != ts[-1])]  # not the synthetic end-of-capture deletes
    sample = set(ends[::100].tolist())
    tops = _dict_tops(capture, sample)
    checked = agree = 0
    for i, (bids, asks) in tops.items():
        if bids[0][0] and asks[0][0] and bids[0][0] >= asks[0][0]:
            continue  # the feed's book is crossed mid-match: not a published instant
        k = int(np.searchsorted(cols.ts, ts[i], side="right")) - 1
        got_b = list(zip(cols.bid_px[k].tolist(), cols.bid_sz[k].tolist(), strict=True))
        got_a = list(zip(cols.ask_px[k].tolist(), cols.ask_sz[k].tolist(), strict=True))
        checked += 1
        agree += got_b == bids and got_a == asks
    assert checked > 700
    # The engine infers refused (post-only) orders from the flow; in two short stretches of this capture
    # that inference and the feed's own book differ at one level, so allow 3% of instants to differ.
    assert agree >= 0.97 * checked, f"{agree} of {checked} instants agree"


def test_book_rows_are_uncrossed_changes_in_time_order(cols) -> None:  # type: ignore[no-untyped-def]
    assert cols.levels == LEVELS and cols.rows > 10_000
    assert np.all(np.diff(cols.ts) > 0)  # one row per exchange millisecond at most
    both = (cols.bid_px[:, 0] > 0) & (cols.ask_px[:, 0] > 0)
    assert np.all(cols.bid_px[both, 0] < cols.ask_px[both, 0])
    changed = np.any(np.diff(np.hstack([cols.bid_px, cols.bid_sz, cols.ask_px, cols.ask_sz]), axis=0) != 0, axis=1)
    assert changed.all()  # a row is published only when the top levels changed
    first = cols.bid_px[0, 0]
    assert 50_000 * PRICE_SCALE < first < 150_000 * PRICE_SCALE  # BTC in $0.0001


def test_trades_are_the_recorded_trades(capture, cols) -> None:  # type: ignore[no-untyped-def]
    path = needs_data(*CAPTURE) / "trades.csv"
    want = pl.read_csv(path).sort("exchange_timestamp", maintain_order=True)
    batches = [b for c in bitstamp_chunks(cols, batch_rows=1_000) for b in c.batches]
    trades = [b for b in batches if isinstance(b, TradeBatch)]
    books = [b for b in batches if isinstance(b, BookBatch)]
    assert sum(b.rows for b in books) == cols.rows
    assert all(b.venue == "bitstamp" and b.instruments == ["BTCUSD"] for b in batches)
    ts = np.concatenate([t.trade_ts for t in trades])
    assert len(ts) == want.height == 284
    np.testing.assert_array_equal(ts, want["exchange_timestamp"].to_numpy() * 1_000_000)
    np.testing.assert_array_equal(
        np.concatenate([t.px for t in trades]), np.rint(want["price"].to_numpy() * PRICE_SCALE).astype(np.int64)
    )
    np.testing.assert_array_equal(
        np.concatenate([t.size for t in trades]), np.rint(want["amount"].to_numpy() * AMOUNT_SCALE).astype(np.int64)
    )
    np.testing.assert_array_equal(
        np.concatenate([t.aggressor for t in trades]), np.where(want["side"].to_numpy() == "buy", 1, -1)
    )


def test_levels_must_be_positive(capture) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="levels=0"):
        bitstamp_columns(capture, levels=0)
