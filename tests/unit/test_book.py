"""Walking a ladder: partial fills, limit prices, empty levels, the NO reflection, bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest

from libs.book import (
    Fill,
    best_ask,
    best_bid,
    check_ladder,
    depth,
    no_asks_from_yes_bids,
    no_bids_from_yes_asks,
    walk,
)
from libs.fees import KalshiFeeModel


def a(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


ASK_PX, ASK_SZ = a(4500, 4600, 4700), a(50, 50, 50)


def test_fill_within_the_first_level() -> None:
    f = walk(ASK_PX, ASK_SZ, 20)
    assert (f.filled, f.cost_micros, f.worst_px, f.complete) == (20, 20 * 4500 * 100, 4500, True)
    assert f.level_px.tolist() == [4500] and f.level_qty.tolist() == [20]


def test_fill_across_levels() -> None:
    # 50 @ $0.45 + 10 @ $0.46 = $22.50 + $4.60 = $27.10
    f = walk(ASK_PX, ASK_SZ, 60)
    assert (f.filled, f.cost_micros, f.worst_px) == (60, 27_100_000, 4600)
    assert f.level_px.tolist() == [4500, 4600] and f.level_qty.tolist() == [50, 10]
    # exactly at a level boundary the next level is not touched
    assert walk(ASK_PX, ASK_SZ, 50).level_px.tolist() == [4500]


def test_partial_when_depth_is_short() -> None:
    f = walk(ASK_PX, ASK_SZ, 500)
    assert (f.requested, f.filled, f.complete, f.worst_px) == (500, 150, False, 4700)
    assert f.cost_micros == (4500 + 4600 + 4700) * 50 * 100


def test_limit_price_stops_the_walk() -> None:
    f = walk(ASK_PX, ASK_SZ, 120, limit_px=4600)
    assert (f.filled, f.worst_px, f.complete) == (100, 4600, False)
    assert walk(ASK_PX, ASK_SZ, 10, limit_px=4400).filled == 0
    # sells walk bids downwards and stop below the limit
    bids = a(5300, 5200, 5100)
    s = walk(bids, a(10, 10, 10), 25, limit_px=5200, side="sell")
    assert (s.filled, s.worst_px, s.cost_micros) == (20, 5200, (5300 + 5200) * 10 * 100)


def test_empty_levels_anywhere_are_skipped() -> None:
    px, sz = a(0, 4500, 4550, 4600, 0), a(0, 10, 0, 10, 0)
    f = walk(px, sz, 15)
    assert f.level_px.tolist() == [4500, 4600] and f.level_qty.tolist() == [10, 5]
    assert (best_ask(px, sz), depth(px, sz), depth(px, sz, limit_px=4550)) == (4500, 20, 10)


def test_empty_book_and_zero_size() -> None:
    for f in (walk(a(), a(), 10), walk(a(0, 0), a(0, 0), 10), walk(ASK_PX, ASK_SZ, 0)):
        assert (f.filled, f.cost_micros, f.worst_px, f.level_px.size) == (0, 0, 0, 0)
    assert best_bid(a(), a()) is None and best_ask(a(5000), a(0)) is None


def test_walk_accepts_lists_and_feeds_per_level_fees() -> None:
    f = walk([5000, 5100], [1, 1], 2)
    assert isinstance(f, Fill)
    # Kalshi settles the order's rounding once: $0.0175 + $0.0175 trade fees -> $0.04
    assert KalshiFeeModel().taker_fee_levels_micros(f.level_px, f.level_qty) == 40_000


def test_no_asks_are_the_yes_bids_reflected_in_order() -> None:
    bid_px, bid_sz = a(5300, 5200, 0, 5100), a(10, 20, 0, 30)
    px, sz = no_asks_from_yes_bids(bid_px, bid_sz)
    assert px.tolist()[:2] == [4700, 4800] and px.tolist()[3] == 4900
    assert sz.tolist() == [10, 20, 0, 30]
    assert walk(px, sz, 15).level_px.tolist() == [4700, 4800]  # a valid ask ladder, best first
    bpx, _ = no_bids_from_yes_asks(ASK_PX, ASK_SZ)
    assert bpx.tolist() == [5500, 5400, 5300]
    assert (best_bid(bid_px, bid_sz), best_ask(px, sz)) == (5300, 4700)


def test_walk_matches_a_plain_loop() -> None:
    rng = random.Random(5)
    for _ in range(500):
        n = rng.randint(0, 12)
        px = sorted(rng.randint(1, 9_999) for _ in range(n))
        sz = [rng.choice([0, 0, 1, 7, 30]) for _ in range(n)]
        size, limit = rng.randint(0, 80), rng.choice([None, rng.randint(0, 10_000)])
        left, fills = size, []
        for p, s in zip(px, sz, strict=True):
            if s and left and (limit is None or p <= limit):
                fills.append((p, min(s, left)))
                left -= min(s, left)
        f = walk(a(*px), a(*sz), size, limit)
        assert list(zip(f.level_px.tolist(), f.level_qty.tolist(), strict=True)) == fills
        assert f.cost_micros == sum(p * q for p, q in fills) * 100


@pytest.mark.parametrize(
    ("px", "sz", "message"),
    [
        (a(4500, 4600), a(10), "ask px has 2 levels but ask sz has 1"),
        (a(4500, 4600, 4700), a(10, 5, -5), r"ask sz\[2\]=-5 must not be negative"),
        (a(4500, 10_000), a(10, 5), r"ask px\[1\]=10000 must be inside"),
        (a(0, 4600), a(3, 5), r"ask px\[0\]=0 must be inside"),
        (a(4600, 4500), a(1, 1), r"ask px\[1\]=4500 breaks the ascending"),
        (np.array([45.0, 46.0]), a(1, 1), "ask px must hold integers"),
        (np.zeros((2, 2), np.int64), a(1, 1), "ask px must be one-dimensional"),
    ],
)
def test_bad_ladders_name_the_field(px: np.ndarray, sz: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk(px, sz, 5)
    if "integers" not in message and "dimensional" not in message:
        with pytest.raises(ValueError, match=message):
            check_ladder(px, sz, "buy", "ask")


def test_bad_walk_arguments() -> None:
    with pytest.raises(ValueError, match="size=-1"):
        walk(ASK_PX, ASK_SZ, -1)
    with pytest.raises(ValueError, match="limit_px=20000"):
        walk(ASK_PX, ASK_SZ, 1, limit_px=20_000)
    with pytest.raises(ValueError, match="side='short'"):
        walk(ASK_PX, ASK_SZ, 1, side="short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bid px\[1\]=5300 breaks the descending"):
        walk(a(5200, 5300), a(1, 1), 1, side="sell")
    with pytest.raises(ValueError, match=r"bid sz\[0\]=-1"):
        no_asks_from_yes_bids(a(5000), a(-1))
