"""The paper trader's decisions: safety checks and virtual fills for a batch of intents × runs.

Pure and synchronous (no bus): `Engine.prepare` turns a batch of intents (or success-span
opportunities) into columns — leg arrays, the books each leg walks (`libs.paper.books.lookup`) and
the checks that depend only on the intent — and `Engine.decide` runs one numba kernel over every
(intent, watching run) pair, in stream order, carrying each run's balance and daily spend from one
intent to the next. Python touches each decision only to name it (ids, reason, detail strings) and
each taken one to build its `PaperTrade`. `Engine.prepare_one` / `decide_one` decide one intent
(the service's hot path) without a batch's columns: the same order checks (`_check_order`), book
rows (`BookHistory.row_at`) and bus validation, and the same per-pair rules (`_pair`, which the
batch kernel runs too), for a fraction of a batch's fixed cost.

Checks run in `libs.paper.views.CHECK_RUN_ORDER` (`proto.paper.CHECKS`, which fixes the bit
positions, with untraded_opportunity right after min_net_edge); a decision records which ran and
which passed as bit masks over CHECKS, and the first failure is its `reason` with a detail naming
the values:

- has_orders: the intent has at least one leg.
- hedged_pair: 2 legs, one YES and one NO, both buys, limits inside (0, 1), a fee model for each
  leg's venue that the kernel computes exactly (Kalshi's schedule; Polymarket with exponent 1, as
  every live market has: another exponent is refused here, naming it), size > 0.
- min_net_edge: the intent's net edge per contract (as detect priced it) >= the run's minimum.
- untraded_opportunity: the run has not traded this opportunity opening (`opportunity_id`) yet —
  before the batch (`RunLimits.traded`, the run's `snapshot.traded`) or earlier in it. One trade
  per opening: detect sends a new intent each time an open opportunity's edge improves, and paper
  fills never consume the books, so a second trade would count the same liquidity again. Not run
  for a success-span start (it never trades).
- instrument_ids: both legs carry an id without whitespace (a Polymarket token id, a Kalshi ticker).
- exchange_keys: with MT_PAPER_VALIDATION=live the run's user had keys for every leg's venue when
  the run started; otherwise passed ("not required").
- exchange_validation: `bus`: each leg's book is held as of the fill time t1 = book_ts +
  MT_PAPER_LATENCY_MS, is at most MT_PAPER_MAX_BOOK_AGE_S older than t1, the latest MarketInfo does
  not say the market is closed/settled/finalized (`books.CLOSED_STATUSES`), and the book has depth
  at or below the leg's limit. `live`: the venues' own APIs (`libs.paper.exchange`, results handed
  in by the service). `off`: passed.
- max_leg: the size is cut so that each leg's size × limit <= the run's max leg; fails at 0.
- balance: the worst case (size × both limits + both legs' taker fees at their limits) <= cash, and
  fewer than MAX_PENDING (20,000) of the run's trades await settlement.
- daily_cap: spent that UTC day (market time: book_ts) + the worst case <= the daily cap.
- liquidity: leg 0 fills at least one contract on the book as of t1.
- fill_edge: the pair as it would fill on the books at t1 — leg 0 for the size, leg 1 for what leg 0
  matched — nets at least the minimum per contract of leg 0 after fees, contracts leg 1 could not
  match counted as lost. A pair visibly unhedgeable at t1 is skipped here.

Fills (when every check passed): legs fill one after the other. Leg 0 walks its book as of t1 for
the size (the same walk as above); leg 1 walks its book as of t1 + MT_PAPER_LEG_GAP_MS for leg 0's
matched size — the market may have moved in between. The hedged size is the smaller match; a
shortfall on leg 1 is a broken pair (`broken`, `unhedged_size`), recorded, never hidden: its
`exposure_micros` is the cost + fees of leg 0's unhedged contracts (leg 0's walk for its matched
size minus its walk for the hedged size), and `pnl_micros = hedged × $1 − every cost − every fee`,
i.e. the unhedged contracts are counted as lost (conservative: they are a naked position the
simulator never closes). Fees are each venue's exact rules on each leg's matched levels
(`libs.fees`, reproduced in integer arithmetic in the kernel and tested against it).
A success-span decision (`dry`) runs every check but never fills: `eligible` when all pass.

Money is integer micro-dollars, prices 1/10,000 USD, sizes whole contracts; `net // size` floors.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from libs.fees import KALSHI, POLYMARKET, FeeModel, KalshiFeeModel, PolymarketFeeModel
from libs.paper.books import BookHistory, MarketFacts
from libs.paper.views import CHECK_RUN_ORDER, iso
from proto.events import DecisionSource, Intent, Leg, LegFill, Opportunity, PaperTrade
from proto.paper import CHECKS, DecisionColumns
from proto.units import CASH_PER_PRICE_UNIT, CASH_SCALE, PRICE_SCALE

NS_PER_DAY = 86_400 * 1_000_000_000
PAIR_PAYOUT_MICROS = PRICE_SCALE * CASH_PER_PRICE_UNIT
"""What one hedged YES + NO pair pays: $1."""

(
    HAS_ORDERS,
    HEDGED_PAIR,
    MIN_NET_EDGE,
    INSTRUMENT_IDS,
    EXCHANGE_KEYS,
    EXCHANGE_VALIDATION,
    MAX_LEG,
    BALANCE,
    DAILY_CAP,
    LIQUIDITY,
    FILL_EDGE,
    UNTRADED_OPPORTUNITY,
) = range(12)
assert CHECKS[FILL_EDGE] == "fill_edge" and CHECKS[EXCHANGE_KEYS] == "exchange_keys" and len(CHECKS) == 12
assert CHECKS[UNTRADED_OPPORTUNITY] == "untraded_opportunity"
assert CHECK_RUN_ORDER[: MIN_NET_EDGE + 2] == (*CHECKS[: MIN_NET_EDGE + 1], "untraded_opportunity")

PASSED = -1
"""Kernel code: every check passed (taken, or eligible for a span)."""
NOT_WATCHED = -2
_ROW_FREE = frozenset(
    {HEDGED_PAIR, HAS_ORDERS, INSTRUMENT_IDS, EXCHANGE_KEYS, EXCHANGE_VALIDATION, MIN_NET_EDGE, MAX_LEG, LIQUIDITY}
)
"""Failed checks whose detail names no kernel output (`_fail_detail` reads no row for them)."""
_NO_ROW: list[int] = []
INTENT_OK = 99
"""`fail_at` of an intent whose intent-only checks (has_orders, hedged_pair, instrument_ids) pass."""

FEE_KALSHI = 1
FEE_POLYMARKET = 2

# kernel output columns
(
    O_CODE,
    O_RUN,
    O_PASS,
    O_SIZE,
    O_NEED,
    O_BALANCE,
    O_SPENT,
    O_M0,
    O_COST0,
    O_FEE0,
    O_WORST0,
    O_M1D,
    O_COST1D,
    O_FEE1D,
    O_NET,
    O_M1,
    O_COST1,
    O_FEE1,
    O_WORST1,
    O_EXPOSURE,
    O_ROOM,
) = range(21)
N_OUT = 21
MAX_PENDING = 20_000
"""Trades one run may have awaiting settlement: its snapshot carries them all (`RunSnapshot.pending`,
~100 bytes each), and a RunUpdate must fit NATS's max_payload. At the cap the balance check refuses."""

_WS = re.compile(r"\s")
FEE_CACHE_MAX = 100_000
"""(venue, instrument) entries `Engine._leg_info` caches before starting over."""
MAX_TS = 2**62
"""Order times (`ts`, `book_ts`, ns) must be below this (the year 2116): int64 arithmetic on them
(t1 = book_ts + latency, the leg gap, day slots) then cannot overflow."""
_NO_LEG = (1, 0, FEE_KALSHI, 1, 1, 1, 1)
"""A leg's kernel values when the order failed before they were known."""
_NO_BOOK = np.zeros((1, 1), np.int64)
"""The ladders of a leg with no book held (its row is −1: `_walk_at` fills nothing)."""
Order = Intent | Opportunity


