"""Walking an order-book ladder: what a taker order of some size gets, level by level.

Ladders are integer numpy arrays (px in 1/10,000 USD, sz in contracts), best level first: asks
ascending, bids descending. A size of 0 marks an empty level and may appear anywhere; it is skipped.
`walk` runs one numba loop that validates and fills in a single pass (~1 µs at L=10 against ~20 µs
for the numpy version; compiled once, ~1 s, then cached in __pycache__).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit

from proto.units import CASH_PER_PRICE_UNIT, PRICE_SCALE

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class Fill:
    """What walking a ladder for `requested` contracts gave: per-level fills, best level first.

    `cost_micros` is what a buy pays (or a sell receives) before fees; `worst_px` is the last level
    touched (0 when nothing filled). `level_px`/`level_qty` let fees be computed per fill.
    """

    requested: int
    filled: int
    cost_micros: int
    worst_px: int
    level_px: np.ndarray
    level_qty: np.ndarray

    @property
    def complete(self) -> bool:
        """True when the whole requested size was available."""
        return self.filled == self.requested


def _as_int_array(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_ladder(
    px: object, sz: object, side: Side | None = None, name: str = "ladder"
) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 (px, sz) arrays; ValueError naming which field is wrong and where.

    Lengths must match, sizes must be >= 0, non-empty levels must be priced inside
    (0, PRICE_SCALE) and, when `side` is given, in walking order (asks up for "buy", bids down
    for "sell").
    """
    p = _as_int_array(px, f"{name} px")
    s = _as_int_array(sz, f"{name} sz")
    if p.shape != s.shape:
        raise ValueError(f"{name} px has {p.size} levels but {name} sz has {s.size}")
    if s.size and s.min() < 0:
        i = int(np.argmax(s < 0))
        raise ValueError(f"{name} sz[{i}]={int(s[i])} must not be negative")
    live = s > 0
    lp = p[live]
    if lp.size:
        bad = (lp <= 0) | (lp >= PRICE_SCALE)
        if bad.any():
            i = int(np.flatnonzero(live)[np.argmax(bad)])
            raise ValueError(f"{name} px[{i}]={int(p[i])} must be inside (0, {PRICE_SCALE})")
        if side is not None and lp.size > 1:
            steps = np.diff(lp)
            wrong = steps < 0 if side == "buy" else steps > 0
            if wrong.any():
                i = int(np.flatnonzero(live)[np.argmax(wrong) + 1])
                order = "ascending (asks)" if side == "buy" else "descending (bids)"
                raise ValueError(f"{name} px[{i}]={int(p[i])} breaks the {order} level order")
    return p, s


@njit(cache=True)
def _walk_kernel(
    px: np.ndarray, sz: np.ndarray, size: int, limit: int, buy: bool
) -> tuple[int, int, np.ndarray, np.ndarray, int]:
    """(status, bad level, fill px, fill qty, cost in price units x contracts) in one pass.

    Status 0 ok, 1 negative size, 2 price outside (0, PRICE_SCALE), 3 level out of order; every
    level is validated even past the limit, as `check_ladder` would.
    """
    n = px.shape[0]
    out_px = np.empty(n, np.int64)
    out_qty = np.empty(n, np.int64)
    k = 0
    left = size
    cost = 0
    last = -1
    for i in range(n):
        s = sz[i]
        if s < 0:
            return 1, i, out_px[:0], out_qty[:0], 0
        if s == 0:
            continue
        p = px[i]
        if p <= 0 or p >= 10_000:
            return 2, i, out_px[:0], out_qty[:0], 0
        if last >= 0 and ((buy and p < last) or (not buy and p > last)):
            return 3, i, out_px[:0], out_qty[:0], 0
        last = p
        if left == 0 or (buy and p > limit) or (not buy and p < limit):
            continue
        take = s if s < left else left
        out_px[k] = p
        out_qty[k] = take
        k += 1
        left -= take
        cost += p * take
    return 0, -1, out_px[:k], out_qty[:k], cost


def walk(px: object, sz: object, size: int, limit_px: int | None = None, side: Side = "buy") -> Fill:
    """Take up to `size` contracts from a ladder, best level first, no worse than `limit_px`.

    "buy" walks asks (prices must not exceed the limit), "sell" walks bids (prices must not go
    below it). Partial when depth within the limit is short; empty when nothing qualifies.
    Bad ladders raise ValueError naming the field and level, as `check_ladder` does.
    """
    if side not in ("buy", "sell"):
        raise ValueError(f"side={side!r} must be 'buy' or 'sell'")
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise ValueError(f"size={size!r} must be a whole number of contracts >= 0")
    if limit_px is not None and not 0 <= limit_px <= PRICE_SCALE:
        raise ValueError(f"limit_px={limit_px!r} must be within [0, {PRICE_SCALE}]")
    buy = side == "buy"
    name = "ask" if buy else "bid"
    p = np.ascontiguousarray(_as_int_array(px, f"{name} px"))
    s = np.ascontiguousarray(_as_int_array(sz, f"{name} sz"))
    if p.shape != s.shape:
        raise ValueError(f"{name} px has {p.size} levels but {name} sz has {s.size}")
    limit = (PRICE_SCALE if buy else 0) if limit_px is None else int(limit_px)
    status, bad, fpx, fqty, cost = _walk_kernel(p, s, int(size), limit, buy)
    if status:
        check_ladder(p, s, side, name)  # raises the descriptive error
        raise AssertionError(f"walk kernel status {status} at level {bad} not reproduced")  # pragma: no cover
    filled = int(fqty.sum())
    return Fill(int(size), filled, int(cost) * CASH_PER_PRICE_UNIT, int(fpx[-1]) if filled else 0, fpx, fqty)


def no_asks_from_yes_bids(bid_px: object, bid_sz: object) -> tuple[np.ndarray, np.ndarray]:
    """The NO ask ladder: buying NO at q is selling YES at 1 − q, so q = PRICE_SCALE − bid, same order.

    Empty levels stay empty (their price is meaningless and is never read).
    """
    p, s = check_ladder(bid_px, bid_sz, name="bid")
    return PRICE_SCALE - p, s.copy()


def no_bids_from_yes_asks(ask_px: object, ask_sz: object) -> tuple[np.ndarray, np.ndarray]:
    """The NO bid ladder: selling NO at q is buying YES at 1 − q, so q = PRICE_SCALE − ask, same order."""
    p, s = check_ladder(ask_px, ask_sz, name="ask")
    return PRICE_SCALE - p, s.copy()


def best_bid(px: object, sz: object) -> int | None:
    """Highest bid price among non-empty levels, or None for an empty side."""
    p, s = check_ladder(px, sz, name="bid")
    live = p[s > 0]
    return int(live.max()) if live.size else None


def best_ask(px: object, sz: object) -> int | None:
    """Lowest ask price among non-empty levels, or None for an empty side."""
    p, s = check_ladder(px, sz, name="ask")
    live = p[s > 0]
    return int(live.min()) if live.size else None


def depth(px: object, sz: object, limit_px: int | None = None, side: Side = "buy") -> int:
    """Contracts available on a ladder, within `limit_px` when given."""
    p, s = check_ladder(px, sz, name="ask" if side == "buy" else "bid")
    live = s > 0
    if limit_px is not None:
        live &= (p <= limit_px) if side == "buy" else (p >= limit_px)
    return int(s[live].sum())
