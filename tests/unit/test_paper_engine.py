"""The paper engine: every safety check (reason, detail, masks), fills, fees, broken pairs, P&L.

Expected fills and fees are worked out here by hand from the ladders and the venues' published
rules (Kalshi: each fill's fee 0.07·C·P·(1−P) rounded up to $0.0001, the balance change floored to
the cent, rounding refunded per order by the cent accumulator; Polymarket: C·rate·p(1−p) per fill
rounded half up to 5 decimals), in exact fractions, not through libs.fees.
"""

from __future__ import annotations

import dataclasses
import math
import random
from fractions import Fraction

import msgspec
import numpy as np
import pytest

from libs.fees import kalshi_fee_model, polymarket_fee_model
from libs.paper import engine as eng_mod
from libs.paper.books import BookHistory, MarketFacts
from libs.paper.engine import Engine, EngineSettings, RunLimits, RunOutcome
from libs.paper.views import CHECK_RUN_ORDER, checks_of
from proto.events import BookBatch, Intent, Leg, Opportunity
from proto.paper import CHECK_BIT, CHECKS
from tests import factories

T = 1_765_000_000_000_000_000  # 2025-12-06 05:46:40 UTC
MS = 1_000_000
S = 1_000_000_000
DAY = 86_400 * S
NOW = T + 5 * S
POLY_RATE = Fraction(2, 100)

# -- by-hand fills and fees -----------------------------------------------------------------------


def take(levels: list[tuple[int, int]], size: int, limit: int) -> list[tuple[int, int]]:
    """Fills (px, qty) walking `levels` (best first) for `size`, no level above `limit`."""
    out, left = [], size
    for px, qty in levels:
        if left == 0 or px > limit:
            break
        q = min(qty, left)
        out.append((px, q))
        left -= q
    return out


def micros(dollars: Fraction) -> int:
    m = dollars * 1_000_000
    assert m.denominator == 1, dollars
    return int(m)


def kalshi_fee(fills: list[tuple[int, int]]) -> int:
    """Kalshi's fee-rounding page, fill by fill: centicent-ceiled trade fee, cent-floored balance change,
    a cent refunded whenever the order's accumulated rounding exceeds a cent."""
    total, acc = Fraction(0), Fraction(0)
    cent, centicent = Fraction(1, 100), Fraction(1, 10_000)
    for px, qty in fills:
        p = Fraction(px, 10_000)
        trade = math.ceil(Fraction(7, 100) * qty * p * (1 - p) / centicent) * centicent
        change = -p * qty - trade
        rounding = change - math.floor(change / cent) * cent
        acc += rounding
        rebate = Fraction(0)
        if acc > cent:
            rebate, acc = cent, acc - cent
        total += trade + rounding - rebate
    return micros(total)


def poly_fee(fills: list[tuple[int, int]], rate: Fraction = POLY_RATE) -> int:
    """Polymarket: C·rate·p(1−p) per fill, rounded half up to 5 decimals."""
    total = Fraction(0)
    for px, qty in fills:
        p = Fraction(px, 10_000)
        steps = math.floor(qty * rate * p * (1 - p) * 100_000 + Fraction(1, 2))
        total += Fraction(steps, 100_000)
    return micros(total)


def cost(fills: list[tuple[int, int]]) -> int:
    return sum(px * q * 100 for px, q in fills)


# -- the market and the engine --------------------------------------------------------------------

POLY_ASKS = [(4_000, 100), (4_100, 100)]
KALSHI_BIDS = [(4_500, 60), (4_400, 500)]  # NO asks 0.55 x 60, 0.56 x 500
NO_ASKS = [(10_000 - px, q) for px, q in KALSHI_BIDS]


def book(venue: str, ts: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]], inst: str = "FED") -> BookBatch:
    lv = max(len(bids), len(asks), 1)

    def col(levels: list[tuple[int, int]], i: int) -> list[int]:
        return [lvl[i] for lvl in levels] + [0] * (lv - len(levels))

    return BookBatch(
        id=f"{venue}-{ts}", ts=ts, venue=venue, source="test", levels=lv, instruments=[inst], inst_idx=[0],
        book_ts=[ts], bid_px=col(bids, 0), bid_sz=col(bids, 1), ask_px=col(asks, 0), ask_sz=col(asks, 1),
    )  # fmt: skip


def market(extra: list[BookBatch] = ()) -> tuple[BookHistory, MarketFacts]:  # type: ignore[assignment]
    h = BookHistory()
    h.add(book("polymarket", T, [(3_900, 500)], POLY_ASKS))
    h.add(book("kalshi", T, KALSHI_BIDS, [(4_700, 500)]))
    for b in extra:
        h.add(b)
    return h, MarketFacts()


def engine(validation: str = "bus", extra: list[BookBatch] = (), facts: MarketFacts | None = None) -> Engine:  # type: ignore[assignment]
    h, f = market(extra)
    fees = {"kalshi": kalshi_fee_model(), "polymarket": polymarket_fee_model("0.02")}
    settings = EngineSettings(latency_ns=50 * MS, leg_gap_ns=20 * MS, max_book_age_ns=60 * S, validation=validation)
    return Engine(settings, h, facts or f, fees)


