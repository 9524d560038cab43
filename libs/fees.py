"""Venue taker fees, exact as published, in integer micro-dollars from integer price units.

Both venues charge `coefficient × C × P × (1 − P)`-shaped fees; they differ in rounding and in how the
fills of one order add up. Every amount is an int (no float touches a fee); coefficients and
exponents are exact fractions.

Kalshi (sources: the Kalshi Fee Schedule PDF, kalshi.com/docs/kalshi-fee-schedule.pdf: "fees = round
up(0.07 x C x P x (1-P)) ... round up = rounds to the next cent", maker "round up(0.0175 x C x P x
(1-P))" on listed series, no settlement fee; and docs.kalshi.com/getting_started/fee_rounding):

- Each *fill* has a trade fee `coeff × C × P × (1 − P)` rounded UP to $0.0001 (a centicent).
- The balance moves by `revenue − trade_fee` floored to the member's balance precision ($0.01 for
  non-direct members, the default here; $0.0001 for direct members); the difference is a rounding fee.
- A fee accumulator kept per ORDER sums the rounding fees of its fills and refunds a whole cent each
  time it exceeds $0.01, "so that the total fee across many small fills converges to what a single
  equivalent fill would cost".

  Decision: one order that fills at several prices is charged per fill (each price level is taken as
  one fill, the fewest fills an aggregated book allows), with the rounding settled over the whole
  order by that accumulator: `order_fee = T + R − $0.01 × ((R − 1) // $0.01)` (R > 0; else T), where T
  is the sum of the fills' centicent trade fees and R the sum of their rounding fees. For whole-cent
  prices and a non-direct member this is `ceil_to_cent(Σ fills' trade fees)` — not a cent per level —
  except that, read literally ("once the accumulated rounding exceeds $0.01"), roundings summing to
  exactly a whole number of cents leave one cent unrefunded (four 1-lot fills at $0.50: $0.08, where
  one 4-lot fill costs $0.07). Kalshi's monthly refund of maker-fee rounding above $10 is not modelled.
  A single fill at a whole-cent price gives the schedule's table exactly (1 @ $0.50 → $0.02,
  100 @ $0.50 → $1.75). At sub-penny prices the fee includes the rounding fee on the price itself,
  so `cost + fee` is always the exact cash that leaves the balance.

Polymarket (source: docs.polymarket.com/trading/fees, and the official V2 SDKs'
`fee = shares × rate × (p(1 − p))^exponent`, e.g. Polymarket/rs-clob-client-v2 `clob/fees.rs`):

- Takers pay `C × feeRate × (p(1 − p))^exponent`; makers are never charged. Rate and exponent come
  per market (`feeSchedule`: every live market has exponent 1, i.e. the docs' `C × feeRate × p(1 − p)`).
- Rounding: the current page says "Fees are rounded to 5 decimal places. The smallest fee charged is
  0.00001 USDC. Anything smaller rounds to zero"; versions from early 2026 said 4 places / 0.0001 — so
  the decimals are a parameter (default 5) and there is no minimum charge: a fee that rounds to 0 is 0.
  The page does not say half-up or truncate; default `half_up` (the larger, so edges are never
  overstated), `floor` available.
- Each match (fill) is charged separately; each price level is taken as one fill.
- Currency: since CLOB V2 (Apr 28, 2026) fees are set at match time and "BUY fees add to collateral
  spend", so a buy of C shares delivers all C shares and the fee is cash on top. (The V1 docs said
  fees on buys were taken in shares, which would leave a hedge short by fee / p shares.)
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar, Literal

import msgspec

from proto.units import CASH_PER_PRICE_UNIT, CASH_SCALE, PRICE_SCALE

if TYPE_CHECKING:
    from libs.config import Settings

KALSHI = "kalshi"
POLYMARKET = "polymarket"
VENUES = (KALSHI, POLYMARKET)

CENT_MICROS = CASH_SCALE // 100
"""$0.01 in micro-dollars."""
CENTICENT_MICROS = CASH_SCALE // 10_000
"""$0.0001 in micro-dollars: Kalshi rounds each fill's trade fee up to this."""

