"""Cross-venue binary arbitrage: buy YES on one venue and NO on another, equal contracts.

One YES plus one NO on the same event pays exactly $1 at resolution, so N pairs lock in
`N × $1 − cost_yes(N) − cost_no(N) − fee_yes(N) − fee_no(N)`. Each leg is one taker order that
sweeps its ladder (YES asks on one book; NO asks = the other book's YES bids reflected), with
fees as `libs.fees` settles them for one order (per level fill, Kalshi's cent rounding over the
whole order).

How the best N is found, exactly (never by sampling):

- The two ladders cut 1..max_size into segments in which both legs sit on one level each.
- In a segment the net edge is `UB(N) − rounding(N)`: UB is linear in N (gross margin minus the
  unrounded fee slopes) and the rounding overhead is >= 0 for Kalshi and >= −1 step for Polymarket.
  So no N with `UB(N) < best so far` can win. Each segment is scanned from its better end (its last N
  when UB rises, its first when it falls) and the scan stops at the first N whose bound cannot beat
  the best. Every size where Kalshi's ceil could make a smaller count win is therefore evaluated
  exactly; in practice that is one to a few sizes per segment (a wide scan happens only when the
  margin per contract is a sliver of the one-cent rounding).
- Walking goes on past the first pair priced at $1 or more: Kalshi's per-order accumulator refunds
  earlier cent rounding once later fills' rounding passes a cent, so zero-margin pairs can still add
  (up to about a cent). It stops once the bound, plus one Polymarket rounding step per level left,
  is below the best found; before any crossing pair it returns at once (fees are never negative).
- Ties go to the smaller size: the same dollars for less capital.

Pure Python over `tolist()` ladders: at L <= 10 that beats numpy's per-call overhead.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import numpy as np

from libs.fees import FeeModel
from proto.events import Leg, Outcome
from proto.units import CASH_PER_PRICE_UNIT, PRICE_SCALE

PAIR_PAYOUT_MICROS = PRICE_SCALE * CASH_PER_PRICE_UNIT
"""What one YES + NO pair pays at resolution: $1."""


class BookLike(Protocol):
    """A book in YES terms, best level first (libs.bookstate.BookState fits)."""

    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray


class ArbLeg(msgspec.Struct, frozen=True, kw_only=True):
    """One leg of a priced pair: buy `size` of `outcome` on `venue`, level by level.

    `limit_px` is the worst level reached, in the outcome's own terms; `fill_px`/`fill_qty` are the
    per-level fills the cost and fee were computed from.
    """

    venue: str
    instrument: str
    outcome: Outcome
    size: int
    limit_px: int
    cost_micros: int
    fee_micros: int
    fill_px: list[int]
    fill_qty: list[int]

    def to_leg(self) -> Leg:
        """This leg as a `proto.events.Leg`."""
        return Leg(
            venue=self.venue,
            instrument=self.instrument,
            outcome=self.outcome,
            side="buy",
            size=self.size,
            limit_px=self.limit_px,
            cost_micros=self.cost_micros,
            fee_micros=self.fee_micros,
        )


class ArbQuote(msgspec.Struct, frozen=True, kw_only=True):
    """The best-sized YES-on-one-venue / NO-on-the-other pair, after both venues' taker fees."""

    direction: str
    """`yes@<venue>+no@<venue>`."""
    yes_leg: ArbLeg
    no_leg: ArbLeg
    size: int
    gross_cost_micros: int
    fees_micros: int
    net_edge_micros: int
    net_edge_per_contract_micros: int
    """Net edge / size, floored."""

    def legs(self) -> list[Leg]:
        """Both legs as `proto.events.Leg` objects, YES first."""
        return [self.yes_leg.to_leg(), self.no_leg.to_leg()]


