"""Recorded order flow through the matching engine, checked against what was recorded.

LOBSTER (`replay_lobster`)
--------------------------
Messages become operations: 1 add -> OP_LIMIT (LOBSTER adds never cross), 2 partial cancel ->
OP_CANCEL of that size, 3 delete -> OP_CANCEL of its size (the whole order: a size that left
something behind would show up as a mismatch), 4 visible execution -> OP_EXECUTE; 5 hidden
execution and 7 halt change no visible order (counted, no operation).

Orders resting before the file starts are unknown. Row 1 of the order-book file is the book
after message 1, so the book before it is row 1 with message 1 undone (`initial_levels`); it
is seeded as one placeholder order per level (owner `PLACEHOLDER_OWNER`, id `placeholder_id`).
A message naming an order that is not in our book goes to the placeholder at its side and
price (an order resting there before the file is part of it); with no placeholder it is
skipped and counted (`unseen`).

Which levels are compared. LOBSTER writes only the messages that change the file's first L
levels: in both sample files every add, cancel, delete and execution lands at or above the
L-th level of the row before it. An event below that level is missing from the file, so from
then on our book at that price is unknown ("dirty"). In the AAPL file the 1,160 shares offered
at $587.65 are the 10th ask level in row 4, drop out of view in row 5 and are gone, without a
message, when row 13 shows $587.90 as its 10th level. A fixed bound ("ask prices <= the worst
initial ask") would compare that level from row 13 on and report a difference the engine
cannot know about. The rule used, per side and per price:

- clean at the start: every price at or better than the L-th level row 1 shows (every price,
  when the side shows fewer than L levels: the file then sees the whole side);
- before message t, every price worse than the L-th level of row t-1 turns dirty (events
  there may go unreported);
- after row t has been compared, every dirty price the file sees completely (at or better
  than row t's L-th level, including the empty prices better than its best) is re-synced: our
  orders there are cancelled and one placeholder of the file's size takes their place (a
  message naming one of them later is routed to it). These operations are logged with the
  messages' (`resynced` levels, `purged` orders);
- after every message, every level the file shows at a clean price must equal ours (price
  and size), and every level of ours at a clean price the file sees must be one it shows.

A message acts at or above the L-th level of the row before it, where every price is clean,
so each message is checked on the level it acts on, right after it. A price clean since the
start (`exact`) checks the engine's whole history there; a re-synced one is checked on every
row while it stays in view. Levels that just came into view are not compared on that row.

Bitstamp L3 (`replay_bitstamp`, `check_bitstamp_trades`)
---------------------------------------------------------
See `replay_bitstamp`: created orders are submitted as limit (or market) orders that may
cross, so the engine itself generates the trades; changes and deletions that only echo fills
the engine already made are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from numba import njit

from libs.data.bitstamp import CHANGED, CREATED, DELETED, BitstampOrders, BitstampTrades
from libs.data.lobster import ADD, CANCEL, DELETE, EMPTY_ASK, EMPTY_BID, EXECUTE, EXECUTE_HIDDEN, HALT, LobsterDay
from libs.lob import core
from libs.lob.book import OpBatch, OrderBook, Trades
from libs.lob.core import BUY, NEED_GROW, OP_CANCEL, OP_EXECUTE, OP_LIMIT, OP_MARKET, SELL

PLACEHOLDER_OWNER = -1
"""Owner of the placeholder orders standing for orders the recording never showed one by one."""

_LOG_FIELDS = 8  # kind, ts, oid, side, price, qty, owner, row


@njit(cache=True, nogil=True)
def placeholder_id(side: int, price: int) -> int:
    """The id of the placeholder order at (side, price): negative, so no recorded id collides."""
    return -(2 * price + (1 if side == SELL else 0)) - 1


@njit(cache=True)
def _do(book, log, nlog, kind, ts, oid, side, price, qty, owner, row):  # type: ignore[no-untyped-def]
    """Apply one operation (growing the book when needed) and append it to the log."""
    while True:
        r = core.apply_op(book, kind, ts, oid, side, price, qty, owner)
        if r != NEED_GROW:
            break
        book = core.grow(book)
    if nlog == log.shape[0]:
        bigger = np.zeros((2 * nlog, _LOG_FIELDS), np.int64)
        bigger[:nlog] = log
        log = bigger
    log[nlog, 0] = kind
    log[nlog, 1] = ts
    log[nlog, 2] = oid
    log[nlog, 3] = side
    log[nlog, 4] = price
    log[nlog, 5] = qty
    log[nlog, 6] = owner
    log[nlog, 7] = row
    return book, log, nlog + 1, r


def _ops_of(log: np.ndarray) -> tuple[OpBatch, np.ndarray]:
    ops = OpBatch.of(
        kind=log[:, 0], ts=log[:, 1], oid=log[:, 2], side=log[:, 3], price=log[:, 4], qty=log[:, 5], owner=log[:, 6]
    )
    return ops, log[:, 7].copy()


# --------------------------------------------------------------------------- LOBSTER


def initial_levels(day: LobsterDay) -> tuple[dict[int, int], dict[int, int]]:
    """The visible book before message 1 (row 1 with message 1 undone): {price: size} for
    bids and for asks."""
    if len(day) == 0:
        raise ValueError(f"{day.source}: no messages")
    row = day.book[0]
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for k in range(day.levels):
        ap, az, bp, bz = (int(v) for v in row[4 * k : 4 * k + 4])
        if ap != EMPTY_ASK and az > 0:
            asks[ap] = az
        if bp != EMPTY_BID and bz > 0:
            bids[bp] = bz
    typ, price, size = int(day.type[0]), int(day.price[0]), int(day.size[0])
    levels = bids if day.direction[0] == BUY else asks
    if typ == ADD:
        left = levels.get(price, 0) - size
        if left < 0:
            shown = levels.get(price, 0)
            raise ValueError(f"{day.source} row 1: message 1 adds {size} at {price} but row 1 shows {shown} there")
        if left:
            levels[price] = left
        else:
            levels.pop(price, None)
    elif typ in (CANCEL, DELETE, EXECUTE):
        levels[price] = levels.get(price, 0) + size
    return bids, asks


@dataclass(frozen=True)
class LobsterReplay:
    """A LOBSTER day replayed and checked (see the module docstring).

    `book` is ours after each message in the order-book file's layout; `ops` every operation
    applied, in order (`op_row`: its 0-based message row, -1 for the seed), so re-applying
    them reproduces the replay. Per row: `shown` non-empty file levels, `compared` those at
    clean prices, `exact` those at prices clean since the start, `ok` whether all agreed."""

    book: np.ndarray
    ops: OpBatch
    op_row: np.ndarray
    shown: np.ndarray
    compared: np.ndarray
    exact: np.ndarray
    ok: np.ndarray
    hidden: int
    halts: int
    routed: int
    """Messages applied to a placeholder (their order was not in our book)."""
    unseen: int
    """Messages skipped: their order was not in our book and no placeholder was at their price."""
    short: int
    """Cancels and executions that removed less than the message said (0 on consistent data)."""
    errors: int
    """Operations the engine refused."""
    add_fills: int
    """Quantity traded by adds and re-sync placeholders (0 on consistent data: LOBSTER adds
    never cross)."""
    resynced: int
    """Dirty levels re-synced to the file when it saw them again."""
    purged: int
    """Orders of ours removed by re-syncs."""

    @property
    def mismatches(self) -> int:
        return int((~self.ok).sum())

    def first_mismatch(self) -> int:
        """0-based row of the first mismatch, -1 when none."""
        bad = np.flatnonzero(~self.ok)
        return int(bad[0]) if len(bad) else -1

    @property
    def levels_shown(self) -> int:
        return int(self.shown.sum())

    @property
    def levels_compared(self) -> int:
        return int(self.compared.sum())

    @property
    def levels_exact(self) -> int:
        return int(self.exact.sum())


def _price_grid(day: LobsterDay) -> tuple[int, int, int]:
    """(lowest price, tick, cells) covering every price of the file."""
    px = day.book[:, 0::2].ravel()
    px = np.concatenate([px[(px != EMPTY_ASK) & (px != EMPTY_BID)], day.price[day.type != HALT]])
    px = px[px > 0]
    if len(px) == 0:
        raise ValueError(f"{day.source}: no prices")
    lo, hi = int(px.min()), int(px.max())
    tick = 0
    for d in np.unique(px - lo)[1:].tolist():
        tick = gcd(tick, int(d))
        if tick == 1:
            break
    tick = max(tick, 1)
    cells = (hi - lo) // tick + 1
    if cells > 50_000_000:
        raise ValueError(f"{day.source}: prices span {cells} ticks of {tick}, too many to track")
    return lo, tick, cells


def replay_lobster(day: LobsterDay) -> LobsterReplay:
    """Replay a LOBSTER day through the engine, comparing the book with the file after every
    message (see the module docstring for the rule)."""
    bids, asks = initial_levels(day)
    lo, tick, cells = _price_grid(day)
    ob = OrderBook()
    t0 = round(float(day.time[0]) * 1e9)
    log = np.zeros((max(64, 2 * len(day)), _LOG_FIELDS), np.int64)
    nlog = 0
    for side, levels in ((BUY, bids), (SELL, asks)):
        for price, size in levels.items():
            ob.book, log, nlog, r = _do(
                ob.book, log, nlog, OP_LIMIT, t0, placeholder_id(side, price), side, price, size, PLACEHOLDER_OWNER, -1
            )
            if r < 0:
                raise ValueError(f"{day.source}: seeding {size} at {price} failed: {core.ERRORS.get(r, r)}")
    n, levels_n = len(day), day.levels
    out = np.zeros((n, 4 * levels_n), np.int64)
    shown = np.zeros(n, np.int64)
    compared = np.zeros(n, np.int64)
    exact = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    counts = np.zeros(8, np.int64)
    ts = np.rint(day.time * 1e9).astype(np.int64)
    col = [np.ascontiguousarray(c, np.int64) for c in (day.type, day.order_id, day.size, day.price, day.direction)]
    ob.book, log, nlog = _replay_lobster(
        ob.book, log, nlog, *col, ts, np.ascontiguousarray(day.book, np.int64), levels_n, lo, tick, cells,
        out, shown, compared, exact, ok, counts,
    )  # fmt: skip
    ops, op_row = _ops_of(log[:nlog])
    return LobsterReplay(
        book=out, ops=ops, op_row=op_row, shown=shown, compared=compared, exact=exact, ok=ok,
        hidden=int((day.type == EXECUTE_HIDDEN).sum()), halts=int((day.type == HALT).sum()),
        routed=int(counts[0]), unseen=int(counts[1]), short=int(counts[2]), errors=int(counts[3]),
        add_fills=int(counts[4]), resynced=int(counts[5]), purged=int(counts[6]),
    )  # fmt: skip


@njit(cache=True)
def _lth(row, levels, off, empty):  # type: ignore[no-untyped-def]
    """The L-th price a row shows on a side (off 0: asks, 2: bids), or `empty` when it shows fewer."""
    return row[4 * (levels - 1) + off]


@njit(cache=True)
def _replay_lobster(  # type: ignore[no-untyped-def]
    book, log, nlog, typ, oid, size, price, direction, ts, snap, levels, lo, tick, cells,
    out, shown, compared, exact, ok, counts,
):  # fmt: skip
    n = typ.shape[0]
    # clean[s, c]: our book at price lo + c*tick on side s (0 bids, 1 asks) holds exactly what the file
    # reported; never[s, c]: clean since the start
    clean = np.zeros((2, cells), np.bool_)
    never = np.zeros((2, cells), np.bool_)
    empties = (EMPTY_BID, EMPTY_ASK)
    for s in range(2):
        off = 2 if s == 0 else 0
        w = _lth(snap[0], levels, off, empties[s])
        for c in range(cells):
            p = lo + c * tick
            if w == empties[s] or ((p >= w) if s == 0 else (p <= w)):
                clean[s, c] = True
                never[s, c] = True
    px = np.zeros(levels, np.int64)
    sz = np.zeros(levels, np.int64)
    ids = np.zeros(16, np.int64)
    for t in range(n):
        # 1. events below the previous row's L-th level could have gone unreported
        if t > 0:
            for s in range(2):
                off = 2 if s == 0 else 0
                w = _lth(snap[t - 1], levels, off, empties[s])
                if w == empties[s]:
                    continue
                for c in range(cells):
                    p = lo + c * tick
                    if (p < w) if s == 0 else (p > w):
                        clean[s, c] = False
                        never[s, c] = False
        # 2. the message
        k = typ[t]
        if k == ADD:
            book, log, nlog, r = _do(book, log, nlog, OP_LIMIT, ts[t], oid[t], direction[t], price[t], size[t], 0, t)
            if r < 0:
                counts[3] += 1
            else:
                counts[4] += r
        elif k in (CANCEL, DELETE, EXECUTE):
            target = oid[t]
            if core.find_order(book, target) < 0:
                target = placeholder_id(direction[t], price[t])
                if core.find_order(book, target) < 0:
                    counts[1] += 1
                    target = 0
                else:
                    counts[0] += 1
            if target != 0:
                kind = OP_EXECUTE if k == EXECUTE else OP_CANCEL
                book, log, nlog, r = _do(book, log, nlog, kind, ts[t], target, direction[t], price[t], size[t], 0, t)
                if r < 0:
                    counts[3] += 1
                elif r < size[t]:
                    counts[2] += 1
        # 3. our book after the message, and the comparison
        nk = core.depth(book, SELL, levels, px, sz)
        for j in range(levels):
            out[t, 4 * j] = px[j] if j < nk else EMPTY_ASK
            out[t, 4 * j + 1] = sz[j] if j < nk else 0
        nk = core.depth(book, BUY, levels, px, sz)
        for j in range(levels):
            out[t, 4 * j + 2] = px[j] if j < nk else EMPTY_BID
            out[t, 4 * j + 3] = sz[j] if j < nk else 0
        good = True
        for s in range(2):
            off = 2 if s == 0 else 0
            side = BUY if s == 0 else SELL
            w = _lth(snap[t], levels, off, empties[s])
            for j in range(levels):
                p = snap[t, 4 * j + off]
                if p == empties[s]:
                    break
                shown[t] += 1
                c = (p - lo) // tick
                if clean[s, c]:
                    compared[t] += 1
                    if never[s, c]:
                        exact[t] += 1
                    if core.level_qty(book, side, p) != snap[t, 4 * j + off + 1]:
                        good = False
            # a level of ours at a clean price the file sees must be one the file shows
            arr = book.sides[s]
            nl = book.meta[core.M_NBID if s == 0 else core.M_NASK]
            for i in range(nl - 1, -1, -1):
                p = book.levels[arr[i], core.L_PRICE]
                if w != empties[s] and ((p < w) if s == 0 else (p > w)):
                    break
                c = (p - lo) // tick
                if clean[s, c]:
                    seen = False
                    for j in range(levels):
                        if snap[t, 4 * j + off] == p:
                            seen = True
                            break
                    if not seen:
                        good = False
        ok[t] = good
        # 4. re-sync every dirty price the file sees completely: first remove our orders there
        # (both sides, so that no placeholder can meet a stale order), then place the file's levels
        for s in range(2):
            side = BUY if s == 0 else SELL
            w = _lth(snap[t], levels, 2 if s == 0 else 0, empties[s])
            arr = book.sides[s]
            i = book.meta[core.M_NBID if s == 0 else core.M_NASK] - 1
            while i >= 0:
                lv = arr[i]
                p = book.levels[lv, core.L_PRICE]
                if w != empties[s] and ((p < w) if s == 0 else (p > w)):
                    break
                if clean[s, (p - lo) // tick]:
                    i -= 1
                    continue
                m = 0
                o = book.levels[lv, core.L_HEAD]
                while o >= 0:
                    if m == ids.shape[0]:
                        more = np.zeros(2 * m, np.int64)
                        more[:m] = ids
                        ids = more
                    ids[m] = book.orders[o, core.O_ID]
                    m += 1
                    o = book.orders[o, core.O_NEXT]
                for q in range(m):
                    book, log, nlog, r = _do(book, log, nlog, OP_CANCEL, ts[t], ids[q], side, p, 0, 0, t)
                counts[6] += m
                arr = book.sides[s]
                i = book.meta[core.M_NBID if s == 0 else core.M_NASK] - 1  # the level is gone: rescan
        for s in range(2):
            off = 2 if s == 0 else 0
            side = BUY if s == 0 else SELL
            w = _lth(snap[t], levels, off, empties[s])
            for j in range(levels):
                p = snap[t, 4 * j + off]
                if p == empties[s]:
                    break
                if not clean[s, (p - lo) // tick]:
                    q = snap[t, 4 * j + off + 1]
                    pid = placeholder_id(side, p)
                    book, log, nlog, r = _do(book, log, nlog, OP_LIMIT, ts[t], pid, side, p, q, PLACEHOLDER_OWNER, t)
                    counts[5] += 1
                    if r < 0:
                        counts[3] += 1
                    else:
                        counts[4] += r
            for c in range(cells):
                p = lo + c * tick
                if w == empties[s] or ((p >= w) if s == 0 else (p <= w)):
                    clean[s, c] = True
    return book, log, nlog


# --------------------------------------------------------------------------- Bitstamp L3

SILENT_OWNER = 2
"""Owner of snapshot orders the live feed never mentions (see `replay_bitstamp`)."""

MARKET_BUY_PRICE = 999_999_999 * 10_000
"""Bitstamp marks an instant (market) buy with a $999,999,999 limit."""

_SKIP, _LIMIT, _MARKET, _SUBTICK, _CASH = 0, 1, 2, 3, 4
_BS_COUNTS = (
    "snapshot", "limit", "market", "subtick", "cash", "post_only", "ghost", "echo", "echo_gone", "amend",
    "cancel", "delete_gone", "filled_but_resting", "errors",
)  # fmt: skip


@dataclass(frozen=True)
class BitstampReplay:
    """A Bitstamp capture replayed through the engine.

    `ops` are the operations applied, in order (`op_event`: the event row each came from), so
    re-applying them to an empty book reproduces `trades`. `counts` says how each event was
    handled (keys `_BS_COUNTS`); `cash_orders` are the instant orders sized in dollars, whose
    size the feed does not carry (skipped: their trades cannot be reproduced)."""

    ops: OpBatch
    op_event: np.ndarray
    trades: Trades
    counts: dict[str, int]
    cash_orders: np.ndarray


def _phases(o: BitstampOrders) -> tuple[int, int]:
    """(snapshot rows, first row of the synthetic end-of-capture deletes)."""
    n = len(o)
    same0 = (o.ts_ms == o.ts_ms[0]) & (o.exchange_ts_ms == o.exchange_ts_ms[0]) & (o.action == CREATED)
    snap = n if same0.all() else int(np.argmin(same0))
    last = (o.ts_ms == o.ts_ms[-1]) & (o.exchange_ts_ms == o.exchange_ts_ms[-1]) & (o.action == DELETED)
    tail = 0 if last.all() else n - int(np.argmin(last[::-1]))
    return snap, max(tail, snap)


def _untouched(o: BitstampOrders) -> np.ndarray:
    """For each created row: the order's next event deletes it at its own price and full size."""
    n = len(o)
    order = np.lexsort((np.arange(n), o.id))
    nxt = np.full(n, -1)
    same = o.id[order[1:]] == o.id[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    out = np.zeros(n, np.bool_)
    rows = np.flatnonzero((o.action == CREATED) & (nxt >= 0))
    j = nxt[rows]
    out[rows] = (o.action[j] == DELETED) & (o.amount[j] == o.amount[rows]) & (o.price[j] == o.price[rows])
    return out


def replay_bitstamp(orders: BitstampOrders) -> BitstampReplay:
    """Drive the engine with a Bitstamp order stream so that it generates the trades itself.

    How Bitstamp reports a fill: the taker's `order_created` carries its limit (an instant
    order: a sell at price 0, a buy at $999,999,999); then, per fill, the taker gets
    `order_changed` (price = the fill's price, volume = what is left) and the maker
    `order_changed` or, when filled, `order_deleted` (volume 0); a filled taker ends with
    `order_deleted` (volume 0). So:

    - `created` -> a limit order (an instant order -> a market order) that may cross: the
      engine picks the makers, prices and sizes. An order that would cross but whose next event
      deletes it untouched (same price, full size) never traded: it was refused (post-only or
      fill-or-kill), so it is skipped (`post_only`).
    - `changed` -> nothing when the engine already filled the order down to that volume or
      below (`echo`, `echo_gone`); otherwise the difference is cancelled, keeping priority
      (`amend`: an order filled by a trade we could not reproduce).
    - `deleted` -> cancel when the order still rests in our book (`cancel`; `filled_but_resting`
      when the feed said it was filled), else nothing (`delete_gone`: a filled or refused order).

    Data the engine cannot use: bids at price 0 in the snapshot (below one tick: `subtick`),
    instant orders sized in dollars (volume 0: `cash`, their size is not in the feed), and
    snapshot orders the live feed never mentions (owner `SILENT_OWNER`). The feed reports
    every fill of a resting order, so a silent order never traded; where the engine would fill
    one, it was a stale entry of the REST snapshot and is cancelled first (`ghost`).
    Prices are in $0.0001, amounts in satoshi, times UTC ns from `exchange_timestamp`.
    """
    o = orders
    n = len(o)
    if n == 0:
        raise ValueError(f"{o.source}: no order events")
    snap, tail = _phases(o)
    live_ids = np.unique(o.id[snap:tail])
    silent = np.zeros(n, np.bool_)
    silent[:snap] = ~np.isin(o.id[:snap], live_ids)
    created = o.action == CREATED
    plan = np.where(created, _LIMIT, _SKIP)
    plan[created & (o.side == SELL) & (o.price == 0)] = _MARKET
    plan[created & (o.side == BUY) & (o.price >= MARKET_BUY_PRICE)] = _MARKET
    plan[created & (o.side == BUY) & (o.price == 0)] = _SUBTICK
    plan[created & (o.amount == 0)] = _CASH
    ob = OrderBook(1 << 14, 1 << 12)
    log = np.zeros((n + 64, _LOG_FIELDS), np.int64)
    counts = np.zeros(len(_BS_COUNTS), np.int64)
    counts[0] = snap
    ob.book, log, nlog = _replay_bitstamp(
        ob.book, log, *(np.ascontiguousarray(c, np.int64) for c in (o.id, o.exchange_ts_ms * 1_000_000, o.price,
        o.amount, o.action, o.side, plan)), _untouched(o), silent, counts,
    )  # fmt: skip
    ops, op_event = _ops_of(log[:nlog])
    return BitstampReplay(
        ops=ops,
        op_event=op_event,
        trades=ob.trades(),
        counts=dict(zip(_BS_COUNTS, counts.tolist(), strict=True)),
        cash_orders=o.id[plan == _CASH],
    )


@njit(cache=True)
def _first_silent(book, side, limit, qty):  # type: ignore[no-untyped-def]
    """The id of the first silent order an incoming order would reach, or 0."""
    s = 1 if side == BUY else 0
    arr = book.sides[s]
    left = qty
    for i in range(book.meta[core.M_NASK if s == 1 else core.M_NBID] - 1, -1, -1):
        lv = arr[i]
        p = book.levels[lv, core.L_PRICE]
        if (p > limit) if side == BUY else (p < limit):
            return 0
        o = book.levels[lv, core.L_HEAD]
        while o >= 0:
            if book.orders[o, core.O_OWNER] == SILENT_OWNER:
                return book.orders[o, core.O_ID]
            left -= book.orders[o, core.O_QTY]
            if left <= 0:
                return 0
            o = book.orders[o, core.O_NEXT]
    return 0


@njit(cache=True)
def _replay_bitstamp(book, log, oid, ts, price, amount, action, side, plan, untouched, silent, counts):  # type: ignore[no-untyped-def]
    nlog = 0
    big = np.iinfo(np.int64).max
    for i in range(oid.shape[0]):
        a = action[i]
        if a == CREATED:
            k = plan[i]
            if k == _SUBTICK:
                counts[3] += 1
                continue
            if k == _CASH:
                counts[4] += 1
                continue
            sd = side[i]
            limit = (big if sd == BUY else 0) if k == _MARKET else price[i]
            bb = core.best_bid(book)
            ba = core.best_ask(book)
            crosses = (ba > 0 and limit >= ba) if sd == BUY else (bb > 0 and limit <= bb)
            if crosses and untouched[i]:
                counts[5] += 1
                continue
            if crosses:
                while True:
                    g = _first_silent(book, sd, limit, amount[i])
                    if g == 0:
                        break
                    book, log, nlog, r = _do(book, log, nlog, OP_CANCEL, ts[i], g, -sd, 0, 0, 0, i)
                    counts[6] += 1
            owner = SILENT_OWNER if silent[i] else 0
            if k == _MARKET:
                book, log, nlog, r = _do(book, log, nlog, OP_MARKET, ts[i], oid[i], sd, 0, amount[i], owner, i)
                counts[2] += 1
            else:
                book, log, nlog, r = _do(book, log, nlog, OP_LIMIT, ts[i], oid[i], sd, price[i], amount[i], owner, i)
                counts[1] += 1
            if r < 0:
                counts[13] += 1
        elif a == CHANGED:
            left = core.order_qty(book, oid[i])
            if left == 0:
                counts[8] += 1
            elif left <= amount[i]:
                counts[7] += 1
            else:
                book, log, nlog, r = _do(book, log, nlog, OP_CANCEL, ts[i], oid[i], side[i], 0, left - amount[i], 0, i)
                counts[9] += 1
        else:
            if core.order_qty(book, oid[i]) > 0:
                book, log, nlog, r = _do(book, log, nlog, OP_CANCEL, ts[i], oid[i], side[i], 0, 0, 0, i)
                counts[10] += 1
                if amount[i] == 0:
                    counts[12] += 1
            else:
                counts[11] += 1
    return book, log, nlog


@dataclass(frozen=True)
class TradeCheck:
    """The engine's trades against the recorded ones: `expected` are the recorded trades the
    order stream can reproduce (all but the cash orders', listed in `unreproducible`), in
    order; `matched` how many leading ones the engine reproduced exactly (buy and sell order
    ids, price, amount, aggressor side, exchange time); `produced` how many the engine made."""

    expected: int
    produced: int
    matched: int
    unreproducible: np.ndarray

    @property
    def ok(self) -> bool:
        return self.matched == self.expected == self.produced


def check_bitstamp_trades(replay: BitstampReplay, recorded: BitstampTrades) -> TradeCheck:
    """Compare the replay's trades with the recorded ones, in order."""
    t = replay.trades
    taker = np.where(recorded.side == BUY, recorded.buy_order_id, recorded.sell_order_id)
    skip = np.isin(taker, replay.cash_orders)
    want = np.stack(
        [recorded.buy_order_id, recorded.sell_order_id, recorded.price, recorded.amount, recorded.side,
         recorded.exchange_ts_ms * 1_000_000],
    )[:, ~skip]  # fmt: skip
    got = np.stack(
        [np.where(t.side == BUY, t.taker, t.maker), np.where(t.side == BUY, t.maker, t.taker), t.price, t.qty, t.side,
         t.ts],
    )  # fmt: skip
    m = min(want.shape[1], got.shape[1])
    same = (want[:, :m] == got[:, :m]).all(axis=0)
    matched = m if same.all() else int(np.argmin(same))
    return TradeCheck(
        expected=want.shape[1], produced=got.shape[1], matched=matched, unreproducible=np.flatnonzero(skip)
    )
