"""A paper run's decision on one intent: safety checks, then a virtual fill against the books.

Pure and synchronous (no bus), so the service stays thin and the rules are unit-tested.
Checks run in order and every one is recorded; the first that fails is the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from libs.book import walk
from libs.bookstate import Books
from libs.fees import FeeModel
from libs.ids import new_id
from proto.events import Check, Decision, Intent, LegFill, PaperTrade, RunStatus
from proto.units import CASH_PER_PRICE_UNIT, CASH_SCALE, PRICE_SCALE

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass
class Run:
    """One simulator run: thresholds, balances and counters, updated by every decision."""

    run_id: str
    label: str
    starting_micros: int
    min_net_edge_micros: int
    max_leg_micros: int
    daily_cap_micros: int
    settlement_delay_ns: int
    started_at: int
    balance_micros: int | None = None
    pnl_micros: int = 0
    fees_micros: int = 0
    decisions: int = 0
    taken: int = 0
    trades: int = 0
    state: str = "running"
    stopped_at: int | None = None
    spent_by_day: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.balance_micros is None:
            self.balance_micros = self.starting_micros

    def status(self, ts: int) -> RunStatus:
        """The run as a RunStatus event."""
        return RunStatus(
            id=new_id(),
            ts=ts,
            run_id=self.run_id,
            state=self.state,  # type: ignore[arg-type]
            label=self.label,
            starting_micros=self.starting_micros,
            balance_micros=self.balance_micros,
            pnl_micros=self.pnl_micros,
            fees_micros=self.fees_micros,
            decisions=self.decisions,
            taken=self.taken,
            trades=self.trades,
            min_net_edge_micros=self.min_net_edge_micros,
            max_leg_micros=self.max_leg_micros,
            daily_cap_micros=self.daily_cap_micros,
            started_at=self.started_at,
            stopped_at=self.stopped_at,
        )


def _max_size_for_leg(max_leg_micros: int, limit_px: int) -> int:
    """Most contracts whose worst-case cost (size x limit price) fits in the max leg."""
    per_contract = limit_px * CASH_PER_PRICE_UNIT
    return max_leg_micros // per_contract if per_contract > 0 else 0


def decide(
    run: Run, intent: Intent, books: Books, fees: dict[str, FeeModel], now: int
) -> tuple[Decision, PaperTrade | None]:
    """Check the intent against the run's limits, fill it against `books`, update the run."""
    checks: list[Check] = []

    def fail(name: str, detail: str) -> tuple[Decision, None]:
        checks.append(Check(name=name, passed=False, detail=detail))
        return _decision(run, intent, checks, False, name, now), None

    if len(intent.legs) < 1:
        return fail("has_orders", "the intent has no legs")
    checks.append(Check(name="has_orders", passed=True, detail=f"{len(intent.legs)} legs"))

    problem = _pair_problem(intent, fees)
    if problem:
        return fail("hedged_pair", problem)
    checks.append(Check(name="hedged_pair", passed=True, detail="buy YES + buy NO, equal contracts"))

    if intent.net_edge_per_contract_micros < run.min_net_edge_micros:
        return fail(
            "min_net_edge",
            f"net edge {intent.net_edge_per_contract_micros / 1e4:.2f}c/contract < "
            f"minimum {run.min_net_edge_micros / 1e4:.2f}c",
        )
    checks.append(Check(name="min_net_edge", passed=True, detail=f"{intent.net_edge_per_contract_micros / 1e4:.2f}c"))

    missing = [f"{leg.venue}:{leg.instrument}" for leg in intent.legs if not leg.instrument or not leg.venue]
    if missing:
        return fail("instrument_ids", f"legs without venue or instrument: {missing}")
    checks.append(Check(name="instrument_ids", passed=True))

    size = min(_max_size_for_leg(run.max_leg_micros, leg.limit_px) for leg in intent.legs)
    size = min(size, intent.size)
    if size <= 0:
        return fail("max_leg", f"not one contract fits the max leg of ${run.max_leg_micros / CASH_SCALE:,.2f}")
    detail = f"size {size}" + (f" (cut from {intent.size} by the max leg)" if size < intent.size else "")
    checks.append(Check(name="max_leg", passed=True, detail=detail))

    ladders = []
    used = []
    for leg in intent.legs:
        book = books.get((leg.venue, leg.instrument))
        if book is None:
            return fail("book_present", f"no book held for {leg.venue}:{leg.instrument}")
        ladders.append(book.ladder(leg.outcome))
        used.append(f"{leg.venue}@{book.book_ts}")
    checks.append(Check(name="book_present", passed=True, detail="books " + ", ".join(used)))

    worst_cost = sum(size * leg.limit_px * CASH_PER_PRICE_UNIT for leg in intent.legs)
    worst_fees = sum(fees[leg.venue].taker_fee_micros(leg.limit_px, size) for leg in intent.legs)
    need = worst_cost + worst_fees
    if need > run.balance_micros:
        return fail("balance", f"needs ${need / CASH_SCALE:,.2f}, balance ${run.balance_micros / CASH_SCALE:,.2f}")
    checks.append(Check(name="balance", passed=True))

    day = intent.book_ts // NS_PER_DAY
    spent = run.spent_by_day.get(day, 0)
    if spent + need > run.daily_cap_micros:
        return fail(
            "daily_cap",
            f"${(spent + need) / CASH_SCALE:,.2f} would pass the daily cap ${run.daily_cap_micros / CASH_SCALE:,.2f}",
        )
    checks.append(Check(name="daily_cap", passed=True))

    # Equal contracts on every leg: the most that every book can fill within its limit price.
    fillable = min(
        int(walk(px, sz, size, leg.limit_px).filled) for (px, sz), leg in zip(ladders, intent.legs, strict=True)
    )
    if fillable <= 0:
        return fail("liquidity", "no book has depth left within the intent's limit prices")
    checks.append(Check(name="liquidity", passed=True, detail=f"{fillable} of {size} fillable"))

    fills = []
    for (px, sz), leg in zip(ladders, intent.legs, strict=True):
        w = walk(px, sz, fillable, leg.limit_px)
        fee = fees[leg.venue].taker_fee_levels_micros(w.level_px, w.level_qty)
        fills.append(
            LegFill(
                venue=leg.venue,
                instrument=leg.instrument,
                outcome=leg.outcome,
                side=leg.side,
                requested_size=size,
                matched_size=int(w.filled),
                cost_micros=int(w.cost_micros),
                fee_micros=int(fee),
                worst_px=int(w.worst_px),
            )
        )
    cost = sum(f.cost_micros for f in fills)
    fee_total = sum(f.fee_micros for f in fills)
    payout = fillable * PRICE_SCALE * CASH_PER_PRICE_UNIT
    fill_edge = (payout - cost - fee_total) // fillable
    if fill_edge < run.min_net_edge_micros:
        return fail(
            "fill_edge",
            f"the fill nets {fill_edge / 1e4:.2f}c/contract after fees < minimum {run.min_net_edge_micros / 1e4:.2f}c",
        )
    checks.append(Check(name="fill_edge", passed=True, detail=f"{fill_edge / 1e4:.2f}c/contract"))
    decision = _decision(run, intent, checks, True, "taken", now)
    trade = PaperTrade(
        id=f"{decision.id}-T",
        ts=now,
        run_id=run.run_id,
        intent_id=intent.id,
        decision_id=decision.id,
        opportunity_key=intent.opportunity_key,
        requested_size=size,
        matched_size=fillable,
        fill_pct=round(100.0 * fillable / size, 4),
        legs=fills,
        cost_micros=cost,
        fee_micros=fee_total,
        payout_micros=payout,
        pnl_micros=payout - cost - fee_total,
        executed_at=now,
        settled_at=now + run.settlement_delay_ns,
    )
    run.balance_micros -= cost + fee_total
    run.pnl_micros += trade.pnl_micros
    run.fees_micros += fee_total
    run.spent_by_day[day] = spent + cost + fee_total
    run.taken += 1
    run.trades += 1
    return decision, trade


