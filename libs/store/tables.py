"""Decoded events → Arrow tables shaped exactly like the ClickHouse tables (migrations 0001, 0002).

Pure functions, no I/O. The market-data builders are vectorised (numpy over all batches
at once, no per-row Python); the event builders loop per event, which is fine at their
rates. Times become `timestamp[ns, UTC]` (DateTime64(9, 'UTC')), legs and checks JSON text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from proto.events import (
    BarBatch,
    BookBatch,
    DeadLetter,
    Intent,
    MarketInfo,
    Opportunity,
    RawBatch,
    TradeBatch,
)
from proto.paper import RunUpdate
from proto.sim import SimCalibration, SimJob, SimResult, SimResultPart, SimState, SimStatus

TS = pa.timestamp("ns", tz="UTC")
_I64 = pa.int64()
_STR = pa.string()

BOOK_TOPS = pa.schema(
    [
        ("ts", TS),
        ("venue", _STR),
        ("instrument", _STR),
        ("source", _STR),
        ("bid_px", _I64),
        ("bid_sz", _I64),
        ("ask_px", _I64),
        ("ask_sz", _I64),
        ("recv_ts", TS),
        ("batch_id", _STR),
        ("row", pa.uint32()),
    ]
)
MD_TRADES = pa.schema(
    [
        ("ts", TS),
        ("venue", _STR),
        ("instrument", _STR),
        ("source", _STR),
        ("px", _I64),
        ("size", _I64),
        ("aggressor", pa.int8()),
        ("batch_id", _STR),
        ("row", pa.uint32()),
    ]
)
_F64 = pa.float64()
OHLCV = pa.schema(
    [
        ("symbol", _STR),
        ("timeframe", _STR),
        ("ts", TS),
        ("open", _F64),
        ("high", _F64),
        ("low", _F64),
        ("close", _F64),
        ("volume", _F64),
        ("venue", _STR),
        ("source", _STR),
        ("updated_at", TS),
    ]
)
MD_RAW = pa.schema(
    [
        ("ts", TS),
        ("venue", _STR),
        ("source", _STR),
        ("endpoint", _STR),
        ("status", pa.uint16()),
        ("body", pa.binary()),
        ("batch_id", _STR),
        ("row", pa.uint32()),
    ]
)
NIGHTLY_UPDATES = pa.schema(
    [
        ("request_id", _STR),
        ("version", pa.uint64()),
        ("status", _STR),
        ("started_at", TS),
        ("finished_at", TS),
        ("symbols_count", pa.uint32()),
        ("is_complete", pa.bool_()),
        ("body", _STR),
    ]
)
"""`nightly_updates` (migration 0004): written by the bars service itself (libs/bars/nightly.py)."""
MARKET_INFO = pa.schema(
    [
        ("venue", _STR),
        ("instrument", _STR),
        ("ts", TS),
        ("id", _STR),
        ("market_id", _STR),
        ("source", _STR),
        ("title", _STR),
        ("status", _STR),
        ("tick_size", _I64),
        ("tick_ranges_json", _STR),
        ("min_order_size", pa.float64()),
        ("close_ts", TS),
        ("expiration_ts", TS),
        ("neg_risk", pa.bool_()),
        ("base_fee_bps", _I64),
        ("maker_base_fee_bps", _I64),
        ("taker_fee_rate", _STR),
        ("fee_exponent", _STR),
        ("fees_enabled", pa.bool_()),
        ("fee_note", _STR),
    ]
)
"""`market_info` (migration 0005): the latest facts per (venue, instrument)."""
OPPORTUNITIES = pa.schema(
    [
        ("id", _STR),
        ("ts", TS),
        ("opportunity_id", _STR),
        ("opportunity_key", _STR),
        ("strategy", _STR),
        ("status", _STR),
        ("size", _I64),
        ("gross_cost_micros", _I64),
        ("fees_micros", _I64),
        ("net_edge_micros", _I64),
        ("net_edge_per_contract_micros", _I64),
        ("book_ts", TS),
        ("opened_at", TS),
        ("closed_at", TS),
        ("legs_json", _STR),
    ]
)
INTENTS = pa.schema(
    [
        ("id", _STR),
        ("ts", TS),
        ("opportunity_id", _STR),
        ("opportunity_key", _STR),
        ("strategy", _STR),
        ("size", _I64),
        ("net_edge_micros", _I64),
        ("net_edge_per_contract_micros", _I64),
        ("book_ts", TS),
        ("legs_json", _STR),
    ]
)
DECISIONS = pa.schema(
    [
        ("id", _STR),
        ("ts", TS),
        ("run_id", _STR),
        ("intent_id", _STR),
        ("opportunity_key", _STR),
        ("decision_source", _STR),
        ("taken", pa.uint8()),
        ("reason", _STR),
        ("checks_json", _STR),
        ("intent_ts", TS),
        ("book_ts", TS),
        ("user_id", _STR),
        ("opportunity_id", _STR),
        ("detail", _STR),
        ("checks_run", pa.uint32()),
        ("checks_passed", pa.uint32()),
        ("net_edge_per_contract_micros", _I64),
        ("size", _I64),
        ("trade_id", _STR),
    ]
)
PAPER_TRADES = pa.schema(
    [
        ("id", _STR),
        ("ts", TS),
        ("run_id", _STR),
        ("intent_id", _STR),
        ("decision_id", _STR),
        ("opportunity_key", _STR),
        ("requested_size", _I64),
        ("matched_size", _I64),
        ("fill_pct", pa.float64()),
        ("cost_micros", _I64),
        ("fee_micros", _I64),
        ("payout_micros", _I64),
        ("pnl_micros", _I64),
        ("executed_at", TS),
        ("settled_at", TS),
        ("legs_json", _STR),
        ("user_id", _STR),
        ("opportunity_id", _STR),
        ("broken", pa.uint8()),
        ("unhedged_size", _I64),
        ("exposure_micros", _I64),
        ("net_edge_per_contract_micros", _I64),
    ]
)
PAPER_RUNS = pa.schema(
    [
        ("run_id", _STR),
        ("ts", TS),
        ("state", _STR),
        ("label", _STR),
        ("starting_micros", _I64),
        ("balance_micros", _I64),
        ("pnl_micros", _I64),
        ("fees_micros", _I64),
        ("decisions", _I64),
        ("taken", _I64),
        ("trades", _I64),
        ("min_net_edge_micros", _I64),
        ("max_leg_micros", _I64),
        ("daily_cap_micros", _I64),
        ("started_at", TS),
        ("stopped_at", TS),
        ("user_id", _STR),
        ("notes", _STR),
        ("opportunity_keys", pa.list_(_STR)),
        ("filters_json", _STR),
        ("settlement_delay_ns", _I64),
        ("duration_minutes", pa.float64()),
        ("ends_at", TS),
        ("validation", _STR),
        ("keys_present", pa.list_(_STR)),
        ("stop_reason", _STR),
        ("exposure_micros", _I64),
        ("unsettled_micros", _I64),
        ("broken", _I64),
        ("version", pa.uint64()),
    ]
)
PAPER_BALANCE_CHANGES = pa.schema(
    [
        ("id", _STR),
        ("ts", TS),
        ("run_id", _STR),
        ("user_id", _STR),
        ("kind", _STR),
        ("trade_id", _STR),
        ("amount_micros", _I64),
        ("balance_micros", _I64),
        ("pnl_micros", _I64),
    ]
)
USERS = pa.schema(
    [
        ("user_id", _STR),
        ("ts", TS),
        ("name", _STR),
        ("api_key_hash", _STR),
        ("api_key_prefix", _STR),
        ("created_at", TS),
        ("disabled", pa.uint8()),
    ]
)
USER_PROFILES = pa.schema(
    [
        ("user_id", _STR),
        ("ts", TS),
        ("min_net_edge_micros", _I64),
        ("max_leg_micros", _I64),
        ("daily_cap_micros", _I64),
    ]
)
USER_SECRETS = pa.schema(
    [
        ("user_id", _STR),
        ("venue", _STR),
        ("ts", TS),
        ("fields", pa.list_(_STR)),
        ("ciphertext", _STR),
        ("deleted", pa.uint8()),
    ]
)
DEAD_LETTERS = pa.schema(
    [
        ("ts", TS),
        ("consumer", _STR),
        ("subject", _STR),
        ("reason", _STR),
        ("deliveries", pa.uint32()),
        ("data", pa.binary()),
    ]
)

SIM_CALIBRATIONS = pa.schema(
    [
        ("symbol", _STR),
        ("cal_date", pa.date32()),
        ("cal_hash", _STR),
        ("market", _STR),
        ("stage", _STR),
        ("status", _STR),
        ("source", _STR),
        ("created_at", TS),
        ("calibration", pa.binary()),
    ]
)
SIM_JOBS = pa.schema(
    [
        ("job_id", _STR),
        ("ts", TS),
        ("symbol", _STR),
        ("cal_date", pa.date32()),
        ("n_runs", pa.uint32()),
        ("seed", _I64),
        ("scenario", _STR),
        ("cached", pa.uint8()),
        ("request", _STR),
        ("sim_ids", pa.list_(_STR)),
    ]
)
SIM_STATUS = pa.schema(
    [
        ("job_id", _STR),
        ("sim_id", _STR),
        ("ts", TS),
        ("version", pa.uint64()),
        ("state", _STR),
        ("error", _STR),
    ]
)
SIM_FILES = pa.schema(
    [
        ("sim_id", _STR),
        ("file", _STR),
        ("part", pa.uint32()),
        ("n_parts", pa.uint32()),
        ("row0", pa.uint64()),
        ("n_rows", pa.uint64()),
        ("job_id", _STR),
        ("ts", TS),
    ]
)
SIM_METRICS = pa.schema([("sim_id", _STR), ("pos", pa.uint32()), ("name", _STR), ("value", pa.float64())])

SIM_FILE_COLUMNS: dict[str, dict[str, str]] = {
    "mid_price_by_min": {"ts": "<i8", "mid": "<f8", "volume": "<i8", "n_trades": "<i8"},
    "trades": {"ts": "<i8", "price": "<i8", "qty": "<i8", "aggressor": "<i8", "is_algo": "<i8"},
    "algo_fills": {"ts": "<i8", "price": "<i8", "qty": "<i8", "side": "<i8"},
    "l1": {"ts": "<i8", "bid_px": "<i8", "bid_sz": "<i8", "ask_px": "<i8", "ask_sz": "<i8"},
}
"""Result file -> column -> the numpy dtype the engine writes ("ts" is UTC ns, stored as a time)."""
SIM_RESULT_FILES: tuple[str, ...] = (*SIM_FILE_COLUMNS, "metrics")
"""Every file a finished run has: the columnar ones and `metrics` (one row, a column per metric)."""
SIM_FILE_TABLE: dict[str, str] = {name: f"sim_{name}" for name in SIM_FILE_COLUMNS} | {"metrics": "sim_metrics"}


def _sim_file_schema(columns: dict[str, str]) -> pa.Schema:
    types = {"<i8": _I64, "<f8": pa.float64()}
    fields = [(name, TS if name == "ts" else types[dtype]) for name, dtype in columns.items()]
    return pa.schema([("sim_id", _STR), ("row", pa.uint32()), *fields])


SIM_FILE_SCHEMAS: dict[str, pa.Schema] = {
    SIM_FILE_TABLE[name]: _sim_file_schema(cols) for name, cols in SIM_FILE_COLUMNS.items()
}

SCHEMAS: dict[str, pa.Schema] = {
    "book_tops": BOOK_TOPS,
    "md_trades": MD_TRADES,
    "ohlcv": OHLCV,
    "md_raw": MD_RAW,
    "market_info": MARKET_INFO,
    "nightly_updates": NIGHTLY_UPDATES,
    "opportunities": OPPORTUNITIES,
    "intents": INTENTS,
    "decisions": DECISIONS,
    "paper_trades": PAPER_TRADES,
    "paper_runs": PAPER_RUNS,
    "paper_balance_changes": PAPER_BALANCE_CHANGES,
    "users": USERS,
    "user_profiles": USER_PROFILES,
    "user_secrets": USER_SECRETS,
    "dead_letters": DEAD_LETTERS,
    "sim_calibrations": SIM_CALIBRATIONS,
    "sim_jobs": SIM_JOBS,
    "sim_status": SIM_STATUS,
    "sim_files": SIM_FILES,
    "sim_metrics": SIM_METRICS,
    **SIM_FILE_SCHEMAS,
}
"""Arrow schema of every MarketTwin table, by table name."""

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


# -- market data: columnar batches, vectorised ----------------------------------------------


def book_tops_table(batches: Sequence[BookBatch]) -> pa.Table:
    """The best bid/ask (level 0) of every row of every batch; one table row per book update."""
    if not batches:
        return BOOK_TOPS.empty_table()
    for b in batches:
        _check_book(b)
    rows = np.array([b.rows for b in batches], dtype=np.int64)
    n = int(rows.sum())
    batch_of_row, row_in_batch = _row_positions(rows)

    def top_of(field: str) -> np.ndarray:
        # Level 0 of row r sits at index r * levels; a strided slice of each batch's list
        # picks exactly those in C, so only one value per row is converted to int64.
        return _flat((getattr(b, field)[:: b.levels] for b in batches), n)

    return pa.table(
        {
            "ts": _ts(_flat((b.book_ts for b in batches), n)),
            "venue": _per_batch([b.venue for b in batches], batch_of_row),
            "instrument": _instruments(batches, rows, n),
            "source": _per_batch([b.source for b in batches], batch_of_row),
            "bid_px": top_of("bid_px"),
            "bid_sz": top_of("bid_sz"),
            "ask_px": top_of("ask_px"),
            "ask_sz": top_of("ask_sz"),
            "recv_ts": _ts(np.repeat(np.array([b.ts for b in batches], dtype=np.int64), rows)),
            "batch_id": _per_batch([b.id for b in batches], batch_of_row),
            "row": row_in_batch.astype(np.uint32),
        },
        schema=BOOK_TOPS,
    )


def md_trades_table(batches: Sequence[TradeBatch]) -> pa.Table:
    """Every trade of every batch; one table row per trade."""
    if not batches:
        return MD_TRADES.empty_table()
    for b in batches:
        _check_trades(b)
    rows = np.array([b.rows for b in batches], dtype=np.int64)
    n = int(rows.sum())
    batch_of_row, row_in_batch = _row_positions(rows)
    return pa.table(
        {
            "ts": _ts(_flat((b.trade_ts for b in batches), n)),
            "venue": _per_batch([b.venue for b in batches], batch_of_row),
            "instrument": _instruments(batches, rows, n),
            "source": _per_batch([b.source for b in batches], batch_of_row),
            "px": _flat((b.px for b in batches), n),
            "size": _flat((b.size for b in batches), n),
            "aggressor": _flat((b.aggressor for b in batches), n).astype(np.int8),
            "batch_id": _per_batch([b.id for b in batches], batch_of_row),
            "row": row_in_batch.astype(np.uint32),
        },
        schema=MD_TRADES,
    )


def ohlcv_table(batches: Sequence[BarBatch]) -> pa.Table:
    """Every bar of every batch; `updated_at` is the batch's time, so a later batch wins."""
    if not batches:
        return OHLCV.empty_table()
    for b in batches:
        for field in ("inst_idx", "open", "high", "low", "close", "volume"):
            _check_len(b, field, len(getattr(b, field)), b.rows)
    rows = np.array([b.rows for b in batches], dtype=np.int64)
    n = int(rows.sum())
    batch_of_row, _ = _row_positions(rows)

    def floats(field: str) -> np.ndarray:
        return np.fromiter(chain.from_iterable(getattr(b, field) for b in batches), dtype=np.float64, count=n)

    return pa.table(
        {
            "symbol": _instruments(batches, rows, n),
            "timeframe": _per_batch([b.timeframe for b in batches], batch_of_row),
            "ts": _ts(_flat((b.bar_ts for b in batches), n)),
            **{f: floats(f) for f in ("open", "high", "low", "close", "volume")},
            "venue": _per_batch([b.venue for b in batches], batch_of_row),
            "source": _per_batch([b.source for b in batches], batch_of_row),
            "updated_at": _ts(np.repeat(np.array([b.ts for b in batches], dtype=np.int64), rows)),
        },
        schema=OHLCV,
    )


