"""ClickHouse reads behind the simulator API, turned into the API's views (proto.paper, libs.paper.views).

Every read is scoped to one user: a run belongs to the user named in its `paper_runs` row, and a
trade or decision is the user's when its run is (`run_id IN (the user's runs)`), so nothing
another user's run recorded can come back, whatever a row's own `user_id` says. Tables are
ReplacingMergeTree and read with FINAL (the latest row of a run; a redelivered step counts once).
SQL is parameterised (`{name:Type}`), `{db}` is the store's database. Functions are sync (the
Store is); the routes call them in a thread.

Times come back from ClickHouse as UTC nanoseconds (`toUnixTimestamp64Nano`), so the rows rebuild
the exact `RunConfig`/`RunSnapshot`/`PaperTrade` values the paper service published, and the
views are made by the same functions the live events use.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from libs.paper.views import cents, decision_view, iso, run_view, trade_view, usd
from libs.store import Store
from proto.events import Leg, LegFill, PaperTrade
from proto.paper import DecisionView, RunConfig, RunFilters, RunSnapshot, RunView, TradeView
from proto.units import PRICE_SCALE
from services.report.spans import DecisionRow, OppRow, TradeRow

TradeStatusFilter = Literal["queued", "executed", "settled"]

USER_RUNS = "SELECT run_id FROM {db}.paper_runs FINAL WHERE user_id = {user:String}"
"""The user's run ids: the only runs whose trades and decisions a user may read."""

_RUN_COLS = (
    "run_id, user_id, state, label, notes, opportunity_keys, filters_json, starting_micros, balance_micros, "
    "pnl_micros, fees_micros, decisions, taken, trades, broken, min_net_edge_micros, max_leg_micros, "
    "daily_cap_micros, settlement_delay_ns, duration_minutes, validation, keys_present, stop_reason, "
    "exposure_micros, unsettled_micros, version, toUnixTimestamp64Nano(started_at) AS started_ns, "
    "toUnixTimestamp64Nano(ends_at) AS ends_ns, toUnixTimestamp64Nano(stopped_at) AS stopped_ns"
)
_TRADE_COLS = (
    "id, run_id, user_id, intent_id, decision_id, opportunity_id, opportunity_key, requested_size, matched_size, "
    "fill_pct, cost_micros, fee_micros, payout_micros, pnl_micros, legs_json, broken, unhedged_size, "
    "exposure_micros, net_edge_per_contract_micros, toUnixTimestamp64Nano(ts) AS ts_ns, "
    "toUnixTimestamp64Nano(executed_at) AS executed_ns, toUnixTimestamp64Nano(settled_at) AS settled_ns"
)
_DECISION_COLS = (
    "id, run_id, decision_source, intent_id, opportunity_id, opportunity_key, taken, reason, detail, checks_run, "
    "checks_passed, net_edge_per_contract_micros, size, trade_id, toUnixTimestamp64Nano(ts) AS ts_ns"
)
_STATUS_SQL: dict[str, str] = {
    "queued": "executed_at > fromUnixTimestamp64Nano({now:Int64}, 'UTC')",
    "executed": (
        "executed_at <= fromUnixTimestamp64Nano({now:Int64}, 'UTC') "
        "AND settled_at > fromUnixTimestamp64Nano({now:Int64}, 'UTC')"
    ),
    "settled": "settled_at <= fromUnixTimestamp64Nano({now:Int64}, 'UTC')",
}
"""A trade's status as `libs.paper.views.trade_status` derives it, as SQL over the time of asking."""

_legs = msgspec.json.Decoder(list[LegFill])
_intent_legs = msgspec.json.Decoder(list[Leg])
_filters = msgspec.json.Decoder(RunFilters)


class BalanceChangeView(msgspec.Struct, frozen=True, kw_only=True):
    """One movement of a run's cash (`paper_balance_changes`), as the API shows it."""

    id: str
    ts: str
    kind: str
    trade_id: str
    amount_usd: float
    balance_usd: float
    pnl_usd: float


