"""libs.store on a real ClickHouse engine: chDB in a temp dir, and a server when Docker exists.

Every test gets its own database (in one chDB directory per module: chDB embeds one
ClickHouse per process), migrated from the shipped SQL files.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from libs import config
from libs.config import Settings
from libs.store import Store, StoreError, open_store
from libs.store import tables as tb
from proto.events import (
    BookBatch,
    Check,
    DeadLetter,
    Decision,
    Intent,
    Leg,
    LegFill,
    Opportunity,
    PaperTrade,
    RunStatus,
    TradeBatch,
)
from tests.conftest import docker_available

REPO = Path(__file__).resolve().parents[2]
T0 = 1_732_000_000_123_456_789  # 2024-11-19, UTC ns
MONTH_NS = 31 * 86_400 * 10**9
_db_seq = itertools.count()


# -- engines ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chdb_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mt_home")


@pytest.fixture(scope="module")
def clickhouse_url() -> Iterator[str]:
    if not docker_available():
        pytest.skip("Docker engine not available")
    from testcontainers.community.clickhouse import ClickHouseContainer

    with ClickHouseContainer("clickhouse/clickhouse-server:25.3") as ch:
        host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
        yield f"http://{ch.username}:{ch.password}@{host}:{port}"


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.docker)])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for a fresh database on chDB or on a ClickHouse server container."""
    db = f"mt_test_{next(_db_seq)}"
    if request.param == "chdb":
        return config.load({}, home=request.getfixturevalue("chdb_home"), clickhouse_database=db)
    return config.load({}, clickhouse_url=request.getfixturevalue("clickhouse_url"), clickhouse_database=db)


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    s = open_store(store_settings)
    try:
        assert s.migrate() == ["0001_init"]
        yield s
        s.command("DROP DATABASE IF EXISTS {db}")
    finally:
        s.close()


@pytest.fixture
def chdb_store(chdb_home: Path) -> Iterator[Store]:
    """A chDB store only, for behaviour specific to the embedded engine."""
    s = open_store(config.load({}, home=chdb_home, clickhouse_database=f"mt_test_{next(_db_seq)}"))
    try:
        s.migrate()
        yield s
    finally:
        s.close()


# -- events ----------------------------------------------------------------------------------


def book(id: str, rows: int = 3, levels: int = 2, ts: int = T0, step: int = 1) -> BookBatch:
    flat = [7_000 + 10 * r + lvl for r in range(rows) for lvl in range(levels)]
    return BookBatch(
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
    )


def trades(id: str) -> TradeBatch:
    return TradeBatch(
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
    )


LEG = Leg(venue="kalshi", instrument="KX-A", outcome="yes", size=10, limit_px=4_500, cost_micros=4, fee_micros=1)


def opportunity(id: str, closed_at: int | None = None) -> Opportunity:
    return Opportunity(
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
    )


def intent(id: str) -> Intent:
    return Intent(
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
    )


def decision(id: str) -> Decision:
    return Decision(
        id=id,
        ts=T0 + 3,
        run_id="run-1",
        intent_id="int-1",
        opportunity_key="kalshi:KX-A|polymarket:PM-X",
        decision_source="intent",
        taken=False,
        reason='daily cap: it\'s "spent"',
        checks=[Check(name="edge", passed=True), Check(name="cap", passed=False, detail="5000 > 4000")],
        intent_ts=T0 + 2,
        book_ts=T0,
    )


def paper_trade(id: str) -> PaperTrade:
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
    return PaperTrade(
        id=id,
        ts=T0 + 4,
        run_id="run-1",
        intent_id="int-1",
        decision_id="dec-1",
        opportunity_key="kalshi:KX-A|polymarket:PM-X",
        requested_size=10,
        matched_size=7,
        fill_pct=0.7,
        legs=[fill],
        cost_micros=6_650_000,
        fee_micros=40_000,
        payout_micros=7_000_000,
        pnl_micros=310_000,
        executed_at=T0 + 4,
        settled_at=T0 + 4 + 2 * 10**9,
    )


def run_status(id: str, ts: int, state: str, stopped_at: int | None = None) -> RunStatus:
    return RunStatus(
        id=id,
        ts=ts,
        run_id="run-1",
        state=state,  # type: ignore[arg-type]
        label="default",
        starting_micros=10_000_000_000,
        balance_micros=10_000_310_000,
        pnl_micros=310_000,
        fees_micros=40_000,
        decisions=2,
        taken=1,
        trades=1,
        min_net_edge_micros=5_000,
        max_leg_micros=1_000_000_000,
        daily_cap_micros=5_000_000_000,
        started_at=T0,
        stopped_at=stopped_at,
    )


