"""Recorded flow through the matching engine: LOBSTER books level by level after every event,
Bitstamp L3 trades one by one, and the Bitstamp reader's handling of bad files."""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from libs.data.bitstamp import (
    AMOUNT_SCALE,
    BUY,
    CHANGED,
    CREATED,
    DELETED,
    SELL,
    BitstampCapture,
    load_bitstamp,
    load_orders,
    load_trades,
)
from libs.data.lobster import (
    ADD,
    CANCEL,
    DELETE,
    EMPTY_ASK,
    EMPTY_BID,
    EXECUTE,
    EXECUTE_HIDDEN,
    LobsterDay,
    load_lobster,
)
from libs.lob import OrderBook
from libs.lob.core import OP_CANCEL
from libs.lob.replay import (
    MARKET_BUY_PRICE,
    check_bitstamp_trades,
    initial_levels,
    replay_bitstamp,
    replay_lobster,
)
from proto.units import PRICE_SCALE
from tests.conftest import needs_data


@pytest.fixture(scope="module")
def aapl() -> LobsterDay:
    return load_lobster(needs_data("lobster", "AAPL_2012-06-21_L10_first998"))


@pytest.fixture(scope="module")
def amzn() -> LobsterDay:
    return load_lobster(needs_data("lobster", "AMZN_2012-06-21_L1_fullday"))


@pytest.fixture(scope="module")
def bitstamp() -> BitstampCapture:
    return load_bitstamp(needs_data("orders", "bitstamp_btcusd_l3_2026-05-02"))


# --------------------------------------------------------------------------- LOBSTER, real files


def test_aapl_book_matches_the_file_after_every_event(aapl: LobsterDay) -> None:
    r = replay_lobster(aapl)
    assert len(r.ok) == len(aapl) == 999
    assert r.ok.all(), f"first mismatch at row {r.first_mismatch() + 1}"
    print(f"AAPL: {r.levels_compared} of {r.levels_shown} levels compared, {r.levels_exact} exact since the start")
    assert r.levels_compared >= 0.95 * r.levels_shown
    assert r.levels_exact >= 0.3 * r.levels_shown
    assert (r.compared > 0).all()
    assert r.short == r.errors == r.add_fills == r.unseen == 0
    assert r.hidden == int((aapl.type == EXECUTE_HIDDEN).sum()) > 0


def test_amzn_level_1_matches_the_file_after_every_event(amzn: LobsterDay) -> None:
    r = replay_lobster(amzn)
    assert len(r.ok) == len(amzn) == 57_515
    assert r.ok.all(), f"first mismatch at row {r.first_mismatch() + 1}"
    print(f"AMZN: {r.levels_compared} of {r.levels_shown} levels compared, {r.levels_exact} exact since the start")
    assert r.levels_compared >= 0.85 * r.levels_shown
    assert r.short == r.errors == r.add_fills == 0
    assert r.routed > 0  # orders resting before 09:30 were executed and cancelled through placeholders


@pytest.mark.parametrize("name", ["aapl", "amzn"])
def test_every_message_acts_inside_the_files_view(name: str, request: pytest.FixtureRequest) -> None:
    """The assumption behind the compared levels: LOBSTER reports only events at or above the
    L-th level of the row before them (so anything deeper goes unreported)."""
    day: LobsterDay = request.getfixturevalue(name)
    last = 4 * (day.levels - 1)
    prev = day.book[:-1]
    rows = np.arange(1, len(day))
    acts = np.isin(day.type[1:], (ADD, CANCEL, DELETE, EXECUTE))
    bid, price = day.direction[1:] == 1, day.price[1:]
    worst_bid, worst_ask = prev[:, last + 2], prev[:, last]
    inside = np.where(
        bid, (worst_bid == EMPTY_BID) | (price >= worst_bid), (worst_ask == EMPTY_ASK) | (price <= worst_ask)
    )
    assert acts.sum() > 900
    assert inside[acts].all(), rows[acts & ~inside][:5]


def test_aapl_level_disappears_out_of_view_without_a_message(aapl: LobsterDay) -> None:
    """Why a fixed bound is wrong: 1,160 shares at $587.65 leave the book unreported."""
    px = 5_876_500
    asks = aapl.book[:, 0::4]
    sizes = aapl.book[:, 1::4]
    assert asks[3, 9] == px and sizes[3, 9] == 1_160  # the 10th ask of row 4
    assert not (asks[4:13] == px).any()  # out of view from row 5
    assert asks[12, 9] == 5_879_000 > px  # row 13 sees past it: it is gone
    assert not (aapl.price[:13] == px).any()  # and no message ever mentioned it
    r = replay_lobster(aapl)
    assert px in r.book[12, 0::4]  # we still hold it at row 13, but that price is dirty: not compared
    assert r.ok[12] and px not in r.book[13, 0::4]  # and the re-sync after row 13 removed it


