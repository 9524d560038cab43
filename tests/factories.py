"""Event builders for tests: one realistic instance of every event, fields overridable.

Each builder takes the event id first and keyword overrides for any field, so a test
states only what it cares about.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.events import (
    BarBatch,
    BookBatch,
    DeadLetter,
    Intent,
    Leg,
    LegFill,
    MarketInfo,
    Opportunity,
    PaperTrade,
    RawBatch,
    TickRange,
    TradeBatch,
)
from proto.paper import CHECK_BIT, BalanceChange, DecisionColumns, PendingSettlement, RunConfig, RunSnapshot, RunUpdate

T0 = 1_732_000_000_123_456_789  # 2024-11-19, UTC ns


def _with(event: Any, changes: dict[str, Any]) -> Any:
    return msgspec.structs.replace(event, **changes) if changes else event


def book(id: str, rows: int = 3, levels: int = 2, ts: int = T0, step: int = 1, **changes: Any) -> BookBatch:
    flat = [7_000 + 10 * r + lvl for r in range(rows) for lvl in range(levels)]
    return _with(
        BookBatch(
            id=id,
            ts=ts + 10**9,
            venue="kalshi",
            source="live",
            levels=levels,
            instruments=["KX-A", "KX-B"],
            inst_idx=[r % 2 for r in range(rows)],
            book_ts=[ts + r * step for r in range(rows)],
            bid_px=flat,
            bid_sz=[v - 6_000 for v in flat],
            ask_px=[v + 500 for v in flat],
            ask_sz=[0] * len(flat),
        ),
        changes,
    )


def trades(id: str, **changes: Any) -> TradeBatch:
    return _with(
        TradeBatch(
            id=id,
            ts=T0 + 5,
            venue="polymarket",
            source="replay",
            instruments=["PM-X"],
            inst_idx=[0, 0],
            trade_ts=[T0, T0 + 1],
            px=[4_700, 4_710],
            size=[3, 4],
            aggressor=[1, -1],
        ),
        changes,
    )


def bars(id: str, **changes: Any) -> BarBatch:
    return _with(
        BarBatch(
            id=id,
            ts=T0 + 7,
            venue="polygon",
            source="import",
            timeframe="1min",
            instruments=["AAPL", "BTC-PERP"],
            inst_idx=[0, 0, 1],
            bar_ts=[T0, T0 + 60 * 10**9, T0],
            open=[185.5, 185.6, 46319.0],
            high=[186.25, 185.9, 46385.0],
            low=[185.3, 185.1, 46319.0],
            close=[186.0, 185.2, 46377.0],
            volume=[1250.0, 900.0, 2300413.7295],
        ),
        changes,
    )


def raw(id: str, **changes: Any) -> RawBatch:
    return _with(
        RawBatch(
            id=id,
            ts=T0 + 9,
            venue="kalshi",
            source="live",
            recv_ts=[T0, T0 + 1],
            endpoint=["GET /trade-api/v2/markets/KX-A/orderbook", "GET /trade-api/v2/markets?limit=1"],
            status=[200, 429],
            body=[b'{"orderbook": {"yes": [[45, 10]], "no": null}}', b'{"error": "too many requests"}'],
        ),
        changes,
    )


def market_info(id: str, **changes: Any) -> MarketInfo:
    return _with(
        MarketInfo(
            id=id,
            ts=T0 + 11,
            venue="kalshi",
            instrument="KX-A",
            market_id="KX-A",
            title="Will A happen?",
            status="active",
            tick_size=10,
            tick_ranges=[TickRange(start=0, end=1_000, step=10), TickRange(start=1_000, end=9_000, step=100)],
            min_order_size=1.0,
            close_ts=T0 + 86_400_000_000_000,
            fee_note="taker ceil(0.07 C P (1-P))",
        ),
        changes,
    )


LEG = Leg(venue="kalshi", instrument="KX-A", outcome="yes", size=10, limit_px=4_500, cost_micros=4, fee_micros=1)


def opportunity(id: str, closed_at: int | None = None, **changes: Any) -> Opportunity:
    return _with(
        Opportunity(
            id=id,
            ts=T0 + 1,
            opportunity_id="opp-1",
            opportunity_key="kalshi:KX-A|polymarket:PM-X",
            strategy="cross_venue_arb",
            status="closed" if closed_at else "opened",
            legs=[LEG, msgspec.structs.replace(LEG, venue="polymarket", outcome="no")],
            size=10,
            gross_cost_micros=9_500_000,
            fees_micros=70_000,
            net_edge_micros=430_000,
            net_edge_per_contract_micros=43_000,
            book_ts=T0,
            opened_at=T0 - 7,
            closed_at=closed_at,
        ),
        changes,
    )


def intent(id: str, **changes: Any) -> Intent:
    return _with(
        Intent(
            id=id,
            ts=T0 + 2,
            opportunity_id="opp-1",
            opportunity_key="kalshi:KX-A|polymarket:PM-X",
            strategy="cross_venue_arb",
            legs=[LEG],
            size=10,
            net_edge_micros=430_000,
            net_edge_per_contract_micros=43_000,
            book_ts=T0,
        ),
        changes,
    )


def decisions(run_id: str = "run-1", n: int = 2, first: int = 0) -> DecisionColumns:
    """`n` decisions of one run on intents int-<first>…: the first taken, the others skipped at the daily cap."""
    ran_all = sum(CHECK_BIT.values())
    cap_fail = ran_all & ~(CHECK_BIT["liquidity"] | CHECK_BIT["fill_edge"])
    return DecisionColumns(
        id=[f"{run_id}:int-{first + i}" for i in range(n)],
        ts=[T0 + 3 + i for i in range(n)],
        source=["intent"] * n,
        intent_id=[f"int-{first + i}" for i in range(n)],
        opportunity_id=[f"opp-{i}" for i in range(n)],
        opportunity_key=["kalshi:KX-A|polymarket:PM-X"] * n,
        taken=[i == 0 for i in range(n)],
        reason=["taken" if i == 0 else "daily_cap" for i in range(n)],
        checks_run=[ran_all if i == 0 else cap_fail for i in range(n)],
        checks_passed=[ran_all if i == 0 else cap_fail & ~CHECK_BIT["daily_cap"] for i in range(n)],
        detail=["7 of 10" if i == 0 else 'daily cap: it\'s "spent" $5,000.00' for i in range(n)],
        net_edge_per_contract_micros=[44_000] * n,
        size=[10] + [0] * (n - 1),
        intent_ts=[T0 + 2 + i for i in range(n)],
        book_ts=[T0] * n,
        trade_id=[f"{run_id}:int-{first}:T"] + [""] * (n - 1),
    )


def run_config(run_id: str = "run-1", **changes: Any) -> RunConfig:
    return _with(
        RunConfig(
            run_id=run_id,
            user_id="u1",
            label="default",
            notes="first try",
            opportunity_keys=["kalshi:KX-A|polymarket:PM-X"],
            starting_micros=10_000_000_000,
            min_net_edge_micros=5_000,
            max_leg_micros=1_000_000_000,
            daily_cap_micros=5_000_000_000,
            settlement_delay_ns=2 * 10**9,
            duration_minutes=60.0,
            started_at=T0,
            ends_at=T0 + 3600 * 10**9,
            keys_present=["kalshi"],
        ),
        changes,
    )


def run_update(
    id: str, ts: int, state: str = "running", version: int = 1, stopped_at: int | None = None, **changes: Any
) -> RunUpdate:
    """One step of run-1: two decisions, one trade, its fill and the run's snapshot after them."""
    trade = paper_trade("run-1:int-0:T")
    return _with(
        RunUpdate(
            id=id,
            ts=ts,
            run=run_config(),
            snapshot=RunSnapshot(
                version=version,
                state=state,  # type: ignore[arg-type]
                stop_reason="requested" if state == "stopped" else "",
                stopped_at=stopped_at,
                balance_micros=10_000_000_000 - 6_690_000,
                fees_micros=40_000,
                unsettled_micros=7_000_000,
                decisions=2,
                taken=1,
                trades=1,
                spent_by_day={20046: 6_690_000},
                pending=[
                    PendingSettlement(
                        trade_id=trade.id, settled_at=trade.settled_at, payout_micros=7_000_000, pnl_micros=310_000
                    )
                ],
                intent_seq=7,
            ),
            decisions=decisions(),
            trades=[trade],
            balance_changes=[
                BalanceChange(
                    id=f"{trade.id}:fill",
                    ts=trade.executed_at,
                    kind="fill",
                    trade_id=trade.id,
                    amount_micros=-6_690_000,
                    balance_micros=10_000_000_000 - 6_690_000,
                    pnl_micros=0,
                )
            ],
        ),
        changes,
    )