def md_raw_table(batches: Sequence[RawBatch]) -> pa.Table:
    """Every recorded venue response, body bytes untouched."""
    if not batches:
        return MD_RAW.empty_table()
    for b in batches:
        for field in ("endpoint", "status", "body"):
            _check_len(b, field, len(getattr(b, field)), b.rows)
    rows = np.array([b.rows for b in batches], dtype=np.int64)
    n = int(rows.sum())
    batch_of_row, row_in_batch = _row_positions(rows)
    return pa.table(
        {
            "ts": _ts(_flat((b.recv_ts for b in batches), n)),
            "venue": _per_batch([b.venue for b in batches], batch_of_row),
            "source": _per_batch([b.source for b in batches], batch_of_row),
            "endpoint": pa.array(list(chain.from_iterable(b.endpoint for b in batches)), _STR),
            "status": pa.array(_flat((b.status for b in batches), n).astype(np.uint16)),
            "body": pa.array(list(chain.from_iterable(b.body for b in batches)), pa.binary()),
            "batch_id": _per_batch([b.id for b in batches], batch_of_row),
            "row": row_in_batch.astype(np.uint32),
        },
        schema=MD_RAW,
    )


def _check_book(b: BookBatch) -> None:
    """Reject a batch whose column lengths disagree, naming the batch, field and lengths."""
    if b.levels < 1:
        raise ValueError(f"BookBatch {b.id!r}: levels={b.levels} must be at least 1")
    rows = len(b.book_ts)
    _check_len(b, "inst_idx", len(b.inst_idx), rows)
    for field in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        _check_len(b, field, len(getattr(b, field)), rows * b.levels)


