"""The success-span report's rules (services/report/spans.py) on hand-made rows, expected values by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from services.report.spans import (
    NO_INTENT,
    NO_RUN,
    NOT_DECIDED,
    NOT_RECORDED,
    DecisionRow,
    OppRow,
    Span,
    TradeRow,
    build_report,
    merge_spans,
    why_missed,
)

S = 1_000_000_000
T = 1_700_000_000 * S  # 2023-11-14T22:13:20Z: the window is [T, T + 1 h]
TO = T + 3600 * S


def when(seconds: float) -> str:
    return (dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def opp(oid: str, key: str, opened_s: int, closed_s: int | None, per_contract: int, net: int) -> OppRow:
    closed = None if closed_s is None else T + closed_s * S
    return OppRow(
        opportunity_id=oid,
        opportunity_key=key,
        opened_at=T + opened_s * S,
        closed_at=closed,
        last_ts=closed if closed is not None else T + (opened_s + 100) * S,
        peak_edge_per_contract_micros=per_contract,
        peak_net_edge_micros=net,
    )


OPPS = [
    # key A: a1 and a2 are 90 s apart (≤ 120: one span A1), a3 opens 200 s after a2 closed (span A2)
    opp("a1", "A", 100, 160, 40_000, 400_000),
    opp("a2", "A", 250, 300, 50_000, 250_000),
    opp("a3", "A", 500, 520, 35_000, 700_000),
    # key B: b0 ended long before the window; b1 closed 50 s before it, b2 opens 80 s later: span B1
    opp("b0", "B", -1000, -900, 60_000, 900_000),
    opp("b1", "B", -200, -50, 60_000, 600_000),
    opp("b2", "B", 30, 40, 45_000, 100_000),
    # key C: c_low is under 3 cents so it does not bridge c1 (ends 1010) and c2 (opens 1200): two spans
    opp("c1", "C", 1000, 1010, 40_000, 300_000),
    opp("c_low", "C", 1050, 1100, 10_000, 50_000),
    opp("c2", "C", 1200, 1230, 45_000, 200_000),
    # key D: still open, exactly at the threshold
    opp("d1", "D", 3000, None, 30_000, 100_000),
]
TRADES = [
    TradeRow(trade_id="t1", opportunity_id="a2", opportunity_key="A", executed_at=T + 255 * S, pnl_micros=150_000),
    TradeRow(trade_id="t1b", opportunity_id="a1", opportunity_key="A", executed_at=T + 110 * S, pnl_micros=-20_000),
    # no opportunity id: linked to B1 by key, 20 s after it closed (within max_gap_s)
    TradeRow(trade_id="t2", opportunity_id="", opportunity_key="B", executed_at=T + 60 * S, pnl_micros=90_000),
    # an opportunity id nobody recorded, 180 s after A2 closed: past the gap, catches nothing
    TradeRow(trade_id="t3", opportunity_id="ghost", opportunity_key="A", executed_at=T + 700 * S, pnl_micros=5_000),
    # a known but sub-threshold opportunity, inside C1's time: not C1's
    TradeRow(trade_id="t4", opportunity_id="c_low", opportunity_key="C", executed_at=T + 1005 * S, pnl_micros=7_000),
]


def dec(oid: str, source: str, reason: str, taken: bool = False) -> DecisionRow:
    return DecisionRow(opportunity_id=oid, source=source, taken=taken, reason=reason)


DECISIONS = [
    dec("a2", "intent", "taken", taken=True),
    dec("a3", "success_span", "eligible"),
    dec("a3", "intent", "balance"),
    dec("a3", "intent", "balance"),
    dec("a3", "intent", "daily_cap"),
    dec("c1", "success_span", "min_net_edge"),
    dec("c2", "intent", "daily_cap"),
    dec("c2", "intent", "exchange_validation"),  # a tie: exchange_validation runs before daily_cap
]
WITH_INTENT = {"a2", "a3", "c2"}


def report(limit: int = 100) -> object:
    return build_report(
        OPPS, TRADES, DECISIONS, WITH_INTENT, hours=1.0, max_gap_s=120.0, min_edge_cents=3.0, to_ns=TO, limit=limit
    )


def test_spans_merge_by_gap_and_threshold_and_keep_the_window() -> None:
    r = report()
    got = {tuple(s.opportunity_ids): s for s in r.spans}  # type: ignore[attr-defined]
    assert sorted(got) == [("a1", "a2"), ("a3",), ("b1", "b2"), ("c1",), ("c2",), ("d1",)]
    a1 = got[("a1", "a2")]
    assert (a1.opened_at, a1.closed_at, a1.duration_s) == (when(100), when(300), 200.0)
    assert a1.peak_edge_cents == 5.0  # the higher of 4 and 5 cents
    assert a1.available_usd == 0.65  # $0.40 + $0.25: each merged opportunity was a chance of its own
    b1 = got[("b1", "b2")]
    assert (b1.opened_at, b1.closed_at, b1.duration_s) == (when(-200), when(40), 240.0)
    d1 = got[("d1",)]
    assert d1.closed_at is None and d1.duration_s == 3600.0 - 3000.0  # open: runs to the window end


def test_caught_spans_and_captured_edge() -> None:
    r = report()
    got = {tuple(s.opportunity_ids): s for s in r.spans}  # type: ignore[attr-defined]
    a1, b1 = got[("a1", "a2")], got[("b1", "b2")]
    assert a1.caught and sorted(a1.trade_ids) == ["t1", "t1b"] and a1.captured_usd == 0.13  # 0.15 - 0.02
    assert b1.caught and b1.trade_ids == ["t2"] and b1.captured_usd == 0.09
    for key in [("a3",), ("c1",), ("c2",), ("d1",)]:
        assert not got[key].caught and got[key].trade_ids == [] and got[key].captured_usd == 0.0


def test_missed_spans_say_why() -> None:
    r = report()
    got = {tuple(s.opportunity_ids): s for s in r.spans}  # type: ignore[attr-defined]
    assert got[("a3",)].reason == "balance"  # the most frequent failed intent check
    assert got[("a3",)].decision_reasons == {"balance": 2, "daily_cap": 1, "eligible": 1}
    assert got[("c1",)].reason == NO_INTENT  # its start was refused but detect never emitted an intent
    assert got[("c2",)].reason == "exchange_validation"
    assert got[("d1",)].reason == NO_RUN and got[("d1",)].decision_reasons == {}
    assert got[("a1", "a2")].reason == "" and got[("a1", "a2")].decision_reasons == {"taken": 1}


def test_totals_and_listing() -> None:
    r = report(limit=3)
    # available, each merged opportunity counted: 0.40 + 0.25 (a1, a2) + 0.70 (a3) + 0.60 + 0.10 (b1, b2)
    # + 0.30 (c1) + 0.20 (c2) + 0.10 (d1)
    assert r.edge_available_usd == 2.65  # type: ignore[attr-defined]
    assert r.edge_captured_usd == 0.22  # type: ignore[attr-defined]  # 0.13 + 0.09
    assert r.capture_pct == round(100 * 0.22 / 2.65, 4) == 8.3019  # type: ignore[attr-defined]
    assert (r.spans_total, r.caught, r.missed) == (6, 2, 4)  # type: ignore[attr-defined]
    assert r.missed_by_reason == {"balance": 1, "exchange_validation": 1, NO_INTENT: 1, NO_RUN: 1}  # type: ignore[attr-defined]
    # newest first, cut to the limit; totals still cover all six
    assert [s.opportunity_ids for s in r.spans] == [["d1"], ["c2"], ["c1"]]  # type: ignore[attr-defined]
    assert r.spans_listed == 3  # type: ignore[attr-defined]
    assert r.window.from_ == when(0) and r.window.to == when(3600)  # type: ignore[attr-defined]


def test_a_smaller_gap_splits_and_a_higher_threshold_drops() -> None:
    spans = merge_spans(OPPS, min_edge_micros=30_000, max_gap_ns=60 * S, to_ns=TO)
    ids = sorted(tuple(s.opportunity_ids) for s in spans)
    assert ("a1",) in ids and ("a2",) in ids  # 90 s apart: no longer merged
    assert ("b1",) in ids and ("b2",) in ids
    spans = merge_spans(OPPS, min_edge_micros=45_000, max_gap_ns=120 * S, to_ns=TO)
    assert sorted(tuple(s.opportunity_ids) for s in spans) == [("a2",), ("b0",), ("b1", "b2"), ("c2",)]


def test_touching_spans_merge_at_zero_gap() -> None:
    rows = [opp("x1", "X", 0, 10, 40_000, 1), opp("x2", "X", 10, 20, 40_000, 2), opp("x3", "X", 21, 30, 40_000, 3)]
    spans = merge_spans(rows, min_edge_micros=0, max_gap_ns=0, to_ns=TO)
    assert [s.opportunity_ids for s in spans] == [["x1", "x2"], ["x3"]]


def _span(*ids: str) -> Span:
    return Span(
        opportunity_key="K",
        opportunity_ids=list(ids),
        opened_at=T,
        end=T + S,
        open=False,
        peak_edge_per_contract_micros=1,
        available_micros=1,
    )


@pytest.mark.parametrize(
    ("decisions", "with_intent", "reason"),
    [
        ([], {"o"}, NO_RUN),
        ([dec("o", "success_span", "eligible")], set(), NO_INTENT),
        ([dec("o", "success_span", "eligible")], {"o"}, NOT_DECIDED),
        ([dec("o", "success_span", "min_net_edge")], {"o"}, "min_net_edge"),
        ([dec("o", "intent", "taken", taken=True)], {"o"}, NOT_RECORDED),
        # an intent decision proves an intent existed even without its row
        ([dec("o", "intent", "liquidity"), dec("o", "success_span", "min_net_edge")], set(), "liquidity"),
        ([dec("o", "intent", "daily_cap"), dec("o", "intent", "daily_cap"), dec("o", "intent", "balance")], set(),
         "daily_cap"),
    ],
)  # fmt: skip
def test_why_missed(decisions: list[DecisionRow], with_intent: set[str], reason: str) -> None:
    assert why_missed(_span("o"), decisions, with_intent) == reason


def test_several_runs_on_one_span_count_the_best_run_not_the_sum() -> None:
    """Five runs trading the same intent would sum to 5x the edge; the report takes the best single run."""
    rows = [opp("m1", "M", 100, 200, 50_000, 500_000)]  # $0.50 available
    trades = [
        TradeRow(trade_id=f"t{i}", run_id=f"r{i}", opportunity_id="m1", opportunity_key="M",
                 executed_at=T + 150 * S, pnl_micros=pnl)
        for i, pnl in enumerate([300_000, 450_000, 100_000, -50_000, 450_000])
    ] + [
        # r0 also caught the span a second time (by key, no opportunity id): r0 = 0.30 + 0.20 = 0.50
        TradeRow(trade_id="t0b", run_id="r0", opportunity_id="", opportunity_key="M",
                 executed_at=T + 190 * S, pnl_micros=200_000),
    ]  # fmt: skip
    r = build_report(rows, trades, [], set(), hours=1.0, max_gap_s=120.0, min_edge_cents=3.0, to_ns=TO, limit=10)
    (span,) = r.spans
    assert sorted(span.trade_ids) == ["t0", "t0b", "t1", "t2", "t3", "t4"]  # every run's trades are listed
    assert span.captured_usd == 0.5 and span.captured_run_id == "r0"  # r0: 0.50 > r1 = r4: 0.45
    assert r.edge_captured_usd == 0.5 and r.capture_pct == 100.0  # the sum would be 1.55: 310 %
    assert r.window.run_id is None
    # a tie between runs goes to the smallest run id; a losing-only span captures its best (least bad) run
    tie = [TradeRow(trade_id=f"x{i}", run_id=rid, opportunity_id="m1", opportunity_key="M", executed_at=T + 150 * S,
                    pnl_micros=pnl) for i, (rid, pnl) in enumerate([("rb", 100_000), ("ra", 100_000)])]  # fmt: skip
    (span,) = build_report(
        rows, tie, [], set(), hours=1.0, max_gap_s=120.0, min_edge_cents=3.0, to_ns=TO, limit=10
    ).spans
    assert (span.captured_run_id, span.captured_usd) == ("ra", 0.1)
    losers = [
        TradeRow(trade_id=f"l{i}", run_id=f"r{i}", opportunity_id="m1", opportunity_key="M",
                 executed_at=T + 150 * S, pnl_micros=pnl)
        for i, pnl in enumerate([-300_000, -100_000])
    ]  # fmt: skip
    (span,) = build_report(
        rows, losers, [], set(), hours=1.0, max_gap_s=120.0, min_edge_cents=3.0, to_ns=TO, limit=10
    ).spans
    assert span.caught and (span.captured_run_id, span.captured_usd) == ("r1", -0.1)


def test_no_trades_means_no_captured_run() -> None:
    (span,) = build_report(
        [opp("m1", "M", 100, 200, 50_000, 500_000)], [], [], set(), hours=1.0, max_gap_s=120.0,
        min_edge_cents=3.0, to_ns=TO, limit=10, run_id="r7",
    ).spans  # fmt: skip
    assert span.captured_run_id is None and span.captured_usd == 0.0 and not span.caught
