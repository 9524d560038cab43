"""The numba matching engine (`libs.lob.core`) through its Python API (`libs.lob.book`):
price-time priority, every order type, errors, growth, and a randomized differential test
against a small pure-Python reference book written here from the rules."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest

from libs.lob import BUY, SELL, LobError, OpBatch, OrderBook, core
from libs.lob.core import OP_CANCEL, OP_EXECUTE, OP_IOC, OP_LIMIT, OP_MARKET, OP_MODIFY


def trade_rows(ob: OrderBook) -> list[tuple[int, int, int, int, int, int, int]]:
    """Drained trades as (price, qty, aggressor side, maker, taker, maker owner, taker owner)."""
    t = ob.trades()
    return list(
        zip(
            t.price.tolist(), t.qty.tolist(), t.side.tolist(), t.maker.tolist(), t.taker.tolist(),
            t.maker_owner.tolist(), t.taker_owner.tolist(), strict=True,
        )
    )  # fmt: skip


def levels(ob: OrderBook, side: str, n: int = 50) -> list[tuple[int, int]]:
    px, qty = ob.depth(side, n)
    return list(zip(px.tolist(), qty.tolist(), strict=True))


def snapshot(ob: OrderBook) -> list[np.ndarray]:
    return [a.copy() for a in ob.book]


def assert_unchanged(ob: OrderBook, before: list[np.ndarray]) -> None:
    after = list(ob.book)
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------- priority and fills


def test_fifo_within_a_level_and_better_price_first() -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 101, 5)
    ob.limit(2, "sell", 100, 5)  # better price, later
    ob.limit(3, "sell", 100, 5)  # same price, later still
    ob.limit(4, "sell", 102, 5)
    assert ob.market(10, "buy", 12) == 12
    # 100 first (2 then 3, arrival order), then 101; 102 untouched
    assert [(p, q, m) for p, q, _, m, *_ in trade_rows(ob)] == [(100, 5, 2), (100, 5, 3), (101, 2, 1)]
    assert levels(ob, "sell") == [(101, 3), (102, 5)]

    ob.limit(5, "buy", 90, 1)
    ob.limit(6, "buy", 95, 1)
    ob.limit(7, "buy", 95, 1)
    ob.limit(8, "buy", 90, 1)
    ob.market(11, "sell", 4)
    assert [m for _, _, _, m, *_ in trade_rows(ob)] == [6, 7, 5, 8]


def test_partial_fills_on_both_sides() -> None:
    ob = OrderBook()
    ob.limit(1, "buy", 100, 10)
    assert ob.limit(2, "sell", 100, 4) == 4  # taker smaller: maker keeps the rest and its place
    assert ob.order_qty(1) == 6 and ob.order_qty(2) == 0
    ob.limit(3, "buy", 100, 1)
    assert ob.limit(4, "sell", 99, 9) == 7  # taker larger: sweeps 1 then 3, rests 2 at 99
    assert [(p, q, m, t) for p, q, _, m, t, *_ in trade_rows(ob)] == [
        (100, 4, 1, 2),
        (100, 6, 1, 4),
        (100, 1, 3, 4),
    ]
    assert ob.order_qty(4) == 2
    assert levels(ob, "sell") == [(99, 2)] and levels(ob, "buy") == []


def test_limit_order_trades_at_the_makers_price_and_stops_at_its_limit() -> None:
    ob = OrderBook()
    for oid, px in ((1, 101), (2, 102), (3, 104)):
        ob.limit(oid, "sell", px, 3)
    assert ob.limit(9, "buy", 103, 10) == 6
    assert [p for p, *_ in trade_rows(ob)] == [101, 102]
    assert ob.best_bid == 103 and ob.order_qty(9) == 4 and ob.best_ask == 104


def test_market_order_sweeps_levels_and_runs_dry() -> None:
    ob = OrderBook()
    ob.limit(1, "buy", 100, 2)
    ob.limit(2, "buy", 99, 3)
    ob.limit(3, "buy", 98, 4)
    assert ob.market(7, "sell", 100, owner=42) == 9  # only 9 rest
    rows = trade_rows(ob)
    assert [(p, q) for p, q, *_ in rows] == [(100, 2), (99, 3), (98, 4)]
    assert all(side == SELL and taker == 7 and t_own == 42 for _, _, side, _, taker, _, t_own in rows)
    assert ob.best_bid == 0 and ob.orders == 0 and ob.order_qty(7) == 0  # the rest is dropped
    assert ob.market(8, "sell", 5) == 0 and len(ob.trades()) == 0


def test_ioc_fills_what_it_can_and_leaves_nothing() -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 100, 3)
    ob.limit(2, "sell", 105, 3)
    assert ob.ioc(5, "buy", 102, 10) == 3
    assert ob.order_qty(5) == 0 and ob.best_bid == 0
    assert ob.ioc(6, "buy", 101, 4) == 0  # does not cross: nothing happens
    assert ob.order_qty(6) == 0 and ob.best_bid == 0 and ob.orders == 1
    assert [(p, q, m) for p, q, _, m, *_ in trade_rows(ob)] == [(100, 3, 1)]


def test_trade_fields() -> None:
    ob = OrderBook()
    ob.limit(11, "sell", 100, 5, ts=1, owner=7)
    ob.limit(12, "buy", 101, 2, ts=2, owner=8)
    t = ob.trades()
    assert len(t) == 1
    assert (t.ts[0], t.price[0], t.qty[0], t.side[0]) == (2, 100, 2, BUY)
    assert (t.maker[0], t.taker[0], t.maker_owner[0], t.taker_owner[0]) == (11, 12, 7, 8)
    assert len(ob.trades()) == 0  # drained


# --------------------------------------------------------------------------- cancel, modify, execute


def test_partial_cancel_keeps_priority_full_cancel_removes() -> None:
    ob = OrderBook()
    ob.limit(1, "buy", 100, 10)
    ob.limit(2, "buy", 100, 10)
    assert ob.cancel(1, 4) == 4
    assert ob.order_qty(1) == 6 and levels(ob, "buy") == [(100, 16)]
    ob.market(9, "sell", 6)
    assert [m for _, _, _, m, *_ in trade_rows(ob)] == [1]  # 1 still first
    assert ob.cancel(2) == 10  # qty 0: all of it
    assert ob.orders == 0 and levels(ob, "buy") == []
    ob.limit(3, "sell", 120, 5)
    assert ob.cancel(3, 50) == 5  # more than rests: all of it
    assert ob.orders == 0


def test_modify_down_keeps_priority() -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 100, 10)
    ob.limit(2, "sell", 100, 10)
    assert ob.modify(1, 100, 3) == 0
    assert levels(ob, "sell") == [(100, 13)]
    ob.market(9, "buy", 4)
    assert [(m, q) for _, q, _, m, *_ in trade_rows(ob)] == [(1, 3), (2, 1)]


@pytest.mark.parametrize(("price", "qty"), [(100, 11), (101, 10), (101, 2)])
def test_modify_up_or_to_another_price_loses_priority(price: int, qty: int) -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 100, 10)
    ob.limit(2, "sell", 100, 10)
    ob.limit(3, "sell", 101, 10)
    assert ob.modify(1, price, qty) == 0
    assert ob.order_qty(1) == qty
    ob.market(9, "buy", 100)
    makers = [m for _, _, _, m, *_ in trade_rows(ob)]
    assert makers.index(1) > makers.index(2 if price == 100 else 3)


def test_modify_that_crosses_trades_as_taker() -> None:
    ob = OrderBook()
    ob.limit(1, "buy", 99, 5, owner=1)
    ob.limit(2, "sell", 101, 3, owner=2)
    assert ob.modify(1, 101, 5, ts=7) == 3
    t = ob.trades()
    assert (t.ts[0], t.price[0], t.qty[0], t.side[0], t.maker[0], t.taker[0]) == (7, 101, 3, BUY, 2, 1)
    assert (t.maker_owner[0], t.taker_owner[0]) == (2, 1)
    assert ob.order_qty(1) == 2 and ob.best_bid == 101 and ob.best_ask == 0


def test_execute_named_order() -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 100, 10, owner=3)
    ob.limit(2, "sell", 100, 10)
    assert ob.execute(2, 4, ts=5) == 4  # not the first in the queue: named, so it is the one
    t = ob.trades()
    assert (t.ts[0], t.price[0], t.qty[0], t.side[0], t.maker[0], t.taker[0]) == (5, 100, 4, BUY, 2, 0)
    assert ob.order_qty(1) == 10 and ob.order_qty(2) == 6
    assert ob.execute(1, 50) == 10  # capped at what rests, and removes it
    assert ob.order_qty(1) == 0 and levels(ob, "sell") == [(100, 6)]
    assert trade_rows(ob)[0][5] == 3  # maker owner


def test_a_filled_orders_id_can_be_used_again() -> None:
    ob = OrderBook()
    ob.limit(1, "sell", 100, 1)
    ob.market(2, "buy", 1)
    ob.limit(1, "sell", 100, 1)  # no longer resting: accepted
    assert ob.order_qty(1) == 1


# --------------------------------------------------------------------------- refused operations


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ob: ob.limit(1, "buy", 100, 1), "order 1: order id is already resting"),
        (lambda ob: ob.ioc(1, "sell", 100, 1), "order 1: order id is already resting"),
        (lambda ob: ob.cancel(99), "order 99: no resting order with that id"),
        (lambda ob: ob.cancel(1, -2), "order 1: cancel quantity -2 is negative (0 cancels all)"),
        (lambda ob: ob.modify(99, 100, 1), "order 99: no resting order with that id"),
        (lambda ob: ob.execute(99, 1), "order 99: no resting order with that id"),
        (lambda ob: ob.limit(5, "buy", 100, 0), "order 5: quantity must be positive"),
        (lambda ob: ob.limit(5, "buy", 100, -3), "order 5: quantity must be positive"),
        (lambda ob: ob.ioc(5, "buy", 100, 0), "order 5: quantity must be positive"),
        (lambda ob: ob.market(5, "buy", 0), "order 5: quantity must be positive"),
        (lambda ob: ob.modify(1, 100, 0), "order 1: quantity must be positive"),
        (lambda ob: ob.execute(1, 0), "order 1: quantity must be positive"),
        (lambda ob: ob.execute(1, -1), "order 1: quantity must be positive"),
        (lambda ob: ob.limit(5, "buy", 0, 1), "order 5: price must be a positive integer tick price"),
        (lambda ob: ob.limit(5, "sell", -100, 1), "order 5: price must be a positive integer tick price"),
        (lambda ob: ob.modify(1, 0, 1), "order 1: price must be a positive integer tick price"),
        (lambda ob: ob.limit(5, "up", 100, 1), "side 'up': expected 'buy'/1 or 'sell'/-1"),
        (lambda ob: ob.market(5, 0, 1), "side 0: expected 'buy'/1 or 'sell'/-1"),
        (lambda ob: ob.ioc(5, 2, 100, 1), "side 2: expected 'buy'/1 or 'sell'/-1"),
        (lambda ob: ob.limit(-(2**63), "buy", 100, 1), f"order {-(2**63)}: order id -2**63 is reserved"),
    ],
)
def test_refused_operations_raise_and_leave_the_book_alone(call, message: str) -> None:  # type: ignore[no-untyped-def]
    ob = OrderBook()
    ob.limit(1, "buy", 100, 5)
    ob.limit(2, "sell", 101, 5)
    before = snapshot(ob)
    with pytest.raises(LobError) as err:
        call(ob)
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)
    assert_unchanged(ob, before)


def test_batch_reports_errors_per_operation_and_applies_the_rest() -> None:
    ob = OrderBook()
    ops = OpBatch.of(
        kind=[OP_LIMIT, OP_LIMIT, OP_LIMIT, OP_LIMIT, OP_CANCEL, 99, OP_MARKET, OP_EXECUTE, OP_IOC],
        oid=[1, 1, 2, 3, 42, 4, 5, 6, 7],
        side=[BUY, BUY, 0, SELL, 0, BUY, SELL, 0, BUY],
        price=[100, 100, 100, 0, 0, 100, 0, 0, 100],
        qty=[5, 5, 5, 5, 0, 5, 0, 1, 1],
    )
    res = ob.apply(ops)
    assert res.tolist() == [
        0,
        core.ERR_DUPLICATE,
        core.ERR_SIDE,
        core.ERR_PRICE,
        core.ERR_UNKNOWN,
        core.ERR_KIND,
        core.ERR_QTY,
        core.ERR_UNKNOWN,
        0,
    ]
    assert levels(ob, "buy") == [(100, 5)] and ob.orders == 1 and set(core.ERRORS) >= set(res[res < 0].tolist())


def test_opbatch_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="OpBatch column 'oid' has 2 entries, kind has 3"):
        OpBatch.of(kind=[1, 1, 1], oid=[1, 2])


# --------------------------------------------------------------------------- growth


def test_grows_under_load_and_stays_correct() -> None:
    rng = np.random.default_rng(3)
    n = 100_000
    ob = OrderBook(order_capacity=16, level_capacity=16)
    side = np.where(rng.random(n) < 0.5, BUY, SELL)
    # bids 1..5000, asks 5001..10000: nothing crosses, many levels, many orders per level
    price = np.where(side == BUY, rng.integers(1, 5001, n), rng.integers(5001, 10001, n))
    qty = rng.integers(1, 100, n)
    ids = rng.permutation(np.arange(1, 10 * n, 10))[:n]
    res = ob.apply(OpBatch.of(kind=np.full(n, OP_LIMIT), oid=ids, side=side, price=price, qty=qty))
    assert (res == 0).all() and ob.orders == n
    assert ob.book.orders.shape[0] >= n and ob.book.hash.shape[0] >= 2 * n

    def expected(mask: np.ndarray, s: int) -> list[tuple[int, int]]:
        m = mask & (side == s)
        px = np.unique(price[m])
        tot = [int(qty[m & (price == p)].sum()) for p in px]
        pairs = list(zip(px.tolist(), tot, strict=True))
        return pairs[::-1] if s == BUY else pairs

    alive = np.ones(n, bool)
    assert levels(ob, "buy", 6000) == expected(alive, BUY)
    assert levels(ob, "sell", 6000) == expected(alive, SELL)
    assert all(ob.order_qty(int(i)) == int(q) for i, q in zip(ids[::997], qty[::997], strict=True))

    gone = rng.random(n) < 0.5
    res = ob.apply(OpBatch.of(kind=np.full(int(gone.sum()), OP_CANCEL), oid=ids[gone]))
    assert (res == qty[gone]).all()
    alive = ~gone
    assert ob.orders == int(alive.sum())
    assert levels(ob, "buy", 6000) == expected(alive, BUY)
    assert levels(ob, "sell", 6000) == expected(alive, SELL)
    assert ob.order_qty(int(ids[gone][0])) == 0 and ob.order_qty(int(ids[alive][0])) == int(qty[alive][0])


def test_grow_keeps_trades_not_yet_drained() -> None:
    ob = OrderBook(order_capacity=16, level_capacity=16)
    for i in range(40):
        ob.limit(i + 1, "sell", 100 + i, 1)
    assert ob.market(1000, "buy", 40) == 40  # 40 trades in one call on a 16-order book that grew
    rows = trade_rows(ob)
    assert [p for p, *_ in rows] == list(range(100, 140))


# --------------------------------------------------------------------------- differential test


@dataclass
class RefOrder:
    oid: int
    side: int
    price: int
    qty: int
    owner: int


@dataclass
class RefBook:
    """The rules, written plainly: dict of price -> FIFO queue per side."""

    bids: dict[int, deque[RefOrder]] = field(default_factory=dict)
    asks: dict[int, deque[RefOrder]] = field(default_factory=dict)
    where: dict[int, RefOrder] = field(default_factory=dict)
    trades: list[tuple[int, ...]] = field(default_factory=list)

    def _book(self, side: int) -> dict[int, deque[RefOrder]]:
        return self.bids if side == BUY else self.asks

    def _remove(self, o: RefOrder) -> None:
        q = self._book(o.side)[o.price]
        q.remove(o)
        if not q:
            del self._book(o.side)[o.price]
        del self.where[o.oid]

    def _match(self, ts: int, oid: int, owner: int, side: int, limit: int | None, qty: int) -> int:
        opp = self._book(-side)
        left = qty
        while left > 0 and opp:
            best = min(opp) if side == BUY else max(opp)
            if limit is not None and (best > limit if side == BUY else best < limit):
                break
            maker = opp[best][0]
            fill = min(left, maker.qty)
            self.trades.append((ts, best, fill, side, maker.oid, oid, maker.owner, owner))
            maker.qty -= fill
            left -= fill
            if maker.qty == 0:
                self._remove(maker)
        return qty - left

    def _rest(self, oid: int, side: int, price: int, qty: int, owner: int) -> None:
        o = RefOrder(oid, side, price, qty, owner)
        self._book(side).setdefault(price, deque()).append(o)
        self.where[oid] = o

    def limit(self, ts: int, oid: int, side: int, price: int, qty: int, owner: int, ioc: bool) -> int:
        if side not in (BUY, SELL):
            return core.ERR_SIDE
        if qty <= 0:
            return core.ERR_QTY
        if price <= 0:
            return core.ERR_PRICE
        if oid in self.where:
            return core.ERR_DUPLICATE
        filled = self._match(ts, oid, owner, side, price, qty)
        if filled < qty and not ioc:
            self._rest(oid, side, price, qty - filled, owner)
        return filled

    def market(self, ts: int, oid: int, side: int, qty: int, owner: int) -> int:
        if side not in (BUY, SELL):
            return core.ERR_SIDE
        if qty <= 0:
            return core.ERR_QTY
        return self._match(ts, oid, owner, side, None, qty)

    def cancel(self, oid: int, qty: int) -> int:
        o = self.where.get(oid)
        if o is None:
            return core.ERR_UNKNOWN
        if qty <= 0 or qty >= o.qty:
            self._remove(o)
            return o.qty
        o.qty -= qty
        return qty

    def modify(self, ts: int, oid: int, price: int, qty: int) -> int:
        if qty <= 0:
            return core.ERR_QTY
        if price <= 0:
            return core.ERR_PRICE
        o = self.where.get(oid)
        if o is None:
            return core.ERR_UNKNOWN
        if price == o.price and qty <= o.qty:
            o.qty = qty
            return 0
        self._remove(o)
        filled = self._match(ts, oid, o.owner, o.side, price, qty)
        if filled < qty:
            self._rest(oid, o.side, price, qty - filled, o.owner)
        return filled

    def execute(self, ts: int, oid: int, qty: int) -> int:
        if qty <= 0:
            return core.ERR_QTY
        o = self.where.get(oid)
        if o is None:
            return core.ERR_UNKNOWN
        fill = min(qty, o.qty)
        self.trades.append((ts, o.price, fill, -o.side, oid, 0, o.owner, 0))
        o.qty -= fill
        if o.qty == 0:
            self._remove(o)
        return fill

    def apply(self, kind: int, ts: int, oid: int, side: int, price: int, qty: int, owner: int) -> int:
        if kind in (OP_LIMIT, OP_IOC):
            return self.limit(ts, oid, side, price, qty, owner, kind == OP_IOC)
        if kind == OP_MARKET:
            return self.market(ts, oid, side, qty, owner)
        if kind == OP_CANCEL:
            return self.cancel(oid, qty)
        if kind == OP_MODIFY:
            return self.modify(ts, oid, price, qty)
        if kind == OP_EXECUTE:
            return self.execute(ts, oid, qty)
        return core.ERR_KIND

    def depth(self, side: int) -> list[tuple[int, int]]:
        book = self._book(side)
        return [(p, sum(o.qty for o in book[p])) for p in sorted(book, reverse=side == BUY)]


def random_ops(n: int, seed: int) -> OpBatch:
    """A mix that exercises every path: crossing and resting limits, IOC, market orders,
    partial and full cancels, modifies of every kind, executions, and bad input."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(
        [OP_LIMIT, OP_IOC, OP_MARKET, OP_CANCEL, OP_MODIFY, OP_EXECUTE, 99],
        n,
        p=[0.45, 0.05, 0.05, 0.2, 0.12, 0.1, 0.03],
    )
    side = rng.choice([BUY, SELL], n)
    side[rng.random(n) < 0.01] = 0
    # prices straddle 1000 so that about a third of limit orders cross
    price = 1000 + rng.integers(-12, 13, n) - side * 3
    price[rng.random(n) < 0.01] = 0
    qty = rng.integers(1, 30, n)
    qty[rng.random(n) < 0.02] = 0
    qty[(kind == OP_CANCEL) & (rng.random(n) < 0.5)] = 0  # full cancels
    oid = rng.integers(1, 400, n)  # a small id space: duplicates and unknown ids happen
    owner = rng.integers(0, 5, n)
    ts = np.arange(n)
    return OpBatch.of(kind=kind, ts=ts, oid=oid, side=side, price=price, qty=qty, owner=owner)


