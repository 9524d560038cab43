"""Matching-engine throughput: order-book operations per second on one core.

- `lob.ops_per_s.amzn_replay` / `aapl_replay`: every operation the LOBSTER replay applied
  (`libs.lob.replay.replay_lobster`: the messages plus the re-syncs of levels the file saw
  again), through `OrderBook.apply` on a fresh book;
- `lob.ops_per_s.bitstamp_replay`: the operations the Bitstamp L3 replay applied (created
  orders that may cross, cancels; the engine makes the 282 trades), same way; and
  `lob.events_per_s.bitstamp_driver` the whole replay driver over the 314k feed events;
- `lob.ops_per_s.synthetic`: 6M operations, 60% limit orders placed a few ticks behind the
  touch, 30% cancels of resting orders, 10% market orders and executions at the touch, on a
  book holding 500-2,000 resting orders (about 800 on average; exchange-core's benchmark keeps
  about 1,000).

Compile time (a warm-up run first) and file parsing are excluded; each figure is the best of
repeated timed runs of at least 0.5 s. Beside them, the peers' published single-core figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numba import njit

from libs.lob import core
from libs.lob.book import OpBatch, OrderBook
from libs.lob.core import BUY, OP_CANCEL, OP_EXECUTE, OP_LIMIT, OP_MARKET, SELL
from tests.conftest import DATA_DIR

# Published single-core figures of other matching engines, in operations (orders) per second.
PEERS: list[tuple[str, float, str]] = [
    # Martin Fowler, "The LMAX Architecture" (2011), martinfowler.com/articles/lmax.html: "a Business
    # Logic Processor that can handle 6 million orders per second on a single thread" (Java).
    ("lob.peer.lmax_orders_per_s", 6.0e6, "orders/s"),
    # github.com/exchange-core/exchange-core README: "Single order book configuration is capable to
    # process 5M operations per second on 10-years old hardware (Intel Xeon X5690)" (Java).
    ("lob.peer.exchange_core_ops_per_s", 5.0e6, "ops/s"),
    # github.com/enewhuis/liquibook README: "sustained rates of 2.0 million to 2.5 million inserts
    # per second" (C++); the upper figure.
    ("lob.peer.liquibook_inserts_per_s", 2.5e6, "inserts/s"),
]


def best_rate(n_items: int, setup: Callable[[], object], run: Callable[[object], object]) -> float:
    """Items per second of `run(setup())`, timing `run` only: the best of 5 rounds of >= 0.5 s,
    after a warm-up pass (compile, page in)."""
    run(setup())
    best = 0.0
    for _ in range(5):
        elapsed = 0.0
        passes = 0
        while elapsed < 0.5:
            state = setup()
            t0 = time.perf_counter()
            run(state)
            elapsed += time.perf_counter() - t0
            passes += 1
        best = max(best, passes * n_items / elapsed)
    return best


def chunks(ops: OpBatch, size: int = 1 << 16) -> list[OpBatch]:
    """The batch cut into pieces, as a simulation would feed it (draining trades in between)."""
    cols = ("kind", "ts", "oid", "side", "price", "qty", "owner")
    return [OpBatch(*(getattr(ops, c)[i : i + size] for c in cols)) for i in range(0, len(ops), size)]


def replay_rate(ops: OpBatch, order_capacity: int = 1 << 12) -> float:
    """Ops/s applying `ops` to a fresh book (allocated outside the timing) each pass, in
    pieces of 65,536 operations with the trades drained after each."""
    pieces = chunks(ops)

    def run(ob: OrderBook) -> None:
        for piece in pieces:
            ob.apply(piece)
            ob.trades()

    return best_rate(len(ops), lambda: OrderBook(order_capacity), run)  # type: ignore[arg-type]


@njit(cache=True)
def _synthetic(book, n, seed, target, tick, mid, out):  # type: ignore[no-untyped-def]
    """Generate n operations by running them on `book` (so cancels name resting orders and
    prices follow the touch); writes kind, oid, side, price, qty into out's columns."""
    np.random.seed(seed)
    live = np.zeros(4 * target + 16, np.int64)
    nlive = 0
    next_id = 1
    i = 0
    while i < n:
        u = np.random.random()
        if nlive > 2 * target:
            u = 0.7  # too many resting: cancel
        elif nlive < target // 2:
            u = 0.0  # too few: add
        if u < 0.6:
            side = BUY if np.random.random() < 0.5 else SELL
            bb = core.best_bid(book)
            ba = core.best_ask(book)
            if side == BUY:
                ref = ba if ba > 0 else (bb + tick if bb > 0 else mid + tick)
                price = ref - tick * np.random.geometric(0.25)
            else:
                ref = bb if bb > 0 else (ba - tick if ba > 0 else mid - tick)
                price = ref + tick * np.random.geometric(0.25)
            if price <= 0:
                continue
            qty = 100 * np.random.randint(1, 11)
            out[i, 0] = OP_LIMIT
            out[i, 1] = next_id
            out[i, 2] = side
            out[i, 3] = price
            out[i, 4] = qty
            if core.limit_order(book, 0, next_id, side, price, qty, 0, False) == core.NEED_GROW:
                return i
            if nlive == live.shape[0]:
                more = np.zeros(2 * nlive, np.int64)
                more[:nlive] = live
                live = more
            live[nlive] = next_id
            nlive += 1
            next_id += 1
            i += 1
        elif u < 0.9:
            # a random order still resting (filled ones are dropped from the list on the way)
            oid = 0
            while nlive > 0:
                j = np.random.randint(0, nlive)
                if core.order_qty(book, live[j]) > 0:
                    oid = live[j]
                    live[j] = live[nlive - 1]
                    nlive -= 1
                    break
                live[j] = live[nlive - 1]
                nlive -= 1
            if oid == 0:
                continue
            out[i, 0] = OP_CANCEL
            out[i, 1] = oid
            out[i, 4] = 0
            core.cancel(book, oid, 0)
            i += 1
        elif u < 0.95:
            side = BUY if np.random.random() < 0.5 else SELL
            qty = 100 * np.random.randint(1, 61)
            if core.market_order(book, 0, next_id, side, qty, 0) == core.NEED_GROW:
                return i
            out[i, 0] = OP_MARKET
            out[i, 1] = next_id
            out[i, 2] = side
            out[i, 4] = qty
            next_id += 1
            i += 1
        else:
            side = BUY if np.random.random() < 0.5 else SELL
            s = 0 if side == BUY else 1
            nl = book.meta[core.M_NBID if s == 0 else core.M_NASK]
            if nl == 0:
                continue
            head = book.levels[book.sides[s][nl - 1], core.L_HEAD]
            oid = book.orders[head, core.O_ID]
            qty = book.orders[head, core.O_QTY]
            if np.random.random() < 0.5:
                qty = max(1, qty // 2)
            if core.execute(book, 0, oid, qty) == core.NEED_GROW:
                return i
            out[i, 0] = OP_EXECUTE
            out[i, 1] = oid
            out[i, 4] = qty
            i += 1
        book.meta[core.M_TRADES] = 0  # trades are not kept while generating
    return n


def synthetic_ops(n: int = 6_000_000, seed: int = 7, target: int = 2_000) -> OpBatch:
    """A steady add/cancel/execute mix of n operations (see the module docstring)."""
    book = core.new_book(16 * target, 16 * target, 64 * target)  # never grows: at most 2 * target rest
    out = np.zeros((n, 5), np.int64)
    if _synthetic(book, n, seed, target, 100, 1_000_000, out) < n:
        raise RuntimeError("synthetic flow outgrew its book")
    return OpBatch.of(kind=out[:, 0], oid=out[:, 1], side=out[:, 2], price=out[:, 3], qty=out[:, 4])


def run() -> list[tuple[str, float, str]]:
    """Every figure as (name, value, unit)."""
    from libs.data.bitstamp import load_bitstamp
    from libs.data.lobster import load_lobster
    from libs.lob.replay import replay_bitstamp, replay_lobster

    out: list[tuple[str, float, str]] = []
    for name, folder in (("amzn", "AMZN_2012-06-21_L1_fullday"), ("aapl", "AAPL_2012-06-21_L10_first998")):
        path = DATA_DIR / "lobster" / folder
        if path.exists():
            ops = replay_lobster(load_lobster(path)).ops
            out.append((f"lob.ops_per_s.{name}_replay", replay_rate(ops), "ops/s"))
            out.append((f"lob.ops.{name}_replay", float(len(ops)), "ops"))
    path = DATA_DIR / "orders" / "bitstamp_btcusd_l3_2026-05-02"
    if path.exists():
        capture = load_bitstamp(path)
        replay = replay_bitstamp(capture.orders)
        out.append(("lob.ops_per_s.bitstamp_replay", replay_rate(replay.ops), "ops/s"))
        out.append(("lob.ops.bitstamp_replay", float(len(replay.ops)), "ops"))
        events = len(capture.orders)
        rate = best_rate(events, lambda: capture.orders, replay_bitstamp)  # type: ignore[arg-type]
        out.append(("lob.events_per_s.bitstamp_driver", rate, "events/s"))
    ops = synthetic_ops()
    kinds = np.bincount(ops.kind, minlength=7)
    out.append(("lob.ops_per_s.synthetic", replay_rate(ops, 1 << 13), "ops/s"))
    out.append(("lob.synthetic.share_limit", kinds[OP_LIMIT] / len(ops), "fraction"))
    out.append(("lob.synthetic.share_cancel", kinds[OP_CANCEL] / len(ops), "fraction"))
    out.append(("lob.synthetic.share_market_execute", (kinds[OP_MARKET] + kinds[OP_EXECUTE]) / len(ops), "fraction"))
    return out + PEERS


if __name__ == "__main__":
    for n, v, u in run():
        print(f"{n}: {v:.4g} {u}", flush=True)