KALSHI_TAKER_COEFF = Fraction(7, 100)
"""Kalshi's general taker coefficient (0.07); a series' `fee_multiplier` scales it."""
KALSHI_MAKER_COEFF = Fraction(175, 10_000)
"""Kalshi's maker coefficient (0.0175) on series listed with maker fees; other makers pay nothing."""

Rounding = Literal["half_up", "floor"]
FractionLike = Fraction | int | float | str

_PX_SPAN = PRICE_SCALE * PRICE_SCALE  # P(1-P) in price units squared: px * (PRICE_SCALE - px)


def check_px(px: object, name: str = "px") -> int:
    """`px` as an int strictly inside (0, PRICE_SCALE); ValueError naming the field and value."""
    try:
        value = int(px.__index__())  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise ValueError(f"{name}={px!r} must be an integer price in 1/{PRICE_SCALE:,} USD") from None
    if isinstance(px, bool) or not 0 < value < PRICE_SCALE:
        raise ValueError(f"{name}={px!r} must be inside (0, {PRICE_SCALE})")
    return value


def check_contracts(contracts: object, name: str = "contracts") -> int:
    """`contracts` as a positive int; ValueError naming the field and value."""
    try:
        value = int(contracts.__index__())  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise ValueError(f"{name}={contracts!r} must be a whole number of contracts") from None
    if isinstance(contracts, bool) or value <= 0:
        raise ValueError(f"{name}={contracts!r} must be positive")
    return value


