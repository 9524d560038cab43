"""Cross-venue arbitrage sizing: hand-computed books, fees that kill an edge, both directions.

Prices in the comments are dollars; the code uses 1/10,000 USD and micro-dollars.
"""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest

from libs.arb import PAIR_PAYOUT_MICROS, ArbQuote, best_arb, best_size, find_arb
from libs.bookstate import BookState
from libs.fees import FeeModel, KalshiFeeModel, PolymarketFeeModel, kalshi_fee_model, polymarket_fee_model
from proto.events import Leg

KALSHI = KalshiFeeModel()
POLY = polymarket_fee_model("0.04")
FREE = PolymarketFeeModel()  # a fee-free market (rate 0)


def book(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> BookState:
    """A YES-terms book from (px, size) levels, best first."""

    def arr(levels: list[tuple[int, int]], i: int) -> np.ndarray:
        return np.array([lv[i] for lv in levels], np.int64)

    return BookState(0, arr(bids, 0), arr(bids, 1), arr(asks, 0), arr(asks, 1))


def kalshi_yes_poly_no(
    a: BookState, b: BookState, fee_no: FeeModel = POLY, fee_yes: FeeModel = KALSHI, max_size: int = 10_000
) -> ArbQuote | None:
    return find_arb(
        a, b, yes_venue="kalshi", no_venue="polymarket", instrument="FED-25BP",
        fee_yes=fee_yes, fee_no=fee_no, max_size=max_size,
    )  # fmt: skip


# Kalshi YES asks: 10 @ 0.40, then 20 @ 0.49. Polymarket YES bids 10 @ 0.55, 20 @ 0.50, so its
# NO asks are 10 @ 0.45, then 20 @ 0.50.
KALSHI_BOOK = book(bids=[(3900, 10)], asks=[(4000, 10), (4900, 20)])
POLY_BOOK = book(bids=[(5500, 10), (5000, 20)], asks=[(5600, 10)])


def test_edge_only_on_the_first_level() -> None:
    # N = 10, both legs on their first level: pairs cost 0.40 + 0.45 = 0.85.
    #   Kalshi fee: 0.07 x 10 x 0.40 x 0.60 = 0.168 -> $0.17
    #   Polymarket fee (rate 0.04): 10 x 0.04 x 0.45 x 0.55 = 0.099 -> $0.09900
    #   net = 10 - 4.00 - 4.50 - 0.17 - 0.099 = $1.231 ($0.1231 per pair)
    # Going on to the second levels pays 0.49 + 0.50 = 0.99 per pair: a 1c gross edge, but
    # Kalshi's fee there is 0.07 x 0.49 x 0.51 = 0.0175 and Polymarket's 0.04 x 0.25 = 0.01 per pair.
    #   N = 11: Kalshi order fills 10 @ 0.40 (trade fee 0.1680, rounding 0.0020) and 1 @ 0.49
    #   (0.0175, rounding 0.0025): fee = 0.1855 + 0.0045 = $0.19; Polymarket 0.099 + 0.01 = 0.109;
    #   net = 11 - 4.49 - 0.19 - 5.00 - 0.109 = $1.211 < $1.231.
    #   N = 30: Kalshi 10 @ 0.40 + 20 @ 0.49: trade fees 0.1680 + 0.3499 (0.34986 ceiled) = 0.5179,
    #   roundings 0.0020 + 0.0001 -> fee $0.52; Polymarket 0.099 + 0.20 = 0.299;
    #   net = 30 - 13.80 - 0.52 - 14.50 - 0.299 = $0.881.
    q = kalshi_yes_poly_no(KALSHI_BOOK, POLY_BOOK)
    assert q is not None
    assert (q.size, q.net_edge_micros, q.net_edge_per_contract_micros) == (10, 1_231_000, 123_100)
    assert (q.gross_cost_micros, q.fees_micros) == (8_500_000, 269_000)
    y, n = q.yes_leg, q.no_leg
    assert (y.venue, y.outcome, y.limit_px, y.cost_micros, y.fee_micros) == (
        "kalshi",
        "yes",
        4000,
        4_000_000,
        170_000,
    )
    assert (n.venue, n.outcome, n.limit_px, n.cost_micros, n.fee_micros) == (
        "polymarket",
        "no",
        4500,
        4_500_000,
        99_000,
    )
    assert q.direction == "yes@kalshi+no@polymarket"
    # the hand-computed larger sizes really are worse
    yes_px, yes_qty, no_px, no_qty = [4000, 4900], [10, 20], [4500, 5000], [10, 20]
    assert best_size(yes_px, yes_qty, KALSHI, no_px, no_qty, POLY, 11) == (10, 1_231_000)
    assert best_size([4900], [20], KALSHI, [5000], [20], POLY, 20) == (0, 0)


def test_fees_kill_a_one_cent_gross_edge() -> None:
    # YES 0.49 on Kalshi + NO 0.50 on Polymarket = 0.99: 1c gross per pair.
    # Kalshi alone takes 0.07 x 0.49 x 0.51 = 1.749c per pair (N = 1: a full cent after the ceil):
    # N = 1: 1 - 0.49 - 0.02 - 0.50 - 0.01 = -$0.02; every N loses ~1.75c per pair.
    a = book(bids=[(4800, 100)], asks=[(4900, 100)])
    b = book(bids=[(5000, 100)], asks=[(5100, 100)])
    assert kalshi_yes_poly_no(a, b) is None
    assert kalshi_yes_poly_no(a, b, fee_no=FREE) is None  # even against a fee-free NO leg
    # without fees the same books are worth $1.00 (100 pairs x 1c)
    q = kalshi_yes_poly_no(a, b, fee_no=FREE, fee_yes=FREE)
    assert q is not None and (q.size, q.net_edge_micros, q.fees_micros) == (100, 1_000_000, 0)


def test_kalshi_ceil_makes_a_smaller_size_best() -> None:
    # YES 0.50 on Kalshi (10 deep), NO 0.482 on a fee-free venue (YES bid 0.518, 10 deep):
    # gross 1.8c per pair; the Kalshi fee is ceil(1.75c x N) to the cent:
    #   N = 4: 0.072 - ceil(0.070) = +$0.002     N = 8: 0.144 - ceil(0.140) = +$0.004
    #   N = 9: 0.162 - ceil(0.1575) = +$0.002   N = 10: 0.180 - ceil(0.175) = $0.000
    # so the best size is 8, inside the levels (not at a level boundary).
    a = book(bids=[(4900, 10)], asks=[(5000, 10)])
    b = book(bids=[(5180, 10)], asks=[(5300, 10)])
    q = kalshi_yes_poly_no(a, b, fee_no=FREE)
    assert q is not None
    assert (q.size, q.net_edge_micros, q.yes_leg.fee_micros, q.no_leg.fee_micros) == (8, 4_000, 140_000, 0)
    assert q.no_leg.limit_px == 4820  # in NO terms


def test_no_crossing_returns_none_in_both_directions() -> None:
    # YES@Kalshi 0.52 + NO@Polymarket (1 - 0.50) = 1.02; YES@Polymarket 0.51 + NO@Kalshi (1 - 0.48) = 1.03
    a = book(bids=[(4800, 50)], asks=[(5200, 50)])
    b = book(bids=[(5000, 50)], asks=[(5100, 50)])
    assert kalshi_yes_poly_no(a, b) is None
    assert (
        best_arb(
            a,
            b,
            venue_a="kalshi",
            venue_b="polymarket",
            instrument="X",
            fee_a=KALSHI,
            fee_b=POLY,
            max_size=100,
        )
        is None
    )
    assert kalshi_yes_poly_no(book([], []), b) is None  # an empty book has nothing to sell


def test_equal_contracts_on_both_legs() -> None:
    # Level sizes that never line up: YES 7 @ 0.30, 5 @ 0.31; NO 4 @ 0.40, 9 @ 0.41 (fee-free).
    a = book(bids=[(2900, 1)], asks=[(3000, 7), (3100, 5)])
    b = book(bids=[(6000, 4), (5900, 9)], asks=[(6100, 1)])
    q = kalshi_yes_poly_no(a, b, fee_no=FREE)
    assert q is not None
    assert q.size == q.yes_leg.size == q.no_leg.size == sum(q.yes_leg.fill_qty) == sum(q.no_leg.fill_qty) == 12
    assert (q.yes_leg.fill_px, q.yes_leg.fill_qty) == ([3000, 3100], [7, 5])
    assert (q.no_leg.fill_px, q.no_leg.fill_qty) == ([4000, 4100], [4, 8])
    assert q.net_edge_micros == 12 * PAIR_PAYOUT_MICROS - q.gross_cost_micros - q.fees_micros


def test_size_is_capped_by_max_size() -> None:
    # The first example capped at 6 pairs: Kalshi fee 0.07 x 6 x 0.24 = 0.1008 -> $0.11;
    # Polymarket 6 x 0.04 x 0.2475 = 0.0594; net = 6 - 2.40 - 0.11 - 2.70 - 0.0594 = $0.7306.
    q = kalshi_yes_poly_no(KALSHI_BOOK, POLY_BOOK, max_size=6)
    assert q is not None and (q.size, q.net_edge_micros) == (6, 730_600)


def flip(b: BookState) -> BookState:
    """The same book in NO terms: NO bids are 1 - YES asks, NO asks are 1 - YES bids."""
    return BookState(b.book_ts, 10_000 - b.ask_px, b.ask_sz.copy(), 10_000 - b.bid_px, b.bid_sz.copy())


def test_directions_are_symmetric() -> None:
    # The edge runs YES@Polymarket / NO@Kalshi only: YES 0.40 on Polymarket + NO 0.45 on Kalshi.
    k = book(bids=[(5500, 10)], asks=[(5600, 10)])
    p = book(bids=[(3900, 10)], asks=[(4000, 10)])
    assert kalshi_yes_poly_no(k, p) is None
    both = best_arb(
        k, p, venue_a="kalshi", venue_b="polymarket", instrument="X", fee_a=KALSHI, fee_b=POLY, max_size=100
    )
    swapped = best_arb(
        p, k, venue_a="polymarket", venue_b="kalshi", instrument="X", fee_a=POLY, fee_b=KALSHI, max_size=100
    )
    assert both is not None and both == swapped
    assert both.direction == "yes@polymarket+no@kalshi"
    # 10 pairs at 0.85: Polymarket fee 10 x 0.04 x 0.24 = 0.096, Kalshi 0.07 x 10 x 0.2475 = 0.17325 -> 0.18
    assert (both.size, both.net_edge_micros) == (10, 10_000_000 - 8_500_000 - 96_000 - 180_000)
    # Relabelling outcomes (YES <-> NO on both books) prices the same trade the other way round.
    mirror = find_arb(
        flip(k), flip(p), yes_venue="kalshi", no_venue="polymarket", instrument="X",
        fee_yes=KALSHI, fee_no=POLY, max_size=100,
    )  # fmt: skip
    assert mirror is not None and (mirror.size, mirror.net_edge_micros) == (both.size, both.net_edge_micros)


def test_quote_builds_proto_legs() -> None:
    q = kalshi_yes_poly_no(KALSHI_BOOK, POLY_BOOK)
    assert q is not None
    legs = q.legs()
    assert legs == q.legs()
    assert legs[0] == Leg(
        venue="kalshi", instrument="FED-25BP", outcome="yes", side="buy",
        size=10, limit_px=4000, cost_micros=4_000_000, fee_micros=170_000,
    )  # fmt: skip
    assert (legs[1].outcome, legs[1].limit_px, legs[1].size) == ("no", 4500, 10)
    assert msgspec.json.decode(msgspec.json.encode(q), type=ArbQuote) == q
    other = find_arb(
        KALSHI_BOOK, POLY_BOOK, yes_venue="kalshi", no_venue="polymarket", instrument="FED-25BP",
        no_instrument="fed-cut-25bp", fee_yes=KALSHI, fee_no=POLY, max_size=100,
    )  # fmt: skip
    assert other is not None and other.no_leg.instrument == "fed-cut-25bp"


@pytest.mark.parametrize(
    ("a", "b", "max_size", "message"),
    [
        (book([], [(4000, 10)]), book([(5500, 10)], []), 0, "max_size=0"),
        (book([], [(4000, 10)]), book([(5500, 10)], []), -5, "max_size=-5"),
        (book([], [(4000, 10)]), book([(5500, 10)], []), True, "max_size=True"),
        (book([], [(4000, -10)]), book([(5500, 10)], []), 10, r"kalshi asks sz\[0\]=-10"),
        (
            book([], [(4000, 10)]),
            book([(5500, 10), (5600, 3)], []),
            10,
            r"polymarket bids px\[1\]=5600 breaks",
        ),
        (book([], [(4000, 10), (0, 4)]), book([(5500, 10)], []), 10, r"kalshi asks px\[1\]=0 must be inside"),
    ],
)
def test_bad_input_is_named(a: BookState, b: BookState, max_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kalshi_yes_poly_no(a, b, max_size=max_size)


def test_mismatched_ladder_lengths() -> None:
    a = BookState(0, np.array([3900]), np.array([1]), np.array([4000, 4100]), np.array([10]))
    with pytest.raises(ValueError, match="kalshi asks: px has 2 levels but sz has 1"):
        kalshi_yes_poly_no(a, POLY_BOOK)
    f = BookState(0, np.array([3900]), np.array([1]), np.array([40.0]), np.array([10]))
    with pytest.raises(ValueError, match="must be integers"):
        kalshi_yes_poly_no(f, POLY_BOOK)


def _brute(
    yp: list[int], yq: list[int], fy: FeeModel, np_: list[int], nq: list[int], fn: FeeModel, max_size: int
) -> tuple[int, int]:
    """Every size, priced from scratch: the reference the search must match exactly."""

    def take(px: list[int], qty: list[int], n: int) -> tuple[list[int], list[int]]:
        fp, fq = [], []
        for p, q in zip(px, qty, strict=True):
            if n <= 0:
                break
            fp.append(p)
            fq.append(min(q, n))
            n -= min(q, n)
        return fp, fq

    best = (0, 0)
    for n in range(1, min(sum(yq), sum(nq), max_size) + 1):
        (ap, aq), (bp, bq) = take(yp, yq, n), take(np_, nq, n)
        v = n * PAIR_PAYOUT_MICROS - 100 * sum(p * q for p, q in zip(ap + bp, aq + bq, strict=True))
        v -= fy.taker_fee_levels_micros(ap, aq) + fn.taker_fee_levels_micros(bp, bq)
        if v > best[1]:
            best = (n, v)
    return best


def test_search_matches_brute_force() -> None:
    # Includes sub-penny ticks, where Kalshi's per-order rounding refund can make pairs priced at
    # exactly $1 still add a little (they recover earlier cent rounding), and thin margins where
    # the cent ceil picks a size inside a level.
    models = [
        KALSHI, POLY, FREE, polymarket_fee_model("0.07"), kalshi_fee_model(multiplier="0.5"),
        KalshiFeeModel(precision_micros=100), polymarket_fee_model("0.25", 2),
        polymarket_fee_model("0.03", "0.5"), polymarket_fee_model("0.05", rounding="floor"),
    ]  # fmt: skip
    rng = random.Random(11)
    with_edge = 0
    for _ in range(600):
        tick = rng.choice([100, 100, 10, 1])
        base = rng.randint(1, 9_998)

        def ladder(start: int, tick: int = tick) -> tuple[list[int], list[int]]:
            px, p = [], start
            for _ in range(rng.randint(1, 5)):
                px.append(min(max(p, 1), 9_999))
                p += rng.choice([0, 1, 2, 5]) * tick
            return sorted(px), [rng.randint(1, rng.choice([5, 40])) for _ in px]

        yp, yq = ladder(base)
        np_, nq = ladder(min(max(10_000 - base - rng.randint(-3, 6) * tick, 1), 9_999))
        fy, fn, ms = rng.choice(models), rng.choice(models), rng.randint(1, 150)
        expected = _brute(yp, yq, fy, np_, nq, fn, ms)
        assert best_size(yp, yq, fy, np_, nq, fn, ms) == expected, (yp, yq, fy, np_, nq, fn, ms)
        with_edge += expected[0] > 0
    assert with_edge > 100  # the cases really exercise the search