def _check_trades(b: TradeBatch) -> None:
    """Reject a trade batch whose column lengths disagree."""
    rows = len(b.trade_ts)
    for field in ("inst_idx", "px", "size", "aggressor"):
        _check_len(b, field, len(getattr(b, field)), rows)


def _check_len(b: Any, field: str, got: int, want: int) -> None:
    """Raise a ValueError naming the batch and field when a column has the wrong length."""
    if got != want:
        raise ValueError(f"{type(b).__name__} {b.id!r}: {field} has {got} entries, expected {want}")


def _flat(lists: Iterable[list[int]], count: int) -> np.ndarray:
    """Concatenate integer lists into one int64 array of known length."""
    return np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=count)


def _row_positions(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each output row: which batch it came from and its index within that batch."""
    n = int(rows.sum())
    batch_of_row = np.repeat(np.arange(len(rows)), rows)
    row_in_batch = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(rows) - rows, rows)
    return batch_of_row, row_in_batch


def _per_batch(values: list[str], batch_of_row: np.ndarray) -> pa.Array:
    """A per-batch string spread over that batch's rows."""
    return pa.array(values, _STR).take(pa.array(batch_of_row))


def _instruments(
    batches: Sequence[BookBatch] | Sequence[TradeBatch] | Sequence[BarBatch], rows: np.ndarray, n: int
) -> pa.Array:
    """Each row's instrument name: batch-local indices shifted into one shared name list.

    An index outside its batch's `instruments` is a ValueError naming the batch and value.
    """
    sizes = np.array([len(b.instruments) for b in batches], dtype=np.int64)
    local = _flat((b.inst_idx for b in batches), n)
    bad = (local < 0) | (local >= np.repeat(sizes, rows))
    if bad.any():
        r = int(bad.argmax())
        b = batches[int(np.searchsorted(np.cumsum(rows), r, side="right"))]
        raise ValueError(
            f"{type(b).__name__} {b.id!r}: inst_idx value {int(local[r])} is outside "
            f"instruments (len {len(b.instruments)})"
        )
    names = pa.array(list(chain.from_iterable(b.instruments for b in batches)), _STR)
    return names.take(pa.array(local + np.repeat(np.cumsum(sizes) - sizes, rows)))


def _ts(ns: np.ndarray) -> pa.Array:
    """UTC nanosecond ints as a timestamp[ns, UTC] array (zero copy)."""
    return pa.array(ns.view("datetime64[ns]")).cast(TS)


# -- events: one row per event ---------------------------------------------------------------


def _json_text(value: Any) -> str:
    """Structs (legs, checks) as compact JSON text for a String column."""
    return _json.encode(value).decode()


def _event_table(schema: pa.Schema, events: Sequence[Any], computed: dict[str, Callable[[Any], Any]]) -> pa.Table:
    """One row per event: each column is the event's same-named field unless `computed`."""
    columns = {}
    for field in schema:
        get = computed.get(field.name)
        values = [getattr(e, field.name) if get is None else get(e) for e in events]
        columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=schema)