def dead_letter(subject: str) -> DeadLetter:
    return DeadLetter(
        consumer="recorder-md", subject=subject, reason="bad tag", data=b"\x00\x01raw", ts=T0, deliveries=3
    )


def plain(ev: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """An event's fields as a dict, minus `drop` and the `type` tag."""
    d = msgspec.structs.asdict(ev)
    return {k: v for k, v in d.items() if k not in drop}


def read(store: Store, table: str, order: str) -> list[dict[str, Any]]:
    """All rows of a table (FINAL when replacing), timestamps as UTC ns ints."""
    final = "" if table in ("book_tops", "md_trades", "dead_letters") else " FINAL"
    t = store.query_arrow(f"SELECT * FROM {{db}}.{table}{final} ORDER BY {order}")
    for i, field in enumerate(t.schema):
        if pa.types.is_timestamp(field.type):
            t = t.set_column(i, field.name, t.column(i).cast(pa.int64()))
    return t.to_pylist()


# -- migrations ------------------------------------------------------------------------------


def test_migrations_apply_once_and_match_the_arrow_schemas(store: Store) -> None:
    assert store.migrate() == []
    assert store.migrate() == []
    assert store.applied_migrations() == ["0001_init"]
    for table, schema in tb.SCHEMAS.items():
        cols = store.query_arrow(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
            {"d": store.database, "t": table},
        )
        assert cols["name"].to_pylist() == schema.names, table
    assert store.table_counts() == dict.fromkeys(sorted(tb.SCHEMAS), 0)


def test_new_migrations_apply_in_version_order(store: Store, tmp_path: Path) -> None:
    (tmp_path / "0001_init.sql").write_text("SELECT 1")  # already recorded: not run again
    (tmp_path / "0003_more.sql").write_text("ALTER TABLE {db}.extra ADD COLUMN b String;")
    (tmp_path / "0002_extra.sql").write_text(
        "-- needs to run before 0003\nCREATE TABLE {db}.extra (a Int64) ENGINE = MergeTree ORDER BY a;"
    )
    assert store.migrate(tmp_path) == ["0002_extra", "0003_more"]
    assert store.migrate(tmp_path) == []
    assert store.applied_migrations() == ["0001_init", "0002_extra", "0003_more"]
    assert "extra" in store.table_counts()


def test_a_failing_migration_names_itself_and_is_not_recorded(store: Store, tmp_path: Path) -> None:
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE {db}.x (a Nonsense) ENGINE = Memory")
    with pytest.raises(StoreError, match="migration 0002_broken: `CREATE TABLE") as info:
        store.migrate(tmp_path)
    assert "Nonsense" in str(info.value)
    assert store.applied_migrations() == ["0001_init"]


# -- round trips -----------------------------------------------------------------------------


def test_book_tops_round_trip(store: Store) -> None:
    batches = [book("bk-1", rows=3, levels=2), book("bk-2", rows=2, levels=1, ts=T0 + 100)]
    assert store.insert_arrow("book_tops", tb.book_tops_table(batches), dedup_token="bk-1,bk-2") == 5
    expected = [
        {
            "ts": b.book_ts[r],
            "venue": b.venue,
            "instrument": b.instruments[b.inst_idx[r]],
            "source": b.source,
            "bid_px": b.bid_px[r * b.levels],
            "bid_sz": b.bid_sz[r * b.levels],
            "ask_px": b.ask_px[r * b.levels],
            "ask_sz": b.ask_sz[r * b.levels],
            "recv_ts": b.ts,
            "batch_id": b.id,
            "row": r,
        }
        for b in batches
        for r in range(b.rows)
    ]
    assert read(store, "book_tops", "batch_id, row") == expected


def test_md_trades_round_trip(store: Store) -> None:
    batch = trades("tr-1")
    assert store.insert_arrow("md_trades", tb.md_trades_table([])) == 0
    assert store.insert_arrow("md_trades", tb.md_trades_table([batch]), dedup_token=batch.id) == 2
    expected = [
        {
            "ts": batch.trade_ts[r],
            "venue": batch.venue,
            "instrument": "PM-X",
            "source": batch.source,
            "px": batch.px[r],
            "size": batch.size[r],
            "aggressor": batch.aggressor[r],
            "batch_id": batch.id,
            "row": r,
        }
        for r in range(batch.rows)
    ]
    assert read(store, "md_trades", "row") == expected


def test_opportunities_round_trip(store: Store) -> None:
    events = [opportunity("ev-1"), opportunity("ev-2", closed_at=T0 + 10**9)]
    store.insert_arrow("opportunities", tb.opportunities_table(events))
    rows = read(store, "opportunities", "id")
    for ev, row in zip(events, rows, strict=True):
        assert msgspec.json.decode(row.pop("legs_json"), type=list[Leg]) == ev.legs
        assert row == plain(ev, drop=("legs",))


def test_intents_round_trip(store: Store) -> None:
    ev = intent("int-1")
    store.insert_arrow("intents", tb.intents_table([ev]))
    [row] = read(store, "intents", "id")
    assert msgspec.json.decode(row.pop("legs_json"), type=list[Leg]) == ev.legs
    assert row == plain(ev, drop=("legs",))


def test_decisions_round_trip(store: Store) -> None:
    ev = decision("dec-1")
    store.insert_arrow("decisions", tb.decisions_table([ev]))
    [row] = read(store, "decisions", "id")
    assert msgspec.json.decode(row.pop("checks_json"), type=list[Check]) == ev.checks
    assert row == plain(ev, drop=("checks",)) | {"taken": 0}


def test_paper_trades_round_trip(store: Store) -> None:
    ev = paper_trade("pt-1")
    store.insert_arrow("paper_trades", tb.paper_trades_table([ev]))
    [row] = read(store, "paper_trades", "id")
    assert msgspec.json.decode(row.pop("legs_json"), type=list[LegFill]) == ev.legs
    assert row == plain(ev, drop=("legs",))


def test_paper_runs_keep_the_latest_status_per_run(store: Store) -> None:
    first = run_status("st-1", T0, "running")
    last = run_status("st-2", T0 + 10**9, "stopped", stopped_at=T0 + 10**9)
    store.insert_arrow("paper_runs", tb.paper_runs_table([last]))
    store.insert_arrow("paper_runs", tb.paper_runs_table([first]))  # arrives late: older version
    [row] = read(store, "paper_runs", "run_id")
    assert row == plain(last, drop=("id",))


def test_dead_letters_round_trip_keeps_raw_bytes(store: Store) -> None:
    dl = dead_letter("md.book.kalshi.KX-A")
    store.insert_arrow("dead_letters", tb.dead_letters_table([dl]), dedup_token="dl-1")
    [row] = store.query_arrow(
        "SELECT consumer, subject, reason, deliveries, hex(data) AS data, toUnixTimestamp64Nano(ts) AS ts "
        "FROM {db}.dead_letters"
    ).to_pylist()
    assert row == plain(dl) | {"data": dl.data.hex().upper()}


def test_columns_are_matched_by_name_not_position(store: Store) -> None:
    data = tb.md_trades_table([trades("tr-rev")])
    store.insert_arrow("md_trades", data.select(list(reversed(data.column_names))))
    assert read(store, "md_trades", "row")[0]["px"] == 4_700


def test_query_df_and_parameters(store: Store) -> None:
    store.insert_arrow("book_tops", tb.book_tops_table([book("bk-q", rows=4)]))
    tricky = "it's a \\ back'slash\tand tab"
    df = store.query_df(
        "SELECT instrument, count() AS n, {s:String} AS s FROM {db}.book_tops "
        "WHERE instrument IN {names:Array(String)} AND bid_px >= {min:Int64} "
        "GROUP BY instrument ORDER BY instrument",
        {"s": tricky, "names": ["KX-B", "nope'); DROP TABLE x; --"], "min": 0},
    )
    assert df.rows() == [("KX-B", 2, tricky)]


# -- idempotence -----------------------------------------------------------------------------


def test_replayed_market_data_with_the_same_token_counts_once(store: Store) -> None:
    # Spans two months, so it also lands in two partitions.
    batch = book("bk-replay", rows=6, ts=T0, step=MONTH_NS // 4)
    for _ in range(2):
        store.insert_arrow("book_tops", tb.book_tops_table([batch]), dedup_token=batch.id)
        store.insert_arrow("md_trades", tb.md_trades_table([trades("tr-replay")]), dedup_token="tr-replay")
        store.insert_arrow("dead_letters", tb.dead_letters_table([dead_letter("x")]), dedup_token="dl-replay")
    counts = store.table_counts()
    assert (counts["book_tops"], counts["md_trades"], counts["dead_letters"]) == (6, 2, 1)
    # The same token dedups the insert itself: no second copy is even stored.
    raw = "SELECT count() FROM {db}.md_trades"
    assert store.query_arrow(raw).column(0)[0].as_py() == 2
    # A redelivery grouped differently (another token) is stored, but collapses by (batch_id, row).
    store.insert_arrow("md_trades", tb.md_trades_table([trades("tr-replay")]), dedup_token="tr-replay-2")
    assert store.query_arrow(raw).column(0)[0].as_py() == 4
    assert store.table_counts()["md_trades"] == 2


def test_replayed_events_count_once(store: Store) -> None:
    builders = {
        "opportunities": (tb.opportunities_table, opportunity("ev-r")),
        "intents": (tb.intents_table, intent("int-r")),
        "decisions": (tb.decisions_table, decision("dec-r")),
        "paper_trades": (tb.paper_trades_table, paper_trade("pt-r")),
        "paper_runs": (tb.paper_runs_table, run_status("st-r", T0, "running")),
    }
    for attempt in range(2):
        for table, (build, ev) in builders.items():
            store.insert_arrow(table, build([ev]), dedup_token=f"{table}-{attempt}")  # tokens differ
    counts = store.table_counts()
    assert {t: counts[t] for t in builders} == dict.fromkeys(builders, 1)


def test_concurrent_inserts_into_different_tables_stay_apart(store: Store) -> None:
    """chDB binds Python(name) tables by name process-wide; each insert must use its own."""
    errors: list[BaseException] = []

    def writer(table: str, build: Any, make: Any) -> None:
        try:
            for i in range(8):
                store.insert_arrow(table, build([make(f"{table}-{i}")]))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=("book_tops", tb.book_tops_table, lambda i: book(i, rows=500))),
        threading.Thread(target=writer, args=("md_trades", tb.md_trades_table, trades)),
        threading.Thread(target=writer, args=("intents", tb.intents_table, intent)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counts = store.table_counts()
    assert (counts["book_tops"], counts["md_trades"], counts["intents"]) == (8 * 500, 8 * 2, 8)
    bad = store.query_arrow("SELECT count() AS n FROM {db}.book_tops WHERE NOT startsWith(batch_id, 'book_tops-')")
    assert bad["n"].to_pylist() == [0]


# -- errors ----------------------------------------------------------------------------------


def test_unknown_table_names_the_table(store: Store) -> None:
    data = tb.md_trades_table([trades("x")])
    with pytest.raises(StoreError, match=rf"insert into {store.database}\.no_such_table failed: .*no_such_table"):
        store.insert_arrow("no_such_table", data)
    with pytest.raises(StoreError, match="'book_tops; DROP TABLE x' is not a valid table name"):
        store.insert_arrow("book_tops; DROP TABLE x", data)


def test_mismatched_columns_name_the_table(store: Store) -> None:
    data = pa.table({"id": ["a"], "no_such_column": [1]})
    with pytest.raises(StoreError, match=r"insert into .*\.intents failed: .*no_such_column"):
        store.insert_arrow("intents", data)


def test_sql_errors_name_the_statement(store: Store) -> None:
    with pytest.raises(StoreError, match=r"query `SELECT nope FROM .*\.book_tops` failed: .*nope"):
        store.query_arrow("SELECT nope FROM {db}.book_tops")
    with pytest.raises(StoreError, match="statement `CREATE TABLE oops"):
        store.command("CREATE TABLE oops (")


def test_closed_store_refuses_work(store_settings: Settings) -> None:
    s = open_store(store_settings)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.query_arrow("SELECT 1")


# -- chDB specifics --------------------------------------------------------------------------


def test_second_process_on_the_same_directory_gets_a_clear_error(chdb_store: Store, chdb_home: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from libs import config
        from libs.store import StoreError, open_store
        try:
            open_store(config.load({{}}, home={str(chdb_home)!r}))
        except StoreError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "another MarketTwin process holds the ClickHouse data directory" in proc.stdout
    assert str((chdb_home / "clickhouse").resolve()) in proc.stdout


def test_a_second_directory_in_the_same_process_gets_a_clear_error(chdb_store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already has chDB open on another directory"):
        open_store(config.load({}, home=tmp_path))
    assert chdb_store.query_arrow("SELECT 1 AS one")["one"].to_pylist() == [1]