def test_matches_a_reference_book_on_random_operations() -> None:
    ops = random_ops(20_000, seed=11)
    ref = RefBook()
    ob = OrderBook(order_capacity=16, level_capacity=16)  # grows along the way
    calls = {
        OP_LIMIT: lambda o: ob.limit(o[2], o[3], o[4], o[5], ts=o[1], owner=o[6]),
        OP_IOC: lambda o: ob.ioc(o[2], o[3], o[4], o[5], ts=o[1], owner=o[6]),
        OP_MARKET: lambda o: ob.market(o[2], o[3], o[5], ts=o[1], owner=o[6]),
        OP_CANCEL: lambda o: ob.cancel(o[2], o[5]),
        OP_MODIFY: lambda o: ob.modify(o[2], o[4], o[5], ts=o[1]),
        OP_EXECUTE: lambda o: ob.execute(o[2], o[5], ts=o[1]),
    }
    results = []
    n_errors = 0
    for i in range(len(ops)):
        o = [int(c[i]) for c in (ops.kind, ops.ts, ops.oid, ops.side, ops.price, ops.qty, ops.owner)]
        want = ref.apply(*o)
        if o[0] == 99:
            got = want  # not reachable through the one-order API; the batch run below checks it
        else:
            try:
                got = calls[o[0]](o)
            except LobError:
                got = -100
        if want < 0 and o[0] != 99:
            n_errors += 1
            assert got == -100, (i, o, want)
        else:
            assert got == want, (i, o, want, got)
        results.append(want)
        assert (ob.best_bid, ob.best_ask) == (
            max(ref.bids, default=0),
            min(ref.asks, default=0),
        ), i
        if i % 500 == 0:
            assert levels(ob, "buy", 100) == ref.depth(BUY) and levels(ob, "sell", 100) == ref.depth(SELL), i
    t = ob.trades()
    got_trades = list(zip(*(getattr(t, f).tolist() for f in ("ts", "price", "qty", "side", "maker", "taker",
                                                            "maker_owner", "taker_owner")), strict=True))  # fmt: skip
    assert got_trades == ref.trades
    assert levels(ob, "buy", 100) == ref.depth(BUY) and levels(ob, "sell", 100) == ref.depth(SELL)
    assert all(ob.order_qty(oid) == o.qty for oid, o in ref.where.items())
    # the mix really exercised everything
    assert len(ref.trades) > 2_000 and n_errors > 500 and ob.orders == len(ref.where) > 50

    # the same operations as one batch: the same results, trades and book
    batch = OrderBook(order_capacity=16, level_capacity=16)
    assert batch.apply(ops).tolist() == results
    bt = batch.trades()
    assert np.array_equal(bt.price, t.price) and np.array_equal(bt.maker, t.maker) and np.array_equal(bt.taker, t.taker)
    assert levels(batch, "buy", 100) == ref.depth(BUY) and levels(batch, "sell", 100) == ref.depth(SELL)