def market_info_table(events: Sequence[MarketInfo]) -> pa.Table:
    """One row per MarketInfo; the table keeps the latest per (venue, instrument); tick ranges as JSON."""
    return _event_table(MARKET_INFO, events, {"tick_ranges_json": lambda e: _json_text(e.tick_ranges)})


def opportunities_table(events: Sequence[Opportunity]) -> pa.Table:
    """One row per opportunity lifecycle event; legs as JSON."""
    return _event_table(OPPORTUNITIES, events, {"legs_json": lambda e: _json_text(e.legs)})


def intents_table(events: Sequence[Intent]) -> pa.Table:
    """One row per intent; legs as JSON."""
    return _event_table(INTENTS, events, {"legs_json": lambda e: _json_text(e.legs)})


def paper_update_tables(updates: Sequence[RunUpdate]) -> dict[str, pa.Table]:
    """A group of run steps fanned out: one row per decision, trade, balance change, and one per
    step in `paper_runs` (the table keeps each run's latest)."""
    return {
        "decisions": _decision_rows(updates),
        "paper_trades": _trade_rows(updates),
        "paper_balance_changes": _balance_rows(updates),
        "paper_runs": _run_rows(updates),
    }


def _decision_rows(updates: Sequence[RunUpdate]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in DECISIONS.names}
    for u in updates:
        d, n = u.decisions, len(u.decisions)
        if not n:
            continue
        cols["id"] += d.id
        cols["ts"] += d.ts
        cols["run_id"] += [u.run.run_id] * n
        cols["intent_id"] += d.intent_id
        cols["opportunity_key"] += d.opportunity_key
        cols["decision_source"] += d.source
        cols["taken"] += [int(t) for t in d.taken]
        cols["reason"] += d.reason
        cols["checks_json"] += [""] * n  # legacy column: checks are the two masks over proto.paper.CHECKS
        cols["intent_ts"] += d.intent_ts
        cols["book_ts"] += d.book_ts
        cols["user_id"] += [u.run.user_id] * n
        cols["opportunity_id"] += d.opportunity_id
        cols["detail"] += d.detail
        cols["checks_run"] += d.checks_run
        cols["checks_passed"] += d.checks_passed
        cols["net_edge_per_contract_micros"] += d.net_edge_per_contract_micros
        cols["size"] += d.size
        cols["trade_id"] += d.trade_id
    return _columns_table(DECISIONS, cols)