def intent(
    id: str = "I1", size: int = 150, edge: int = 40_000, yes: int = 4_100, no: int = 5_600, **kw: object
) -> Intent:
    """A hedged FED intent; its own opportunity (`O-<id>`) unless `opportunity_id` is given."""
    it = factories.hedged_intent(
        id, "FED", yes_limit=yes, no_limit=no, size=size, edge_per_contract=edge, book_ts=T, ts=T + 2 * MS
    )
    return factories._with(it, {"opportunity_id": f"O-{id}"} | kw)


def run(**kw: object) -> RunLimits:
    args: dict = {
        "run_id": "R",
        "user_id": "u1",
        "min_net_edge_micros": 5_000,
        "max_leg_micros": 1_000_000_000,
        "daily_cap_micros": 5_000_000_000,
        "settlement_delay_ns": 2 * S,
        "balance_micros": 10_000_000_000,
        "spent_by_day": {},
    } | kw
    return RunLimits(**args)


def decide(e: Engine, orders: list, runs: list[RunLimits], source: str = "intent", **kw: object) -> list[RunOutcome]:
    """The batch path's outcomes; a lone intent every run watches is also decided the hot path's way
    (`prepare_one` / `decide_one`), which must agree to the last field."""
    prep = e.prepare(orders, source)  # type: ignore[arg-type]
    watch = kw.pop("watch", np.ones((len(orders), len(runs)), bool))
    out = e.decide(prep, runs, watch, NOW, **kw)  # type: ignore[arg-type]
    if len(orders) == 1 and source == "intent" and not kw and e.s.validation != "live" and watch.all():
        one = e.decide_one(e.prepare_one(orders[0]), runs, NOW)
        assert all(isinstance(o.decisions, list) for o in one)  # rows: the run's update makes columns
        assert [dataclasses.replace(o, decisions=o.columns()) for o in one] == out
    return out  # type: ignore[return-value]


def bits(names: list[str]) -> int:
    return sum(CHECK_BIT[n] for n in names)


RUN_ORDER = [
    "has_orders", "hedged_pair", "min_net_edge", "untraded_opportunity", "instrument_ids", "exchange_keys",
    "exchange_validation", "max_leg", "balance", "daily_cap", "liquidity", "fill_edge",
]  # fmt: skip
"""The order the checks run in (written out here; CHECKS fixes the bits: untraded_opportunity is bit 11)."""
SPAN_CHECKS = [c for c in RUN_ORDER if c != "untraded_opportunity"]
"""What a success-span start runs (it never trades, so one trade per opportunity does not apply)."""


def test_the_check_bits_keep_their_positions_and_the_run_order_moves_only_the_new_check() -> None:
    assert CHECKS[:11] == (
        "has_orders", "hedged_pair", "min_net_edge", "instrument_ids", "exchange_keys", "exchange_validation",
        "max_leg", "balance", "daily_cap", "liquidity", "fill_edge",
    )  # fmt: skip
    assert CHECK_BIT["untraded_opportunity"] == 2048 and sorted(CHECKS) == sorted(RUN_ORDER)
    assert list(CHECK_RUN_ORDER) == RUN_ORDER


# -- taken ---------------------------------------------------------------------------------------