def _pair_problem(intent: Intent, fees: dict[str, FeeModel]) -> str:
    """Why the intent is not a hedged binary pair (one YES and one NO bought), or ''."""
    if len(intent.legs) != 2:
        return f"a hedged pair has 2 legs, this intent has {len(intent.legs)}"
    if sorted(leg.outcome for leg in intent.legs) != ["no", "yes"]:
        return f"outcomes {[leg.outcome for leg in intent.legs]} are not one YES and one NO"
    for i, leg in enumerate(intent.legs):
        if leg.side != "buy":
            return f"leg {i} side {leg.side!r}: the paper trader buys both legs"
        if not 0 < leg.limit_px < PRICE_SCALE:
            return f"leg {i} limit_px={leg.limit_px} is outside (0, {PRICE_SCALE})"
        if leg.venue not in fees:
            return f"leg {i} venue {leg.venue!r} has no fee model"
    if intent.size <= 0:
        return f"size={intent.size} must be positive"
    return ""


def _decision(run: Run, intent: Intent, checks: list[Check], taken: bool, reason: str, now: int) -> Decision:
    run.decisions += 1
    return Decision(
        id=f"{run.run_id}-{intent.id}",  # one decision per (run, intent): a redelivered intent dedups
        ts=now,
        run_id=run.run_id,
        intent_id=intent.id,
        opportunity_key=intent.opportunity_key,
        decision_source="intent",
        taken=taken,
        reason=reason,
        checks=list(checks),
        intent_ts=intent.ts,
        book_ts=intent.book_ts,
    )
