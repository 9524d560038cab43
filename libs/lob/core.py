"""The matching engine's hot path: a price-time-priority limit order book in numba.

State is a `Book` named tuple of flat numpy arrays, so numba code (the agent-based market)
and the Python wrapper (`libs.lob.book.OrderBook`) drive the same functions with no
per-order Python object:

- orders live in a pool of slots, linked per price level in arrival order (time priority);
- each side keeps its price levels in a sorted array with the best price at the end, so
  the busy end of the book is cheap to insert into and pop from;
- an open-addressing hash table (linear probing, backward-shift delete) maps order id to
  slot;
- trades are appended to trade arrays until the caller drains them.

An operation that would run out of room returns `NEED_GROW` before changing anything;
the caller calls `grow` and repeats it. Every entry point returns a count (>= 0) or one of
the negative codes below.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

BUY = 1
SELL = -1

OK = 0
NEED_GROW = -1
ERR_QTY = -2
ERR_PRICE = -3
ERR_DUPLICATE = -4
ERR_UNKNOWN = -5
ERR_SIDE = -6
ERR_KIND = -7
ERR_ID = -8

ERRORS = {
    NEED_GROW: "out of room (grow the book)",
    ERR_QTY: "quantity must be positive",
    ERR_PRICE: "price must be a positive integer tick price",
    ERR_DUPLICATE: "order id is already resting",
    ERR_UNKNOWN: "no resting order with that id",
    ERR_SIDE: "side must be 1 (buy) or -1 (sell)",
    ERR_KIND: "unknown operation kind",
    ERR_ID: "order id -2**63 is reserved",
}

# operation kinds for apply_ops
OP_LIMIT = 1
OP_MARKET = 2
OP_CANCEL = 3
OP_MODIFY = 4
OP_IOC = 5
OP_EXECUTE = 6

# meta slots
M_ORDERS = 0  # live resting orders
M_FREE_ORDER = 1  # head of the free order-slot list (-1: none)
M_ORDER_HWM = 2  # order slots ever used
M_FREE_LEVEL = 3
M_LEVEL_HWM = 4
M_NBID = 5
M_NASK = 6
M_TRADES = 7
M_HASH_USED = 8
M_HASH_SHIFT = 9  # 64 - log2(hash capacity)
M_META = 16

EMPTY_KEY = np.iinfo(np.int64).min
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# order fields (columns of `orders`)
O_ID, O_SIDE, O_PRICE, O_QTY, O_OWNER, O_TS, O_PREV, O_NEXT, O_LEVEL = range(9)
O_FIELDS = 9
# level fields (columns of `levels`)
L_PRICE, L_QTY, L_COUNT, L_HEAD, L_TAIL = range(5)
L_FIELDS = 5
# trade fields (columns of `trades`)
T_TS, T_PRICE, T_QTY, T_SIDE, T_MAKER, T_TAKER, T_MAKER_OWNER, T_TAKER_OWNER = range(8)
T_FIELDS = 8

Book = namedtuple("Book", ["meta", "orders", "levels", "sides", "hash", "trades"])
"""Few arrays on purpose: numba reference-counts every array a call passes, so one 2-D
array per kind of record keeps calls cheap (and a record's fields on one cache line).
`sides[0]` holds bid level slots ascending, `sides[1]` ask level slots descending (best
last); `hash` rows are (order id, order slot)."""


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def new_book(order_capacity: int = 1 << 12, level_capacity: int = 1 << 10, trade_capacity: int | None = None) -> Book:
    """An empty book sized for about `order_capacity` resting orders (it grows on demand)."""
    oc = max(16, int(order_capacity))
    lc = max(16, int(level_capacity))
    tc = max(16, int(trade_capacity if trade_capacity is not None else oc))
    hc = _pow2(2 * oc)
    meta = np.zeros(M_META, np.int64)
    meta[M_FREE_ORDER] = -1
    meta[M_FREE_LEVEL] = -1
    meta[M_HASH_SHIFT] = 64 - (hc.bit_length() - 1)
    hash_ = np.zeros((hc, 2), np.int64)
    hash_[:, 0] = EMPTY_KEY
    return Book(
        meta,
        np.zeros((oc, O_FIELDS), np.int64),
        np.zeros((lc, L_FIELDS), np.int64),
        np.zeros((2, lc), np.int64),
        hash_,
        np.zeros((tc, T_FIELDS), np.int64),
    )


# --------------------------------------------------------------------------- capacity


@njit(cache=True, nogil=True, inline="always")
def _room(book: Book) -> bool:
    """Whether one more order, one more level and a full sweep of trades surely fit."""
    m = book.meta
    if m[M_FREE_ORDER] < 0 and m[M_ORDER_HWM] >= book.orders.shape[0]:
        return False
    if m[M_FREE_LEVEL] < 0 and m[M_LEVEL_HWM] >= book.levels.shape[0]:
        return False
    if 2 * (m[M_HASH_USED] + 1) > book.hash.shape[0]:
        return False
    if book.trades.shape[0] - m[M_TRADES] < m[M_ORDERS] + 1:
        return False
    return True


@njit(cache=True, nogil=True)
def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, a.shape[1]), np.int64)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def grow(book: Book) -> Book:
    """A copy of `book` with every resource that is at least half used doubled."""
    m = book.meta.copy()
    oc = book.orders.shape[0]
    if m[M_ORDERS] * 2 >= oc or (m[M_FREE_ORDER] < 0 and m[M_ORDER_HWM] >= oc):
        oc *= 2
    lc = book.levels.shape[0]
    if (m[M_NBID] + m[M_NASK]) * 2 >= lc or (m[M_FREE_LEVEL] < 0 and m[M_LEVEL_HWM] >= lc):
        lc *= 2
    tc = book.trades.shape[0]
    while tc - m[M_TRADES] < 2 * (m[M_ORDERS] + 1) or tc < oc:
        tc *= 2
    hc = book.hash.shape[0]
    while 2 * (m[M_HASH_USED] + 1) > hc or hc < 2 * oc:
        hc *= 2
    hash_ = book.hash
    if hc != book.hash.shape[0]:
        bits = 0
        while (1 << bits) < hc:
            bits += 1
        m[M_HASH_SHIFT] = 64 - bits
        hash_ = np.zeros((hc, 2), np.int64)
        hash_[:, 0] = EMPTY_KEY
        mask = hc - 1
        for i in range(book.hash.shape[0]):
            k = book.hash[i, 0]
            if k != EMPTY_KEY:
                j = _hash_slot(k, m[M_HASH_SHIFT])
                while hash_[j, 0] != EMPTY_KEY:
                    j = (j + 1) & mask
                hash_[j, 0] = k
                hash_[j, 1] = book.hash[i, 1]
    sides = np.zeros((2, lc), np.int64)
    sides[:, : book.sides.shape[1]] = book.sides
    return Book(m, _grown(book.orders, oc), _grown(book.levels, lc), sides, hash_, _grown(book.trades, tc))


# --------------------------------------------------------------------------- id hash


@njit(cache=True, nogil=True, inline="always")
def _hash_slot(key: int, shift: int) -> int:
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@njit(cache=True, nogil=True, inline="always")
def find_order(book: Book, oid: int) -> int:
    """The slot of resting order `oid`, or -1."""
    mask = book.hash.shape[0] - 1
    j = _hash_slot(oid, book.meta[M_HASH_SHIFT])
    while True:
        k = book.hash[j, 0]
        if k == oid:
            return book.hash[j, 1]
        if k == EMPTY_KEY:
            return -1
        j = (j + 1) & mask


@njit(cache=True, nogil=True, inline="always")
def _hash_put(book: Book, oid: int, slot: int) -> None:
    mask = book.hash.shape[0] - 1
    j = _hash_slot(oid, book.meta[M_HASH_SHIFT])
    while book.hash[j, 0] != EMPTY_KEY:
        j = (j + 1) & mask
    book.hash[j, 0] = oid
    book.hash[j, 1] = slot
    book.meta[M_HASH_USED] += 1


@njit(cache=True, nogil=True, inline="always")
def _hash_del(book: Book, oid: int) -> None:
    h = book.hash
    mask = h.shape[0] - 1
    shift = book.meta[M_HASH_SHIFT]
    j = _hash_slot(oid, shift)
    while h[j, 0] != oid:
        if h[j, 0] == EMPTY_KEY:
            return
        j = (j + 1) & mask
    # backward-shift deletion keeps every probe chain unbroken without tombstones
    i = j
    while True:
        h[i, 0] = EMPTY_KEY
        k = (i + 1) & mask
        while True:
            kk = h[k, 0]
            if kk == EMPTY_KEY:
                book.meta[M_HASH_USED] -= 1
                return
            home = _hash_slot(kk, shift)
            # move kk back to i unless its home lies cyclically in (i, k]
            if i <= k:
                stays = i < home <= k
            else:
                stays = home > i or home <= k
            if not stays:
                h[i, 0] = kk
                book.hash[i, 1] = book.hash[k, 1]
                i = k
                break
            k = (k + 1) & mask


# --------------------------------------------------------------------------- levels


@njit(cache=True, nogil=True, inline="always")
def _level_pos(book: Book, side: int, price: int) -> int:
    """Position in the side array where `price` is or would be inserted (sorted worst -> best)."""
    if side == BUY:
        arr = book.sides[0]
        n = book.meta[M_NBID]
    else:
        arr = book.sides[1]
        n = book.meta[M_NASK]
    lo = 0
    hi = n
    lv = book.levels
    while lo < hi:
        mid = (lo + hi) >> 1
        p = lv[arr[mid], L_PRICE]
        # bids ascending, asks descending: "worse" prices come first
        if (p < price) if side == BUY else (p > price):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _find_level(book: Book, side: int, price: int) -> int:
    """The level slot holding `price` on `side`, or -1."""
    pos = _level_pos(book, side, price)
    if side == BUY:
        if pos < book.meta[M_NBID] and book.levels[book.sides[0][pos], L_PRICE] == price:
            return book.sides[0][pos]
    else:
        if pos < book.meta[M_NASK] and book.levels[book.sides[1][pos], L_PRICE] == price:
            return book.sides[1][pos]
    return -1


@njit(cache=True, nogil=True, inline="always")
def _shift_up(arr: np.ndarray, pos: int, n: int) -> None:
    """arr[pos + 1 : n + 1] = arr[pos:n]. Unsigned indices skip numba's negative-index
    wraparound, so LLVM vectorises the copy (5x faster for a level deep in the book)."""
    one = np.uint64(1)
    i = np.uint64(n)
    stop = np.uint64(pos)
    while i > stop:
        arr[i] = arr[i - one]
        i -= one


@njit(cache=True, nogil=True, inline="always")
def _shift_down(arr: np.ndarray, pos: int, n: int) -> None:
    """arr[pos : n - 1] = arr[pos + 1 : n] (n >= 1), vectorised like `_shift_up`."""
    one = np.uint64(1)
    i = np.uint64(pos)
    stop = np.uint64(n - 1)
    while i < stop:
        arr[i] = arr[i + one]
        i += one


@njit(cache=True, nogil=True, inline="always")
def _new_level(book: Book, side: int, price: int) -> int:
    m = book.meta
    if m[M_FREE_LEVEL] >= 0:
        lv = m[M_FREE_LEVEL]
        m[M_FREE_LEVEL] = book.levels[lv, L_HEAD]
    else:
        lv = m[M_LEVEL_HWM]
        m[M_LEVEL_HWM] += 1
    book.levels[lv, L_PRICE] = price
    book.levels[lv, L_QTY] = 0
    book.levels[lv, L_COUNT] = 0
    book.levels[lv, L_HEAD] = -1
    book.levels[lv, L_TAIL] = -1
    pos = _level_pos(book, side, price)
    if side == BUY:
        arr = book.sides[0]
        n = m[M_NBID]
        m[M_NBID] = n + 1
    else:
        arr = book.sides[1]
        n = m[M_NASK]
        m[M_NASK] = n + 1
    _shift_up(arr, pos, n)
    arr[pos] = lv
    return lv


@njit(cache=True, nogil=True, inline="always")
def _drop_level(book: Book, side: int, lv: int) -> None:
    m = book.meta
    if side == BUY:
        arr = book.sides[0]
        n = m[M_NBID]
    else:
        arr = book.sides[1]
        n = m[M_NASK]
    if n > 0 and arr[n - 1] == lv:  # the usual case: the best level emptied
        pos = n - 1
    else:
        pos = _level_pos(book, side, book.levels[lv, L_PRICE])
    _shift_down(arr, pos, n)
    if side == BUY:
        m[M_NBID] = n - 1
    else:
        m[M_NASK] = n - 1
    book.levels[lv, L_HEAD] = m[M_FREE_LEVEL]
    m[M_FREE_LEVEL] = lv


# --------------------------------------------------------------------------- orders


@njit(cache=True, nogil=True, inline="always")
def _rest(book: Book, ts: int, oid: int, side: int, price: int, qty: int, owner: int) -> None:
    """Append an order at the back of its price level's queue (room already checked)."""
    m = book.meta
    lv = _find_level(book, side, price)
    if lv < 0:
        lv = _new_level(book, side, price)
    if m[M_FREE_ORDER] >= 0:
        s = m[M_FREE_ORDER]
        m[M_FREE_ORDER] = book.orders[s, O_NEXT]
    else:
        s = m[M_ORDER_HWM]
        m[M_ORDER_HWM] += 1
    book.orders[s, O_ID] = oid
    book.orders[s, O_SIDE] = side
    book.orders[s, O_PRICE] = price
    book.orders[s, O_QTY] = qty
    book.orders[s, O_OWNER] = owner
    book.orders[s, O_TS] = ts
    book.orders[s, O_LEVEL] = lv
    book.orders[s, O_NEXT] = -1
    tail = book.levels[lv, L_TAIL]
    book.orders[s, O_PREV] = tail
    if tail >= 0:
        book.orders[tail, O_NEXT] = s
    else:
        book.levels[lv, L_HEAD] = s
    book.levels[lv, L_TAIL] = s
    book.levels[lv, L_QTY] += qty
    book.levels[lv, L_COUNT] += 1
    m[M_ORDERS] += 1
    _hash_put(book, oid, s)


@njit(cache=True, nogil=True, inline="always")
def _unlink(book: Book, s: int) -> None:
    """Remove order slot `s` from its level (dropping the level if it empties) and free it."""
    lv = book.orders[s, O_LEVEL]
    prev = book.orders[s, O_PREV]
    nxt = book.orders[s, O_NEXT]
    if prev >= 0:
        book.orders[prev, O_NEXT] = nxt
    else:
        book.levels[lv, L_HEAD] = nxt
    if nxt >= 0:
        book.orders[nxt, O_PREV] = prev
    else:
        book.levels[lv, L_TAIL] = prev
    book.levels[lv, L_QTY] -= book.orders[s, O_QTY]
    book.levels[lv, L_COUNT] -= 1
    if book.levels[lv, L_COUNT] == 0:
        _drop_level(book, book.orders[s, O_SIDE], lv)
    _hash_del(book, book.orders[s, O_ID])
    book.orders[s, O_QTY] = 0
    book.orders[s, O_LEVEL] = -1
    book.orders[s, O_NEXT] = book.meta[M_FREE_ORDER]
    book.meta[M_FREE_ORDER] = s
    book.meta[M_ORDERS] -= 1


@njit(cache=True, nogil=True, inline="always")
def _trade(
    book: Book, ts: int, price: int, qty: int, side: int, maker: int, taker: int, m_own: int, t_own: int
) -> None:
    n = book.meta[M_TRADES]
    t = book.trades
    t[n, T_TS] = ts
    t[n, T_PRICE] = price
    t[n, T_QTY] = qty
    t[n, T_SIDE] = side
    t[n, T_MAKER] = maker
    t[n, T_TAKER] = taker
    t[n, T_MAKER_OWNER] = m_own
    t[n, T_TAKER_OWNER] = t_own
    book.meta[M_TRADES] = n + 1


@njit(cache=True, nogil=True, inline="always")
def _match(book: Book, ts: int, taker: int, owner: int, side: int, limit: int, qty: int) -> int:
    """Fill an incoming order against the opposite side up to `limit`; returns quantity filled."""
    m = book.meta
    left = qty
    if side == BUY:
        arr = book.sides[1]
        nslot = M_NASK
    else:
        arr = book.sides[0]
        nslot = M_NBID
    while left > 0 and m[nslot] > 0:
        lv = arr[m[nslot] - 1]
        price = book.levels[lv, L_PRICE]
        if (price > limit) if side == BUY else (price < limit):
            break
        while left > 0 and book.levels[lv, L_COUNT] > 0:
            s = book.levels[lv, L_HEAD]
            q = book.orders[s, O_QTY]
            fill = q if q < left else left
            _trade(book, ts, price, fill, side, book.orders[s, O_ID], taker, book.orders[s, O_OWNER], owner)
            left -= fill
            if fill == q:
                _unlink(book, s)  # drops the level when it was the last order
            else:
                book.orders[s, O_QTY] = q - fill
                book.levels[lv, L_QTY] -= fill
    return qty - left


# --------------------------------------------------------------------------- operations


@njit(cache=True, nogil=True)
def limit_order(book: Book, ts: int, oid: int, side: int, price: int, qty: int, owner: int, ioc: bool) -> int:
    """A limit order: match what crosses, rest the rest (dropped instead when `ioc`).
    Returns the quantity filled on arrival."""
    if side != BUY and side != SELL:
        return ERR_SIDE
    if qty <= 0:
        return ERR_QTY
    if price <= 0:
        return ERR_PRICE
    if not _room(book):
        return NEED_GROW
    if oid == EMPTY_KEY:
        return ERR_ID
    if find_order(book, oid) >= 0:
        return ERR_DUPLICATE
    filled = _match(book, ts, oid, owner, side, price, qty)
    if filled < qty and not ioc:
        _rest(book, ts, oid, side, price, qty - filled, owner)
    return filled


@njit(cache=True, nogil=True)
def market_order(book: Book, ts: int, oid: int, side: int, qty: int, owner: int) -> int:
    """A market order: sweeps the opposite side until filled or the side is empty; the
    unfilled rest is dropped. Returns the quantity filled."""
    if side != BUY and side != SELL:
        return ERR_SIDE
    if qty <= 0:
        return ERR_QTY
    if not _room(book):
        return NEED_GROW
    limit = np.iinfo(np.int64).max if side == BUY else np.iinfo(np.int64).min
    return _match(book, ts, oid, owner, side, limit, qty)


@njit(cache=True, nogil=True)
def cancel(book: Book, oid: int, qty: int) -> int:
    """Cancel `qty` of a resting order (all of it when qty <= 0 or >= what rests);
    a partial cancel keeps time priority. Returns the quantity cancelled."""
    s = find_order(book, oid)
    if s < 0:
        return ERR_UNKNOWN
    q = book.orders[s, O_QTY]
    if qty <= 0 or qty >= q:
        _unlink(book, s)
        return q
    book.orders[s, O_QTY] = q - qty
    book.levels[book.orders[s, O_LEVEL], L_QTY] -= qty
    return qty


@njit(cache=True, nogil=True)
def modify(book: Book, ts: int, oid: int, price: int, qty: int) -> int:
    """Change a resting order's price and/or size. Reducing size at the same price keeps
    priority; anything else re-enters the order at the back (and may trade).
    Returns the quantity filled by the re-entry (0 when it only rested)."""
    if qty <= 0:
        return ERR_QTY
    if price <= 0:
        return ERR_PRICE
    s = find_order(book, oid)
    if s < 0:
        return ERR_UNKNOWN
    if not _room(book):
        return NEED_GROW
    if price == book.orders[s, O_PRICE] and qty <= book.orders[s, O_QTY]:
        book.levels[book.orders[s, O_LEVEL], L_QTY] -= book.orders[s, O_QTY] - qty
        book.orders[s, O_QTY] = qty
        return 0
    side = book.orders[s, O_SIDE]
    owner = book.orders[s, O_OWNER]
    _unlink(book, s)
    filled = _match(book, ts, oid, owner, side, price, qty)
    if filled < qty:
        _rest(book, ts, oid, side, price, qty - filled, owner)
    return filled


@njit(cache=True, nogil=True)
def execute(book: Book, ts: int, oid: int, qty: int) -> int:
    """Execute `qty` of a named resting order against an unseen aggressor (the way LOBSTER
    and ITCH report executions). Returns the quantity executed."""
    if qty <= 0:
        return ERR_QTY
    s = find_order(book, oid)
    if s < 0:
        return ERR_UNKNOWN
    if not _room(book):
        return NEED_GROW
    q = book.orders[s, O_QTY]
    fill = q if q < qty else qty
    _trade(book, ts, book.orders[s, O_PRICE], fill, -book.orders[s, O_SIDE], oid, 0, book.orders[s, O_OWNER], 0)
    if fill == q:
        _unlink(book, s)
    else:
        book.orders[s, O_QTY] = q - fill
        book.levels[book.orders[s, O_LEVEL], L_QTY] -= fill
    return fill


@njit(cache=True, nogil=True)
def apply_op(book: Book, kind: int, ts: int, oid: int, side: int, price: int, qty: int, owner: int) -> int:
    """One operation of any kind (see OP_*); the result of the matching function."""
    if kind == OP_LIMIT:
        return limit_order(book, ts, oid, side, price, qty, owner, False)
    if kind == OP_IOC:
        return limit_order(book, ts, oid, side, price, qty, owner, True)
    if kind == OP_MARKET:
        return market_order(book, ts, oid, side, qty, owner)
    if kind == OP_CANCEL:
        return cancel(book, oid, qty)
    if kind == OP_MODIFY:
        return modify(book, ts, oid, price, qty)
    if kind == OP_EXECUTE:
        return execute(book, ts, oid, qty)
    return ERR_KIND


@njit(cache=True, nogil=True)
def apply_ops(
    book: Book,
    kind: np.ndarray,
    ts: np.ndarray,
    oid: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    owner: np.ndarray,
    result: np.ndarray,
    start: int,
) -> int:
    """Apply operations start.. in order, writing each one's result; stops before an
    operation that needs room and returns its index (len(kind) when all were applied)."""
    n = kind.shape[0]
    for i in range(start, n):
        # apply_op's dispatch, repeated so that each operation costs one call, not two
        k = kind[i]
        if k == OP_LIMIT:
            r = limit_order(book, ts[i], oid[i], side[i], price[i], qty[i], owner[i], False)
        elif k == OP_CANCEL:
            r = cancel(book, oid[i], qty[i])
        elif k == OP_IOC:
            r = limit_order(book, ts[i], oid[i], side[i], price[i], qty[i], owner[i], True)
        elif k == OP_MARKET:
            r = market_order(book, ts[i], oid[i], side[i], qty[i], owner[i])
        elif k == OP_MODIFY:
            r = modify(book, ts[i], oid[i], price[i], qty[i])
        elif k == OP_EXECUTE:
            r = execute(book, ts[i], oid[i], qty[i])
        else:
            r = ERR_KIND
        if r == NEED_GROW:
            return i
        result[i] = r
    return n


# --------------------------------------------------------------------------- queries


@njit(cache=True, nogil=True, inline="always")
def _side_of(book: Book, side: int) -> tuple[int, int]:
    """(row of `sides`, number of levels) for a side."""
    if side == BUY:
        return 0, book.meta[M_NBID]
    return 1, book.meta[M_NASK]


@njit(cache=True, nogil=True, inline="always")
def _top(book: Book, side: int, field: int) -> int:
    si, n = _side_of(book, side)
    return book.levels[book.sides[si, n - 1], field] if n > 0 else 0


@njit(cache=True, nogil=True)
def best_bid(book: Book) -> int:
    """Best bid price, 0 when there are no bids."""
    return _top(book, BUY, L_PRICE)


@njit(cache=True, nogil=True)
def best_ask(book: Book) -> int:
    """Best ask price, 0 when there are no asks."""
    return _top(book, SELL, L_PRICE)


@njit(cache=True, nogil=True)
def best_bid_size(book: Book) -> int:
    """Shares at the best bid (0 when none)."""
    return _top(book, BUY, L_QTY)


@njit(cache=True, nogil=True)
def best_ask_size(book: Book) -> int:
    """Shares at the best ask (0 when none)."""
    return _top(book, SELL, L_QTY)


@njit(cache=True, nogil=True)
def depth(book: Book, side: int, n_levels: int, out_px: np.ndarray, out_qty: np.ndarray) -> int:
    """Write the best `n_levels` levels of a side (best first); returns how many exist."""
    si, n = _side_of(book, side)
    k = n if n < n_levels else n_levels
    for i in range(k):
        lv = book.sides[si, n - 1 - i]
        out_px[i] = book.levels[lv, L_PRICE]
        out_qty[i] = book.levels[lv, L_QTY]
    return k


@njit(cache=True, nogil=True)
def side_volume(book: Book, side: int, n_levels: int) -> int:
    """Shares resting in the best `n_levels` levels of a side."""
    si, n = _side_of(book, side)
    k = n if n < n_levels else n_levels
    total = 0
    for i in range(k):
        total += book.levels[book.sides[si, n - 1 - i], L_QTY]
    return total


@njit(cache=True, nogil=True)
def level_qty(book: Book, side: int, price: int) -> int:
    """Shares resting at `price` on `side` (0 when no such level)."""
    lv = _find_level(book, side, price)
    return book.levels[lv, L_QTY] if lv >= 0 else 0


@njit(cache=True, nogil=True)
def order_qty(book: Book, oid: int) -> int:
    """Remaining quantity of resting order `oid` (0 when it is not resting)."""
    s = find_order(book, oid)
    return book.orders[s, O_QTY] if s >= 0 else 0
