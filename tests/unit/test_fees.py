"""Venue fee rules against the venues' own published numbers, in exact micro-dollars.

Kalshi: the Fee Schedule PDF's general table (1 and 100 contracts) and the worked examples of
docs.kalshi.com/getting_started/fee_rounding. Polymarket: docs.polymarket.com/trading/fees
(rate tables, 5-decimal rounding) and the official V2 SDK's fee tests (rs-clob-client-v2).
"""

from __future__ import annotations

import random
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import msgspec
import numpy as np
import pytest

from libs.config import load
from libs.fees import (
    CENTICENT_MICROS,
    FeeModel,
    KalshiFeeModel,
    PolymarketFeeModel,
    fee_model_for,
    fee_models,
    kalshi_fee_model,
    kalshi_order_fee,
    kalshi_settle_fills,
    kalshi_trade_fee_micros,
    polymarket_fee_micros,
    polymarket_fee_model,
)

KALSHI = KalshiFeeModel()
USD = 1_000_000


def cents(c: float) -> int:
    """Micro-dollars of `c` cents (test readability)."""
    return round(c * 10_000)


# ---------------------------------------------------------------------------------------------
# Kalshi
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price_cents", "fee_1", "fee_100"),
    [
        # Kalshi Fee Schedule, "General Trading Fees Table": fee for 1 and for 100 contracts.
        (1, 1, 7),  # 0.07 x 100 x 0.01 x 0.99 = 0.0693 -> $0.07
        (5, 1, 34),  # 0.07 x 100 x 0.0475 = 0.3325 -> $0.34
        (10, 1, 63),  # 0.07 x 100 x 0.09 = 0.63 exactly: no round-up
        (20, 2, 112),  # 0.07 x 1 x 0.16 = 0.0112 -> $0.02; x 100 = 1.12
        (25, 2, 132),  # 0.07 x 100 x 0.1875 = 1.3125 -> $1.32
        (30, 2, 147),
        (40, 2, 168),
        (50, 2, 175),  # 1 contract: ceil($0.0175) = $0.02; 100: $1.75 exactly
        (85, 1, 90),  # 1: 0.0089 -> $0.01; 100: 0.8925 -> $0.90
        (90, 1, 63),
    ],
)
def test_kalshi_fee_schedule_table(price_cents: int, fee_1: int, fee_100: int) -> None:
    px = price_cents * 100
    assert KALSHI.taker_fee_micros(px, 1) == cents(fee_1)
    assert KALSHI.taker_fee_micros(px, 100) == cents(fee_100)


def test_kalshi_rounds_up_to_the_next_cent_only_when_needed() -> None:
    assert KALSHI.taker_fee_micros(5000, 20) == cents(35)  # 0.07 x 20 x 0.25 = 0.35 exactly
    assert KALSHI.taker_fee_micros(5000, 21) == cents(37)  # 0.3675 -> $0.37
    assert KALSHI.taker_fee_micros(100, 1) == cents(1)  # 0.000693 -> the smallest fee is a cent
    assert KALSHI.taker_fee_micros(9900, 1) == cents(1)  # symmetric in P(1-P)


def test_kalshi_trade_fee_is_ceiled_to_the_centicent() -> None:
    # The per-fill trade fee (before the balance rounding) is rounded up to $0.0001.
    assert kalshi_trade_fee_micros(5000, 1) == 17_500  # $0.0175 exactly
    assert kalshi_trade_fee_micros(5100, 1) == 17_500  # 0.07 x 0.51 x 0.49 = 0.017493 -> 0.0175
    # 3 @ $0.3301 (a sub-penny price): 0.07 x 3 x 0.3301 x 0.6699 = 0.046438... -> $0.0465.
    assert kalshi_trade_fee_micros(3301, 3) == 46_500
    assert kalshi_trade_fee_micros(5000, 100) % CENTICENT_MICROS == 0


def test_kalshi_direct_member_keeps_centicents() -> None:
    # Direct members' balances are kept to $0.0001, so no cent rounding fee: 1 @ $0.50 = $0.0175.
    direct = KalshiFeeModel(precision_micros=100)
    assert direct.taker_fee_micros(5000, 1) == 17_500
    assert direct.taker_fee_micros(5100, 3) == 52_500  # 0.052479 -> 0.0525


