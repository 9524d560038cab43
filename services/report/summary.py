"""The run summary: what the pipeline saw, decided, filled and earned, read from ClickHouse."""

from __future__ import annotations

import msgspec

from libs.store import Store
from proto.units import CASH_SCALE


class RunSummary(msgspec.Struct, kw_only=True):
    """One paper run's numbers, from its decisions and trades (and its last status)."""

    run_id: str
    label: str
    state: str
    stop_reason: str = ""
    """Why a stopped or completed run ended: requested, disabled (its user was), duration, max_duration."""
    user_id: str = ""
    decisions: int
    taken: int
    decisions_by_reason: dict[str, int]
    trades: int
    requested_size: int
    matched_size: int
    fill_ratio: float
    decision_latency_p50_ms: float | None
    """Intent made (detect) to decision made (paper), wall clock."""
    decision_latency_p99_ms: float | None
    cost_usd: float
    fees_usd: float
    payout_usd: float
    pnl_usd: float
    starting_usd: float
    balance_usd: float


class Report(msgspec.Struct, kw_only=True):
    """The whole pipeline's summary."""

    opportunities: int
    opportunities_closed: int
    median_span_s: float | None
    intents: int
    runs: list[RunSummary]
    rows: dict[str, int]
    dead_letters: int


def _usd(micros: int | None) -> float:
    return round((micros or 0) / CASH_SCALE, 6)


def build(store: Store) -> Report:
    """Query every table (FINAL, so a replayed insert never counts twice) into a Report."""
    opp = store.query_df(
        "SELECT uniqExact(opportunity_id) AS n, "
        "uniqExactIf(opportunity_id, status = 'closed') AS closed, "
        "medianExactIf((toUnixTimestamp64Nano(closed_at) - toUnixTimestamp64Nano(opened_at)) / 1e9, status = 'closed') "
        "AS span FROM {db}.opportunities FINAL"
    ).row(0, named=True)
    intents = store.query_df("SELECT count() AS n FROM {db}.intents FINAL").item()
    decisions = store.query_df(
        "SELECT run_id, reason, count() AS n, sum(taken) AS taken FROM {db}.decisions FINAL GROUP BY run_id, reason"
    )
    latency = store.query_df(
        "SELECT run_id, quantilesExact(0.5, 0.99)("
        "(toUnixTimestamp64Nano(ts) - toUnixTimestamp64Nano(intent_ts)) / 1e6) AS q "
        "FROM {db}.decisions FINAL GROUP BY run_id"
    )
    latency_by_run = {r["run_id"]: r["q"] for r in latency.iter_rows(named=True)}
    trades = store.query_df(
        "SELECT run_id, count() AS n, sum(requested_size) AS req, sum(matched_size) AS matched, "
        "sum(cost_micros) AS cost, sum(fee_micros) AS fees, sum(payout_micros) AS payout, sum(pnl_micros) AS pnl "
        "FROM {db}.paper_trades FINAL GROUP BY run_id"
    )
    runs = store.query_df("SELECT * FROM {db}.paper_runs FINAL ORDER BY started_at")
    trade_by_run = {r["run_id"]: r for r in trades.iter_rows(named=True)}
    summaries = []
    run_ids = list(dict.fromkeys(runs["run_id"].to_list() + decisions["run_id"].unique().sort().to_list()))
    status_by_run = {r["run_id"]: r for r in runs.iter_rows(named=True)}
    for run_id in run_ids:
        reasons = {
            r["reason"]: int(r["n"]) for r in decisions.filter(decisions["run_id"] == run_id).iter_rows(named=True)
        }
        t = trade_by_run.get(run_id, {})
        st = status_by_run.get(run_id, {})
        req, matched = int(t.get("req") or 0), int(t.get("matched") or 0)
        q = latency_by_run.get(run_id) or [None, None]
        summaries.append(
            RunSummary(
                run_id=run_id,
                label=st.get("label", ""),
                state=st.get("state", "unknown"),
                stop_reason=st.get("stop_reason") or "",
                user_id=st.get("user_id") or "",
                decisions=sum(reasons.values()),
                taken=reasons.get("taken", 0),
                decisions_by_reason=dict(sorted(reasons.items())),
                trades=int(t.get("n") or 0),
                requested_size=req,
                matched_size=matched,
                fill_ratio=round(matched / req, 4) if req else 0.0,
                decision_latency_p50_ms=None if q[0] is None else round(q[0], 3),
                decision_latency_p99_ms=None if q[1] is None else round(q[1], 3),
                cost_usd=_usd(t.get("cost")),
                fees_usd=_usd(t.get("fees")),
                payout_usd=_usd(t.get("payout")),
                pnl_usd=_usd(t.get("pnl")),
                starting_usd=_usd(st.get("starting_micros")),
                balance_usd=_usd(st.get("balance_micros")),
            )
        )
    rows = store.table_counts()
    return Report(
        opportunities=int(opp["n"] or 0),
        opportunities_closed=int(opp["closed"] or 0),
        median_span_s=None if opp["span"] is None or opp["span"] != opp["span"] else round(float(opp["span"]), 1),
        intents=int(intents or 0),
        runs=summaries,
        rows=rows,
        dead_letters=rows.get("dead_letters", 0),
    )


def render(report: Report) -> str:
    """The report as text for a terminal."""
    out = [
        "MarketTwin run report",
        "=====================",
        f"opportunities seen : {report.opportunities} ({report.opportunities_closed} closed, "
        f"median success span {report.median_span_s if report.median_span_s is not None else '-'} s)",
        f"intents            : {report.intents}",
    ]
    for r in report.runs:
        out += [
            f"paper run {r.run_id} [{r.label or '-'}] {r.state}" + (f" ({r.stop_reason})" if r.stop_reason else ""),
            f"  decisions        : {r.decisions} (taken {r.taken})",
            *[f"    {reason:<22}: {n}" for reason, n in r.decisions_by_reason.items()],
            f"  intent->decision : p50 {r.decision_latency_p50_ms} ms, p99 {r.decision_latency_p99_ms} ms",
            f"  trades           : {r.trades}",
            f"  fill ratio       : {r.fill_ratio:.2%} ({r.matched_size} of {r.requested_size} contracts)",
            f"  cost / fees      : ${r.cost_usd:,.2f} / ${r.fees_usd:,.4f}",
            f"  locked P&L       : ${r.pnl_usd:,.4f} (payout ${r.payout_usd:,.2f} at resolution)",
            f"  balance          : ${r.balance_usd:,.2f} of ${r.starting_usd:,.2f}",
        ]
    out.append("rows stored        :")
    out += [f"  {table:<17}: {n}" for table, n in sorted(report.rows.items())]
    return "\n".join(out)
