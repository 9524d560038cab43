"""Event → Arrow builders (libs.store.tables): exact columns, level-0 tops, clear errors."""

from __future__ import annotations

import msgspec
import pyarrow as pa
import pytest

from libs.store import tables
from proto.events import (
    BookBatch,
    DeadLetter,
    Leg,
    TradeBatch,
)
from tests import factories

T0 = 1_732_000_000_000_000_000


def book(id: str, levels: int, instruments: list[str], inst_idx: list[int], ts: int = T0) -> BookBatch:
    """A book batch whose level-l value of row r is 1000*r + l (bids) / +100 (asks)."""
    rows = len(inst_idx)
    flat = [1000 * r + lvl for r in range(rows) for lvl in range(levels)]
    return BookBatch(
        id=id,
        ts=ts + 999,
        venue="kalshi",
        source="live",
        levels=levels,
        instruments=instruments,
        inst_idx=inst_idx,
        book_ts=[ts + r for r in range(rows)],
        bid_px=flat,
        bid_sz=[v + 1 for v in flat],
        ask_px=[v + 100 for v in flat],
        ask_sz=[v + 101 for v in flat],
    )


def ints(table: pa.Table, column: str) -> list[int]:
    """A column as plain ints (timestamps as UTC nanoseconds)."""
    col = table[column]
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return col.to_pylist()


def test_book_tops_takes_level_zero_of_every_row_across_batches_with_different_depths() -> None:
    a = book("a", levels=3, instruments=["X", "Y"], inst_idx=[1, 0, 1])
    b = book("b", levels=1, instruments=["Z"], inst_idx=[0, 0], ts=T0 + 50)
    t = tables.book_tops_table([a, b])
    assert t.schema == tables.BOOK_TOPS
    assert t["instrument"].to_pylist() == ["Y", "X", "Y", "Z", "Z"]
    assert ints(t, "bid_px") == [0, 1000, 2000, 0, 1000]
    assert ints(t, "bid_sz") == [1, 1001, 2001, 1, 1001]
    assert ints(t, "ask_px") == [100, 1100, 2100, 100, 1100]
    assert ints(t, "ask_sz") == [101, 1101, 2101, 101, 1101]
    assert ints(t, "ts") == [T0, T0 + 1, T0 + 2, T0 + 50, T0 + 51]
    assert ints(t, "recv_ts") == [a.ts] * 3 + [b.ts] * 2
    assert t["batch_id"].to_pylist() == ["a", "a", "a", "b", "b"]
    assert t["row"].to_pylist() == [0, 1, 2, 0, 1]
    assert t["venue"].to_pylist() == ["kalshi"] * 5


def test_md_trades_rows() -> None:
    tb = TradeBatch(
        id="t1",
        ts=T0,
        venue="polymarket",
        source="replay",
        instruments=["A", "B"],
        inst_idx=[1, 0],
        trade_ts=[T0 + 1, T0 + 2],
        px=[4_700, 5_300],
        size=[10, 20],
        aggressor=[1, -1],
    )
    t = tables.md_trades_table([tb])
    assert t.schema == tables.MD_TRADES
    assert t.to_pylist()[1] | {"ts": None} == {
        "ts": None,
        "venue": "polymarket",
        "instrument": "A",
        "source": "replay",
        "px": 5_300,
        "size": 20,
        "aggressor": -1,
        "batch_id": "t1",
        "row": 1,
    }


def test_empty_input_gives_an_empty_table_with_the_schema() -> None:
    for name, (table, build) in [(c.__name__, v) for c, v in tables.TABLE_FOR_EVENT.items()]:
        t = build([])
        assert t.num_rows == 0, name
        assert t.schema == tables.SCHEMAS[table], name


def test_every_table_has_a_writer() -> None:
    """Each table is filled by one event type, or (sim results) one table per result file."""
    event_tables = {t for t, _ in tables.TABLE_FOR_EVENT.values()}
    sim_tables = {"sim_files", "sim_metrics", *tables.SIM_FILE_SCHEMAS}
    service_tables = {"nightly_updates"}  # written by the bars service itself
    service_tables |= {"users", "user_profiles", "user_secrets"}  # written by the report service's user API
    event_tables |= set(tables.paper_update_tables([]))
    assert event_tables | sim_tables | service_tables == set(tables.SCHEMAS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bid_px": [1]}, "bid_px has 1 entries, expected 4"),
        ({"inst_idx": [0]}, "inst_idx has 1 entries, expected 2"),
        ({"inst_idx": [0, 5]}, "inst_idx value 5 is outside instruments"),
        ({"levels": 0}, "levels=0"),
    ],
)
def test_malformed_book_batch_names_the_batch_and_field(change: dict, message: str) -> None:
    good = book("bad-batch", levels=2, instruments=["X"], inst_idx=[0, 0])
    bad = msgspec.structs.replace(good, **change)
    with pytest.raises(ValueError, match="bad-batch") as info:
        tables.book_tops_table([book("ok", 1, ["Q"], [0]), bad])
    assert message in str(info.value)


def test_event_tables_carry_fields_json_and_nullable_times() -> None:
    opp = factories.opportunity("o1")
    row = tables.opportunities_table([opp]).to_pylist()[0]
    assert row["closed_at"] is None
    assert msgspec.json.decode(row["legs_json"], type=list[Leg]) == opp.legs

    assert tables.intents_table([factories.intent("i1")]).num_rows == 1
    paper = tables.paper_update_tables([factories.run_update("u1", factories.T0)])
    assert paper["decisions"]["taken"].to_pylist() == [1, 0]
    assert paper["decisions"]["trade_id"].to_pylist() == ["run-1:int-0:T", ""]
    assert paper["paper_trades"]["fill_pct"].to_pylist() == [70.0]
    assert paper["paper_runs"]["stopped_at"].to_pylist() == [None]
    assert paper["paper_balance_changes"]["amount_micros"].to_pylist() == [-6_690_000]
    empty = tables.paper_update_tables([])
    assert all(t.num_rows == 0 and t.schema == tables.SCHEMAS[name] for name, t in empty.items())
    dl = DeadLetter(consumer="c", subject="s", reason="r", data=b"\x00\xff", ts=T0)
    assert tables.dead_letters_table([dl])["data"].to_pylist() == [b"\x00\xff"]


def test_ohlcv_rows_keep_float_prices_and_a_later_batch_is_the_newer_version() -> None:
    t = tables.ohlcv_table([factories.bars("b1"), factories.bars("b2", ts=factories.T0 + 99)])
    assert t.num_rows == 6
    assert t["symbol"].to_pylist()[:3] == ["AAPL", "AAPL", "BTC-PERP"]
    assert t["volume"].to_pylist()[2] == 2300413.7295
    assert t["high"].to_pylist()[0] == 186.25
    versions = t["updated_at"].cast("int64").to_pylist()
    assert versions[3] > versions[0]


def test_ohlcv_rejects_a_short_column_naming_the_batch() -> None:
    with pytest.raises(ValueError, match=r"bad-bars.*close has 2 entries, expected 3"):
        tables.ohlcv_table([factories.bars("bad-bars", close=[1.0, 2.0])])


def test_md_raw_keeps_bodies_byte_for_byte() -> None:
    t = tables.md_raw_table([factories.raw("r1")])
    assert t["body"].to_pylist() == factories.raw("r1").body
    assert t["status"].to_pylist() == [200, 429]
    assert t["row"].to_pylist() == [0, 1]