def test_kalshi_subpenny_price_fee_includes_the_rounding_fee() -> None:
    # 1 @ $0.055: trade fee 0.07 x 0.055 x 0.945 = 0.00363825 -> $0.0037; balance change
    # -0.055 - 0.0037 = -0.0587, floored to -$0.06: rounding fee $0.0013, net fee $0.0050.
    assert KALSHI.taker_fee_micros(550, 1) == 5_000


def test_kalshi_maker_and_multiplier() -> None:
    maker = kalshi_fee_model(maker_coeff="0.0175")
    assert maker.maker_fee_micros(5000, 100) == cents(44)  # 0.0175 x 100 x 0.25 = 0.4375 -> $0.44
    assert KALSHI.maker_fee_micros(5000, 100) == 0  # series without maker fees
    half = kalshi_fee_model(multiplier="0.5")  # a series fee_multiplier of 0.5
    assert (half.taker_num, half.taker_den) == (7, 200)
    assert half.taker_fee_micros(5000, 100) == cents(88)  # 0.035 x 25 = 0.875 -> $0.88


@pytest.mark.parametrize(
    ("fills", "expected_net"),
    [
        # docs.kalshi.com fee_rounding, worked example 1: buy 3 @ $0.055 as three 1-lot matches,
        # trade fee $0.0085 each: net fees $0.0150, $0.0050 (a $0.01 rebate), $0.0150.
        ([(-55_000, 8_500)] * 3, [15_000, 5_000, 15_000]),
        # Example 2: buy 0.90 @ $0.50 as three 0.30-lot matches, trade fee $0.0041 each.
        ([(-150_000, 4_100)] * 3, [10_000, 0, 10_000]),
        # Example 3: 0.09 @ $0.3301 as three 0.03-lots: revenue -$0.009903, trade fee $0.0005.
        ([(-9_903, 500)] * 3, [10_097, 97, 97]),
    ],
)
def test_kalshi_fee_rounding_worked_examples(fills: list[tuple[int, int]], expected_net: list[int]) -> None:
    out = kalshi_settle_fills(fills)
    assert [f.net_fee for f in out] == expected_net
    assert all(f.balance_change % 10_000 == 0 for f in out)  # balances stay cent-aligned
    trade = sum(t for _, t in fills)
    rounding = sum(f.rounding_fee for f in out)
    assert kalshi_order_fee(trade, rounding) == sum(expected_net)


def test_kalshi_closed_form_matches_the_fill_by_fill_rules() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        fills = []
        for _ in range(rng.randint(1, 8)):
            px, qty = rng.randint(1, 9_999), rng.randint(1, 60)
            fills.append((-px * qty * 100, kalshi_trade_fee_micros(px, qty)))
        for precision in (100, 10_000):
            out = kalshi_settle_fills(fills, precision)
            rounding = sum(f.rounding_fee for f in out)
            assert kalshi_order_fee(sum(t for _, t in fills), rounding) == sum(f.net_fee for f in out)


def test_kalshi_order_over_several_prices_is_rounded_once() -> None:
    # Five 1-lot fills at $0.50: trade fees 5 x $0.0175 = $0.0875, each fill's balance rounding
    # $0.0025 (sum $0.0125 > $0.01, so one $0.01 rebate): $0.09 for the order, what one 5-lot
    # fill costs (ceil(0.0875) = $0.09) -- not 5 x $0.02.
    assert KALSHI.taker_fee_levels_micros([5000] * 5, [1] * 5) == cents(9)
    assert KALSHI.taker_fee_micros(5000, 5) == cents(9)
    # 1 @ $0.50 + 1 @ $0.51: trade fees 0.0175 + 0.0175 (0.017493 ceiled), roundings 0.0025 each.
    assert KALSHI.taker_fee_levels_micros([5000, 5100], [1, 1]) == cents(4)
    # Four 1-lot fills at $0.50: roundings 4 x $0.0025 = exactly $0.01, which does not *exceed*
    # $0.01, so no rebate: $0.07 + $0.01 = $0.08 (one 4-lot fill: ceil(0.07) = $0.07).
    assert KALSHI.taker_fee_levels_micros([5000] * 4, [1] * 4) == cents(8)
    assert KALSHI.taker_fee_micros(5000, 4) == cents(7)
    # numpy levels as `libs.book.walk` returns them; empty levels are ignored
    assert KALSHI.taker_fee_levels_micros(np.array([5000, 5100, 5200]), np.array([1, 1, 0])) == cents(4)
    assert KALSHI.taker_fee_levels_micros([], []) == 0