def paper_trade(id: str, **changes: Any) -> PaperTrade:
    fill = LegFill(
        venue="kalshi",
        instrument="KX-A",
        outcome="yes",
        side="buy",
        requested_size=10,
        matched_size=7,
        cost_micros=3_150_000,
        fee_micros=20_000,
        worst_px=4_500,
    )
    return _with(
        PaperTrade(
            id=id,
            ts=T0 + 4,
            run_id="run-1",
            intent_id="int-1",
            decision_id="dec-1",
            opportunity_key="kalshi:KX-A|polymarket:PM-X",
            requested_size=10,
            matched_size=7,
            fill_pct=70.0,
            legs=[fill],
            cost_micros=6_650_000,
            fee_micros=40_000,
            payout_micros=7_000_000,
            pnl_micros=310_000,
            executed_at=T0 + 4,
            settled_at=T0 + 4 + 2 * 10**9,
        ),
        changes,
    )


def dead_letter(subject: str, **changes: Any) -> DeadLetter:
    return _with(
        DeadLetter(consumer="recorder-md", subject=subject, reason="bad tag", data=b"\x00\x01raw", ts=T0, deliveries=3),
        changes,
    )


def hedged_intent(
    id: str,
    instrument: str,
    *,
    yes_limit: int,
    no_limit: int,
    size: int,
    edge_per_contract: int,
    book_ts: int,
    ts: int | None = None,
    yes_venue: str = "polymarket",
    no_venue: str = "kalshi",
) -> Intent:
    """An arbitrage intent: buy YES on one venue and NO on the other, `size` contracts each."""
    legs = [
        Leg(venue=v, instrument=instrument, outcome=o, size=size, limit_px=px, cost_micros=0, fee_micros=0)
        for v, o, px in ((yes_venue, "yes", yes_limit), (no_venue, "no", no_limit))
    ]
    return Intent(
        id=id,
        ts=book_ts if ts is None else ts,
        opportunity_id="O",
        opportunity_key="k",
        strategy="xarb",
        legs=legs,
        size=size,
        net_edge_micros=edge_per_contract * size,
        net_edge_per_contract_micros=edge_per_contract,
        book_ts=book_ts,
    )
