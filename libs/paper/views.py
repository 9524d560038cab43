"""Runs, trades and decisions as the HTTP API and the live events show them (proto.paper views).

Shared by the paper service (live `simulator:*` events) and the report service (rows read back
from ClickHouse), so both sides show the same numbers the same way.
"""

from __future__ import annotations

import datetime as dt

from proto.events import LegFill, PaperTrade
from proto.paper import (
    CHECKS,
    CheckView,
    DecisionColumns,
    DecisionView,
    LegView,
    RunConfig,
    RunSnapshot,
    RunView,
    TradeStatus,
    TradeView,
)
from proto.units import CASH_PER_PRICE_UNIT, CASH_SCALE, PRICE_SCALE


def usd(micros: int) -> float:
    """Micro-dollars as dollars (exact: every micro-dollar amount below 2^53 is one float)."""
    return round(micros / CASH_SCALE, 6)


def cents(micros: int) -> float:
    return round(micros / (CASH_SCALE / 100), 4)


def iso(ns: int | None) -> str | None:
    """UTC nanoseconds as ISO 8601 with microseconds and a Z, or None."""
    if ns is None:
        return None
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC).replace(microsecond=(ns % 1_000_000_000) // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trade_status(executed_at: int, settled_at: int, now: int) -> TradeStatus:
    """queued before executed_at, executed until settled_at, settled after (the reference's rule)."""
    if now < executed_at:
        return "queued"
    if now < settled_at:
        return "executed"
    return "settled"


def run_view(run: RunConfig, snap: RunSnapshot) -> RunView:
    return RunView(
        run_id=run.run_id,
        label=run.label,
        notes=run.notes,
        status=snap.state,
        stop_reason=snap.stop_reason,
        opportunity_keys=list(run.opportunity_keys),
        filters=run.filters,
        starting_usd=usd(run.starting_micros),
        balance_usd=usd(snap.balance_micros),
        pnl_usd=usd(snap.pnl_micros),
        fees_usd=usd(snap.fees_micros),
        exposure_usd=usd(snap.exposure_micros),
        unsettled_usd=usd(snap.unsettled_micros),
        trade_count=snap.trades,
        decision_count=snap.decisions,
        taken_count=snap.taken,
        broken_count=snap.broken,
        min_net_edge_cents=cents(run.min_net_edge_micros),
        max_leg_usd=usd(run.max_leg_micros),
        daily_cap_usd=usd(run.daily_cap_micros),
        settlement_delay_s=run.settlement_delay_ns / 1e9,
        duration_minutes=run.duration_minutes,
        validation=run.validation,
        started_at=iso(run.started_at) or "",
        ends_at=iso(run.ends_at) or "",
        stopped_at=iso(snap.stopped_at),
    )


def _price(px_units: float) -> float:
    return round(px_units / PRICE_SCALE, 6)


def leg_view(leg: LegFill) -> LegView:
    avg = leg.cost_micros / (leg.matched_size * CASH_PER_PRICE_UNIT) if leg.matched_size else None
    return LegView(
        venue=leg.venue,
        instrument=leg.instrument,
        outcome=leg.outcome,
        side=leg.side,
        requested_size=leg.requested_size,
        matched_size=leg.matched_size,
        fill_pct=leg.fill_pct,
        avg_price=None if avg is None else _price(avg),
        worst_price=_price(leg.worst_px) if leg.matched_size else None,
        cost_usd=usd(leg.cost_micros),
        fee_usd=usd(leg.fee_micros),
    )


def trade_view(trade: PaperTrade, now: int) -> TradeView:
    return TradeView(
        trade_id=trade.id,
        run_id=trade.run_id,
        intent_id=trade.intent_id,
        decision_id=trade.decision_id,
        opportunity_key=trade.opportunity_key,
        status=trade_status(trade.executed_at, trade.settled_at, now),
        requested_size=trade.requested_size,
        matched_size=trade.matched_size,
        fill_pct=trade.fill_pct,
        broken=trade.broken,
        unhedged_size=trade.unhedged_size,
        exposure_usd=usd(trade.exposure_micros),
        cost_usd=usd(trade.cost_micros),
        fees_usd=usd(trade.fee_micros),
        payout_usd=usd(trade.payout_micros),
        pnl_usd=usd(trade.pnl_micros),
        executed_at=iso(trade.executed_at) or "",
        settled_at=iso(trade.settled_at) or "",
        settlement_delay_s=(trade.settled_at - trade.executed_at) / 1e9,
        legs=[leg_view(leg) for leg in trade.legs],
    )


def _run_order() -> tuple[str, ...]:
    names = [c for c in CHECKS if c != "untraded_opportunity"]
    names.insert(names.index("min_net_edge") + 1, "untraded_opportunity")
    return tuple(names)


CHECK_RUN_ORDER: tuple[str, ...] = _run_order()
"""The checks in the order the paper engine runs them: `proto.paper.CHECKS` (which fixes the bit
positions) with `untraded_opportunity` moved to right after `min_net_edge`."""
_RUN_BITS: tuple[tuple[str, int], ...] = tuple((name, 1 << CHECKS.index(name)) for name in CHECK_RUN_ORDER)


def checks_of(checks_run: int, checks_passed: int, failed_detail: str = "") -> list[CheckView]:
    """Every check a decision ran, in the order they ran (`CHECK_RUN_ORDER`), from its two masks;
    the failed one carries the detail."""
    out = []
    for name, bit in _RUN_BITS:
        if checks_run & bit:
            ok = bool(checks_passed & bit)
            out.append(CheckView(name=name, passed=ok, detail="" if ok else failed_detail))
    return out


def decision_view(
    *,
    decision_id: str,
    run_id: str,
    source: str,
    intent_id: str,
    opportunity_id: str,
    opportunity_key: str,
    taken: bool,
    reason: str,
    detail: str,
    checks_run: int,
    checks_passed: int,
    net_edge_per_contract_micros: int,
    size: int,
    ts: int,
    trade_id: str,
) -> DecisionView:
    return DecisionView(
        decision_id=decision_id,
        run_id=run_id,
        decision_source=source,  # type: ignore[arg-type]
        intent_id=intent_id,
        opportunity_id=opportunity_id,
        opportunity_key=opportunity_key,
        taken=taken,
        reason=reason,
        detail=detail,
        checks=checks_of(checks_run, checks_passed, detail),
        net_edge_cents=cents(net_edge_per_contract_micros),
        size=size,
        decided_at=iso(ts) or "",
        trade_id=trade_id,
    )


def decision_views(run_id: str, d: DecisionColumns) -> list[DecisionView]:
    """Every decision of one RunUpdate step."""
    return [
        decision_view(
            decision_id=d.id[i],
            run_id=run_id,
            source=d.source[i],
            intent_id=d.intent_id[i],
            opportunity_id=d.opportunity_id[i],
            opportunity_key=d.opportunity_key[i],
            taken=d.taken[i],
            reason=d.reason[i],
            detail=d.detail[i],
            checks_run=d.checks_run[i],
            checks_passed=d.checks_passed[i],
            net_edge_per_contract_micros=d.net_edge_per_contract_micros[i],
            size=d.size[i],
            ts=d.ts[i],
            trade_id=d.trade_id[i],
        )
        for i in range(len(d))
    ]