# ---------------------------------------------------------------------------------------------
# Polymarket
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "price_cents", "fee_micros"),
    [
        # docs.polymarket.com/trading/fees: fee = C x feeRate x p x (1 - p), 100 shares.
        ("0.07", 50, 1_750_000),  # crypto: "with 100 shares, maximum fee reaches $1.75"
        ("0.07", 30, 1_470_000),
        ("0.07", 5, 332_500),  # table shows $0.33; exact to 5 places: 0.33250
        ("0.04", 50, 1_000_000),  # politics/finance/tech: peak $1.00
        ("0.05", 50, 1_250_000),  # economics/culture/weather/other: peak $1.25
        ("0.05", 75, 937_500),  # table: $0.94
        ("0.05", 85, 637_500),  # table: $0.64
        ("0.05", 99, 49_500),  # table: $0.05
    ],
)
def test_polymarket_docs_fee_table(rate: str, price_cents: int, fee_micros: int) -> None:
    assert polymarket_fee_model(rate).taker_fee_micros(price_cents * 100, 100) == fee_micros


def test_polymarket_sdk_examples() -> None:
    # rs-clob-client-v2 clob/fees.rs: rate 0.25, exponent 2, price 0.5 -> 0.25 x 0.25^2 = 0.015625
    # per share; 100 shares = $1.5625.
    assert polymarket_fee_model("0.25", 2).taker_fee_micros(5000, 100) == 1_562_500
    # rate 0.072, exponent 1, price 0.3 -> 0.072 x 0.21 = 0.01512 per share.
    assert polymarket_fee_model(0.072).taker_fee_micros(3000, 100) == 1_512_000
    # production sports v2, rate 0.03 at 0.5 -> 0.0075 per share.
    assert polymarket_fee_model("0.03").taker_fee_micros(5000, 100) == 750_000


def test_polymarket_rounds_to_five_places_half_up_by_default() -> None:
    # 100 NO @ 0.976, rate 0.04: 100 x 0.04 x 0.976 x 0.024 = 0.093696 -> 0.09370
    assert polymarket_fee_model("0.04").taker_fee_micros(9760, 100) == 93_700
    assert polymarket_fee_model("0.04", rounding="floor").taker_fee_micros(9760, 100) == 93_690
    # An exact half step: 1 x 0.00006 x 0.25 = 0.000015 -> 0.00002 half-up, 0.00001 floored.
    assert polymarket_fee_model("0.00006").taker_fee_micros(5000, 1) == 20
    assert polymarket_fee_model("0.00006", rounding="floor").taker_fee_micros(5000, 1) == 10


def test_polymarket_tiny_fees_round_to_zero_no_minimum() -> None:
    # "The smallest fee charged is 0.00001 USDC. Anything smaller rounds to zero":
    # 1 share @ $0.0001, rate 0.04 -> 0.0000039996 -> 0.
    assert polymarket_fee_model("0.04").taker_fee_micros(1, 1) == 0
    # The early-2026 page rounded to 4 places: 1 @ $0.01, rate 0.07 -> 0.000693 -> 0.0007 (5 places: 0.00069).
    assert polymarket_fee_model("0.07", decimals=4).taker_fee_micros(100, 1) == 700
    assert polymarket_fee_model("0.07").taker_fee_micros(100, 1) == 690
    assert polymarket_fee_model("0.07", decimals=4).taker_fee_micros(1, 1) == 0


def test_polymarket_fractional_exponent_is_exact() -> None:
    # rate 0.03, exponent 1/2 at p = 0.3: 100 x 0.03 x sqrt(0.21) = 1.3747727084... -> 1.37477
    assert polymarket_fee_model("0.03", "0.5").taker_fee_micros(3000, 100) == 1_374_770
    rng = random.Random(3)
    with localcontext() as ctx:
        ctx.prec = 60
        for _ in range(300):
            px, c = rng.randint(1, 9_999), rng.randint(1, 5_000)
            rate, exponent = (
                Fraction(rng.randint(1, 300), 1_000),
                rng.choice([Fraction(1, 2), Fraction(3, 2)]),
            )
            x = Decimal(px) * Decimal(10_000 - px) / Decimal(10**8)
            curve = x.sqrt() if exponent == Fraction(1, 2) else x * x.sqrt()
            exact = Decimal(c) * Decimal(rate.numerator) / Decimal(rate.denominator) * curve
            for mode, rnd in (("half_up", ROUND_HALF_UP), ("floor", ROUND_FLOOR)):
                want = int(exact.quantize(Decimal("0.00001"), rounding=rnd) * USD)
                assert polymarket_fee_micros(px, c, rate, exponent, 5, mode) == want, (
                    px,
                    c,
                    rate,
                    exponent,
                    mode,
                )