def _trade_rows(updates: Sequence[RunUpdate]) -> pa.Table:
    trades = [t for u in updates for t in u.trades]
    return _event_table(
        PAPER_TRADES, trades, {"legs_json": lambda e: _json_text(e.legs), "broken": lambda e: int(e.broken)}
    )


def _balance_rows(updates: Sequence[RunUpdate]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in PAPER_BALANCE_CHANGES.names}
    for u in updates:
        for c in u.balance_changes:
            for name in PAPER_BALANCE_CHANGES.names:
                if name == "run_id":
                    cols[name].append(u.run.run_id)
                elif name == "user_id":
                    cols[name].append(u.run.user_id)
                else:
                    cols[name].append(getattr(c, name))
    return _columns_table(PAPER_BALANCE_CHANGES, cols)


def _run_rows(updates: Sequence[RunUpdate]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in PAPER_RUNS.names}
    for u in updates:
        r, s = u.run, u.snapshot
        row = {
            "run_id": r.run_id,
            "ts": u.ts,
            "state": s.state,
            "label": r.label,
            "starting_micros": r.starting_micros,
            "balance_micros": s.balance_micros,
            "pnl_micros": s.pnl_micros,
            "fees_micros": s.fees_micros,
            "decisions": s.decisions,
            "taken": s.taken,
            "trades": s.trades,
            "min_net_edge_micros": r.min_net_edge_micros,
            "max_leg_micros": r.max_leg_micros,
            "daily_cap_micros": r.daily_cap_micros,
            "started_at": r.started_at,
            "stopped_at": s.stopped_at,
            "user_id": r.user_id,
            "notes": r.notes,
            "opportunity_keys": r.opportunity_keys,
            "filters_json": _json_text(r.filters),
            "settlement_delay_ns": r.settlement_delay_ns,
            "duration_minutes": r.duration_minutes,
            "ends_at": r.ends_at,
            "validation": r.validation,
            "keys_present": r.keys_present,
            "stop_reason": s.stop_reason,
            "exposure_micros": s.exposure_micros,
            "unsettled_micros": s.unsettled_micros,
            "broken": s.broken,
            "version": s.version,
        }
        for name, value in row.items():
            cols[name].append(value)
    return _columns_table(PAPER_RUNS, cols)