@pytest.mark.parametrize("mutate", ["execution_size", "delete_dropped"])
def test_a_wrong_message_is_caught_on_its_row(aapl: LobsterDay, mutate: str) -> None:
    size = aapl.size.copy()
    typ = aapl.type.copy()
    if mutate == "execution_size":
        t = int(np.flatnonzero((aapl.type == EXECUTE) & (aapl.size > 1))[0])
        size[t] -= 1
    else:
        t = int(np.flatnonzero(aapl.type == DELETE)[10])
        typ[t] = EXECUTE_HIDDEN  # the delete no longer changes our book
    r = replay_lobster(dataclasses.replace(aapl, size=size, type=typ))
    assert r.ok[:t].all() and not r.ok[t]


def test_the_logged_operations_rebuild_the_same_book(aapl: LobsterDay) -> None:
    r = replay_lobster(aapl)
    ob = OrderBook()
    assert (ob.apply(r.ops) >= 0).all()
    ask_px, ask_qty = ob.depth("sell", 10)
    bid_px, bid_qty = ob.depth("buy", 10)
    last = r.book[-1]
    assert ask_px.tolist() == last[0::4].tolist() and ask_qty.tolist() == last[1::4].tolist()
    assert bid_px.tolist() == last[2::4].tolist() and bid_qty.tolist() == last[3::4].tolist()


def test_initial_levels_undo_the_first_message(aapl: LobsterDay) -> None:
    bids, asks = initial_levels(aapl)
    row = aapl.book[0]
    assert (aapl.type[0], aapl.direction[0], aapl.price[0], aapl.size[0]) == (ADD, 1, row[2], row[3])  # a new best bid
    assert bids == {int(p): int(q) for p, q in zip(row[6::4], row[7::4], strict=True)}  # levels 2..10
    assert asks == {int(p): int(q) for p, q in zip(row[0::4], row[1::4], strict=True)}


# --------------------------------------------------------------------------- LOBSTER, the rule on a small day


def small_day(last_ask_size: int = 10) -> LobsterDay:
    """Two levels. Bids never move. Asks before message 1: 100 x 10, 101 x 5, and 102 x 7 out of
    view (unknown to us). Message 3 removes 99 and the file then shows 102: the 5 at 101 were
    cancelled while out of view (rows 2-3), unreported."""
    msgs = [  # type, id, size, price, direction
        (ADD, 1, 1, 100, -1),
        (ADD, 2, 3, 99, -1),
        (DELETE, 2, 3, 99, -1),
        (EXECUTE, 555, 2, 102, -1),  # an order resting before the file, at the price that came into view
        (CANCEL, 1, 1, 100, -1),
    ]
    asks = [
        [(100, 11), (101, 5)],
        [(99, 3), (100, 11)],
        [(100, 11), (102, 7)],
        [(100, 11), (102, 5)],
        [(100, last_ask_size), (102, 5)],
    ]
    book = np.array([[a[0][0], a[0][1], 90, 10, a[1][0], a[1][1], 89, 10] for a in asks], np.int64)
    m = np.array(msgs, np.int64)
    return LobsterDay(
        symbol="TEST", date="2012-06-21", levels=2, time=34200.0 + np.arange(len(msgs)), type=m[:, 0].astype(np.int8),
        order_id=m[:, 1], size=m[:, 2], price=m[:, 3], direction=m[:, 4].astype(np.int8), book=book, source="test",
    )  # fmt: skip


def test_unreported_change_out_of_view_is_resynced_not_flagged() -> None:
    r = replay_lobster(small_day())
    assert r.ok.all()
    assert r.book[2, 4:6].tolist() == [101, 5]  # we still held the unreported 101 on row 3 (not compared)
    assert r.shown.tolist() == [4, 4, 4, 4, 4]
    assert r.compared.tolist() == [4, 4, 3, 4, 4]  # 102 had been out of view: skipped on row 3 only
    assert r.exact.tolist() == [4, 4, 3, 3, 3]  # 102 is checked from row 4 on, but was re-synced
    assert (r.resynced, r.purged, r.routed, r.unseen) == (1, 1, 1, 0)  # 101 purged, 102 placed
    assert r.book[3, 4:6].tolist() == [102, 5]  # the execution went to the re-synced placeholder


def test_a_wrong_size_on_a_clean_level_is_flagged() -> None:
    r = replay_lobster(small_day(last_ask_size=9))
    assert r.ok.tolist() == [True, True, True, True, False]


