"""Decoded events → Arrow tables shaped exactly like the ClickHouse tables (migration 0001).

Pure functions, no I/O. The market-data builders are vectorised (numpy over all batches
at once, no per-row Python); the event builders loop per event, which is fine at their
rates. Times become `timestamp[ns, UTC]` (DateTime64(9, 'UTC')), legs and checks JSON text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from proto.events import (
    BookBatch,
    DeadLetter,
    Decision,
    Intent,
    Opportunity,
    PaperTrade,
    RunStatus,
    TradeBatch,
)

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

SCHEMAS: dict[str, pa.Schema] = {
    "book_tops": BOOK_TOPS,
    "md_trades": MD_TRADES,
    "opportunities": OPPORTUNITIES,
    "intents": INTENTS,
    "decisions": DECISIONS,
    "paper_trades": PAPER_TRADES,
    "paper_runs": PAPER_RUNS,
    "dead_letters": DEAD_LETTERS,
}
"""Arrow schema of every MarketTwin table, by table name."""

_json = msgspec.json.Encoder()


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


def _instruments(batches: Sequence[BookBatch] | Sequence[TradeBatch], rows: np.ndarray, n: int) -> pa.Array:
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


def opportunities_table(events: Sequence[Opportunity]) -> pa.Table:
    """One row per opportunity lifecycle event; legs as JSON."""
    return _event_table(OPPORTUNITIES, events, {"legs_json": lambda e: _json_text(e.legs)})


def intents_table(events: Sequence[Intent]) -> pa.Table:
    """One row per intent; legs as JSON."""
    return _event_table(INTENTS, events, {"legs_json": lambda e: _json_text(e.legs)})


def decisions_table(events: Sequence[Decision]) -> pa.Table:
    """One row per paper decision; checks as JSON, taken as 0/1."""
    return _event_table(
        DECISIONS,
        events,
        {"taken": lambda e: int(e.taken), "checks_json": lambda e: _json_text(e.checks)},
    )


def paper_trades_table(events: Sequence[PaperTrade]) -> pa.Table:
    """One row per paper trade; leg fills as JSON."""
    return _event_table(PAPER_TRADES, events, {"legs_json": lambda e: _json_text(e.legs)})


def paper_runs_table(events: Sequence[RunStatus]) -> pa.Table:
    """One row per run status; the table keeps the latest per run_id."""
    return _event_table(PAPER_RUNS, events, {})


def dead_letters_table(letters: Sequence[DeadLetter]) -> pa.Table:
    """One row per dead letter, raw message bytes kept."""
    return _event_table(DEAD_LETTERS, letters, {})


TABLE_FOR_EVENT: dict[type, tuple[str, Callable[[Any], pa.Table]]] = {
    BookBatch: ("book_tops", book_tops_table),
    TradeBatch: ("md_trades", md_trades_table),
    Opportunity: ("opportunities", opportunities_table),
    Intent: ("intents", intents_table),
    Decision: ("decisions", decisions_table),
    PaperTrade: ("paper_trades", paper_trades_table),
    RunStatus: ("paper_runs", paper_runs_table),
    DeadLetter: ("dead_letters", dead_letters_table),
}
"""Event class → (table name, builder taking a list of such events)."""