def _columns_table(schema: pa.Schema, cols: dict[str, list[Any]]) -> pa.Table:
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def dead_letters_table(letters: Sequence[DeadLetter]) -> pa.Table:
    """One row per dead letter, raw message bytes kept."""
    return _event_table(DEAD_LETTERS, letters, {})


# -- simulation: jobs, statuses, calibrations, results -----------------------------------------

STATE_RANK: dict[str, int] = {"queued": 0, "running": 1, "completed": 2, "error": 2}
_RANK_STEP = 4_000_000_000_000_000_000
"""Above any UTC ns time until 2096, and 3 steps still fit a UInt64."""


def sim_status_version(state: SimState | str, ts: int) -> int:
    """The `sim_status` version: the state's rank first (queued < running < finished), then time.

    So the latest *meaningful* state wins: a "running" that arrives after "completed" (a
    redelivered task) does not make a finished run look unfinished.
    """
    return STATE_RANK[state] * _RANK_STEP + int(ts)


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def sim_calibrations_table(events: Sequence[SimCalibration]) -> pa.Table:
    """One row per calibration event; the whole Calibration kept as MessagePack (NaN-safe)."""
    rows = [e.calibration for e in events]
    return pa.table(
        {
            "symbol": pa.array([c.symbol for c in rows], _STR),
            "cal_date": pa.array([_date(c.cal_date) for c in rows], pa.date32()),
            "cal_hash": pa.array([c.cal_hash for c in rows], _STR),
            "market": pa.array([c.market for c in rows], _STR),
            "stage": pa.array([c.stage for c in rows], _STR),
            "status": pa.array([c.status for c in rows], _STR),
            "source": pa.array([c.source for c in rows], _STR),
            "created_at": pa.array([c.created_at for c in rows], _I64).cast(TS),
            "calibration": pa.array([_msgpack.encode(c) for c in rows], pa.binary()),
        },
        schema=SIM_CALIBRATIONS,
    )


