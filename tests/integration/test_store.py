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
    Leg,
    LegFill,
)
from tests.conftest import docker_available
from tests.factories import (
    T0,
    book,
    dead_letter,
    intent,
    opportunity,
    run_update,
    trades,
)

REPO = Path(__file__).resolve().parents[2]
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
        assert s.migrate() == [
            "0001_init",
            "0002_sim",
            "0003_market_data",
            "0004_nightly",
            "0005_market_info",
            "0006_paper",
        ]
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
    assert store.applied_migrations() == [
        "0001_init",
        "0002_sim",
        "0003_market_data",
        "0004_nightly",
        "0005_market_info",
        "0006_paper",
    ]
    for table, schema in tb.SCHEMAS.items():
        cols = store.query_arrow(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
            {"d": store.database, "t": table},
        )
        assert cols["name"].to_pylist() == schema.names, table
    assert store.table_counts() == dict.fromkeys(sorted(tb.SCHEMAS), 0)


def test_new_migrations_apply_in_version_order(store: Store, tmp_path: Path) -> None:
    (tmp_path / "0001_init.sql").write_text("SELECT 1")  # already recorded: not run again
    (tmp_path / "0011_more.sql").write_text("ALTER TABLE {db}.extra ADD COLUMN b String;")
    (tmp_path / "0010_extra.sql").write_text(
        "-- needs to run before 0011\nCREATE TABLE {db}.extra (a Int64) ENGINE = MergeTree ORDER BY a;"
    )
    assert store.migrate(tmp_path) == ["0010_extra", "0011_more"]
    assert store.migrate(tmp_path) == []
    assert store.applied_migrations() == [
        "0001_init",
        "0002_sim",
        "0003_market_data",
        "0004_nightly",
        "0005_market_info",
        "0006_paper",
        "0010_extra",
        "0011_more",
    ]
    assert "extra" in store.table_counts()


def test_a_failing_migration_names_itself_and_is_not_recorded(store: Store, tmp_path: Path) -> None:
    (tmp_path / "0010_broken.sql").write_text("CREATE TABLE {db}.x (a Nonsense) ENGINE = Memory")
    with pytest.raises(StoreError, match="migration 0010_broken: `CREATE TABLE") as info:
        store.migrate(tmp_path)
    assert "Nonsense" in str(info.value)
    assert store.applied_migrations() == [
        "0001_init",
        "0002_sim",
        "0003_market_data",
        "0004_nightly",
        "0005_market_info",
        "0006_paper",
    ]


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


def test_run_update_fans_out_into_four_tables(store: Store) -> None:
    ev = run_update("up-1", T0 + 5)
    for table, data in tb.paper_update_tables([ev]).items():
        store.insert_arrow(table, data)
    decisions = read(store, "decisions", "id")
    d = ev.decisions
    assert [r["id"] for r in decisions] == d.id
    assert [r["reason"] for r in decisions] == d.reason
    assert [r["taken"] for r in decisions] == [int(t) for t in d.taken]
    assert [(r["checks_run"], r["checks_passed"]) for r in decisions] == list(
        zip(d.checks_run, d.checks_passed, strict=True)
    )
    assert {r["user_id"] for r in decisions} == {"u1"} and {r["run_id"] for r in decisions} == {"run-1"}
    assert decisions[1]["detail"] == d.detail[1]  # quotes survive
    [trade] = read(store, "paper_trades", "id")
    assert msgspec.json.decode(trade.pop("legs_json"), type=list[LegFill]) == ev.trades[0].legs
    assert trade == plain(ev.trades[0], drop=("legs",)) | {"broken": 0}
    [change] = read(store, "paper_balance_changes", "id")
    assert change == plain(ev.balance_changes[0]) | {"run_id": "run-1", "user_id": "u1"}
    [run] = read(store, "paper_runs", "run_id")
    assert (run["state"], run["balance_micros"], run["version"], run["notes"]) == (
        "running",
        ev.snapshot.balance_micros,
        1,
        "first try",
    )
    assert run["opportunity_keys"] == ["kalshi:KX-A|polymarket:PM-X"] and run["keys_present"] == ["kalshi"]


def test_paper_runs_keep_the_latest_step_per_run(store: Store) -> None:
    first = run_update("up-1", T0, version=1)
    last = run_update("up-2", T0 + 10**9, state="stopped", version=2, stopped_at=T0 + 10**9)
    store.insert_arrow("paper_runs", tb.paper_update_tables([last])["paper_runs"])
    store.insert_arrow("paper_runs", tb.paper_update_tables([first])["paper_runs"])  # arrives late: older
    [row] = read(store, "paper_runs", "run_id")
    assert (row["state"], row["version"], row["stop_reason"]) == ("stopped", 2, "requested")


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
    }
    for attempt in range(2):
        for table, (build, ev) in builders.items():
            store.insert_arrow(table, build([ev]), dedup_token=f"{table}-{attempt}")  # tokens differ
        for table, data in tb.paper_update_tables([run_update("up-r", T0)]).items():
            store.insert_arrow(table, data, dedup_token=f"{table}-{attempt}")
    counts = store.table_counts()
    assert {t: counts[t] for t in builders} == dict.fromkeys(builders, 1)
    paper = {"decisions": 2, "paper_trades": 1, "paper_balance_changes": 1, "paper_runs": 1}
    assert {t: counts[t] for t in paper} == paper


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