def as_fraction(value: FractionLike, name: str) -> Fraction:
    """An exact non-negative fraction from an int, a decimal string, a Fraction or a float (its repr)."""
    try:
        frac = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if frac < 0:
        raise ValueError(f"{name}={value!r} must not be negative")
    return frac


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _iroot(y: int, n: int) -> int:
    """floor(y ** (1/n)) for an int y >= 0, exactly (Newton's method on ints)."""
    if y < 2 or n == 1:
        return y
    x = 1 << _ceil_div(y.bit_length(), n)
    while True:
        nxt = ((n - 1) * x + y // x ** (n - 1)) // n
        if nxt >= x:
            return x
        x = nxt


# ---------------------------------------------------------------------------------------------
# Kalshi
# ---------------------------------------------------------------------------------------------


def kalshi_trade_fee_micros(px: int, contracts: int, num: int = 7, den: int = 100) -> int:
    """One fill's trade fee, `num/den × C × P × (1 − P)` rounded up to $0.0001, in micro-dollars.

    In micros the raw fee is `num × C × px × (PRICE_SCALE − px) / (den × 100)`; no rounding before the ceil.
    """
    raw = num * contracts * px * (PRICE_SCALE - px)
    return _ceil_div(raw, den * 100 * CENTICENT_MICROS) * CENTICENT_MICROS


class KalshiFill(msgspec.Struct, frozen=True):
    """The fee components of one fill, as Kalshi's fee-rounding page tabulates them (micro-dollars)."""

    trade_fee: int
    rounding_fee: int
    rebate: int
    net_fee: int
    balance_change: int


def kalshi_settle_fills(fills: Sequence[tuple[int, int]], precision_micros: int = CENT_MICROS) -> list[KalshiFill]:
    """Kalshi's per-order fee rounding, fill by fill: `fills` is (signed revenue, trade fee) in micros.

    Revenue is negative for a buyer. Each fill's balance change is floored to `precision_micros`;
    the rounding fees accumulate per order and a $0.01 rebate is paid each time the accumulator
    exceeds $0.01 (docs.kalshi.com/getting_started/fee_rounding, reproduced by its worked examples).
    """
    out: list[KalshiFill] = []
    acc = 0
    for revenue, trade_fee in fills:
        change = revenue - trade_fee
        floored = (change // precision_micros) * precision_micros
        rounding = change - floored
        acc += rounding
        rebate = 0
        if acc > CENT_MICROS:
            rebate = CENT_MICROS
            acc -= CENT_MICROS
        out.append(KalshiFill(trade_fee, rounding, rebate, trade_fee + rounding - rebate, floored + rebate))
    return out


def kalshi_order_fee(trade_fees: int, rounding_fees: int) -> int:
    """The net fee of one order from the sums of its fills' trade fees (T) and rounding fees (R).

    Closed form of `kalshi_settle_fills`: every fill's rounding is below one precision step, so the
    accumulator ends in (0, $0.01] and pays `(R − 1) // $0.01` rebates when R > 0.
    """
    if rounding_fees <= 0:
        return trade_fees
    return trade_fees + rounding_fees - CENT_MICROS * ((rounding_fees - 1) // CENT_MICROS)


class KalshiFeeModel(msgspec.Struct, frozen=True, kw_only=True, tag=KALSHI, tag_field="venue"):
    """Kalshi fees: `ceil(coeff × C × P × (1 − P))`, settled per order as the fee-rounding page says.

    `taker_num/taker_den` is the taker coefficient (0.07 × the series' fee multiplier);
    `maker_num/maker_den` the maker one (0 unless the series charges makers, then 0.0175).
    `precision_micros` is the balance precision: $0.01 (non-direct members) or $0.0001 (direct).
    """

    venue: ClassVar[str] = KALSHI
    taker_num: int = 7
    taker_den: int = 100
    maker_num: int = 0
    maker_den: int = 1
    precision_micros: int = CENT_MICROS

    def __post_init__(self) -> None:
        for name in ("taker_num", "maker_num"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must not be negative")
        for name in ("taker_den", "maker_den"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        if self.precision_micros not in (CENTICENT_MICROS, CENT_MICROS):
            raise ValueError(
                f"precision_micros={self.precision_micros!r} must be {CENTICENT_MICROS} ($0.0001) "
                f"or {CENT_MICROS} ($0.01)"
            )

    def fill_parts(self, px: int, qty: int, side: Literal["buy", "sell"] = "buy") -> tuple[int, int]:
        """(trade fee, rounding fee) of one taker fill at `px` for `qty`, before the order's rebates."""
        trade = kalshi_trade_fee_micros(px, qty, self.taker_num, self.taker_den)
        notional = px * qty * CASH_PER_PRICE_UNIT
        change = (notional if side == "sell" else -notional) - trade
        return trade, change % self.precision_micros

    def settle(self, trade_fees: int, rounding_fees: int) -> int:
        """The order's net fee from its fills' summed parts (see `kalshi_order_fee`)."""
        return kalshi_order_fee(trade_fees, rounding_fees)

    def taker_fee_micros(self, px: int, contracts: int) -> int:
        """Net taker fee of one order filled at one price (the fee schedule's table)."""
        return self.settle(*self.fill_parts(check_px(px), check_contracts(contracts)))

    def taker_fee_levels_micros(
        self, level_px: Sequence[int], level_qty: Sequence[int], side: Literal["buy", "sell"] = "buy"
    ) -> int:
        """Net taker fee of one order that filled `level_qty[i]` at `level_px[i]`, one fill per level."""
        trade = rounding = 0
        for px, qty in _levels(level_px, level_qty):
            t, r = self.fill_parts(px, qty, side)
            trade += t
            rounding += r
        return self.settle(trade, rounding) if trade or rounding else 0

    def maker_fee_micros(self, px: int, contracts: int) -> int:
        """Maker fee of one resting fill (0 on series without maker fees), rounded like a taker fee."""
        px, contracts = check_px(px), check_contracts(contracts)
        trade = kalshi_trade_fee_micros(px, contracts, self.maker_num, self.maker_den)
        return self.settle(trade, (-px * contracts * CASH_PER_PRICE_UNIT - trade) % self.precision_micros)

    def marginal_fee_micros(self, px: int) -> float:
        """Unrounded fee per contract at `px` (a float, for bounds and analytics only)."""
        return self.taker_num * px * (PRICE_SCALE - px) / (self.taker_den * 100)


# ---------------------------------------------------------------------------------------------
# Polymarket
# ---------------------------------------------------------------------------------------------


def polymarket_fee_micros(
    px: int,
    contracts: int,
    rate: Fraction,
    exponent: Fraction = Fraction(1),
    decimals: int = 5,
    rounding: Rounding = "half_up",
) -> int:
    """`C × rate × (p(1 − p))^exponent` rounded to `decimals` places of a dollar, in micro-dollars.

    Exact for any rational exponent: with x = px(PRICE_SCALE − px)/PRICE_SCALE², floor(fee × k) is the
    integer `ed`-th root of floor((C × rate × k)^ed × x^en), so no float is involved.
    """
    if rate == 0:
        return 0
    unit = 10 ** (6 - decimals)  # micro-dollars per rounding step
    scale = 2 if rounding == "half_up" else 1  # half-up: floor(2v/unit), then (q + 1) // 2
    en, ed = exponent.numerator, exponent.denominator
    num = contracts * rate.numerator * CASH_SCALE * scale * (px * (PRICE_SCALE - px)) ** en
    den = rate.denominator * unit * _PX_SPAN**en
    if ed == 1:
        q = num // den
    else:  # floor(k·fee) = floor(y^(1/ed)) = iroot(floor(y)) with y = (k·fee)^ed, all in ints
        k_num = contracts * rate.numerator * CASH_SCALE * scale
        k_den = rate.denominator * unit
        q = _iroot(k_num**ed * (px * (PRICE_SCALE - px)) ** en // (k_den**ed * _PX_SPAN**en), ed)
    steps = (q + 1) // 2 if rounding == "half_up" else q
    return steps * unit


class PolymarketFeeModel(msgspec.Struct, frozen=True, kw_only=True, tag=POLYMARKET, tag_field="venue"):
    """Polymarket taker fees: `C × rate × (p(1 − p))^exponent` per fill, rounded to `decimals` places.

    Rate and exponent are exact fractions (`rate_num/rate_den`, `exponent_num/exponent_den`); makers
    pay nothing. A rate of 0 is a fee-free market.
    """

    venue: ClassVar[str] = POLYMARKET
    rate_num: int = 0
    rate_den: int = 1
    exponent_num: int = 1
    exponent_den: int = 1
    decimals: int = 5
    rounding: Rounding = "half_up"

    def __post_init__(self) -> None:
        if self.rate_num < 0:
            raise ValueError(f"rate_num={self.rate_num!r} must not be negative")
        if self.exponent_num < 0:
            raise ValueError(f"exponent_num={self.exponent_num!r} must not be negative")
        for name in ("rate_den", "exponent_den"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive")
        if not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals={self.decimals!r} must be within 0..6 (micro-dollars)")
        if self.rounding not in ("half_up", "floor"):
            raise ValueError(f"rounding={self.rounding!r} must be 'half_up' or 'floor'")

    @property
    def rate(self) -> Fraction:
        """The market's taker fee rate."""
        return Fraction(self.rate_num, self.rate_den)

    @property
    def exponent(self) -> Fraction:
        """The exponent of p(1 − p)."""
        return Fraction(self.exponent_num, self.exponent_den)

    def fill_parts(self, px: int, qty: int, side: Literal["buy", "sell"] = "buy") -> tuple[int, int]:
        """(fee, 0) of one taker fill: each match is rounded on its own; there is no order settlement."""
        if self.rate_num == 0:
            return 0, 0
        if self.exponent_den == 1 and self.exponent_num == 1:  # every live market: integer fast path
            unit = 10 ** (6 - self.decimals)
            num = qty * self.rate_num * px * (PRICE_SCALE - px)  # micros × rate_den × 100
            den = self.rate_den * 100 * unit
            steps = (2 * num + den) // (2 * den) if self.rounding == "half_up" else num // den
            return steps * unit, 0
        return polymarket_fee_micros(px, qty, self.rate, self.exponent, self.decimals, self.rounding), 0

    def settle(self, trade_fees: int, rounding_fees: int) -> int:
        """The order's fee: the sum of its fills' fees."""
        return trade_fees + rounding_fees

    def taker_fee_micros(self, px: int, contracts: int) -> int:
        """Taker fee of one fill of `contracts` at `px`."""
        return self.fill_parts(check_px(px), check_contracts(contracts))[0]

    def taker_fee_levels_micros(
        self, level_px: Sequence[int], level_qty: Sequence[int], side: Literal["buy", "sell"] = "buy"
    ) -> int:
        """Taker fee of one order that filled `level_qty[i]` at `level_px[i]`, one fill per level."""
        return sum(self.fill_parts(px, qty, side)[0] for px, qty in _levels(level_px, level_qty))

    def maker_fee_micros(self, px: int, contracts: int) -> int:
        """Makers are never charged on Polymarket."""
        check_px(px)
        check_contracts(contracts)
        return 0

    def marginal_fee_micros(self, px: int) -> float:
        """Unrounded fee per contract at `px` (a float, for bounds and analytics only)."""
        x = px * (PRICE_SCALE - px) / _PX_SPAN
        return self.rate_num / self.rate_den * x ** (self.exponent_num / self.exponent_den) * CASH_SCALE


FeeModel = KalshiFeeModel | PolymarketFeeModel
"""A venue's fee rules; encodes with a `venue` tag (msgspec)."""


def _levels(level_px: Sequence[int], level_qty: Sequence[int]) -> list[tuple[int, int]]:
    """Validated (px, qty) pairs of the non-empty levels of a fill."""
    if len(level_px) != len(level_qty):
        raise ValueError(f"level_px has {len(level_px)} entries but level_qty has {len(level_qty)}")
    out = []
    for i, (px, qty) in enumerate(zip(level_px, level_qty, strict=True)):
        q = int(qty)
        if q < 0:
            raise ValueError(f"level_qty[{i}]={q} must not be negative")
        if q:
            out.append((check_px(px, f"level_px[{i}]"), q))
    return out


def kalshi_fee_model(
    coeff: FractionLike = KALSHI_TAKER_COEFF,
    multiplier: FractionLike = 1,
    maker_coeff: FractionLike = 0,
    precision_micros: int = CENT_MICROS,
) -> KalshiFeeModel:
    """A Kalshi model from a taker coefficient (default 0.07) times a series fee multiplier."""
    taker = as_fraction(coeff, "coeff") * as_fraction(multiplier, "multiplier")
    maker = as_fraction(maker_coeff, "maker_coeff") * as_fraction(multiplier, "multiplier")
    return KalshiFeeModel(
        taker_num=taker.numerator,
        taker_den=taker.denominator,
        maker_num=maker.numerator,
        maker_den=maker.denominator,
        precision_micros=precision_micros,
    )


def polymarket_fee_model(
    rate: FractionLike = 0, exponent: FractionLike = 1, decimals: int = 5, rounding: Rounding = "half_up"
) -> PolymarketFeeModel:
    """A Polymarket model from a market's `feeSchedule` rate and exponent (decimal strings or floats)."""
    r, e = as_fraction(rate, "rate"), as_fraction(exponent, "exponent")
    return PolymarketFeeModel(
        rate_num=r.numerator,
        rate_den=r.denominator,
        exponent_num=e.numerator,
        exponent_den=e.denominator,
        decimals=decimals,
        rounding=rounding,
    )


def fee_model_for(
    venue: str,
    *,
    rate: FractionLike | None = None,
    exponent: FractionLike | None = None,
    multiplier: FractionLike | None = None,
    settings: Settings | None = None,
) -> FeeModel:
    """The fee model of `venue` ("kalshi" or "polymarket").

    Kalshi: `rate` is the taker coefficient (default 0.07), times the series' `multiplier`.
    Polymarket: `rate` and `exponent` are the market's; missing ones come from `settings`
    (MT_POLYMARKET_FEE_RATE / MT_POLYMARKET_FEE_EXPONENT), else 0 and 1.
    """
    name = venue.strip().lower() if isinstance(venue, str) else venue
    if name == KALSHI:
        return kalshi_fee_model(KALSHI_TAKER_COEFF if rate is None else rate, 1 if multiplier is None else multiplier)
    if name == POLYMARKET:
        if rate is None:
            rate = settings.polymarket_fee_rate if settings is not None else 0
        if exponent is None:
            exponent = settings.polymarket_fee_exponent if settings is not None else 1
        return polymarket_fee_model(rate, exponent)
    raise ValueError(f"venue={venue!r} has no fee model (known: {', '.join(VENUES)})")


def fee_models(settings: Settings | None = None) -> dict[str, FeeModel]:
    """Every known venue's default fee model, keyed by venue name."""
    return {venue: fee_model_for(venue, settings=settings) for venue in VENUES}