# ---------------------------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _leg_fee(kind: int, a: int, b: int, c: int, d: int, px: int, qty: int) -> tuple[int, int]:
    """(trade fee, rounding fee) of one taker fill of `qty` at `px`, in micros.

    Kalshi (a/b = coefficient, c = balance precision): the trade fee a/b × C × P × (1 − P) rounded
    up to $0.0001, and the rounding of the balance change to the precision (`libs.fees`).
    Polymarket exponent 1 (a/b = rate, c = micros per rounding step, d = half up): the fee rounded.
    """
    if kind == FEE_KALSHI:
        raw = a * qty * px * (PRICE_SCALE - px)
        t = -((-raw) // (b * 10_000)) * 100
        change = -(px * qty * CASH_PER_PRICE_UNIT) - t
        return t, change % c
    num = qty * a * px * (PRICE_SCALE - px)
    den = b * 100 * c
    steps = (2 * num + den) // (2 * den) if d else num // den
    return steps * c, 0


@njit(cache=True, inline="always")
def _settle(kind: int, t: int, r: int) -> int:
    """An order's net fee from its fills' summed parts (Kalshi's per-order cent accumulator)."""
    if kind == FEE_KALSHI and r > 0:
        return t + r - 10_000 * ((r - 1) // 10_000)
    return t + r


@njit(cache=True)
def _walk(
    px: np.ndarray, sz: np.ndarray, reflect: bool, want: int, limit: int, kind: int, a: int, b: int, c: int, d: int
) -> tuple[int, int, int, int]:
    """(filled, cost, fee, worst px) of buying up to `want` from a ladder row, best level first,
    no level above `limit`. `reflect`: the row is YES bids and NO is bought (price 1 − bid)."""
    left = want
    cost = 0
    t_sum = 0
    r_sum = 0
    worst = 0
    for j in range(px.shape[0]):
        if left == 0:
            break
        s = sz[j]
        if s <= 0:
            continue
        p = PRICE_SCALE - px[j] if reflect else px[j]
        if p > limit:
            break
        take = s if s < left else left
        cost += p * take
        t, r = _leg_fee(kind, a, b, c, d, p, take)
        t_sum += t
        r_sum += r
        left -= take
        worst = p
    filled = want - left
    fee = _settle(kind, t_sum, r_sum) if filled > 0 else 0
    return filled, cost * CASH_PER_PRICE_UNIT, fee, worst


@njit(cache=True)
def _row_depth(px: np.ndarray, sz: np.ndarray, reflect: bool, limit: int) -> int:
    """Contracts at or below `limit` on one ladder row (`reflect`: YES bids, NO bought at 1 − bid)."""
    total = 0
    for j in range(px.shape[0]):
        p = PRICE_SCALE - px[j] if reflect else px[j]
        if sz[j] > 0 and p <= limit:
            total += sz[j]
    return total


@njit(cache=True)
def _depth(
    rows: np.ndarray,
    reflect: np.ndarray,
    limit: np.ndarray,
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
) -> np.ndarray:
    """Contracts at or below each leg's limit on its pool row (−1 where there is no row)."""
    n, k = rows.shape
    out = np.full((n, k), -1, np.int64)
    for i in range(n):
        for leg in range(k):
            row = rows[i, leg]
            if row < 0:
                continue
            refl = reflect[i, leg]
            if refl:
                out[i, leg] = _row_depth(bid_px[row], bid_sz[row], refl, limit[i, leg])
            else:
                out[i, leg] = _row_depth(ask_px[row], ask_sz[row], refl, limit[i, leg])
    return out


@njit(cache=True, inline="always")
def _walk_at(
    px: np.ndarray,
    sz: np.ndarray,
    row: int,
    reflect: bool,
    want: int,
    limit: int,
    kind: int,
    a: int,
    b: int,
    c: int,
    d: int,
) -> tuple[int, int, int, int]:
    """`_walk` on row `row` of a (rows, levels) ladder, nothing filled when `row` < 0 (no book): the
    row is sliced only when it is walked (most pairs fail a check first)."""
    if row < 0:
        return 0, 0, 0, 0
    return _walk(px[row], sz[row], reflect, want, limit, kind, a, b, c, d)


@njit(cache=True, inline="always")
def _pair(
    fail: int,
    edge: int,
    size_req: int,
    leg0: tuple[int, bool | int, int, int, int, int, int],
    leg1: tuple[int, bool | int, int, int, int, int, int],
    px0: np.ndarray,
    sz0: np.ndarray,
    row0: int,
    px1: np.ndarray,
    sz1: np.ndarray,
    row1: int,
    pxg: np.ndarray,
    szg: np.ndarray,
    rowg: int,
    keys_ok: bool,
    ev_ok: bool,
    min_edge: int,
    max_leg: int,
    cap: int,
    balance: int,
    spent_today: int,
    room: int,
    traded: bool,
    dry: bool,
    o: np.ndarray,
) -> int:
    """One (order, run) pair: the checks in order, then (unless `dry`) the fill. Each leg is
    (limit, buys NO: a bool from the batch kernel, 0/1 from `_kernel_one`, fee kind, a, b, c, d).
    Leg 0 walks row `row0` of (px0, sz0), its book as of t1; leg 1 row `row1` of (px1, sz1) as of
    t1 for fill_edge and row `rowg` of (pxg, szg) as of t1 + the leg gap for the fill (the YES bids
    for a leg buying NO; row −1: no book). Results go to `o[O_*]`; returns the cash the fill took
    (cost + fees), −1 when nothing was filled. Inlined where it is called (numba inlines at most 30
    parameters: hence the packed legs), so the batch kernel pays no call per pair."""
    lim0, refl0, k0, a0, b0, c0, d0 = leg0
    lim1, refl1, k1, a1, b1, c1, d1 = leg1
    ran = 0
    passed = 0
    code = PASSED
    while True:
        ran |= 1 << HAS_ORDERS
        if fail == HAS_ORDERS:
            code = HAS_ORDERS
            break
        passed |= 1 << HAS_ORDERS
        ran |= 1 << HEDGED_PAIR
        if fail == HEDGED_PAIR:
            code = HEDGED_PAIR
            break
        passed |= 1 << HEDGED_PAIR
        ran |= 1 << MIN_NET_EDGE
        if edge < min_edge:
            code = MIN_NET_EDGE
            break
        passed |= 1 << MIN_NET_EDGE
        if not dry:  # one trade per opportunity opening (a span start never trades)
            ran |= 1 << UNTRADED_OPPORTUNITY
            if traded:
                code = UNTRADED_OPPORTUNITY
                break
            passed |= 1 << UNTRADED_OPPORTUNITY
        ran |= 1 << INSTRUMENT_IDS
        if fail == INSTRUMENT_IDS:
            code = INSTRUMENT_IDS
            break
        passed |= 1 << INSTRUMENT_IDS
        ran |= 1 << EXCHANGE_KEYS
        if not keys_ok:
            code = EXCHANGE_KEYS
            break
        passed |= 1 << EXCHANGE_KEYS
        ran |= 1 << EXCHANGE_VALIDATION
        if not ev_ok:
            code = EXCHANGE_VALIDATION
            break
        passed |= 1 << EXCHANGE_VALIDATION
        # max leg: each leg's size x limit within the run's max leg
        ran |= 1 << MAX_LEG
        size = size_req
        s0 = max_leg // (lim0 * CASH_PER_PRICE_UNIT)
        s1 = max_leg // (lim1 * CASH_PER_PRICE_UNIT)
        if s0 < size:
            size = s0
        if s1 < size:
            size = s1
        if size < 0:
            size = 0
        o[O_SIZE] = size
        if size <= 0:
            code = MAX_LEG
            break
        passed |= 1 << MAX_LEG
        # balance: the worst case, both legs at their limits, with fees
        ran |= 1 << BALANCE
        t0, r0 = _leg_fee(k0, a0, b0, c0, d0, lim0, size)
        t1, r1 = _leg_fee(k1, a1, b1, c1, d1, lim1, size)
        need = size * (lim0 + lim1) * CASH_PER_PRICE_UNIT + _settle(k0, t0, r0) + _settle(k1, t1, r1)
        o[O_NEED] = need
        o[O_BALANCE] = balance
        o[O_ROOM] = room
        if need > balance or room <= 0:
            code = BALANCE
            break
        passed |= 1 << BALANCE
        ran |= 1 << DAILY_CAP
        o[O_SPENT] = spent_today
        if spent_today + need > cap:
            code = DAILY_CAP
            break
        passed |= 1 << DAILY_CAP
        # liquidity: leg 0 on its book as of t1
        ran |= 1 << LIQUIDITY
        m0, cost0, fee0, worst0 = _walk_at(px0, sz0, row0, refl0, size, lim0, k0, a0, b0, c0, d0)
        o[O_M0] = m0
        o[O_COST0] = cost0
        o[O_FEE0] = fee0
        o[O_WORST0] = worst0
        if m0 <= 0:
            code = LIQUIDITY
            break
        passed |= 1 << LIQUIDITY
        # fill edge: leg 1 on the book as of t1 for what leg 0 matched
        ran |= 1 << FILL_EDGE
        m1d, cost1d, fee1d, _w = _walk_at(px1, sz1, row1, refl1, m0, lim1, k1, a1, b1, c1, d1)
        net = (m1d * PAIR_PAYOUT_MICROS - cost0 - fee0 - cost1d - fee1d) // m0
        o[O_M1D] = m1d
        o[O_COST1D] = cost1d
        o[O_FEE1D] = fee1d
        o[O_NET] = net
        if net < min_edge:
            code = FILL_EDGE
            break
        passed |= 1 << FILL_EDGE
        break
    o[O_CODE] = code
    o[O_RUN] = ran
    o[O_PASS] = passed
    if code != PASSED or dry:
        return -1
    # the fill: leg 1 walks its book as of t1 + the leg gap
    m0 = o[O_M0]
    m1, cost1, fee1, worst1 = _walk_at(pxg, szg, rowg, refl1, m0, lim1, k1, a1, b1, c1, d1)
    o[O_M1] = m1
    o[O_COST1] = cost1
    o[O_FEE1] = fee1
    o[O_WORST1] = worst1
    exposure = 0
    if m1 < m0:  # broken pair: leg 0's contracts beyond the hedge are naked
        _h, cost0h, fee0h, _wh = _walk_at(px0, sz0, row0, refl0, m1, lim0, k0, a0, b0, c0, d0)
        exposure = o[O_COST0] + o[O_FEE0] - cost0h - fee0h
    o[O_EXPOSURE] = exposure
    return o[O_COST0] + o[O_FEE0] + cost1 + fee1


@njit(cache=True)
def _kernel(
    fail_at: np.ndarray,
    edge: np.ndarray,
    size_req: np.ndarray,
    slot: np.ndarray,
    limit: np.ndarray,
    reflect: np.ndarray,
    fkind: np.ndarray,
    fpar: np.ndarray,
    row0: np.ndarray,
    row1g: np.ndarray,
    bid_px: np.ndarray,
    bid_sz: np.ndarray,
    ask_px: np.ndarray,
    ask_sz: np.ndarray,
    watch: np.ndarray,
    keys_ok: np.ndarray,
    ev_ok: np.ndarray,
    min_edge: np.ndarray,
    max_leg: np.ndarray,
    cap: np.ndarray,
    balance: np.ndarray,
    spent: np.ndarray,
    room: np.ndarray,
    opp_slot: np.ndarray,
    opp_traded: np.ndarray,
    dry: bool,
    out: np.ndarray,
) -> None:
    """Every (order i, run r) pair in order (`_pair`), updating the run's `balance`,
    `spent[r, slot[i]]` and `opp_traded[r, opp_slot[i]]` in place. Results go to out[i, r, O_*]."""
    n = fail_at.shape[0]
    nr = min_edge.shape[0]
    for i in range(n):
        f0 = fpar[i, 0]
        f1 = fpar[i, 1]
        leg0 = (limit[i, 0], reflect[i, 0], fkind[i, 0], f0[0], f0[1], f0[2], f0[3])
        leg1 = (limit[i, 1], reflect[i, 1], fkind[i, 1], f1[0], f1[1], f1[2], f1[3])
        px0, sz0 = (bid_px, bid_sz) if reflect[i, 0] else (ask_px, ask_sz)
        px1, sz1 = (bid_px, bid_sz) if reflect[i, 1] else (ask_px, ask_sz)
        for r in range(nr):
            o = out[i, r]
            if not watch[i, r]:
                o[O_CODE] = NOT_WATCHED
                continue
            total = _pair(
                fail_at[i], edge[i], size_req[i], leg0, leg1,
                px0, sz0, row0[i, 0], px1, sz1, row0[i, 1], px1, sz1, row1g[i],
                keys_ok[i, r], ev_ok[i, r], min_edge[r], max_leg[r], cap[r],
                balance[r], spent[r, slot[i]], room[r], opp_traded[r, opp_slot[i]], dry, o,
            )  # fmt: skip
            if total >= 0:
                balance[r] -= total
                spent[r, slot[i]] += total
                room[r] -= 1
                opp_traded[r, opp_slot[i]] = True


# columns of `_kernel_one`'s per-run matrix
R_KEYS, R_EV, R_MIN_EDGE, R_MAX_LEG, R_CAP, R_BALANCE, R_SPENT, R_ROOM, R_TRADED = range(9)


@njit(cache=True)
def _kernel_one(
    fail: int,
    edge: int,
    size_req: int,
    leg0: tuple[int, int, int, int, int, int, int],
    leg1: tuple[int, int, int, int, int, int, int],
    px0: np.ndarray,
    sz0: np.ndarray,
    row0: int,
    px1: np.ndarray,
    sz1: np.ndarray,
    row1: int,
    pxg: np.ndarray,
    szg: np.ndarray,
    rowg: int,
    rs: np.ndarray,
    out: np.ndarray,
) -> None:
    """One intent for every run in `rs` (one row per run, columns R_*): `_pair` for each, the
    run's balance, spent and traded updated in `rs` when it fills. The books as
    `PreparedOne.books`, one argument each, and the legs all ints: typing a call's arguments is
    most of its cost, and a tuple of mixed types types element by element. Results go to
    out[r, O_*]."""
    for r in range(rs.shape[0]):
        s = rs[r]
        total = _pair(
            fail, edge, size_req, leg0, leg1, px0, sz0, row0, px1, sz1, row1, pxg, szg, rowg,
            s[R_KEYS] != 0, s[R_EV] != 0, s[R_MIN_EDGE], s[R_MAX_LEG], s[R_CAP], s[R_BALANCE], s[R_SPENT],
            s[R_ROOM], s[R_TRADED] != 0, False, out[r],
        )  # fmt: skip
        if total >= 0:
            s[R_BALANCE] -= total
            s[R_SPENT] += total
            s[R_ROOM] -= 1
            s[R_TRADED] = 1


# ---------------------------------------------------------------------------------------------
# fee models as kernel parameters
# ---------------------------------------------------------------------------------------------

_FEE_PARAMS: dict[Any, tuple[int, int, int, int, int, int] | str] = {}
_MAX_PRODUCT = 2**62


def fee_params(model: FeeModel) -> tuple[int, int, int, int, int, int] | str:
    """(kind, a, b, c, d, most contracts computed exactly) for the kernel, or why the model is not
    supported (a Polymarket exponent other than 1; coefficients too large for int64)."""
    cached = _FEE_PARAMS.get(model)
    if cached is not None:
        return cached
    out: tuple[int, int, int, int, int, int] | str
    span = (PRICE_SCALE // 2) ** 2  # the largest px × (1 − px)
    if isinstance(model, KalshiFeeModel):
        most = _MAX_PRODUCT // (max(model.taker_num, 1) * span * 2)
        out = (FEE_KALSHI, model.taker_num, model.taker_den, model.precision_micros, 0, most)
    elif isinstance(model, PolymarketFeeModel):
        if model.rate_num == 0:
            out = (FEE_POLYMARKET, 0, 1, 1, 1, _MAX_PRODUCT)
        elif (model.exponent_num, model.exponent_den) != (1, 1):
            out = (
                f"fee exponent {model.exponent_num}/{model.exponent_den} is not supported by the paper engine "
                "(every live Polymarket market has exponent 1)"
            )
        else:
            unit = 10 ** (6 - model.decimals)
            most = _MAX_PRODUCT // (model.rate_num * span * 2)
            out = (FEE_POLYMARKET, model.rate_num, model.rate_den, unit, int(model.rounding == "half_up"), most)
    else:  # pragma: no cover - FeeModel is a closed union
        out = f"fee model {model!r} is not supported"
    if not isinstance(out, str) and (out[1] >= _MAX_PRODUCT or out[2] * 10_000 * max(out[3], 1) >= _MAX_PRODUCT):
        out = f"fee coefficients {out[1]}/{out[2]} are too fine for the paper engine's exact integer arithmetic"
    _FEE_PARAMS[model] = out
    return out


# ---------------------------------------------------------------------------------------------
# formatting (details name the values)
# ---------------------------------------------------------------------------------------------


def usd(micros: int) -> str:
    """$1,234.56 (to the cent) for details; exact amounts stay integers on the events."""
    sign = "-" if micros < 0 else ""
    return f"{sign}${abs(micros) / CASH_SCALE:,.2f}"


def cents(micros: int) -> str:
    """Micro-dollars per contract as cents, e.g. 0.40c."""
    return f"{micros / (CASH_SCALE / 100):.2f}c"


def price(px: int) -> str:
    return f"{px / PRICE_SCALE:.4f}"


def _time(ns: int) -> int:
    """An order time as the engine keeps it: 0 for one that is not a time (the order fails hedged_pair
    naming it), so int64 columns hold it."""
    return ns if 0 <= ns < MAX_TS else 0


def _times(ns: list[int]) -> list[int]:
    """`_time` of each (the list itself when every one is a time: min and max are the cheap test)."""
    if ns and (min(ns) < 0 or max(ns) >= MAX_TS):
        return [_time(x) for x in ns]
    return ns


def _id_kind(venue: str) -> str:
    return {POLYMARKET: "polymarket token id", KALSHI: "kalshi ticker"}.get(venue, f"{venue} instrument id")


def _pct(part: int, whole: int) -> float:
    """100 × part / whole to 4 decimals (the common whole fill without a round() call)."""
    return 100.0 if part == whole else round(100.0 * part / whole, 4)


def _taken_detail(t: PaperTrade) -> str:
    a, b = t.legs
    text = (
        f"filled {t.matched_size} of {t.requested_size} pairs: {a.outcome.upper()} {a.venue} {a.matched_size} "
        f"for {usd(a.cost_micros)}, {b.outcome.upper()} {b.venue} {b.matched_size} for {usd(b.cost_micros)}, "
        f"fees {usd(t.fee_micros)}, P&L at settlement {usd(t.pnl_micros)}"
    )
    if t.broken:
        text += f"; broken pair: {t.unhedged_size} unhedged, exposure {usd(t.exposure_micros)}"
    return text


def _leg_fill(
    leg: Leg, requested: int, matched: int, cost: int, fee: int, worst: int, executed_at: int, book_ts: int
) -> LegFill:
    """One leg's fill: the intent's leg, what it asked for and what it got (the second leg asks for
    what the first got)."""
    return LegFill(
        venue=leg.venue,
        instrument=leg.instrument,
        outcome=leg.outcome,
        side=leg.side,
        requested_size=requested,
        matched_size=matched,
        cost_micros=cost,
        fee_micros=fee,
        worst_px=worst,
        fill_pct=_pct(matched, requested),
        executed_at=executed_at,
        book_ts=book_ts,
    )


def _traded_detail(opportunity_id: str, intent_ts: int | None) -> str:
    by = f" by its intent made {iso(intent_ts)} (wall clock)" if intent_ts is not None else ""
    return (
        f"opportunity {opportunity_id} already traded by this run{by} (one trade per opportunity: "
        "a better intent of the same opening would count its book twice)"
    )


def _eligible_detail(o: list[int]) -> str:
    return (
        f"eligible: {o[O_M0]} of {o[O_SIZE]} pairs fillable on the books at the fill time, "
        f"netting {cents(o[O_NET])}/contract after fees (a span start is never traded)"
    )


# ---------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Execution model settings (MT_PAPER_*), in nanoseconds."""

    latency_ns: int = 50_000_000
    leg_gap_ns: int = 20_000_000
    max_book_age_ns: int = 60_000_000_000
    validation: str = "bus"
    """off | bus | live (MT_PAPER_VALIDATION)."""


@dataclass(slots=True)
class RunLimits:
    """What the engine needs of one run: thresholds, and the state the kernel carries forward."""

    run_id: str
    user_id: str
    min_net_edge_micros: int
    max_leg_micros: int
    daily_cap_micros: int
    settlement_delay_ns: int
    balance_micros: int
    spent_by_day: dict[int, int]
    keys_present: frozenset[str] = frozenset()
    pending: int = 0
    """Trades awaiting settlement (at MAX_PENDING the balance check refuses new fills)."""
    traded: Mapping[str, int] = field(default_factory=dict)
    """Opportunity ids this run has traded (→ the ts of the intent whose trade took it): the
    untraded_opportunity check skips any other intent of theirs (`RunSnapshot.traded`)."""


DecisionRow = tuple[str, int, str, str, str, str, bool, str, int, int, str, int, int, int, int, str]
"""One decision: the values of DecisionColumns' fields, in their order."""

_DECISION_FIELDS = DecisionColumns.__struct_fields__


def decision_columns(rows: Sequence[DecisionRow]) -> DecisionColumns:
    """DecisionColumns of decision rows (one transposition for the lot)."""
    if not rows:
        return DecisionColumns()
    return DecisionColumns(**dict(zip(_DECISION_FIELDS, map(list, zip(*rows, strict=True)), strict=True)))


@dataclass(slots=True)
class RunOutcome:
    """One run's decisions on a batch, its trades, and its cash and daily spend after them.
    `decisions` are columns from `decide`, rows from `decide_one` (a lone intent's decision is one
    tuple: the run's update turns the rows of many intents into columns at once)."""

    decisions: DecisionColumns | list[DecisionRow]
    trades: list[PaperTrade]
    balance_micros: int
    spent_by_day: dict[int, int]
    taken: int = 0
    broken: int = 0
    fees_micros: int = 0
    exposure_micros: int = 0
    traded: dict[str, int] = field(default_factory=dict)
    """Opportunity ids this batch traded (→ the ts of the intent whose trade took it): new entries
    for the run's `RunSnapshot.traded`."""

    def columns(self) -> DecisionColumns:
        """The decisions as columns, whichever form they came in."""
        d = self.decisions
        return d if isinstance(d, DecisionColumns) else decision_columns(d)


@dataclass(slots=True, kw_only=True)
class OrderLists:
    """Orders as plain lists, what naming their decisions and building their trades reads (one
    element per order; the batch's `Prepared` and the hot path's `PreparedOne` both carry them)."""

    orders: Sequence[Order]
    source: DecisionSource
    n: int
    order_id_l: list[str]
    """Intent ids, or opportunity ids for success spans."""
    opp_id: list[str]
    opp_key: list[str]
    edge_l: list[int]
    ts_l: list[int]
    book_ts_l: list[int]
    day_l: list[int]
    limit_l: list[list[int]]
    fail_detail: list[str]
    leg_venues: list[tuple[str, ...]]
    row0_l: list[list[int]]
    """Per order and leg: its book row as of t1 (−1: no book held)."""
    row_ts0_l: list[list[int]]
    row_ts1g_l: list[int]
    ev_detail: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Prepared(OrderLists):
    """A batch of orders as columns, with the books their legs walk and the intent-only checks."""

    order_id: np.ndarray
    """Object array of `order_id_l`."""
    opp_slot: np.ndarray
    """Per order: its opportunity id's index in `opp_uniq` (the untraded_opportunity check's slot)."""
    opp_uniq: dict[str, int]
    """The batch's distinct opportunity ids → slot, in order of first appearance."""
    ts: np.ndarray
    book_ts: np.ndarray
    edge: np.ndarray
    size: np.ndarray
    day: np.ndarray
    fail_at: np.ndarray
    limit: np.ndarray
    reflect: np.ndarray
    fkind: np.ndarray
    fpar: np.ndarray
    row0: np.ndarray
    row1g: np.ndarray
    row_ts0: np.ndarray
    row_ts1g: np.ndarray
    pool: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ev_ok: np.ndarray
    """Bus/off exchange validation per order (live: filled per run by the service)."""


@dataclass(slots=True, kw_only=True)
class PreparedOne(OrderLists):
    """One intent for `Engine.decide_one`: the kernel's scalars and the ladder rows its legs walk."""

    fail: int
    edge: int
    size: int
    leg0: tuple[int, ...]
    """(limit, buys NO (1) or YES (0), fee kind, a, b, c, d) of leg 0 (`_NO_LEG` when hedged_pair
    fails): all ints, so `_kernel_one`'s dispatch types it as one."""
    leg1: tuple[int, ...]
    books: tuple[Any, ...]
    """(px, sz, row) of leg 0 as of t1, of leg 1 as of t1 and of leg 1 as of t1 + the leg gap:
    a series' whole (rows, levels) ladders (its YES bids for a leg buying NO) and the row (−1: no
    book held)."""
    ev_ok: bool
    books_behind: bool
    """An order passing the intent-only checks whose legs have no book at or after its `book_ts`
    (the book detect priced it on has not reached this engine yet)."""


class Engine:
    """Decides batches of orders for sets of runs against the books and market facts it is given."""

    def __init__(
        self,
        settings: EngineSettings,
        books: BookHistory,
        facts: MarketFacts,
        default_fees: dict[str, FeeModel],
    ) -> None:
        if settings.validation not in ("off", "bus", "live"):
            raise ValueError(f"validation={settings.validation!r} must be off, bus or live")
        self.s = settings
        self.books = books
        self.facts = facts
        self.default_fees = default_fees
        self._fee_cache: dict[tuple[str, str], tuple[tuple[int, int, int, int, int, int] | str | None, bool]] = {}
        self._fee_cache_version = -1

    # -- per order ---------------------------------------------------------------------------

    def fee_model(self, venue: str, instrument: str) -> FeeModel | None:
        """The leg's fee model: the instrument's own (MarketInfo), else the venue's, else None."""
        own = self.facts.fees.get((venue, instrument))
        return own if own is not None else self.default_fees.get(venue)

    def _leg_info(self, venue: str, instrument: str) -> tuple[tuple[int, int, int, int, int, int] | str | None, bool]:
        """(the leg's fee parameters, or why none: `fee_params`; whether its instrument id is one: not
        empty, no whitespace), cached per (venue, instrument) until the market facts change."""
        if self._fee_cache_version != self.facts.version or len(self._fee_cache) > FEE_CACHE_MAX:
            self._fee_cache.clear()
            self._fee_cache_version = self.facts.version
        key = (venue, instrument)
        try:
            return self._fee_cache[key]
        except KeyError:
            model = self.fee_model(venue, instrument)
            out = (None if model is None else fee_params(model), bool(instrument) and not _WS.search(instrument))
            self._fee_cache[key] = out
            return out

    def _check_order(self, o: Order, what: str) -> tuple[int, str, list[tuple[int, ...]]]:
        """The intent-only checks of one order: INTENT_OK or the check it fails, the failure's
        detail, and per leg (limit, buys NO, fee kind, a, b, c, d) — empty unless hedged_pair
        passes."""
        legs = o.legs
        if not legs:
            return HAS_ORDERS, f"the {what} has no orders (legs)", []
        if not (0 <= o.ts < MAX_TS and 0 <= o.book_ts < MAX_TS):
            return HEDGED_PAIR, f"ts={o.ts}, book_ts={o.book_ts}: not times (ns since 1970, below 2**62)", []
        if len(legs) != 2:
            return HEDGED_PAIR, f"a hedged pair has 2 legs, this {what} has {len(legs)}", []
        if legs[0].outcome == legs[1].outcome:
            return HEDGED_PAIR, f"outcomes {[legs[0].outcome, legs[1].outcome]} are not one YES and one NO", []
        if o.size <= 0:
            return HEDGED_PAIR, f"size={o.size} must be positive", []
        out: list[tuple[int, ...]] = []
        bad_id = -1
        for k, leg in enumerate(legs):
            if leg.side != "buy":
                return HEDGED_PAIR, f"leg {k} side {leg.side!r}: the paper trader buys both legs", []
            if not 0 < leg.limit_px < PRICE_SCALE:
                return HEDGED_PAIR, f"leg {k} limit_px={leg.limit_px} is outside (0, {PRICE_SCALE})", []
            fee, id_ok = self._leg_info(leg.venue, leg.instrument)
            if fee is None:
                known = ", ".join(sorted(self.default_fees))
                return HEDGED_PAIR, f"leg {k} venue {leg.venue!r} has no fee model (known: {known})", []
            if isinstance(fee, str):
                return HEDGED_PAIR, f"leg {k} {leg.venue} {leg.instrument}: {fee}", []
            if o.size > fee[5]:
                return HEDGED_PAIR, f"size={o.size} is too large to compute leg {k}'s {leg.venue} fee exactly", []
            out.append((leg.limit_px, int(leg.outcome == "no"), fee[0], fee[1], fee[2], fee[3], fee[4]))
            if not id_ok and bad_id < 0:
                bad_id = k
        if bad_id >= 0:  # after every leg's hedged-pair checks: those come first
            leg = legs[bad_id]
            if not leg.instrument:
                return INSTRUMENT_IDS, f"leg {bad_id} ({leg.venue}) has no {_id_kind(leg.venue)}", out
            return INSTRUMENT_IDS, f"leg {bad_id} {_id_kind(leg.venue)} {leg.instrument!r} contains whitespace", out
        return INTENT_OK, "", out

    def prepare(self, orders: Sequence[Order], source: DecisionSource = "intent") -> Prepared:
        """Columns, intent-only checks and book lookups for a batch (orders in stream order).

        One Python pass over the orders fills plain lists (a numpy element write costs more than
        the whole check), converted to arrays once at the end.
        """
        n = len(orders)
        what = "intent" if source == "intent" else "opportunity"
        fail_l = [INTENT_OK] * n
        fail_detail = [""] * n
        no_leg: tuple[int, ...] = (1, False, FEE_KALSHI, 1, 1, 1, 1, -1)
        legs_l: list[tuple[int, ...]] = [no_leg] * (2 * n)
        keys: list[tuple[str, str]] = []
        key_of: dict[tuple[str, str], int] = {}
        span = source != "intent"
        ids = [o.opportunity_id if span else o.id for o in orders]
        opp_id = [o.opportunity_id for o in orders]
        opp_uniq: dict[str, int] = {}
        opp_slot = np.array([opp_uniq.setdefault(x, len(opp_uniq)) for x in opp_id], np.int64)
        leg_venues = [tuple(leg.venue for leg in o.legs) for o in orders]
        check = self._check_order
        for i, o in enumerate(orders):
            fail, detail, legs = check(o, what)
            if fail != INTENT_OK:
                fail_l[i] = fail
                fail_detail[i] = detail
                if legs:  # instrument ids: the legs' values stay, without a book
                    legs_l[2 * i] = (*legs[0], -1)
                    legs_l[2 * i + 1] = (*legs[1], -1)
                continue
            for k, (leg, values) in enumerate(zip(o.legs, legs, strict=True)):
                key = (leg.venue, leg.instrument)
                key_id = key_of.get(key, -1)
                if key_id < 0:
                    key_id = key_of[key] = len(keys)
                    keys.append(key)
                legs_l[2 * i + k] = (*values, key_id)
        leg_arr = np.array(legs_l, np.int64).reshape(n, 2, 8) if n else np.zeros((0, 2, 8), np.int64)
        limit = np.ascontiguousarray(leg_arr[:, :, 0])
        reflect = leg_arr[:, :, 1].astype(np.bool_)
        fkind = np.ascontiguousarray(leg_arr[:, :, 2])
        fpar = np.ascontiguousarray(leg_arr[:, :, 3:7])
        key_idx = np.ascontiguousarray(leg_arr[:, :, 7])
        order_id = np.empty(n, object)
        order_id[:] = ids
        ts_l = _times([o.ts for o in orders])
        book_ts_l = _times([o.book_ts for o in orders])
        edge_l = [o.net_edge_per_contract_micros for o in orders]
        book_ts = np.array(book_ts_l, np.int64)
        # the books: each leg as of t1, leg 1 also as of t1 + the leg gap
        t1 = book_ts + self.s.latency_ns
        q_keys = np.concatenate([key_idx[:, 0], key_idx[:, 1], key_idx[:, 1]])
        q_ts = np.concatenate([t1, t1, t1 + self.s.leg_gap_ns])
        found = self.books.lookup(keys, q_keys, q_ts)
        row0 = np.ascontiguousarray(found.row[: 2 * n].reshape(2, n).T)
        row_ts0 = np.ascontiguousarray(found.book_ts[: 2 * n].reshape(2, n).T)
        row_ts1g = found.book_ts[2 * n :].copy()
        day = book_ts // NS_PER_DAY
        prep = Prepared(
            orders=orders,
            source=source,
            n=n,
            order_id_l=ids,
            opp_id=opp_id,
            opp_key=[o.opportunity_key for o in orders],
            edge_l=edge_l,
            ts_l=ts_l,
            book_ts_l=book_ts_l,
            day_l=day.tolist(),
            limit_l=limit.tolist(),
            fail_detail=fail_detail,
            leg_venues=leg_venues,
            row0_l=row0.tolist(),
            row_ts0_l=row_ts0.tolist(),
            row_ts1g_l=row_ts1g.tolist(),
            order_id=order_id,
            opp_slot=opp_slot,
            opp_uniq=opp_uniq,
            ts=np.array(ts_l, np.int64),
            book_ts=book_ts,
            edge=np.array(edge_l, np.int64),
            size=np.array([o.size for o in orders], np.int64),
            day=day,
            fail_at=np.array(fail_l, np.int64),
            limit=limit,
            reflect=reflect,
            fkind=fkind,
            fpar=fpar,
            row0=row0,
            row1g=found.row[2 * n :].copy(),
            row_ts0=row_ts0,
            row_ts1g=row_ts1g,
            pool=(found.bid_px, found.bid_sz, found.ask_px, found.ask_sz),
            ev_ok=np.ones(n, np.bool_),
        )
        if self.s.validation == "bus":
            self._bus_validation(prep, keys, key_idx, t1)
        return prep

    def _bus_validation(self, prep: Prepared, keys: list[tuple[str, str]], key_idx: np.ndarray, t1: np.ndarray) -> None:
        """Exchange validation against the bus: book held and fresh, market open, depth within limit."""
        n = prep.n
        if not n:
            return
        depth = _depth(prep.row0, prep.reflect, prep.limit, *prep.pool)
        closed = np.array([bool(self.facts.closed(*k)) for k in keys] + [False], np.bool_)  # [-1]: no key
        leg_closed = closed[key_idx]
        age = t1[:, None] - prep.row_ts0
        bad = (prep.row0 < 0) | (age > self.s.max_book_age_ns) | leg_closed | (depth <= 0)
        fails = bad.any(axis=1) & (prep.fail_at == INTENT_OK)
        prep.ev_ok = ~fails
        for i in np.flatnonzero(fails).tolist():
            k = 0 if bad[i, 0] else 1
            prep.ev_detail[i] = self._ev_detail(
                prep.orders[i].legs[k], k, int(t1[i]), int(prep.row0[i, k]) >= 0, int(age[i, k])
            )

    def _ev_detail(self, leg: Leg, k: int, t1: int, held: bool, age: int) -> str:
        """Why leg k fails exchange validation against the bus (its book `held` at t1, `age` ns old)."""
        name = f"leg {k} {leg.venue} {leg.instrument}"
        status = self.facts.closed(leg.venue, leg.instrument)
        if status:
            return f"{name}: the market is {status} (latest MarketInfo status)"
        if not held:
            return f"{name}: no book held at or before the fill time {iso(t1)}"
        if age > self.s.max_book_age_ns:
            return (
                f"{name}: the latest book is {age / 1e9:.3f}s older than the fill time "
                f"(max {self.s.max_book_age_ns / 1e9:g}s)"
            )
        return f"{name}: no {leg.outcome.upper()} depth at or below the limit {price(leg.limit_px)}"

    def prepare_one(self, order: Intent) -> PreparedOne:
        """`prepare` for one intent (the hot path's): the same checks, book rows and bus validation,
        as scalars and ladder rows for `decide_one` rather than a batch's columns. The ladders are
        views into the book history: decide before the next book is added."""
        fail, detail, legs = self._check_order(order, "intent")
        leg0, leg1 = legs if legs else (_NO_LEG, _NO_LEG)
        row0, row_ts0, row_ts1g = [-1, -1], [0, 0], 0
        books: list[Any] = [_NO_BOOK, _NO_BOOK, -1] * 3
        ev_detail: dict[int, str] = {}
        if fail == INTENT_OK:
            t1 = order.book_ts + self.s.latency_ns
            for q, (k, t) in enumerate(((0, t1), (1, t1), (1, t1 + self.s.leg_gap_ns))):
                leg = order.legs[k]
                found = self.books.row_at(leg.venue, leg.instrument, t)
                if found is None:
                    continue
                px, sz = found[1:3] if legs[k][1] else found[3:5]
                books[3 * q : 3 * q + 3] = px, sz, found[5]
                if q < 2:
                    row0[k], row_ts0[k] = 0, found[0]
                else:
                    row_ts1g = found[0]
            if self.s.validation == "bus":
                for k, leg in enumerate(order.legs):
                    held, age = row0[k] >= 0, t1 - row_ts0[k]
                    px, sz, row = books[3 * k : 3 * k + 3]
                    if (
                        not held
                        or age > self.s.max_book_age_ns
                        or self.facts.closed(leg.venue, leg.instrument)
                        or _row_depth(px[row], sz[row], bool(legs[k][1]), legs[k][0]) <= 0
                    ):
                        ev_detail[0] = self._ev_detail(leg, k, t1, held, age)
                        break
        return PreparedOne(
            orders=[order],
            source="intent",
            n=1,
            order_id_l=[order.id],
            opp_id=[order.opportunity_id],
            opp_key=[order.opportunity_key],
            edge_l=[order.net_edge_per_contract_micros],
            ts_l=[_time(order.ts)],
            book_ts_l=[_time(order.book_ts)],
            day_l=[_time(order.book_ts) // NS_PER_DAY],
            limit_l=[[leg0[0], leg1[0]]],
            fail_detail=[detail],
            leg_venues=[tuple(leg.venue for leg in order.legs)],
            row0_l=[row0],
            row_ts0_l=[row_ts0],
            row_ts1g_l=[row_ts1g],
            ev_detail=ev_detail,
            fail=fail,
            edge=order.net_edge_per_contract_micros,
            size=order.size,
            leg0=leg0,
            leg1=leg1,
            books=tuple(books),
            ev_ok=not ev_detail,
            books_behind=fail == INTENT_OK and max(row_ts0) < order.book_ts,
        )

    # -- per run -----------------------------------------------------------------------------

    def keys_ok(self, prep: Prepared, runs: Sequence[RunLimits]) -> np.ndarray:
        """exchange_keys per (order, run): with live validation, keys for every leg's venue."""
        ok = np.ones((prep.n, len(runs)), np.bool_)
        if self.s.validation != "live":
            return ok
        for r, run in enumerate(runs):
            have = run.keys_present
            ok[:, r] = [set(v) <= have for v in prep.leg_venues]
        return ok

    def reaching_validation(self, prep: Prepared, runs: Sequence[RunLimits], watch: np.ndarray) -> np.ndarray:
        """(order, run) pairs whose checks before exchange_validation pass: what live validation
        must be asked about."""
        min_edge = np.array([r.min_net_edge_micros for r in runs], np.int64)
        untraded = ~self.traded_before(prep, runs)[:, prep.opp_slot].T if prep.source == "intent" else True
        return (
            watch
            & (prep.fail_at == INTENT_OK)[:, None]
            & (prep.edge[:, None] >= min_edge[None, :])
            & untraded
            & self.keys_ok(prep, runs)
        )

    @staticmethod
    def traded_before(prep: Prepared, runs: Sequence[RunLimits]) -> np.ndarray:
        """Bool (runs, the batch's distinct opportunity ids): the run traded it before this batch."""
        uniq = prep.opp_uniq
        out = np.zeros((len(runs), len(uniq)), np.bool_)
        for r, run in enumerate(runs):
            traded = run.traded
            if not traded:
                continue
            if len(traded) < len(uniq):
                for oid in traded:
                    s = uniq.get(oid)
                    if s is not None:
                        out[r, s] = True
            else:
                out[r] = [oid in traded for oid in uniq]
        return out

    def decide(
        self,
        prep: Prepared,
        runs: Sequence[RunLimits],
        watch: np.ndarray,
        now: int | None = None,
        live: tuple[np.ndarray, dict[tuple[int, int], str]] | None = None,
    ) -> list[RunOutcome | None]:
        """Decide every watched (order, run) pair; None for a run that watched nothing.

        `watch[i, r]`: run r decides order i. `live`: (ok per (order, run), detail per failed pair)
        from live exchange validation. `now` (wall clock) stamps decisions and trades; None: the time
        the kernel has decided them.
        """
        n, nr = prep.n, len(runs)
        if nr == 0 or n == 0 or not watch.any():
            return [None] * nr
        slot_of: dict[int, int] = {}
        slot_l = [slot_of.setdefault(d, len(slot_of)) for d in prep.day_l]
        slot = np.array(slot_l, np.int64)
        spent = np.array([[run.spent_by_day.get(d, 0) for d in slot_of] for run in runs], np.int64).reshape(
            nr, len(slot_of)
        )
        balance = np.array([run.balance_micros for run in runs], np.int64)
        keys_ok = self.keys_ok(prep, runs)
        # every array writable and C-ordered: numba compiles one specialisation per array type, and a
        # read-only or strided view would mean a compile (a second or more) in the middle of a batch
        ev_ok = np.empty((n, nr), np.bool_)
        ev_ok[:] = live[0] if live is not None else prep.ev_ok[:, None]
        watch_c = np.empty((n, nr), np.bool_)
        watch_c[:] = watch
        span = prep.source == "success_span"
        opp_traded = self.traded_before(prep, runs) if not span else np.zeros((nr, len(prep.opp_uniq)), np.bool_)
        out = np.zeros((n, nr, N_OUT), np.int64)
        _kernel(
            prep.fail_at,
            prep.edge,
            prep.size,
            slot,
            prep.limit,
            prep.reflect,
            prep.fkind,
            prep.fpar,
            prep.row0,
            prep.row1g,
            *prep.pool,
            watch_c,
            keys_ok,
            ev_ok,
            np.array([r.min_net_edge_micros for r in runs], np.int64),
            np.array([r.max_leg_micros for r in runs], np.int64),
            np.array([r.daily_cap_micros for r in runs], np.int64),
            balance,
            spent,
            np.array([MAX_PENDING - run.pending for run in runs], np.int64),
            prep.opp_slot,
            opp_traded,
            span,
            out,
        )
        if now is None:  # the decisions' time: when the kernel has made them
            now = time.time_ns()
        outcomes: list[RunOutcome | None] = []
        memo: dict[tuple, str] = {}
        days = list(slot_of)
        spent_l = spent.tolist()
        for r, (run, col) in enumerate(zip(runs, watch_c.T.tolist(), strict=True)):
            sel_l = [i for i, w in enumerate(col) if w]
            if not sel_l:
                outcomes.append(None)
                continue
            arr = out[:, r] if len(sel_l) == n else out[sel_l, r]
            outcomes.append(self._outcome(prep, run, r, sel_l, arr, now, int(balance[r]), spent_l[r], days, live, memo))
        return outcomes

    def decide_one(self, one: PreparedOne, runs: Sequence[RunLimits], now: int | None = None) -> list[RunOutcome]:
        """`decide` for one intent and the runs watching it (the hot path's lone intent): the same
        checks and fills (`_pair`, as the batch kernel runs them), without a batch's columns. `now`
        as in `decide`. Live validation needs `decide`'s per-run results: not here."""
        if self.s.validation == "live":
            raise ValueError("decide_one cannot validate against live venues: use decide with live results")
        day = one.day_l[0]
        oid = one.opp_id[0]
        rs = np.array(
            [
                (
                    True,  # exchange_keys: required with live validation only
                    one.ev_ok,
                    r.min_net_edge_micros,
                    r.max_leg_micros,
                    r.daily_cap_micros,
                    r.balance_micros,
                    r.spent_by_day.get(day, 0),
                    MAX_PENDING - r.pending,
                    oid in r.traded,
                )
                for r in runs
            ],
            np.int64,
        ).reshape(len(runs), R_TRADED + 1)
        out = np.zeros((len(runs), N_OUT), np.int64)
        _kernel_one(one.fail, one.edge, one.size, one.leg0, one.leg1, *one.books, rs, out)
        if now is None:
            now = time.time_ns()
        rows, state = out.tolist(), rs.tolist()
        memo: dict[tuple, str] = {}
        return [
            self._outcome_one(one, run, r, rows[r], now, state[r][R_BALANCE], state[r][R_SPENT], day, memo)
            for r, run in enumerate(runs)
        ]

    def _outcome_one(
        self,
        one: PreparedOne,
        run: RunLimits,
        r: int,
        row: list[int],
        now: int,
        balance: int,
        spent: int,
        day: int,
        memo: dict[tuple, str],
    ) -> RunOutcome:
        """`_outcome` for a lone intent: the same decision as one row (see `RunOutcome`)."""
        code = row[O_CODE]
        intent_id = one.order_id_l[0]
        oid = one.opp_id[0]
        did = f"{run.run_id}:{intent_id}"
        trades: list[PaperTrade] = []
        traded: dict[str, int] = {}
        trade_id = ""
        if code == PASSED:
            trade = self._trade(one, run, 0, row, did, now)
            trades.append(trade)
            trade_id = trade.id
            traded[oid] = one.ts_l[0]
            key = (PASSED, 0, *row[O_SIZE : O_EXPOSURE + 1])  # runs taking it alike: one text
            detail = memo.get(key) or memo.setdefault(key, _taken_detail(trade))
            reason = "taken"
        elif code == UNTRADED_OPPORTUNITY:
            reason, detail = CHECKS[code], _traded_detail(oid, run.traded.get(oid))
        else:
            reason, detail = CHECKS[code], self._fail_detail(code, one, 0, run, r, row, None, memo)
        decision: DecisionRow = (
            did,
            now,
            "intent",
            intent_id,
            oid,
            one.opp_key[0],
            bool(trades),
            reason,
            row[O_RUN],
            row[O_PASS],
            detail,
            one.edge_l[0],
            row[O_SIZE],
            one.ts_l[0],
            one.book_ts_l[0],
            trade_id,
        )
        if not trades:
            return RunOutcome([decision], trades, balance, run.spent_by_day)
        t = trades[0]
        return RunOutcome(
            decisions=[decision],
            trades=trades,
            balance_micros=balance,
            spent_by_day={**run.spent_by_day, day: spent} if spent else run.spent_by_day,
            taken=1,
            broken=int(t.broken),
            fees_micros=t.fee_micros,
            exposure_micros=t.exposure_micros,
            traded=traded,
        )

    def _outcome(
        self,
        prep: OrderLists,
        run: RunLimits,
        r: int,
        sel_l: list[int],
        arr: np.ndarray,
        now: int,
        balance: int,
        spent: list[int],
        days: list[int],
        live: tuple[np.ndarray, dict[tuple[int, int], str]] | None,
        memo: dict[tuple, str],
    ) -> RunOutcome:
        """One run's decisions on the orders `sel_l` (kernel results in `arr`, a row per order).
        Only the columns every decision shows are turned into Python ints: a whole row is read
        only for a trade or a detail that names its values (most rows of a busy run fail one check
        for the same reason, and converting all 21 columns was a tenth of deciding a batch)."""
        rid = run.run_id
        span = prep.source == "success_span"
        k = len(sel_l)
        codes = arr[:, O_CODE].tolist()
        sizes = arr[:, O_SIZE].tolist()
        every = k == prep.n  # the run watches every order: the batch's own lists serve (never mutated)
        order_ids = prep.order_id_l if every else [prep.order_id_l[i] for i in sel_l]
        ids = [f"{rid}:span:{x}" for x in order_ids] if span else [f"{rid}:{x}" for x in order_ids]
        reasons: list[str] = []
        details: list[str] = []
        trade_ids: list[str] = []
        trades: list[PaperTrade] = []
        broken = fees = exposure = 0
        traded: dict[str, int] = {}
        ok_reason = "eligible" if span else "taken"
        cols: dict[int, list[int]] = {}
        if BALANCE in codes:  # its detail's memo key, without the rows
            cols = {c: arr[:, c].tolist() for c in (O_NEED, O_BALANCE, O_ROOM)}
        for j, code in enumerate(codes):
            i = sel_l[j]
            if code == PASSED:
                reasons.append(ok_reason)
                row = arr[j].tolist()
                if span:
                    details.append(_eligible_detail(row))
                    trade_ids.append("")
                    continue
                trade = self._trade(prep, run, i, row, ids[j], now)
                trades.append(trade)
                trade_ids.append(trade.id)
                traded[prep.opp_id[i]] = prep.ts_l[i]
                key = (PASSED, i, *row[O_SIZE : O_EXPOSURE + 1])
                text = memo.get(key)
                if text is None:
                    text = memo[key] = _taken_detail(trade)
                details.append(text)
                fees += trade.fee_micros
                exposure += trade.exposure_micros
                broken += trade.broken
                continue
            reasons.append(CHECKS[code])
            trade_ids.append("")
            if code == UNTRADED_OPPORTUNITY:
                oid = prep.opp_id[i]
                details.append(_traded_detail(oid, traded[oid] if oid in traded else run.traded.get(oid)))
                continue
            if code == BALANCE:
                text = memo.get((code, cols[O_NEED][j], cols[O_BALANCE][j], sizes[j], cols[O_ROOM][j] <= 0))
                if text is not None:
                    details.append(text)
                    continue
            row = _NO_ROW if code in _ROW_FREE else arr[j].tolist()
            details.append(self._fail_detail(code, prep, i, run, r, row, live, memo))
        decisions = DecisionColumns(
            id=ids,
            ts=[now] * k,
            source=[prep.source] * k,
            intent_id=[""] * k if span else order_ids,
            opportunity_id=prep.opp_id if every else [prep.opp_id[i] for i in sel_l],
            opportunity_key=prep.opp_key if every else [prep.opp_key[i] for i in sel_l],
            taken=[c == PASSED and not span for c in codes],
            reason=reasons,
            checks_run=arr[:, O_RUN].tolist(),
            checks_passed=arr[:, O_PASS].tolist(),
            detail=details,
            net_edge_per_contract_micros=prep.edge_l if every else [prep.edge_l[i] for i in sel_l],
            size=sizes,
            intent_ts=prep.ts_l if every else [prep.ts_l[i] for i in sel_l],
            book_ts=prep.book_ts_l if every else [prep.book_ts_l[i] for i in sel_l],
            trade_id=trade_ids,
        )
        spent_by_day = run.spent_by_day
        if trades:
            spent_by_day = dict(spent_by_day)
            for d, v in zip(days, spent, strict=True):
                if v:
                    spent_by_day[d] = v
        return RunOutcome(
            decisions=decisions,
            trades=trades,
            balance_micros=balance,
            spent_by_day=spent_by_day,
            taken=len(trades),
            broken=broken,
            fees_micros=fees,
            exposure_micros=exposure,
            traded=traded,
        )

    def _trade(self, prep: OrderLists, run: RunLimits, i: int, o: list[int], decision_id: str, now: int) -> PaperTrade:
        """The PaperTrade of a taken decision (kernel results in the row `o`)."""
        order = prep.orders[i]
        leg0, leg1 = order.legs
        size, m0, m1 = o[O_SIZE], o[O_M0], o[O_M1]
        executed_at = now + self.s.latency_ns
        cost = o[O_COST0] + o[O_COST1]
        fee = o[O_FEE0] + o[O_FEE1]
        payout = m1 * PAIR_PAYOUT_MICROS
        legs = [
            _leg_fill(leg0, size, m0, o[O_COST0], o[O_FEE0], o[O_WORST0], executed_at, prep.row_ts0_l[i][0]),
            _leg_fill(
                leg1, m0, m1, o[O_COST1], o[O_FEE1], o[O_WORST1], executed_at + self.s.leg_gap_ns, prep.row_ts1g_l[i]
            ),
        ]
        return PaperTrade(
            id=f"{decision_id}:T",
            ts=now,
            run_id=run.run_id,
            intent_id=order.id,
            decision_id=decision_id,
            opportunity_key=order.opportunity_key,
            requested_size=size,
            matched_size=m1,
            fill_pct=_pct(m1, size),
            legs=legs,
            cost_micros=cost,
            fee_micros=fee,
            payout_micros=payout,
            pnl_micros=payout - cost - fee,
            executed_at=executed_at,
            settled_at=executed_at + run.settlement_delay_ns,
            user_id=run.user_id,
            opportunity_id=order.opportunity_id,
            broken=m1 < m0,
            unhedged_size=m0 - m1,
            exposure_micros=o[O_EXPOSURE],
            net_edge_per_contract_micros=order.net_edge_per_contract_micros,
        )

    def _fail_detail(
        self,
        code: int,
        prep: OrderLists,
        i: int,
        run: RunLimits,
        r: int,
        o: list[int],
        live: tuple[np.ndarray, dict[tuple[int, int], str]] | None,
        memo: dict[tuple, str],
    ) -> str:
        """The failed check's detail, naming the values. Details are memoised per batch on every value
        they show: runs skipping a stream of intents for one reason format it once."""
        if code in (HEDGED_PAIR, HAS_ORDERS, INSTRUMENT_IDS):
            return prep.fail_detail[i]
        if code == EXCHANGE_VALIDATION:
            if live is not None:
                return live[1].get((i, r), "exchange validation failed")
            return prep.ev_detail.get(i, "exchange validation failed")
        if code == MIN_NET_EDGE:
            key: tuple = (code, prep.edge_l[i], run.min_net_edge_micros)
        elif code == EXCHANGE_KEYS:
            key = (code, prep.leg_venues[i], run.keys_present)
        elif code == MAX_LEG:
            key = (code, *prep.limit_l[i], run.max_leg_micros)
        elif code == BALANCE:
            key = (code, o[O_NEED], o[O_BALANCE], o[O_SIZE], o[O_ROOM] <= 0)
        elif code == DAILY_CAP:
            key = (code, o[O_SPENT], o[O_NEED], prep.day_l[i], run.daily_cap_micros)
        elif code == LIQUIDITY:
            key = (code, i)
        else:
            key = (code, o[O_NET], o[O_M0], o[O_SIZE], o[O_M1D], run.min_net_edge_micros)
        text = memo.get(key)
        if text is None:
            text = memo[key] = self._format_fail(code, prep, i, run, o)
        return text

    @staticmethod
    def _format_fail(code: int, prep: OrderLists, i: int, run: RunLimits, o: list[int]) -> str:
        if code == MIN_NET_EDGE:
            return f"net edge {cents(prep.edge_l[i])}/contract < minimum {cents(run.min_net_edge_micros)}"
        if code == EXCHANGE_KEYS:
            missing = sorted(set(prep.leg_venues[i]) - run.keys_present)
            present = ", ".join(sorted(run.keys_present)) or "none"
            return (
                f"no exchange keys for {', '.join(missing)} (validation=live needs keys for every leg's venue; "
                f"keys present when the run started: {present})"
            )
        lim0, lim1 = prep.limit_l[i]
        if code == MAX_LEG:
            return (
                f"not one contract fits the max leg {usd(run.max_leg_micros)} at limits {price(lim0)} and {price(lim1)}"
            )
        if code == LIQUIDITY:  # names no kernel output (`_ROW_FREE`)
            leg0 = prep.orders[i].legs[0]
            if prep.row0_l[i][0] < 0:
                return f"leg 0 {leg0.venue} {leg0.instrument}: no book held at the fill time"
            return (
                f"leg 0 {leg0.venue} {leg0.outcome.upper()}: no depth at or below the limit {price(lim0)} "
                f"on the book of {iso(prep.row_ts0_l[i][0])}"
            )
        size = o[O_SIZE]
        if code == BALANCE and o[O_ROOM] <= 0:
            return f"{MAX_PENDING:,} trades await settlement, the most one run holds: no new fill until some settle"
        if code == BALANCE:
            need, cash = usd(o[O_NEED]), usd(o[O_BALANCE])
            return f"needs {need} (worst case: {size} pairs at the limits, with fees), balance {cash}"
        if code == DAILY_CAP:
            day = dt.datetime.fromtimestamp(prep.day_l[i] * 86_400, tz=dt.UTC).date().isoformat()
            return (
                f"{usd(o[O_SPENT])} spent on {day} (UTC) + {usd(o[O_NEED])} needed > "
                f"daily cap {usd(run.daily_cap_micros)}"
            )
        return (
            f"the fill nets {cents(o[O_NET])}/contract after fees < minimum {cents(run.min_net_edge_micros)} "
            f"(leg 0 {o[O_M0]} of {size}, leg 1 {o[O_M1D]} of {o[O_M0]} on the books at the fill time)"
        )


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the numba kernels with the types `decide` uses,
    on a made-up market: a service calls this at start so no intent waits for it (~0.5 s)."""
    from libs.fees import kalshi_fee_model, polymarket_fee_model
    from proto.events import BookBatch, Leg

    books = BookHistory()
    for venue in ("polymarket", "kalshi"):
        books.add(
            BookBatch(
                id=venue, ts=0, venue=venue, source="warm-up", levels=1, instruments=["W"], inst_idx=[0],
                book_ts=[NS_PER_DAY], bid_px=[5_000], bid_sz=[10], ask_px=[5_100], ask_sz=[10],
            )
        )  # fmt: skip
    fees: dict[str, FeeModel] = {"kalshi": kalshi_fee_model(), "polymarket": polymarket_fee_model("0.01")}
    engine = Engine(EngineSettings(), books, MarketFacts(), fees)
    legs = [
        Leg(venue="polymarket", instrument="W", outcome="yes", size=1, limit_px=5_100, cost_micros=0, fee_micros=0),
        Leg(venue="kalshi", instrument="W", outcome="no", size=1, limit_px=5_000, cost_micros=0, fee_micros=0),
    ]
    order = Intent(
        id="w", ts=NS_PER_DAY, opportunity_id="w", opportunity_key="w", strategy="w", legs=legs, size=1,
        net_edge_micros=0, net_edge_per_contract_micros=0, book_ts=NS_PER_DAY,
    )  # fmt: skip
    run = RunLimits("w", "w", -(10**9), 10**9, 10**12, 0, 10**12, {})
    for source in ("intent", "success_span"):
        prep = engine.prepare([order], source)  # type: ignore[arg-type]
        engine.decide(prep, [run], np.ones((1, 1), np.bool_), NS_PER_DAY)
    engine.decide_one(engine.prepare_one(order), [run], NS_PER_DAY)