def _ladder(px: object, sz: object, name: str, reflect: bool) -> tuple[list[int], list[int]]:
    """The non-empty levels to buy from, ascending price in the outcome's terms, validated.

    `reflect` turns YES bids into NO asks (q = PRICE_SCALE − bid), keeping their order.
    """
    pl = px.tolist() if isinstance(px, np.ndarray) else list(px)  # type: ignore[call-overload]
    sl = sz.tolist() if isinstance(sz, np.ndarray) else list(sz)  # type: ignore[call-overload]
    if len(pl) != len(sl):
        raise ValueError(f"{name}: px has {len(pl)} levels but sz has {len(sl)}")
    out_px: list[int] = []
    out_sz: list[int] = []
    last = 0
    for k, (p, s) in enumerate(zip(pl, sl, strict=True)):
        if type(s) is not int or type(p) is not int:
            raise ValueError(f"{name}: level {k} px={p!r} sz={s!r} must be integers")
        if s <= 0:
            if s < 0:
                raise ValueError(f"{name} sz[{k}]={s} must not be negative")
            continue
        if not 0 < p < PRICE_SCALE:
            raise ValueError(f"{name} px[{k}]={p} must be inside (0, {PRICE_SCALE})")
        q = PRICE_SCALE - p if reflect else p
        if q < last:
            order = "descending (bids)" if reflect else "ascending (asks)"
            raise ValueError(f"{name} px[{k}]={p} breaks the {order} level order")
        last = q
        out_px.append(q)
        out_sz.append(s)
    return out_px, out_sz


class _Leg:
    """One leg's ladder with running sums over the levels fully taken so far."""

    __slots__ = ("bound_slack", "cost", "fee", "i", "px", "qty", "rounding", "slope", "start", "trade")

    def __init__(self, px: list[int], qty: list[int], fee: FeeModel) -> None:
        self.px, self.qty, self.fee = px, qty, fee
        self.i = self.start = self.cost = self.trade = self.rounding = 0
        # A Polymarket fill may round down by up to one step; Kalshi only ever rounds up.
        self.bound_slack = 10 ** (6 - fee.decimals) if fee.venue == "polymarket" else 0
        self.slope = 0.0
        self.set_level()

    def set_level(self) -> None:
        """Per-contract cash slope (price + unrounded fee) of the current level, for bounds."""
        p = self.px[self.i]
        self.slope = p * CASH_PER_PRICE_UNIT + self.fee.marginal_fee_micros(p)

    def take_level(self) -> bool:
        """Add the current level, fully taken, to the running sums; False when none is left."""
        p, q = self.px[self.i], self.qty[self.i]
        t, r = self.fee.fill_parts(p, q)
        self.cost += p * q * CASH_PER_PRICE_UNIT
        self.trade += t
        self.rounding += r
        self.start += q
        self.i += 1
        if self.i == len(self.px):
            return False
        self.set_level()
        return True

    def cash(self, n: int) -> int:
        """Exact cost + fee of buying `n` contracts, `n` ending inside the current level."""
        p, m = self.px[self.i], n - self.start
        t, r = self.fee.fill_parts(p, m)
        return self.cost + p * m * CASH_PER_PRICE_UNIT + self.fee.settle(self.trade + t, self.rounding + r)

    def cash_floor(self) -> float:
        """Constant term of the linear lower bound `slope × n + cash_floor()` of `cash(n)` here."""
        return self.cost + self.trade - self.slope * self.start - self.bound_slack


def best_size(
    yes_px: list[int],
    yes_qty: list[int],
    fee_yes: FeeModel,
    no_px: list[int],
    no_qty: list[int],
    fee_no: FeeModel,
    max_size: int,
) -> tuple[int, int]:
    """(N, net edge in micros) maximising the pair's net edge, or (0, 0) when none is positive.

    Ladders are non-empty levels in ascending price of their own outcome (see the module docstring
    for the search and why it is exact).
    """
    if not yes_px or not no_px or yes_px[0] + no_px[0] >= PRICE_SCALE:
        return 0, 0
    a, b = _Leg(yes_px, yes_qty, fee_yes), _Leg(no_px, no_qty, fee_no)
    best_n = best_v = 0
    while True:
        end_a, end_b = a.start + a.qty[a.i], b.start + b.qty[b.i]
        lo, hi = max(a.start, b.start) + 1, min(end_a, end_b, max_size)
        slope = PAIR_PAYOUT_MICROS - a.slope - b.slope
        const = -a.cash_floor() - b.cash_floor() + 2.0  # + a float margin: bounds only skip sizes
        top = max(slope * lo, slope * hi) + const
        if a.px[a.i] + b.px[b.i] >= PRICE_SCALE:
            # From here on no pair earns a gross margin and the bound only falls, except that each
            # Polymarket level still ahead may lift it by one rounding step.
            ahead = a.bound_slack * (len(a.px) - a.i) + b.bound_slack * (len(b.px) - b.i)
            if top + ahead < best_v:
                break
        if top >= best_v:
            n, step, stop = (hi, -1, lo - 1) if slope > 0 else (lo, 1, hi + 1)
            while n != stop and slope * n + const >= best_v:
                v = n * PAIR_PAYOUT_MICROS - a.cash(n) - b.cash(n)
                if v > best_v or (v == best_v and 0 < n < best_n):
                    best_n, best_v = n, v
                n += step
        if hi >= max_size:
            break
        if end_a == hi and not a.take_level():
            break
        if end_b == hi and not b.take_level():
            break
    return (best_n, best_v) if best_v > 0 else (0, 0)


