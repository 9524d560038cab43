"""A thin Python API over the numba order book (`libs.lob.core`): one call per order, or a
whole batch of operations in one call, with errors raised as `LobError`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.lob import core
from libs.lob.core import BUY, NEED_GROW, SELL


class LobError(ValueError):
    """An operation the book refused, with the reason and the order id."""


@dataclass(frozen=True)
class Trades:
    """Trades drained from a book, one array per column. `side` is the aggressor's side
    (1 buy, -1 sell); `taker` is 0 for executions reported against an unseen aggressor."""

    ts: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    maker: np.ndarray
    taker: np.ndarray
    maker_owner: np.ndarray
    taker_owner: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class OpBatch:
    """Operations column by column (see `core.OP_*`); unused fields may be 0."""

    kind: np.ndarray
    ts: np.ndarray
    oid: np.ndarray
    side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    owner: np.ndarray

    @classmethod
    def of(cls, **cols: np.ndarray | list[int]) -> OpBatch:
        """Build a batch from columns; missing ones are zeros, all must have one length."""
        n = len(cols["kind"])
        out = {}
        for name in ("kind", "ts", "oid", "side", "price", "qty", "owner"):
            col = np.ascontiguousarray(cols.get(name, np.zeros(n, np.int64)), dtype=np.int64)
            if col.shape != (n,):
                raise ValueError(f"OpBatch column {name!r} has {len(col)} entries, kind has {n}")
            out[name] = col
        return cls(**out)

    def __len__(self) -> int:
        return len(self.kind)


def _side(side: int | str) -> int:
    if side in (BUY, "buy", "BUY", "b"):
        return BUY
    if side in (SELL, "sell", "SELL", "s"):
        return SELL
    raise LobError(f"side {side!r}: expected 'buy'/1 or 'sell'/-1")


class OrderBook:
    """Limit order book for one instrument with price-time priority on integer ticks."""

    def __init__(self, order_capacity: int = 1 << 12, level_capacity: int = 1 << 10) -> None:
        self.book = core.new_book(order_capacity, level_capacity)

    def _run(self, fn, oid: int, *args: int) -> int:  # type: ignore[no-untyped-def]
        while True:
            r = fn(self.book, *args)
            if r != NEED_GROW:
                break
            self.book = core.grow(self.book)
        if r < 0:
            raise LobError(f"order {oid}: {core.ERRORS.get(r, f'error {r}')}")
        return int(r)

    def limit(self, oid: int, side: int | str, price: int, qty: int, ts: int = 0, owner: int = 0) -> int:
        """Place a limit order; returns the quantity filled on arrival (the rest rests)."""
        return self._run(core.limit_order, oid, ts, oid, _side(side), price, qty, owner, False)

    def ioc(self, oid: int, side: int | str, price: int, qty: int, ts: int = 0, owner: int = 0) -> int:
        """Immediate-or-cancel limit order; returns the quantity filled (the rest is dropped)."""
        return self._run(core.limit_order, oid, ts, oid, _side(side), price, qty, owner, True)

    def market(self, oid: int, side: int | str, qty: int, ts: int = 0, owner: int = 0) -> int:
        """Market order; returns the quantity filled (less than qty when the side runs dry)."""
        return self._run(core.market_order, oid, ts, oid, _side(side), qty, owner)

    def cancel(self, oid: int, qty: int = 0) -> int:
        """Cancel `qty` (all when 0) of a resting order; returns the quantity cancelled."""
        if qty < 0:  # core.cancel would take it as "all"
            raise LobError(f"order {oid}: cancel quantity {qty} is negative (0 cancels all)")
        return self._run(core.cancel, oid, oid, qty)

    def modify(self, oid: int, price: int, qty: int, ts: int = 0) -> int:
        """Change price/size; only a size cut at the same price keeps priority."""
        return self._run(core.modify, oid, ts, oid, price, qty)

    def execute(self, oid: int, qty: int, ts: int = 0) -> int:
        """Execute part or all of a named resting order (LOBSTER/ITCH style)."""
        return self._run(core.execute, oid, ts, oid, qty)

    def apply(self, ops: OpBatch) -> np.ndarray:
        """Apply a batch in one numba call (growing as needed); returns each op's result
        (>= 0 a quantity, < 0 an error code from `core.ERRORS`)."""
        result = np.zeros(len(ops), np.int64)
        i = 0
        while i < len(ops):
            i = core.apply_ops(self.book, ops.kind, ops.ts, ops.oid, ops.side, ops.price, ops.qty, ops.owner, result, i)
            if i < len(ops):
                self.book = core.grow(self.book)
        return result

    def trades(self) -> Trades:
        """Drain the trades recorded since the last call."""
        b = self.book
        n = int(b.meta[core.M_TRADES])
        out = Trades(*(b.trades[:n, f].copy() for f in range(core.T_FIELDS)))
        b.meta[core.M_TRADES] = 0
        return out

    @property
    def best_bid(self) -> int:
        return int(core.best_bid(self.book))

    @property
    def best_ask(self) -> int:
        return int(core.best_ask(self.book))

    @property
    def orders(self) -> int:
        """Resting orders."""
        return int(self.book.meta[core.M_ORDERS])

    def depth(self, side: int | str, levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Prices and sizes of the best `levels` levels of a side, best first."""
        px = np.zeros(levels, np.int64)
        qty = np.zeros(levels, np.int64)
        k = core.depth(self.book, _side(side), levels, px, qty)
        return px[:k], qty[:k]

    def level_qty(self, side: int | str, price: int) -> int:
        return int(core.level_qty(self.book, _side(side), price))

    def order_qty(self, oid: int) -> int:
        """Remaining size of a resting order (0 when it is not resting)."""
        return int(core.order_qty(self.book, oid))