def test_initial_levels_refuses_an_inconsistent_first_row() -> None:
    day = small_day()
    size = day.size.copy()
    size[0] = 50  # adds 50 at 100, but row 1 shows 11 there
    with pytest.raises(ValueError, match=re.escape("message 1 adds 50 at 100 but row 1 shows 11 there")):
        initial_levels(dataclasses.replace(day, size=size))


# --------------------------------------------------------------------------- Bitstamp L3


def test_bitstamp_replay_produces_the_recorded_trades(bitstamp: BitstampCapture) -> None:
    o, trades = bitstamp.orders, bitstamp.trades
    r = replay_bitstamp(o)
    check = check_bitstamp_trades(r, trades)
    assert len(o) == 314_057 and len(trades) == 284
    assert check.ok, f"first difference at reproducible trade {check.matched}"
    assert check.expected == check.produced == check.matched == 282

    # the two left out are instant buys sized in dollars: created at the $999,999,999 marker
    # with volume 0, so the feed never says how much they were for
    left_out = check.unreproducible
    assert len(left_out) == 2 and (trades.side[left_out] == BUY).all()
    for taker in trades.buy_order_id[left_out]:
        row = np.flatnonzero((o.id == taker) & (o.action == CREATED))
        assert len(row) == 1 and o.amount[row[0]] == 0 and o.price[row[0]] >= MARKET_BUY_PRICE
    # their makers' fills then arrive as order_changed the engine had not made: partial cancels
    partial = (r.ops.kind == OP_CANCEL) & (r.ops.qty > 0)
    assert sorted(r.ops.oid[partial].tolist()) == sorted(trades.sell_order_id[left_out].tolist())
    assert r.counts["amend"] == 2 and r.counts["errors"] == r.counts["filled_but_resting"] == 0


def test_bitstamp_ghost_orders_were_not_in_the_book(bitstamp: BitstampCapture) -> None:
    """The orders dropped as stale snapshot entries are in the t=0 snapshot, never mentioned by
    the live feed, yet buyers paid more than their ask to other makers afterwards."""
    o, trades = bitstamp.orders, bitstamp.trades
    r = replay_bitstamp(o)
    ghost = (r.ops.kind == OP_CANCEL) & (o.action[r.op_event] == CREATED)
    ghosts = r.ops.oid[ghost]
    assert len(ghosts) == r.counts["ghost"] == 2
    snapshot = o.ts_ms == o.ts_ms[0]
    live = ~snapshot & (o.exchange_ts_ms < o.exchange_ts_ms[-1])
    for g in ghosts:
        rows = np.flatnonzero(o.id == g)
        assert snapshot[rows[0]] and o.side[rows[0]] == SELL
        assert not live[rows].any()
        ask = o.price[rows[0]]
        later = trades.exchange_ts_ms > o.exchange_ts_ms[r.op_event[ghost][ghosts == g][0]] - 1
        assert ((trades.side == BUY) & (trades.price > ask) & later).any()


def test_bitstamp_logged_operations_reproduce_the_trades(bitstamp: BitstampCapture) -> None:
    r = replay_bitstamp(bitstamp.orders)
    ob = OrderBook()
    assert (ob.apply(r.ops) >= 0).all()
    t = ob.trades()
    for f in ("ts", "price", "qty", "side", "maker", "taker"):
        assert np.array_equal(getattr(t, f), getattr(r.trades, f)), f
    assert ob.orders == 0  # the capture ends with every order deleted


def test_bitstamp_flow_is_mostly_refused_post_only_orders(bitstamp: BitstampCapture) -> None:
    """How the feed reads: most created orders that would cross are deleted untouched."""
    c = replay_bitstamp(bitstamp.orders).counts
    assert c["snapshot"] == 6_512
    assert c["post_only"] > 100_000
    assert c["limit"] + c["market"] + c["post_only"] + c["subtick"] + c["cash"] == int(
        (bitstamp.orders.action == CREATED).sum()
    )
    assert c["echo"] + c["echo_gone"] + c["amend"] == int((bitstamp.orders.action == CHANGED).sum())
    assert c["cancel"] + c["delete_gone"] == int((bitstamp.orders.action == DELETED).sum())


# --------------------------------------------------------------------------- the Bitstamp reader


ORDERS_HEADER = "id,timestamp,exchange_timestamp,price,volume,action,direction\n"
TRADES_HEADER = "trade_id,timestamp,exchange_timestamp,price,amount,buy_order_id,sell_order_id,side\n"