def _take(px: list[int], qty: list[int], n: int) -> tuple[list[int], list[int]]:
    """The first `n` contracts of a ladder as per-level fills."""
    fp: list[int] = []
    fq: list[int] = []
    left = n
    for p, q in zip(px, qty, strict=True):
        if left <= 0:
            break
        take = min(q, left)
        fp.append(p)
        fq.append(take)
        left -= take
    return fp, fq


def _leg(venue: str, instrument: str, outcome: Outcome, fee: FeeModel, fp: list[int], fq: list[int]) -> ArbLeg:
    """The leg for fills already validated by `_ladder` (fee as `taker_fee_levels_micros` settles it)."""
    trade = rounding = 0
    for p, q in zip(fp, fq, strict=True):
        t, r = fee.fill_parts(p, q)
        trade += t
        rounding += r
    return ArbLeg(
        venue=venue,
        instrument=instrument,
        outcome=outcome,
        size=sum(fq),
        limit_px=fp[-1],
        cost_micros=sum(p * q for p, q in zip(fp, fq, strict=True)) * CASH_PER_PRICE_UNIT,
        fee_micros=fee.settle(trade, rounding),
        fill_px=fp,
        fill_qty=fq,
    )


def find_arb(
    yes_book: BookLike,
    no_book: BookLike,
    *,
    yes_venue: str,
    no_venue: str,
    instrument: str,
    fee_yes: FeeModel,
    fee_no: FeeModel,
    max_size: int,
    no_instrument: str | None = None,
) -> ArbQuote | None:
    """Best pair buying YES on `yes_book` and NO on `no_book` (both books in YES terms).

    None when no size up to `max_size` has a positive net edge. `no_instrument` names the NO leg's
    instrument when the venues' ids differ (default: `instrument`).
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int | np.integer) or max_size <= 0:
        raise ValueError(f"max_size={max_size!r} must be a positive whole number of contracts")
    yes_px, yes_qty = _ladder(yes_book.ask_px, yes_book.ask_sz, f"{yes_venue} asks", reflect=False)
    no_px, no_qty = _ladder(no_book.bid_px, no_book.bid_sz, f"{no_venue} bids", reflect=True)
    n, net = best_size(yes_px, yes_qty, fee_yes, no_px, no_qty, fee_no, int(max_size))
    if n == 0:
        return None
    yes = _leg(yes_venue, instrument, "yes", fee_yes, *_take(yes_px, yes_qty, n))
    no = _leg(no_venue, no_instrument or instrument, "no", fee_no, *_take(no_px, no_qty, n))
    gross = yes.cost_micros + no.cost_micros
    fees = yes.fee_micros + no.fee_micros
    net_check = n * PAIR_PAYOUT_MICROS - gross - fees
    if net_check != net:  # the search and the walk price the same fills; a mismatch is a bug
        raise AssertionError(f"net edge {net} from the search but {net_check} from the fills")
    return ArbQuote(
        direction=f"yes@{yes_venue}+no@{no_venue}",
        yes_leg=yes,
        no_leg=no,
        size=n,
        gross_cost_micros=gross,
        fees_micros=fees,
        net_edge_micros=net,
        net_edge_per_contract_micros=net // n,
    )


def best_arb(
    book_a: BookLike,
    book_b: BookLike,
    *,
    venue_a: str,
    venue_b: str,
    instrument: str,
    fee_a: FeeModel,
    fee_b: FeeModel,
    max_size: int,
) -> ArbQuote | None:
    """The better of (YES on A, NO on B) and (YES on B, NO on A); None when neither has an edge."""
    one = find_arb(
        book_a, book_b, yes_venue=venue_a, no_venue=venue_b, instrument=instrument,
        fee_yes=fee_a, fee_no=fee_b, max_size=max_size,
    )  # fmt: skip
    two = find_arb(
        book_b, book_a, yes_venue=venue_b, no_venue=venue_a, instrument=instrument,
        fee_yes=fee_b, fee_no=fee_a, max_size=max_size,
    )  # fmt: skip
    if one is None or (two is not None and two.net_edge_micros > one.net_edge_micros):
        return two
    return one