def test_polymarket_makers_and_fee_free_markets_pay_nothing() -> None:
    assert polymarket_fee_model("0.07").maker_fee_micros(5000, 100) == 0
    assert PolymarketFeeModel().taker_fee_micros(5000, 100) == 0  # rate 0: e.g. geopolitics


def test_polymarket_order_fee_is_the_sum_of_its_fills() -> None:
    m = polymarket_fee_model("0.04")
    # 10 @ 0.45 -> 0.099; 5 @ 0.50 -> 0.05
    assert m.taker_fee_levels_micros([4500, 5000], [10, 5]) == 99_000 + 50_000


# ---------------------------------------------------------------------------------------------
# Models, lookup and bad input
# ---------------------------------------------------------------------------------------------


def test_fee_model_for_and_settings() -> None:
    assert fee_model_for("kalshi") == KalshiFeeModel()
    assert fee_model_for("Kalshi", multiplier="0.5").taker_fee_micros(5000, 100) == cents(88)
    s = load({"MT_POLYMARKET_FEE_RATE": "0.072", "MT_POLYMARKET_FEE_EXPONENT": "1"})
    pm = fee_model_for("polymarket", settings=s)
    assert isinstance(pm, PolymarketFeeModel)
    assert (pm.rate, pm.exponent) == (Fraction(72, 1000), 1)
    assert fee_model_for("polymarket", rate="0.03", settings=s).rate == Fraction(3, 100)
    models = fee_models(s)
    assert set(models) == {"kalshi", "polymarket"} and models["polymarket"] == pm


def test_unknown_venue_is_named() -> None:
    with pytest.raises(ValueError, match="venue='betfair'"):
        fee_model_for("betfair")


@pytest.mark.parametrize("model", [KALSHI, polymarket_fee_model("0.04")])
@pytest.mark.parametrize(
    ("px", "contracts", "message"),
    [
        (0, 1, "px=0 must be inside"),
        (10_000, 1, "px=10000 must be inside"),
        (-5, 1, "px=-5"),
        (50.5, 1, "px=50.5 must be an integer"),
        (5000, 0, "contracts=0 must be positive"),
        (5000, -3, "contracts=-3 must be positive"),
        (5000, 1.5, "contracts=1.5 must be a whole number"),
        (True, 1, "px=True"),
    ],
)
def test_bad_fee_input_names_the_value(model: FeeModel, px: object, contracts: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.taker_fee_micros(px, contracts)  # type: ignore[arg-type]


def test_bad_levels_and_parameters() -> None:
    with pytest.raises(ValueError, match="level_px has 2 entries but level_qty has 1"):
        KALSHI.taker_fee_levels_micros([5000, 5100], [1])
    with pytest.raises(ValueError, match=r"level_qty\[1\]=-2"):
        KALSHI.taker_fee_levels_micros([5000, 5100], [1, -2])
    with pytest.raises(ValueError, match=r"level_px\[0\]=0"):
        KALSHI.taker_fee_levels_micros([0], [1])
    with pytest.raises(ValueError, match=r"rate='-0\.1' must not be negative"):
        polymarket_fee_model("-0.1")
    with pytest.raises(ValueError, match="exponent='x' is not a number"):
        polymarket_fee_model("0.1", "x")
    with pytest.raises(ValueError, match="precision_micros=5"):
        KalshiFeeModel(precision_micros=5)
    with pytest.raises(ValueError, match="decimals=7"):
        PolymarketFeeModel(decimals=7)
    with pytest.raises(ValueError, match="taker_den=0"):
        KalshiFeeModel(taker_den=0)


def test_models_encode_with_a_venue_tag() -> None:
    for model in (KALSHI, polymarket_fee_model("0.072", 1)):
        raw = msgspec.json.encode(model)
        assert msgspec.json.decode(raw, type=FeeModel) == model
        assert msgspec.json.decode(raw)["venue"] == model.venue