def write_capture(tmp_path: Path, orders: str, trades: str, gz: bool = True) -> Path:
    if gz:
        with gzip.open(tmp_path / "orders.csv.gz", "wt") as f:
            f.write(orders)
    else:
        (tmp_path / "orders.csv").write_text(orders)
    (tmp_path / "trades.csv").write_text(trades)
    return tmp_path


GOOD_ORDERS = ORDERS_HEADER + "7,1000,990,78318.5,0.00000001,created,bid\n8,1001,991,78319.0,1.5,created,ask\n"
GOOD_TRADES = TRADES_HEADER + "1,1002,992,78319.0,0.25,7,8,sell\n"


@pytest.mark.parametrize("gz", [True, False])
def test_reader_scales_to_integers(tmp_path: Path, gz: bool) -> None:
    c = load_bitstamp(write_capture(tmp_path, GOOD_ORDERS, GOOD_TRADES, gz))
    o, t = c.orders, c.trades
    assert o.id.tolist() == [7, 8] and o.ts_ms.tolist() == [1000, 1001] and o.exchange_ts_ms.tolist() == [990, 991]
    assert o.price.tolist() == [783_185_000, 783_190_000] == [round(78318.5 * PRICE_SCALE), 78319 * PRICE_SCALE]
    assert o.amount.tolist() == [1, 150_000_000] == [1, 3 * AMOUNT_SCALE // 2]
    assert o.action.tolist() == [CREATED, CREATED] and o.side.tolist() == [BUY, SELL]
    assert t.amount.tolist() == [25_000_000] and t.side.tolist() == [SELL]
    assert (t.buy_order_id[0], t.sell_order_id[0], t.trade_id[0]) == (7, 8, 1)


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        ("id,timestamp,price,volume,action,direction\n1,2,3,4,created,bid\n", "missing column(s) exchange_timestamp"),
        (ORDERS_HEADER, "orders.csv.gz: no rows"),
        (ORDERS_HEADER + "7,1,1,100.0,1.0,opened,bid\n", "row 2: action 'opened' is not one of created, changed"),
        (ORDERS_HEADER + "7,1,1,100.0,1.0,created,up\n", "row 2: direction 'up' is not one of bid, ask"),
        (ORDERS_HEADER + "7,1,1,100.0,1.0,created,bid\n8,1,1,abc,1.0,created,bid\n", "row 3: price 'abc' is not a n"),
        (ORDERS_HEADER + "7,1,1,100.0,0.000000001,created,bid\n", "row 2: volume '0.000000001' is finer than 1/10"),
        (ORDERS_HEADER + "7,1,1,100.00001,1,created,bid\n", "row 2: price '100.00001' is finer than 1/10000"),
        (ORDERS_HEADER + "7,1,1,100.0,-1.0,created,bid\n", "row 2: volume '-1.0' must be non-negative"),
        (ORDERS_HEADER + "7.5,1,1,100.0,1.0,created,bid\n", "row 2: id '7.5' is not an integer"),
        (ORDERS_HEADER + "7,1,1,,1.0,created,bid\n", "row 2: price is empty"),
        (ORDERS_HEADER + "7,1,1,nan,1.0,created,bid\n", "row 2: price 'nan' is not a number"),
    ],
)
def test_reader_refuses_bad_orders(tmp_path: Path, orders: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_bitstamp(write_capture(tmp_path, orders, GOOD_TRADES))


@pytest.mark.parametrize(
    ("trades", "message"),
    [
        (TRADES_HEADER + "1,2,3,100.0,0.0,7,8,buy\n", "trades.csv row 2: amount '0.0' must be positive"),
        (TRADES_HEADER + "1,2,3,100.0,1.0,7,8,both\n", "trades.csv row 2: side 'both' is not one of buy, sell"),
        (TRADES_HEADER + "1,2,3,0,1.0,7,8,buy\n", "trades.csv row 2: price '0' must be positive"),
    ],
)
def test_reader_refuses_bad_trades(tmp_path: Path, trades: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_bitstamp(write_capture(tmp_path, GOOD_ORDERS, trades))


def test_reader_names_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such Bitstamp capture directory"):
        load_bitstamp(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=re.escape("no orders.csv.gz or orders.csv")):
        load_bitstamp(tmp_path)
    (tmp_path / "orders.csv").write_text(GOOD_ORDERS)
    with pytest.raises(FileNotFoundError, match="the trades file is missing"):
        load_bitstamp(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_trades(tmp_path / "trades.csv")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=re.escape("broken.csv.gz: not a readable CSV file")):
        load_orders(tmp_path / "broken.csv.gz")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=re.escape("empty.csv: not a readable CSV file")):
        load_orders(tmp_path / "empty.csv")