def sim_jobs_table(events: Sequence[SimJob]) -> pa.Table:
    """One row per submitted job, with its sim ids."""
    return _event_table(SIM_JOBS, events, {"cal_date": lambda e: _date(e.cal_date), "cached": lambda e: int(e.cached)})


def sim_status_table(events: Sequence[SimStatus]) -> pa.Table:
    """One row per status event; the table keeps the highest-ranked, then latest, per (job, sim)."""
    return _event_table(SIM_STATUS, events, {"version": lambda e: sim_status_version(e.state, e.ts)})


def _columns(what: str, file: str, columns: dict[str, bytes], dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    """A result file's raw columns as numpy arrays, checked against the file's known columns."""
    want = SIM_FILE_COLUMNS[file]
    missing = sorted(set(want) - set(columns))
    extra = sorted(set(columns) - set(want))
    if missing or extra:
        raise ValueError(f"{what}: file {file!r} has columns {sorted(columns)}; expected {list(want)}")
    out: dict[str, np.ndarray] = {}
    for name, dtype in want.items():
        got = dtypes.get(name)
        if got != dtype:
            raise ValueError(f"{what}: {file}.{name} has dtype {got!r}, expected {dtype!r}")
        raw = columns[name]
        if len(raw) % 8:
            raise ValueError(f"{what}: {file}.{name} has {len(raw)} bytes, not a whole number of 8-byte values")
        out[name] = np.frombuffer(raw, dtype=dtype)
    lengths = {len(a) for a in out.values()}
    if len(lengths) > 1:
        raise ValueError(f"{what}: {file} columns differ in length: { {k: len(v) for k, v in out.items()} }")
    return out


def sim_result_tables(events: Sequence[SimResult | SimResultPart]) -> dict[str, pa.Table]:
    """Every result file's rows (one table per file, keyed by sim id and row), the metrics in
    long form, and last the `sim_files` manifest of what was stored.

    A malformed result (unknown file, missing or extra column, wrong dtype, ragged columns)
    is a ValueError naming the sim, the file and the column.
    """
    pieces: dict[str, list[tuple[str, int, dict[str, np.ndarray]]]] = {f: [] for f in SIM_FILE_COLUMNS}
    metrics: list[tuple[str, int, str, float]] = []
    manifest: list[tuple[str, str, int, int, int, int, str, int]] = []
    for ev in events:
        if isinstance(ev, SimResult):
            parts = [(name, 0, 1, 0, cols, ev.dtypes.get(name, {})) for name, cols in ev.files.items()]
        else:
            parts = [(ev.file, ev.part, ev.n_parts, ev.row0, ev.columns, ev.dtypes)]
        for file, part, n_parts, row0, cols, dtypes in parts:
            what = f"sim {ev.sim_id!r}"
            if file == "metrics":
                if isinstance(ev, SimResultPart):
                    raise ValueError(f"{what}: metrics cannot come in parts")
                bad = [k for k, v in dtypes.items() if v != "<f8"] + [k for k, v in cols.items() if len(v) != 8]
                if bad:
                    raise ValueError(f"{what}: metrics {bad} must be one float64 value each")
                for pos, name in enumerate(cols):
                    metrics.append((ev.sim_id, pos, name, float(np.frombuffer(cols[name], "<f8")[0])))
                n_rows = 1
            elif file in SIM_FILE_COLUMNS:
                arrays = _columns(what, file, cols, dtypes)
                n_rows = len(next(iter(arrays.values())))
                pieces[file].append((ev.sim_id, row0, arrays))
            else:
                raise ValueError(f"{what}: unknown result file {file!r}; known: {', '.join(SIM_RESULT_FILES)}")
            if not 0 <= part < n_parts:
                raise ValueError(f"{what}: {file} part {part} outside 0..{n_parts - 1}")
            manifest.append((ev.sim_id, file, part, n_parts, row0, n_rows, ev.job_id, ev.ts))
    out: dict[str, pa.Table] = {}
    for file, items in pieces.items():
        if items:
            out[SIM_FILE_TABLE[file]] = _file_table(file, items)
    if metrics:
        sim, pos, name, value = zip(*metrics, strict=True)
        out["sim_metrics"] = pa.table(
            {"sim_id": sim, "pos": pos, "name": name, "value": pa.array(value, pa.float64())}, schema=SIM_METRICS
        )
    if manifest:
        columns = dict(zip(SIM_FILES.names, zip(*manifest, strict=True), strict=True))
        out["sim_files"] = pa.table({f.name: pa.array(columns[f.name], f.type) for f in SIM_FILES}, schema=SIM_FILES)
    return out


def _file_table(file: str, items: list[tuple[str, int, dict[str, np.ndarray]]]) -> pa.Table:
    """Rows of many sims' pieces of one file, vectorised: one concatenation per column."""
    lengths = np.array([len(next(iter(a.values()))) for _, _, a in items], dtype=np.int64)
    starts = np.repeat(np.array([row0 for _, row0, _ in items], dtype=np.int64) - np.cumsum(lengths) + lengths, lengths)
    rows = (np.arange(int(lengths.sum()), dtype=np.int64) + starts).astype(np.uint32)
    sim_ids = pa.array([sim for sim, _, _ in items], _STR).take(pa.array(np.repeat(np.arange(len(items)), lengths)))
    columns: dict[str, Any] = {"sim_id": sim_ids, "row": rows}
    for name in SIM_FILE_COLUMNS[file]:
        values = np.concatenate([a[name] for _, _, a in items])
        columns[name] = _ts(values) if name == "ts" else values
    return pa.table(columns, schema=SIM_FILE_SCHEMAS[SIM_FILE_TABLE[file]])


TABLE_FOR_EVENT: dict[type, tuple[str, Callable[[Any], pa.Table]]] = {
    BookBatch: ("book_tops", book_tops_table),
    TradeBatch: ("md_trades", md_trades_table),
    BarBatch: ("ohlcv", ohlcv_table),
    RawBatch: ("md_raw", md_raw_table),
    MarketInfo: ("market_info", market_info_table),
    Opportunity: ("opportunities", opportunities_table),
    Intent: ("intents", intents_table),
    DeadLetter: ("dead_letters", dead_letters_table),
    SimCalibration: ("sim_calibrations", sim_calibrations_table),
    SimJob: ("sim_jobs", sim_jobs_table),
    SimStatus: ("sim_status", sim_status_table),
}
"""Event class → (table name, builder taking a list of such events)."""

TABLES_FOR_EVENT: dict[type, Callable[[Any], dict[str, pa.Table]]] = {
    SimResult: sim_result_tables,
    SimResultPart: sim_result_tables,
    RunUpdate: paper_update_tables,
}
"""Event class → builder of several tables (a run's result fills one table per file)."""


def build_tables(kind: type, events: Sequence[Any]) -> dict[str, pa.Table]:
    """Table name → Arrow table for a group of events of one class, in insert order."""
    if kind in TABLES_FOR_EVENT:
        return TABLES_FOR_EVENT[kind](events)
    table, build = TABLE_FOR_EVENT[kind]
    return {table: build(events)}