class IntentLegView(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    instrument: str
    outcome: str
    side: str
    size: int
    limit_price: float
    cost_usd: float
    fee_usd: float


class IntentView(msgspec.Struct, frozen=True, kw_only=True):
    """An execution intent as detect emitted it (the `intents` row), legs included."""

    intent_id: str
    ts: str
    opportunity_id: str
    opportunity_key: str
    strategy: str
    size: int
    net_edge_usd: float
    net_edge_cents: float
    """Per contract."""
    book_ts: str
    legs: list[IntentLegView]


def _rows(store: Store, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return store.query_arrow(sql, params).to_pylist()


def _count(store: Store, sql: str, params: dict[str, Any]) -> int:
    return int(_rows(store, f"SELECT count() AS n FROM ({sql})", params)[0]["n"])


# -- runs ---------------------------------------------------------------------------------------


def run_of_row(r: dict[str, Any]) -> tuple[RunConfig, RunSnapshot]:
    """A `paper_runs` row as the RunConfig and RunSnapshot it was written from."""
    started = int(r["started_ns"])
    cfg = RunConfig(
        run_id=r["run_id"],
        user_id=r["user_id"],
        label=r["label"],
        notes=r["notes"],
        opportunity_keys=list(r["opportunity_keys"] or []),
        filters=_filters.decode(r["filters_json"] or "{}"),
        starting_micros=r["starting_micros"],
        min_net_edge_micros=r["min_net_edge_micros"],
        max_leg_micros=r["max_leg_micros"],
        daily_cap_micros=r["daily_cap_micros"],
        settlement_delay_ns=r["settlement_delay_ns"],
        duration_minutes=r["duration_minutes"],
        started_at=started,
        ends_at=int(r["ends_ns"]) if r["ends_ns"] is not None else started,
        validation=r["validation"] or "bus",
        keys_present=list(r["keys_present"] or []),
    )
    snap = RunSnapshot(
        version=r["version"],
        state=r["state"],
        stop_reason=r["stop_reason"],
        stopped_at=None if r["stopped_ns"] is None else int(r["stopped_ns"]),
        balance_micros=r["balance_micros"],
        pnl_micros=r["pnl_micros"],
        fees_micros=r["fees_micros"],
        exposure_micros=r["exposure_micros"],
        unsettled_micros=r["unsettled_micros"],
        decisions=r["decisions"],
        taken=r["taken"],
        trades=r["trades"],
        broken=r["broken"],
    )
    return cfg, snap


def runs(store: Store, user_id: str, limit: int, offset: int) -> tuple[list[RunView], int]:
    """The user's runs, newest first (by start), one page; and how many there are."""
    base = "SELECT run_id FROM {db}.paper_runs FINAL WHERE user_id = {user:String}"
    params = {"user": user_id, "limit": limit, "offset": offset}
    total = _count(store, base, params)
    rows = _rows(
        store,
        f"SELECT {_RUN_COLS} FROM {{db}}.paper_runs FINAL WHERE user_id = {{user:String}} "
        "ORDER BY started_at DESC, run_id DESC LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        params,
    )
    return [run_view(*run_of_row(r)) for r in rows], total


def run(store: Store, user_id: str, run_id: str) -> RunView | None:
    """One of the user's runs, or None (unknown, or another user's: the caller cannot tell)."""
    rows = _rows(
        store,
        f"SELECT {_RUN_COLS} FROM {{db}}.paper_runs FINAL WHERE run_id = {{run:String}} AND user_id = {{user:String}}",
        {"run": run_id, "user": user_id},
    )
    return run_view(*run_of_row(rows[0])) if rows else None


# -- trades -------------------------------------------------------------------------------------


def trade_of_row(r: dict[str, Any]) -> PaperTrade:
    """A `paper_trades` row as the PaperTrade it was written from."""
    return PaperTrade(
        id=r["id"],
        ts=int(r["ts_ns"]),
        run_id=r["run_id"],
        intent_id=r["intent_id"],
        decision_id=r["decision_id"],
        opportunity_key=r["opportunity_key"],
        requested_size=r["requested_size"],
        matched_size=r["matched_size"],
        fill_pct=r["fill_pct"],
        legs=_legs.decode(r["legs_json"] or "[]"),
        cost_micros=r["cost_micros"],
        fee_micros=r["fee_micros"],
        payout_micros=r["payout_micros"],
        pnl_micros=r["pnl_micros"],
        executed_at=int(r["executed_ns"]),
        settled_at=int(r["settled_ns"]),
        user_id=r["user_id"],
        opportunity_id=r["opportunity_id"],
        broken=bool(r["broken"]),
        unhedged_size=r["unhedged_size"],
        exposure_micros=r["exposure_micros"],
        net_edge_per_contract_micros=r["net_edge_per_contract_micros"],
    )


def trades(
    store: Store,
    user_id: str,
    *,
    now: int,
    run_id: str | None = None,
    status: TradeStatusFilter | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[list[TradeView], int]:
    """The user's trades (of one run, or of all), newest first by execution; and how many match."""
    where = [f"run_id IN ({USER_RUNS})"]
    if run_id is not None:
        where.append("run_id = {run:String}")
    if status is not None:
        where.append(_STATUS_SQL[status])
    cond = " AND ".join(where)
    params = {"user": user_id, "run": run_id or "", "now": now, "limit": limit, "offset": offset}
    total = _count(store, f"SELECT id FROM {{db}}.paper_trades FINAL WHERE {cond}", params)
    rows = _rows(
        store,
        f"SELECT {_TRADE_COLS} FROM {{db}}.paper_trades FINAL WHERE {cond} "
        "ORDER BY executed_at DESC, id DESC LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        params,
    )
    return [trade_view(trade_of_row(r), now) for r in rows], total


def trade(store: Store, user_id: str, trade_id: str) -> PaperTrade | None:
    """One of the user's trades, or None."""
    rows = _rows(
        store,
        f"SELECT {_TRADE_COLS} FROM {{db}}.paper_trades FINAL WHERE id = {{id:String}} AND run_id IN ({USER_RUNS})",
        {"id": trade_id, "user": user_id},
    )
    return trade_of_row(rows[0]) if rows else None


def balance_changes(store: Store, user_id: str, run_id: str, trade_id: str) -> list[BalanceChangeView]:
    """The cash movements of one of the user's trades (its fill, its settlement), oldest first."""
    rows = _rows(
        store,
        "SELECT id, toUnixTimestamp64Nano(ts) AS ts_ns, kind, trade_id, amount_micros, balance_micros, pnl_micros "
        "FROM {db}.paper_balance_changes FINAL WHERE run_id = {run:String} AND trade_id = {trade:String} "
        f"AND run_id IN ({USER_RUNS}) ORDER BY ts, id",
        {"run": run_id, "trade": trade_id, "user": user_id},
    )
    return [
        BalanceChangeView(
            id=r["id"],
            ts=iso(int(r["ts_ns"])) or "",
            kind=r["kind"],
            trade_id=r["trade_id"],
            amount_usd=usd(r["amount_micros"]),
            balance_usd=usd(r["balance_micros"]),
            pnl_usd=usd(r["pnl_micros"]),
        )
        for r in rows
    ]


# -- decisions ----------------------------------------------------------------------------------


def _decision(r: dict[str, Any]) -> DecisionView:
    return decision_view(
        decision_id=r["id"],
        run_id=r["run_id"],
        source=r["decision_source"],
        intent_id=r["intent_id"],
        opportunity_id=r["opportunity_id"],
        opportunity_key=r["opportunity_key"],
        taken=bool(r["taken"]),
        reason=r["reason"],
        detail=r["detail"],
        checks_run=r["checks_run"],
        checks_passed=r["checks_passed"],
        net_edge_per_contract_micros=r["net_edge_per_contract_micros"],
        size=r["size"],
        ts=int(r["ts_ns"]),
        trade_id=r["trade_id"],
    )


def decisions(
    store: Store,
    user_id: str,
    run_id: str,
    *,
    source: str | None = None,
    taken: bool | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[list[DecisionView], int]:
    """One of the user's runs' decisions, newest first; and how many match."""
    where = [f"run_id IN ({USER_RUNS})", "run_id = {run:String}"]
    if source is not None:
        where.append("decision_source = {source:String}")
    if taken is not None:
        where.append("taken = {taken:UInt8}")
    cond = " AND ".join(where)
    params = {
        "user": user_id,
        "run": run_id,
        "source": source or "",
        "taken": int(bool(taken)),
        "limit": limit,
        "offset": offset,
    }
    total = _count(store, f"SELECT id FROM {{db}}.decisions FINAL WHERE {cond}", params)
    rows = _rows(
        store,
        f"SELECT {_DECISION_COLS} FROM {{db}}.decisions FINAL WHERE {cond} "
        "ORDER BY ts DESC, id DESC LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        params,
    )
    return [_decision(r) for r in rows], total


def decision(store: Store, user_id: str, decision_id: str) -> DecisionView | None:
    """One of the user's decisions, or None."""
    rows = _rows(
        store,
        f"SELECT {_DECISION_COLS} FROM {{db}}.decisions FINAL WHERE id = {{id:String}} AND run_id IN ({USER_RUNS})",
        {"id": decision_id, "user": user_id},
    )
    return _decision(rows[0]) if rows else None


# -- intents ------------------------------------------------------------------------------------


def intent(store: Store, intent_id: str) -> IntentView | None:
    """An intent as detect emitted it (intents are market signals every user may see), or None."""
    rows = _rows(
        store,
        "SELECT id, toUnixTimestamp64Nano(ts) AS ts_ns, opportunity_id, opportunity_key, strategy, size, "
        "net_edge_micros, net_edge_per_contract_micros, toUnixTimestamp64Nano(book_ts) AS book_ns, legs_json "
        "FROM {db}.intents FINAL WHERE id = {id:String}",
        {"id": intent_id},
    )
    if not rows:
        return None
    r = rows[0]
    return IntentView(
        intent_id=r["id"],
        ts=iso(int(r["ts_ns"])) or "",
        opportunity_id=r["opportunity_id"],
        opportunity_key=r["opportunity_key"],
        strategy=r["strategy"],
        size=r["size"],
        net_edge_usd=usd(r["net_edge_micros"]),
        net_edge_cents=cents(r["net_edge_per_contract_micros"]),
        book_ts=iso(int(r["book_ns"])) or "",
        legs=[
            IntentLegView(
                venue=leg.venue,
                instrument=leg.instrument,
                outcome=leg.outcome,
                side=leg.side,
                size=leg.size,
                limit_price=round(leg.limit_px / PRICE_SCALE, 6),
                cost_usd=usd(leg.cost_micros),
                fee_usd=usd(leg.fee_micros),
            )
            for leg in _intent_legs.decode(r["legs_json"] or "[]")
        ],
    )


def intent_decisions(store: Store, user_id: str, intent_id: str) -> list[DecisionView]:
    """The user's runs' decisions on one intent, oldest first."""
    rows = _rows(
        store,
        f"SELECT {_DECISION_COLS} FROM {{db}}.decisions FINAL WHERE intent_id = {{id:String}} "
        f"AND run_id IN ({USER_RUNS}) ORDER BY ts, id",
        {"id": intent_id, "user": user_id},
    )
    return [_decision(r) for r in rows]


def intent_trades(store: Store, user_id: str, intent_id: str, now: int) -> list[TradeView]:
    """The user's runs' trades of one intent, oldest first."""
    rows = _rows(
        store,
        f"SELECT {_TRADE_COLS} FROM {{db}}.paper_trades FINAL WHERE intent_id = {{id:String}} "
        f"AND run_id IN ({USER_RUNS}) ORDER BY executed_at, id",
        {"id": intent_id, "user": user_id},
    )
    return [trade_view(trade_of_row(r), now) for r in rows]


# -- the success-span report --------------------------------------------------------------------

_OPPS_IN_WINDOW = (
    "SELECT opportunity_id, any(opportunity_key) AS opportunity_key, "
    "toUnixTimestamp64Nano(min(opened_at)) AS opened_ns, toUnixTimestamp64Nano(max(closed_at)) AS closed_ns, "
    "toUnixTimestamp64Nano(max(book_ts)) AS last_ns, max(net_edge_per_contract_micros) AS peak_per_contract, "
    "max(net_edge_micros) AS peak_net_edge "
    "FROM {db}.opportunities FINAL "
    "WHERE book_ts >= fromUnixTimestamp64Nano({lo:Int64}, 'UTC') "
    "AND book_ts <= fromUnixTimestamp64Nano({hi:Int64}, 'UTC') "
    "AND opened_at <= fromUnixTimestamp64Nano({hi:Int64}, 'UTC') "
    "AND (closed_at IS NULL OR closed_at <= fromUnixTimestamp64Nano({hi:Int64}, 'UTC')) "
    "GROUP BY opportunity_id "
    "HAVING closed_ns IS NULL OR closed_ns >= {lo:Int64}"
)
"""Every opportunity with lifecycle rows in [lo, hi] (market time: each row's `book_ts`), those rows folded.

Only rows from `lo` (the window start minus max_gap_s) to `hi` (the window end, `to`) count: the
scan is bounded below (an opportunity never closed, from long ago, is not an open span forever),
and nothing after `to` — a later update, a later close — reaches the peaks or the close, so the
report is the state as of `to`. An opportunity opened before `lo` with rows in the range is
read with its real `opened_at` (every row carries it), so a span straddling the start is whole.
"""
INT64_MAX = 2**63 - 1


def report_rows(
    store: Store, user_id: str, *, lo: int, hi: int, max_gap_ns: int, run_id: str | None = None
) -> tuple[list[OppRow], list[TradeRow], list[DecisionRow], set[str]]:
    """What the success-span report needs for the window [lo, hi] (market time, ns).

    Opportunities with rows up to `max_gap_ns` before `lo` are read too (a span straddling the
    window start merges whole). Returns the opportunities, the user's trades that may link to them
    (by opportunity id, or executed between the earliest opening and `hi + max_gap_ns`), the
    user's decisions on them, and which of them had an intent. With `run_id` (one of the user's
    runs: the caller checks), only that run's trades and decisions.
    """
    params: dict[str, Any] = {"user": user_id, "lo": lo - max_gap_ns, "hi": hi, "run": run_id or ""}
    opps = [
        OppRow(
            opportunity_id=r["opportunity_id"],
            opportunity_key=r["opportunity_key"],
            opened_at=int(r["opened_ns"]),
            closed_at=None if r["closed_ns"] is None else int(r["closed_ns"]),
            last_ts=int(r["last_ns"]),
            peak_edge_per_contract_micros=r["peak_per_contract"],
            peak_net_edge_micros=r["peak_net_edge"],
        )
        for r in _rows(store, _OPPS_IN_WINDOW, params)
    ]
    if not opps:
        return [], [], [], set()
    ids = f"SELECT opportunity_id FROM ({_OPPS_IN_WINDOW})"
    runs = f"run_id IN ({USER_RUNS})" + (" AND run_id = {run:String}" if run_id is not None else "")
    params["first"] = min(o.opened_at for o in opps)
    params["last"] = min(hi + max_gap_ns, INT64_MAX)
    trade_rows = [
        TradeRow(
            trade_id=r["id"],
            run_id=r["run_id"],
            opportunity_id=r["opportunity_id"],
            opportunity_key=r["opportunity_key"],
            executed_at=int(r["executed_ns"]),
            pnl_micros=r["pnl_micros"],
        )
        for r in _rows(
            store,
            "SELECT id, run_id, opportunity_id, opportunity_key, toUnixTimestamp64Nano(executed_at) AS executed_ns, "
            f"pnl_micros FROM {{db}}.paper_trades FINAL WHERE {runs} AND (opportunity_id IN ({ids}) OR "
            "executed_at BETWEEN fromUnixTimestamp64Nano({first:Int64}, 'UTC') "
            "AND fromUnixTimestamp64Nano({last:Int64}, 'UTC'))",
            params,
        )
    ]
    decision_rows = [
        DecisionRow(
            opportunity_id=r["opportunity_id"], source=r["decision_source"], taken=bool(r["taken"]), reason=r["reason"]
        )
        for r in _rows(
            store,
            "SELECT opportunity_id, decision_source, taken, reason FROM {db}.decisions FINAL "
            f"WHERE {runs} AND opportunity_id IN ({ids})",
            params,
        )
    ]
    with_intent = {
        r["opportunity_id"]
        for r in _rows(
            store, f"SELECT DISTINCT opportunity_id FROM {{db}}.intents FINAL WHERE opportunity_id IN ({ids})", params
        )
    }
    return opps, trade_rows, decision_rows, with_intent
