"""A paper run's decision on one intent: each safety check, fills, fees, balances, P&L."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from libs.bookstate import BookHistory, Books, BookState
from libs.fees import fee_models
from proto.events import BookBatch, Intent
from services.paper.engine import NS_PER_DAY, Run, decide
from tests import factories

DAY0 = 20_000 * NS_PER_DAY


def book(bid: list[tuple[int, int]], ask: list[tuple[int, int]]) -> BookState:
    def arr(levels: list[tuple[int, int]], i: int) -> np.ndarray:
        return np.array([lv[i] for lv in levels], np.int64)

    return BookState(DAY0, arr(bid, 0), arr(bid, 1), arr(ask, 0), arr(ask, 1))


def books() -> Books:
    # YES at 0.40 on polymarket (100 @ 0.40, 100 @ 0.41); NO at 0.55 on kalshi (YES bid 0.45: 60 deep)
    return {
        ("polymarket", "FED"): book([(3_900, 500)], [(4_000, 100), (4_100, 100)]),
        ("kalshi", "FED"): book([(4_500, 60), (4_400, 500)], [(4_700, 500)]),
    }


def intent(size: int = 50, edge_per_contract: int = 40_000, yes_limit: int = 4_000, no_limit: int = 5_500) -> Intent:
    return factories.hedged_intent(
        "I1", "FED", yes_limit=yes_limit, no_limit=no_limit, size=size, edge_per_contract=edge_per_contract,
        book_ts=DAY0 + 3_600 * 10**9, ts=5,
    )  # fmt: skip


def run(**kw: int) -> Run:
    args = {
        "starting_micros": 10_000_000_000,
        "min_net_edge_micros": 5_000,
        "max_leg_micros": 1_000_000_000,
        "daily_cap_micros": 5_000_000_000,
        "settlement_delay_ns": 2 * 10**9,
        "started_at": 0,
    } | kw
    return Run(run_id="R", label="t", **args)  # type: ignore[arg-type]


FEES = fee_models()


def test_taken_intent_fills_both_legs_with_equal_contracts_and_exact_fees() -> None:
    r = run()
    d, t = decide(r, intent(size=50), books(), FEES, now=1_000)
    assert d.taken and d.reason == "taken" and all(c.passed for c in d.checks)
    assert t is not None and t.decision_id == d.id and t.intent_id == "I1"
    yes, no = t.legs
    assert (yes.matched_size, no.matched_size) == (50, 50)
    assert yes.cost_micros == 50 * 400_000  # 50 @ $0.40
    assert no.cost_micros == 50 * 550_000  # 50 NO @ 1 - 0.45
    assert yes.fee_micros == 0  # Polymarket default rate 0
    # Kalshi taker: ceil(0.07 x 50 x 0.55 x 0.45) = ceil($0.86625) = $0.87
    assert no.fee_micros == 870_000
    assert t.payout_micros == 50_000_000
    assert t.pnl_micros == 50_000_000 - 20_000_000 - 27_500_000 - 870_000
    assert (t.executed_at, t.settled_at) == (1_000, 1_000 + 2 * 10**9)
    assert r.balance_micros == 10_000_000_000 - 20_000_000 - 27_500_000 - 870_000
    assert (r.pnl_micros, r.taken, r.trades, r.decisions) == (t.pnl_micros, 1, 1, 1)


def test_partial_fill_when_one_book_is_short() -> None:
    d, t = decide(run(), intent(size=100), books(), FEES, now=1)
    assert d.taken and t is not None
    # kalshi has only 60 NO within the 0.55 limit, so both legs get 60
    assert (t.requested_size, t.matched_size, t.fill_pct) == (100, 60, 60.0)
    assert [leg.matched_size for leg in t.legs] == [60, 60]


@pytest.mark.parametrize(
    ("kw", "intent_kw", "reason"),
    [
        ({"min_net_edge_micros": 50_000}, {}, "min_net_edge"),
        ({"max_leg_micros": 100_000}, {}, "max_leg"),
        ({"starting_micros": 1_000_000}, {}, "balance"),
        ({"daily_cap_micros": 1_000_000}, {}, "daily_cap"),
        ({}, {"yes_limit": 3_000}, "liquidity"),
    ],
)
def test_each_failed_check_skips_with_its_reason(kw: dict[str, int], intent_kw: dict[str, int], reason: str) -> None:
    r = run(**kw)
    before = r.balance_micros
    d, t = decide(r, intent(**intent_kw), books(), FEES, now=1)
    assert t is None and not d.taken
    assert d.reason == reason
    assert d.checks[-1].name == reason and not d.checks[-1].passed and d.checks[-1].detail
    assert all(c.passed for c in d.checks[:-1])
    assert r.balance_micros == before and r.decisions == 1 and r.taken == 0


def test_missing_book_is_a_clear_skip() -> None:
    only_poly = {k: v for k, v in books().items() if k[0] == "polymarket"}
    d, t = decide(run(), intent(), only_poly, FEES, now=1)
    assert t is None and d.reason == "book_present" and "kalshi:FED" in d.checks[-1].detail


def test_max_leg_cuts_the_size_to_fit() -> None:
    # $12 max leg: 12 / 0.55 (the dearer leg's limit) = 21 contracts
    d, t = decide(run(max_leg_micros=12_000_000), intent(size=50), books(), FEES, now=1)
    assert d.taken and t is not None and t.requested_size == 21
    assert "cut from 50" in next(c.detail for c in d.checks if c.name == "max_leg")


def test_daily_cap_counts_spend_per_market_day() -> None:
    r = run(daily_cap_micros=60_000_000)
    assert decide(r, intent(size=50), books(), FEES, now=1)[0].taken  # ~$48.37 spent
    assert decide(r, intent(size=50), books(), FEES, now=2)[0].reason == "daily_cap"
    next_day = intent(size=50)
    next_day = Intent(**{**{f: getattr(next_day, f) for f in next_day.__struct_fields__}, "book_ts": DAY0 + NS_PER_DAY})
    assert decide(r, next_day, books(), FEES, now=3)[0].taken


def test_decision_ids_are_deterministic_per_run_and_intent() -> None:
    d1, _ = decide(run(), intent(), books(), FEES, now=1)
    d2, _ = decide(run(), intent(), books(), FEES, now=2)
    assert d1.id == d2.id == "R-I1"


def test_the_fill_must_still_clear_the_minimum_edge() -> None:
    # The YES book moved: 0.40 is gone, 0.449 is within the 0.45 limit but leaves ~0.1c after fees.
    moved = books()
    moved[("polymarket", "FED")] = book([(3_900, 500)], [(4_490, 100)])
    d, t = decide(run(), intent(size=50, yes_limit=4_500), moved, FEES, now=1)
    assert t is None and d.reason == "fill_edge"
    assert "after fees" in d.checks[-1].detail


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"legs": "one"}, "2 legs"),
        ({"outcomes": ("yes", "yes")}, "not one YES and one NO"),
        ({"side": "sell"}, "buys both legs"),
        ({"venue": "betfair"}, "no fee model"),
        ({"limit": 10_000}, "outside"),
    ],
)
def test_an_intent_that_is_not_a_hedged_pair_is_skipped(change: dict, message: str) -> None:
    i = intent()
    legs = list(i.legs)
    if change.get("legs") == "one":
        legs = legs[:1]
    if "outcomes" in change:
        legs = [msgspec.structs.replace(leg, outcome=o) for leg, o in zip(legs, change["outcomes"], strict=True)]
    if "side" in change:
        legs[1] = msgspec.structs.replace(legs[1], side=change["side"])
    if "venue" in change:
        legs[1] = msgspec.structs.replace(legs[1], venue=change["venue"])
    if "limit" in change:
        legs[0] = msgspec.structs.replace(legs[0], limit_px=change["limit"])
    r = run()
    d, t = decide(r, msgspec.structs.replace(i, legs=legs), books(), FEES, now=1)
    assert t is None and d.reason == "hedged_pair" and message in d.checks[-1].detail
    assert r.balance_micros == r.starting_micros


def test_a_zero_balance_is_kept() -> None:
    assert run(balance_micros=0).balance_micros == 0


def test_book_history_never_looks_ahead() -> None:
    h = BookHistory(depth=3)
    for ts, bid in [(10, 4_000), (20, 4_100), (30, 4_200), (40, 4_300)]:
        h.add(_one_book(ts, bid))
    assert h.at("kalshi", "FED", 5) is None  # nothing that early (10 fell out of the depth of 3, 20 is later)
    assert h.at("kalshi", "FED", 25).book_ts == 20  # type: ignore[union-attr]
    assert h.at("kalshi", "FED", 10**12).bid_px.tolist() == [4_300]  # type: ignore[union-attr]


def _one_book(ts: int, bid: int) -> BookBatch:
    return BookBatch(
        id=f"b{ts}", ts=ts, venue="kalshi", source="t", levels=1, instruments=["FED"], inst_idx=[0], book_ts=[ts],
        bid_px=[bid], bid_sz=[1], ask_px=[bid + 100], ask_sz=[1],
    )  # fmt: skip