def test_a_taken_pair_fills_level_by_level_with_exact_fees_and_pnl() -> None:
    (out,) = decide(engine(), [intent()], [run()])
    leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    assert leg0 == [(4_000, 100), (4_100, 50)] and leg1 == [(5_500, 60), (5_600, 90)]
    fee0, fee1 = poly_fee(leg0), kalshi_fee(leg1)
    assert (fee0, fee1) == (721_900, 2_600_000)  # $0.48 + $0.2419; Kalshi $2.5919 of trade fees -> $2.60
    total = cost(leg0) + cost(leg1) + fee0 + fee1
    d = out.decisions
    assert d.reason == ["taken"] and d.taken == [True] and d.id == ["R:I1"] and d.trade_id == ["R:I1:T"]
    assert d.checks_run == [bits(list(CHECKS))] == [(1 << 12) - 1] and d.checks_passed == d.checks_run
    assert d.size == [150] and d.source == ["intent"] and d.intent_id == ["I1"] and d.ts == [NOW]
    (t,) = out.trades
    assert (t.requested_size, t.matched_size, t.fill_pct, t.broken, t.unhedged_size) == (150, 150, 100.0, False, 0)
    assert t.cost_micros == cost(leg0) + cost(leg1) == 60_500_000 + 83_400_000
    assert t.fee_micros == fee0 + fee1
    assert t.payout_micros == 150_000_000
    assert t.pnl_micros == 150_000_000 - total == 2_778_100
    assert (t.legs[0].cost_micros, t.legs[0].fee_micros, t.legs[0].worst_px) == (cost(leg0), fee0, 4_100)
    assert (t.legs[1].cost_micros, t.legs[1].fee_micros, t.legs[1].worst_px) == (cost(leg1), fee1, 5_600)
    assert t.legs[0].book_ts == T and t.legs[1].book_ts == T
    assert t.executed_at == NOW + 50 * MS and t.legs[1].executed_at == NOW + 70 * MS
    assert t.settled_at == t.executed_at + 2 * S
    assert (t.user_id, t.opportunity_id, t.net_edge_per_contract_micros) == ("u1", "O-I1", 40_000)
    assert out.balance_micros == 10_000_000_000 - total
    assert out.spent_by_day == {T // DAY: total}
    assert (out.taken, out.fees_micros, out.broken) == (1, fee0 + fee1, 0)


def test_a_short_first_leg_is_a_partial_fill_of_hedged_pairs() -> None:
    thin = book("polymarket", T + 1, [(3_900, 500)], [(4_000, 80), (4_200, 500)])  # 80 within 0.41
    (out,) = decide(engine(extra=[thin]), [intent(size=100)], [run()])
    (t,) = out.trades
    leg0, leg1 = take([(4_000, 80), (4_200, 500)], 100, 4_100), take(NO_ASKS, 80, 5_600)
    assert (t.requested_size, t.matched_size, t.fill_pct) == (100, 80, 80.0)
    assert (t.legs[0].requested_size, t.legs[0].matched_size, t.legs[0].fill_pct) == (100, 80, 80.0)
    assert (t.legs[1].requested_size, t.legs[1].matched_size, t.legs[1].fill_pct) == (80, 80, 100.0)
    assert t.cost_micros == cost(leg0) + cost(leg1)
    assert t.fee_micros == poly_fee(leg0) + kalshi_fee(leg1)
    assert t.pnl_micros == 80_000_000 - t.cost_micros - t.fee_micros and not t.broken


def test_a_second_leg_short_after_the_gap_is_a_broken_pair_with_its_exposure() -> None:
    # at t1 (T+50ms) Kalshi has 200 NO at 0.55; by t1 + gap (T+70ms) only 30 are left
    deep = book("kalshi", T, [(4_500, 200)], [(4_700, 500)])
    gone = book("kalshi", T + 60 * MS, [(4_500, 30)], [(4_700, 500)])
    e = engine()
    e.books = BookHistory()
    e.books.add(book("polymarket", T, [(3_900, 500)], POLY_ASKS))
    e.books.add(deep)
    e.books.add(gone)
    (out,) = decide(e, [intent(size=100, yes=4_000, no=5_500)], [run()])
    (t,) = out.trades
    leg0, leg1 = [(4_000, 100)], [(5_500, 30)]
    hedged0 = [(4_000, 30)]
    assert out.decisions.reason == ["taken"]
    assert (t.matched_size, t.broken, t.unhedged_size) == (30, True, 70)
    assert (t.legs[0].matched_size, t.legs[1].requested_size, t.legs[1].matched_size) == (100, 100, 30)
    assert t.legs[1].book_ts == T + 60 * MS  # leg 1 walked the book of its own time
    exposure = cost(leg0) + poly_fee(leg0) - cost(hedged0) - poly_fee(hedged0)
    assert t.exposure_micros == exposure == 40_480_000 - 12_144_000
    all_cost = cost(leg0) + poly_fee(leg0) + cost(leg1) + kalshi_fee(leg1)
    assert kalshi_fee(leg1) == 520_000
    assert t.pnl_micros == 30_000_000 - all_cost == -27_500_000  # the 70 unhedged YES counted as lost
    assert out.balance_micros == 10_000_000_000 - all_cost
    assert (out.broken, out.exposure_micros) == (1, exposure)
    assert "broken pair: 70 unhedged" in out.decisions.detail[0]


def test_the_book_is_the_one_as_of_the_fill_time_not_a_later_one() -> None:
    later = book("polymarket", T + 10 * S, [(3_900, 500)], [(4_000, 7)])  # from the intent's future
    (out,) = decide(engine(extra=[later]), [intent(size=100)], [run()])
    assert out.trades[0].legs[0].matched_size == 100 and out.trades[0].legs[0].book_ts == T


# -- every check, in order -----------------------------------------------------------------------


def leg(venue: str, outcome: str, limit: int, **kw: object) -> Leg:
    base = Leg(venue=venue, instrument="FED", outcome=outcome, size=150, limit_px=limit, cost_micros=0, fee_micros=0)
    return msgspec.structs.replace(base, **kw) if kw else base


YES, NO = leg("polymarket", "yes", 4_100), leg("kalshi", "no", 5_600)

CASES = [
    ("no legs", {"legs": []}, {}, "has_orders", "the intent has no orders (legs)"),
    ("three legs", {"legs": [YES, NO, NO]}, {}, "hedged_pair", "a hedged pair has 2 legs, this intent has 3"),
    ("two yes", {"legs": [YES, leg("kalshi", "yes", 4_700)]}, {}, "hedged_pair", "are not one YES and one NO"),
    ("a sell", {"legs": [YES, leg("kalshi", "no", 5_600, side="sell")]}, {}, "hedged_pair", "leg 1 side 'sell'"),
    ("limit 0", {"legs": [leg("polymarket", "yes", 0), NO]}, {}, "hedged_pair", "leg 0 limit_px=0 is outside"),
    ("no fee model", {"legs": [leg("nasdaq", "yes", 4_100), NO]}, {}, "hedged_pair", "venue 'nasdaq' has no fee model"),
    ("size 0", {"size": 0}, {}, "hedged_pair", "size=0 must be positive"),
    ("not a time", {"book_ts": 2**63 + 5}, {}, "hedged_pair",
     "ts=1765000000002000000, book_ts=9223372036854775813: not times (ns since 1970, below 2**62)"),
    ("thin edge", {"net_edge_per_contract_micros": 4_000}, {}, "min_net_edge",
     "net edge 0.40c/contract < minimum 0.50c"),
    ("no ticker", {"legs": [YES, leg("kalshi", "no", 5_600, instrument="")]}, {}, "instrument_ids",
     "leg 1 (kalshi) has no kalshi ticker"),
    ("bad token", {"legs": [leg("polymarket", "yes", 4_100, instrument="71 32"), NO]}, {}, "instrument_ids",
     "leg 0 polymarket token id '71 32' contains whitespace"),
    ("no book", {"legs": [YES, leg("kalshi", "no", 5_600, instrument="OTHER")]}, {}, "exchange_validation",
     "leg 1 kalshi OTHER: no book held at or before the fill time 2025-12-06T05:46:40.050000Z"),
    ("stale book", {"book_ts": T + 120 * S}, {}, "exchange_validation",
     "leg 0 polymarket FED: the latest book is 120.050s older than the fill time (max 60s)"),
    ("no depth", {"legs": [leg("polymarket", "yes", 3_900), NO]}, {}, "exchange_validation",
     "leg 0 polymarket FED: no YES depth at or below the limit 0.3900"),
    ("max leg", {}, {"max_leg_micros": 300_000}, "max_leg",
     "not one contract fits the max leg $0.30 at limits 0.4100 and 0.5600"),
    ("balance", {}, {"balance_micros": 100_000_000}, "balance",
     "needs $148.82 (worst case: 150 pairs at the limits, with fees), balance $100.00"),
    ("daily cap", {}, {"daily_cap_micros": 200_000_000, "spent_by_day": {T // DAY: 60_000_000}}, "daily_cap",
     "$60.00 spent on 2025-12-06 (UTC) + $148.82 needed > daily cap $200.00"),
    ("fill edge", {"legs": [YES, leg("kalshi", "no", 5_600)], "size": 150}, {"min_net_edge_micros": 20_000},
     "fill_edge", "the fill nets 1.85c/contract after fees < minimum 2.00c (leg 0 150 of 150, leg 1 150 of 150"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "intent_changes", "run_changes", "reason", "detail"), CASES, ids=[c[0] for c in CASES]
)
def test_each_check_fails_with_its_reason_detail_and_masks(
    name: str, intent_changes: dict, run_changes: dict, reason: str, detail: str
) -> None:
    it = factories._with(intent(), intent_changes)
    if "net_edge_per_contract_micros" not in intent_changes and name == "fill edge":
        it = factories._with(it, {"net_edge_per_contract_micros": 30_000})
    (out,) = decide(engine(), [it], [run(**run_changes)])
    d = out.decisions
    assert d.reason == [reason] and d.taken == [False] and d.trade_id == [""] and not out.trades
    assert detail in d.detail[0], d.detail[0]
    k = RUN_ORDER.index(reason)
    assert d.checks_run == [bits(RUN_ORDER[: k + 1])]
    assert d.checks_passed == [bits(RUN_ORDER[:k])]
    assert [(c.name, c.passed) for c in checks_of(d.checks_run[0], d.checks_passed[0], d.detail[0])] == [
        *((c, True) for c in RUN_ORDER[:k]),
        (reason, False),
    ]
    assert out.balance_micros == run(**run_changes).balance_micros  # nothing spent


def test_by_hand_worst_case_need_matches_the_balance_detail() -> None:
    need = 150 * (4_100 + 5_600) * 100 + poly_fee([(4_100, 150)]) + kalshi_fee([(5_600, 150)])
    assert need == 148_815_700  # $148.82 in the balance and daily cap details above
    (ok,) = decide(engine(), [intent()], [run(balance_micros=need)])
    (short,) = decide(engine(), [intent()], [run(balance_micros=need - 1)])
    assert ok.decisions.reason == ["taken"] and short.decisions.reason == ["balance"]


def test_balance_details_in_a_batch_name_each_runs_cash_and_each_intents_need() -> None:
    """Skips for the same reason share their formatted detail within a batch: the sharing must key on
    every value the detail names (the run's cash, the intent's need and size, the settlement room)."""
    orders = [intent("A"), intent("B", size=100), intent("C")]
    runs = [run(run_id="R1", balance_micros=90_000_000), run(run_id="R2", balance_micros=50_000_000),
            run(run_id="R3", balance_micros=90_000_000, pending=eng_mod.MAX_PENDING)]  # fmt: skip
    outs = decide(engine(), orders, runs)
    details = [o.decisions.detail for o in outs]
    assert [o.decisions.reason for o in outs] == [["balance"] * 3] * 3
    worst_150 = "needs $148.82 (worst case: 150 pairs at the limits, with fees)"
    assert details[0][0] == details[0][2] == f"{worst_150}, balance $90.00"
    assert "(worst case: 100 pairs" in details[0][1] and details[0][1].endswith("balance $90.00")
    assert details[1][0].endswith("balance $50.00") and details[1][1].endswith("balance $50.00")
    assert all(d.startswith("20,000 trades await settlement") for d in details[2])


def test_fill_edge_by_hand() -> None:
    leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    net = (150_000_000 - cost(leg0) - cost(leg1) - poly_fee(leg0) - kalshi_fee(leg1)) // 150
    assert net == 18_520  # 1.85c: the fill_edge case above fails a 2.00c minimum
    (out,) = decide(engine(), [intent()], [run(min_net_edge_micros=net)])
    assert out.decisions.reason == ["taken"]


def test_liquidity_fails_when_the_first_leg_has_no_depth_and_validation_is_off() -> None:
    e = engine("off")
    (out,) = decide(e, [intent(yes=3_900)], [run()])
    assert out.decisions.reason == ["liquidity"]
    assert "leg 0 polymarket YES: no depth at or below the limit 0.3900" in out.decisions.detail[0]
    assert out.decisions.checks_passed == [bits(RUN_ORDER[: RUN_ORDER.index("liquidity")])]


def test_a_closed_market_fails_exchange_validation_naming_its_status() -> None:
    facts = MarketFacts()
    facts.update(factories.market_info("m", instrument="FED", market_id="FED", status="settled"))
    (out,) = decide(engine(facts=facts), [intent()], [run()])
    assert out.decisions.reason == ["exchange_validation"]
    assert out.decisions.detail == ["leg 1 kalshi FED: the market is settled (latest MarketInfo status)"]


def test_unsupported_fee_exponent_is_refused_by_name() -> None:
    facts = MarketFacts()
    facts.update(factories.market_info("m", venue="polymarket", instrument="FED", taker_fee_rate="0.02",
                                       fee_exponent="2"))  # fmt: skip
    (out,) = decide(engine(facts=facts), [intent()], [run()])
    assert out.decisions.reason == ["hedged_pair"]
    assert "fee exponent 2/1 is not supported" in out.decisions.detail[0]


def test_a_fee_rate_too_fine_for_int64_is_refused_by_name() -> None:
    facts = MarketFacts()
    facts.update(factories.market_info("m", venue="polymarket", instrument="FED",
                                       taker_fee_rate="0.0000000000000000001"))  # fmt: skip
    (out,) = decide(engine(facts=facts), [intent()], [run()])  # both routes: no OverflowError
    assert out.decisions.reason == ["hedged_pair"]
    assert "fee coefficients 1/10000000000000000000 are too fine" in out.decisions.detail[0]


def test_an_instrument_fee_rate_from_market_info_is_charged() -> None:
    facts = MarketFacts()
    facts.update(factories.market_info("m", venue="polymarket", instrument="FED", taker_fee_rate="0.05"))
    (out,) = decide(engine(facts=facts), [intent()], [run()])
    leg0 = take(POLY_ASKS, 150, 4_100)
    assert out.trades[0].legs[0].fee_micros == poly_fee(leg0, Fraction(5, 100))


# -- live validation and keys (results handed in by the service) ---------------------------------


def test_live_validation_requires_keys_for_every_leg_venue() -> None:
    e = engine("live")
    runs = [
        run(keys_present=frozenset({"polymarket"})),
        run(run_id="K", keys_present=frozenset({"polymarket", "kalshi"})),
    ]
    prep = e.prepare([intent()])
    watch = np.ones((1, 2), bool)
    asked = e.reaching_validation(prep, runs, watch)
    assert asked.tolist() == [[False, True]]  # only the run with keys gets to the venues
    ok = np.array([[True, False]])
    out = e.decide(prep, runs, watch, NOW, live=(ok, {(0, 1): "leg 1: kalshi market KX is closed"}))
    a, b = out
    assert a is not None and b is not None
    assert a.decisions.reason == ["exchange_keys"]
    assert (
        "no exchange keys for kalshi" in a.decisions.detail[0]
        and "present when the run started: polymarket" in (a.decisions.detail[0])
    )
    assert b.decisions.reason == ["exchange_validation"] and b.decisions.detail == ["leg 1: kalshi market KX is closed"]
    live_ok = e.decide(prep, runs[1:], watch[:, 1:], NOW, live=(np.ones((1, 1), bool), {}))[0]
    assert live_ok is not None and live_ok.decisions.reason == ["taken"]


# -- state carried through a batch ----------------------------------------------------------------


def test_balance_and_daily_cap_are_carried_from_intent_to_intent_and_the_cap_is_per_utc_day() -> None:
    e = engine(extra=[book("polymarket", T + DAY, [(3_900, 500)], POLY_ASKS),
                      book("kalshi", T + DAY, KALSHI_BIDS, [(4_700, 500)])])  # fmt: skip
    one = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    spend = cost(one[0]) + cost(one[1]) + poly_fee(one[0]) + kalshi_fee(one[1])
    need = 148_815_700
    cap = spend + need - 1  # a second trade the same day would pass the cap by one micro-dollar
    intents = [intent("A"), intent("B"), intent("C", book_ts=T + DAY)]
    (out,) = decide(e, intents, [run(daily_cap_micros=cap)])
    assert out.decisions.reason == ["taken", "daily_cap", "taken"]
    assert out.spent_by_day == {T // DAY: spend, T // DAY + 1: spend}
    assert out.balance_micros == 10_000_000_000 - 2 * spend
    (poor,) = decide(e, intents[:2], [run(balance_micros=spend + need - 1)])
    assert poor.decisions.reason == ["taken", "balance"]


def test_runs_decide_only_what_they_watch_each_with_their_own_limits() -> None:
    runs = [run(), run(run_id="S", max_leg_micros=20_000_000), run(run_id="X")]
    watch = np.array([[True, True, False], [False, True, False]])
    out = decide(engine(), [intent("A"), intent("B")], runs, watch=watch)
    assert out[2] is None
    assert out[0] is not None and out[0].decisions.id == ["R:A"]
    assert out[1] is not None and out[1].decisions.id == ["S:A", "S:B"]
    # max leg $20 at limits 0.41 / 0.56: min(150, floor(20/0.41)=48, floor(20/0.56)=35) = 35 contracts
    assert out[1].decisions.size == [35, 35] and out[1].trades[0].requested_size == 35


def test_a_success_span_start_runs_the_checks_but_never_fills() -> None:
    opp = factories.opportunity("op-ev", opportunity_id="OPP-7", legs=[YES, NO], size=150,
                                net_edge_per_contract_micros=40_000, book_ts=T, ts=T + 1, strategy="xarb")  # fmt: skip
    thin = msgspec.structs.replace(opp, opportunity_id="OPP-8", net_edge_per_contract_micros=100)
    (out,) = decide(engine(), [opp, thin], [run()], source="success_span")
    d = out.decisions
    assert d.id == ["R:span:OPP-7", "R:span:OPP-8"] and d.source == ["success_span"] * 2
    assert d.reason == ["eligible", "min_net_edge"] and d.taken == [False, False] and d.intent_id == ["", ""]
    assert d.checks_run[0] == d.checks_passed[0] == bits(SPAN_CHECKS)
    assert "eligible: 150 of 150 pairs fillable" in d.detail[0]
    assert not out.trades and out.balance_micros == 10_000_000_000 and out.spent_by_day == {}
    assert isinstance(opp, Opportunity)


# -- one trade per opportunity opening --------------------------------------------------------------

_FILLS = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
SPEND = cost(_FILLS[0]) + cost(_FILLS[1]) + poly_fee(_FILLS[0]) + kalshi_fee(_FILLS[1])
"""Cost + fees of one full 150-pair trade on the test market (the books never change: paper fills do
not consume them, which is why a second trade of the same opening would count them twice)."""


def already(opp: str, ts: int) -> str:
    iso = f"2025-12-06T05:46:40.{(ts - T) // 1_000:06d}Z"  # T is 05:46:40 UTC exactly
    return (
        f"opportunity {opp} already traded by this run by its intent made {iso} (wall clock) "
        "(one trade per opportunity: a better intent of the same opening would count its book twice)"
    )


def test_a_better_intent_of_an_opportunity_already_traded_in_the_batch_is_skipped() -> None:
    first = intent("A", opportunity_id="OPEN-1", ts=T + 2 * MS)
    better = intent("B", opportunity_id="OPEN-1", edge=41_000, ts=T + 3 * MS)
    (out,) = decide(engine(), [first, better], [run()])
    d = out.decisions
    assert d.reason == ["taken", "untraded_opportunity"] and d.taken == [True, False]
    assert d.detail[1] == already("OPEN-1", T + 2 * MS)
    assert d.trade_id == ["R:A:T", ""] and [t.intent_id for t in out.trades] == ["A"]
    k = RUN_ORDER.index("untraded_opportunity")
    assert d.checks_run[1] == bits(RUN_ORDER[: k + 1]) and d.checks_passed[1] == bits(RUN_ORDER[:k])
    assert d.size[1] == 0  # max_leg never reached
    assert out.balance_micros == 10_000_000_000 - SPEND and out.spent_by_day == {T // DAY: SPEND}
    assert out.traded == {"OPEN-1": T + 2 * MS} and out.taken == 1


def test_an_opportunity_traded_in_an_earlier_batch_is_skipped_via_the_runs_traded_ids() -> None:
    e = engine()
    (one,) = decide(e, [intent("A", opportunity_id="OPEN-1", ts=T + 2 * MS)], [run()])
    assert one.decisions.reason == ["taken"] and one.traded == {"OPEN-1": T + 2 * MS}
    later = [intent("B", opportunity_id="OPEN-1", edge=60_000, ts=T + 9 * MS), intent("C", opportunity_id="OPEN-2")]
    (two,) = decide(e, later, [run(traded=one.traded, balance_micros=one.balance_micros)])
    assert two.decisions.reason == ["untraded_opportunity", "taken"]
    assert two.decisions.detail[0] == already("OPEN-1", T + 2 * MS)
    assert two.traded == {"OPEN-2": T + 2 * MS}  # only what this batch traded
    assert two.balance_micros == 10_000_000_000 - 2 * SPEND
    # without the traded ids (a run that never traded OPEN-1), B is taken
    (fresh,) = decide(e, later[:1], [run()])
    assert fresh.decisions.reason == ["taken"] and fresh.traded == {"OPEN-1": T + 9 * MS}


@pytest.mark.parametrize(
    ("first_changes", "run_changes", "first_reason"),
    [
        ({"net_edge_per_contract_micros": 4_000}, {}, "min_net_edge"),
        ({"legs": [YES, leg("kalshi", "no", 5_600, instrument="OTHER")]}, {}, "exchange_validation"),
        ({"size": 10_000}, {"balance_micros": 200_000_000}, "balance"),
    ],
    ids=["min_net_edge", "exchange_validation", "balance"],
)
def test_an_intent_skipped_for_another_reason_leaves_the_opportunity_open_to_the_next(
    first_changes: dict, run_changes: dict, first_reason: str
) -> None:
    first = intent("A", opportunity_id="OPEN-1", ts=T + 2 * MS, **first_changes)
    second = intent("B", opportunity_id="OPEN-1", ts=T + 4 * MS)
    (out,) = decide(engine(), [first, second], [run(**run_changes)])
    assert out.decisions.reason == [first_reason, "taken"]
    assert out.traded == {"OPEN-1": T + 4 * MS} and [t.intent_id for t in out.trades] == ["B"]


def test_each_run_has_its_own_traded_opportunities() -> None:
    a = intent("A", opportunity_id="OPEN-1", edge=9_999, ts=T + 2 * MS)
    b = intent("B", opportunity_id="OPEN-1", edge=10_000, ts=T + 3 * MS)  # detect's next 0.01c step
    runs = [
        run(),
        run(run_id="S", min_net_edge_micros=10_000),  # A is 0.0001c short of its minimum, B meets it
        run(run_id="P", traded={"OPEN-1": T}),  # traded OPEN-1 in an earlier batch
        run(run_id="Q", balance_micros=SPEND - 1, traded={"OTHER": T}),  # cannot afford A; other ids do not block
    ]
    r, s_, p, q = decide(engine(), [a, b], runs)
    assert r.decisions.reason == ["taken", "untraded_opportunity"]
    assert s_.decisions.reason == ["min_net_edge", "taken"] and s_.traded == {"OPEN-1": T + 3 * MS}
    assert p.decisions.reason == ["untraded_opportunity"] * 2 and p.decisions.detail[0] == already("OPEN-1", T)
    assert q.decisions.reason == ["balance", "balance"] and q.traded == {}


def test_different_opportunities_are_each_traded_once() -> None:
    orders = [intent("A", opportunity_id="X"), intent("B", opportunity_id="Y"), intent("C", opportunity_id="X"),
              intent("D", opportunity_id="Z", ts=T + 7 * MS), intent("E", opportunity_id="Y")]  # fmt: skip
    (out,) = decide(engine(), orders, [run()])
    assert out.decisions.reason == ["taken", "taken", "untraded_opportunity", "taken", "untraded_opportunity"]
    assert out.traded == {"X": T + 2 * MS, "Y": T + 2 * MS, "Z": T + 7 * MS}
    assert out.balance_micros == 10_000_000_000 - 3 * SPEND


def test_success_span_starts_ignore_traded_opportunities_and_never_mark_one() -> None:
    opp = factories.opportunity("op-ev", opportunity_id="OPEN-1", legs=[YES, NO], size=150,
                                net_edge_per_contract_micros=40_000, book_ts=T, ts=T + 1, strategy="xarb")  # fmt: skip
    again = msgspec.structs.replace(opp, id="op-ev-2")
    (out,) = decide(engine(), [opp, again], [run(traded={"OPEN-1": T})], source="success_span")
    assert out.decisions.reason == ["eligible", "eligible"] and out.traded == {}
    assert out.decisions.checks_run == [bits(SPAN_CHECKS)] * 2
    assert not CHECK_BIT["untraded_opportunity"] & out.decisions.checks_run[0]


def test_live_validation_is_not_asked_about_an_opportunity_the_run_already_traded() -> None:
    e = engine("live")
    runs = [run(keys_present=frozenset({"polymarket", "kalshi"}), traded={"OPEN-1": T}),
            run(run_id="K", keys_present=frozenset({"polymarket", "kalshi"}))]  # fmt: skip
    prep = e.prepare([intent("A", opportunity_id="OPEN-1"), intent("B", opportunity_id="OPEN-2")])
    asked = e.reaching_validation(prep, runs, np.ones((2, 2), bool))
    assert asked.tolist() == [[False, True], [True, True]]


# -- the kernel's fees against libs.fees on random ladders ----------------------------------------


def test_kernel_fees_equal_libs_fees_on_random_fills() -> None:
    rng = random.Random(7)
    models = [kalshi_fee_model(), kalshi_fee_model(multiplier="0.5"), polymarket_fee_model("0.02"),
              polymarket_fee_model("0.0725"), polymarket_fee_model("0.03", rounding="floor")]  # fmt: skip
    for _ in range(400):
        model = rng.choice(models)
        kind, a, b, c, d, _most = eng_mod.fee_params(model)  # type: ignore[misc]
        n = rng.randint(1, 6)
        px = np.array(sorted(rng.sample(range(1, 10_000, rng.choice([1, 10, 100])), n)), np.int64)
        sz = np.array([rng.choice([0, rng.randint(1, 500)]) for _ in range(n)], np.int64)
        want, limit = rng.randint(1, 1_500), rng.randint(1, 9_999)
        filled, c_micros, fee, worst = eng_mod._walk(px, sz, False, want, limit, kind, a, b, c, d)
        fills = take([(int(p), int(s)) for p, s in zip(px, sz, strict=True) if s > 0], want, limit)
        assert filled == sum(q for _, q in fills) and c_micros == cost(fills)
        expected = model.taker_fee_levels_micros([p for p, _ in fills], [q for _, q in fills]) if fills else 0
        assert fee == expected, (model, fills)
        assert worst == (fills[-1][0] if fills else 0)
        if isinstance(model, type(kalshi_fee_model())) and (model.taker_num, model.taker_den) == (7, 100):
            assert fee == kalshi_fee(fills)  # and the by-hand rule


def test_the_kernels_have_one_compiled_signature_whatever_the_runs_validation_and_route() -> None:
    """A second signature would be compiled in the middle of a live batch (a second or more)."""
    eng_mod.warm_up()
    e = engine("live")
    prep = e.prepare([intent("A"), intent("B")])
    for nr in (1, 3):
        runs = [run(run_id=f"R{r}", keys_present=frozenset({"kalshi", "polymarket"})) for r in range(nr)]
        wide = np.ones((2, 2 * nr), bool)[:, ::2]  # a strided view
        e.decide(prep, runs, wide, NOW, live=(np.broadcast_to(np.ones((2, 1), bool), (2, nr)), {}))
        decide(engine(), [intent()], runs)
    no_legs = factories._with(intent("C"), {"legs": []})
    elsewhere = factories._with(intent("D"), {"legs": [YES, leg("kalshi", "no", 5_600, instrument="OTHER")]})
    for it in (intent(), no_legs, elsewhere):  # the hot path's route, taken and failing early or at the books
        for e in (engine(), engine("off")):
            e.decide_one(e.prepare_one(it), [run(), run(run_id="R2")], NOW)
    assert len(eng_mod._kernel.signatures) == 1
    assert len(eng_mod._kernel_one.signatures) == 1
    assert len(eng_mod._depth.signatures) == 1
    assert len(eng_mod._row_depth.signatures) == 1


def test_a_run_at_the_pending_settlement_cap_takes_no_new_fill() -> None:
    full = run(pending=eng_mod.MAX_PENDING)
    (out,) = decide(engine(), [intent()], [full])
    assert out.decisions.reason == ["balance"] and not out.trades
    assert out.decisions.detail == [
        "20,000 trades await settlement, the most one run holds: no new fill until some settle"
    ]
    (room,) = decide(engine(), [intent("A"), intent("B")], [run(pending=eng_mod.MAX_PENDING - 1)])
    assert room.decisions.reason == ["taken", "balance"]  # the one free place goes to the first


def test_a_lone_intent_decides_the_same_on_the_hot_paths_single_intent_route_on_random_markets() -> None:
    """`prepare_one` / `decide_one` (the hot path's lone intent) against `prepare` / `decide` (a batch
    of one) on random books, intents and runs: same decisions, details, trades, balances."""
    rng = random.Random(11)
    reasons: set[str] = set()
    taken = broken = 0
    for trial in range(400):
        t_books = [T, T + 40 * MS, T + 65 * MS, T + 90 * MS]
        extra = []
        for ts in rng.sample(t_books, rng.choice([0, 0, 1, 2, 3])):
            asks = sorted((rng.randint(3_800, 4_300), rng.randint(0, 150)) for _ in range(rng.randint(0, 3)))
            bids = sorted(
                ((rng.randint(4_300, 4_700), rng.randint(0, 300)) for _ in range(rng.randint(1, 3))), reverse=True
            )
            extra.append(book(rng.choice(["polymarket", "kalshi"]), ts, bids, asks))
        if rng.random() < 0.25:  # the market moves between the legs: a thin book by leg 1's fill time
            thin = [(4_500, rng.randint(0, 40))]
            extra.append(book("kalshi", T + 65 * MS, thin, [(4_700, 500)]))
            extra.append(book("polymarket", T + 65 * MS, [(3_900, 500)], [(4_000, rng.randint(0, 40))]))
        facts = MarketFacts()
        if rng.random() < 0.1:
            facts.update(factories.market_info("m", instrument="FED", market_id="FED", status="closed"))
        e = engine(rng.choice(["bus", "bus", "off"]), extra=extra, facts=facts)
        inst = rng.choice(["FED"] * 12 + ["OTHER", "", "A B"])
        legs = [leg("polymarket", "yes", rng.randint(3_900, 4_300)), leg("kalshi", "no", rng.randint(5_450, 5_800))]
        k = rng.randrange(2)
        legs[k] = msgspec.structs.replace(legs[k], instrument=inst)
        if rng.random() < 0.5:
            legs.reverse()
        it = factories._with(
            intent(f"I{trial}", size=rng.randint(1, 400), edge=rng.choice([2_000, 40_000, 40_000, 40_000])),
            {"legs": legs, "book_ts": T + rng.choice([0, 0, 0, 30 * MS, 100 * S])},
        )
        runs = [
            run(
                run_id=f"R{r}",
                min_net_edge_micros=rng.choice([1_000, 5_000, 5_000, 20_000]),
                max_leg_micros=rng.choice([300_000, 50_000_000, 1_000_000_000, 1_000_000_000]),
                balance_micros=rng.choice([20_000_000, 10_000_000_000, 10_000_000_000]),
                daily_cap_micros=rng.choice([100_000_000, 5_000_000_000]),
                spent_by_day={T // DAY: rng.choice([0, 60_000_000])},
                pending=rng.choice([0, 0, 0, eng_mod.MAX_PENDING]),
                traded={f"O-I{trial}": T} if rng.random() < 0.15 else {},
            )
            for r in range(rng.randint(1, 4))
        ]
        for out in decide(e, [it], runs):  # asserts the two routes agree
            reasons.update(out.decisions.reason)
            taken += out.taken
            broken += out.broken
    assert taken >= 30 and broken >= 3 and reasons == {*RUN_ORDER[2:], "taken"} - {"exchange_keys"}, (taken, broken)


def test_decide_one_refuses_live_validation_by_name() -> None:
    e = engine("live")
    with pytest.raises(ValueError, match="decide_one cannot validate against live venues"):
        e.decide_one(e.prepare_one(intent()), [run()], NOW)
