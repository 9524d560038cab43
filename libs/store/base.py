"""The `Store` interface both backends implement, and `StoreError`.

The shared logic (placeholder filling, validation, migrations, counts, error wrapping)
lives here once; a backend supplies four primitives: run a statement, select into Arrow,
insert an Arrow table, close. Methods are sync and thread-safe; async callers use
`asyncio.to_thread`.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa

from libs.store.sql import MIGRATIONS_DIR, discover_migrations, is_identifier, quote_string, with_db

T = TypeVar("T")

MIGRATIONS_TABLE = "schema_migrations"


class StoreError(RuntimeError):
    """A storage operation failed; the message names the table or statement and the reason."""


def short_sql(sql: str, limit: int = 160) -> str:
    """A statement on one line, cut to `limit` characters, for error messages."""
    one_line = re.sub(r"\s+", " ", sql).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def reason_of(exc: BaseException) -> str:
    """The backend's reason on one line (ClickHouse messages can span lines)."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text or type(exc).__name__


class Store(ABC):
    """One ClickHouse database, embedded (chDB) or on a server (clickhouse-connect)."""

    backend: str = "?"
    """Short backend name used in error messages: `chdb` or `clickhouse`."""

    def __init__(self, database: str) -> None:
        if not is_identifier(database):
            raise StoreError(f"database name {database!r} must be letters, digits and _ only")
        self._db = database
        self._closed = False
        self._migrate_lock = threading.Lock()

    @property
    def database(self) -> str:
        """The database every MarketTwin table lives in."""
        return self._db

    # -- backend primitives ---------------------------------------------------------------

    @abstractmethod
    def _run(self, sql: str, params: Mapping[str, Any] | None) -> None:
        """Execute one statement whose result is not needed."""

    @abstractmethod
    def _select(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        """Execute one query and return its rows as Arrow."""

    @abstractmethod
    def _insert(self, table: str, data: pa.Table, dedup_token: str | None) -> None:
        """Insert `data` into `database.table`, columns matched by name."""

    @abstractmethod
    def _close(self) -> None:
        """Release the engine or connection."""

    # -- public API -----------------------------------------------------------------------

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a DDL or other statement (`{db}` filled in, `{name:Type}` bound from params)."""
        sql = with_db(sql, self._db)
        self._guard(f"statement `{short_sql(sql)}`", lambda: self._run(sql, params))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table (`{db}` filled in, `{name:Type}` bound)."""
        sql = with_db(sql, self._db)
        return self._guard(f"query `{short_sql(sql)}`", lambda: self._select(sql, params))

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame."""
        frame = pl.from_arrow(self.query_arrow(sql, params))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> int:
        """Insert an Arrow table into `table` by column name; returns the rows sent.

        With `dedup_token` (e.g. the batch id), a replay of the same insert is dropped by
        the engine on MergeTree tables with a deduplication window (the count still
        reports the rows sent).
        """
        what = f"insert into {self._db}.{table}"
        if not is_identifier(table):
            raise StoreError(f"{self.backend}: {what}: {table!r} is not a valid table name")
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if not isinstance(data, pa.Table):
            raise StoreError(f"{self.backend}: {what}: expected a pyarrow.Table, got {type(data).__name__}")
        bad = [name for name in data.column_names if not is_identifier(name)]
        if bad:
            raise StoreError(f"{self.backend}: {what}: column name(s) {bad} are not valid identifiers")
        if dedup_token is not None and not isinstance(dedup_token, str):
            raise StoreError(f"{self.backend}: {what}: dedup_token must be a str, got {dedup_token!r}")
        if data.num_rows == 0:
            return 0
        self._guard(what, lambda: self._insert(table, data, dedup_token))
        return data.num_rows

    def migrate(self, directory: Path | None = None) -> list[str]:
        """Apply the numbered migrations not yet recorded, in order; returns those applied.

        Creates the database and `schema_migrations` first, so it is safe on an empty
        engine and a no-op the second time.
        """
        try:
            migrations = discover_migrations(directory or MIGRATIONS_DIR)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.backend}: migrations: {exc}") from exc
        with self._migrate_lock:
            self.command("CREATE DATABASE IF NOT EXISTS {db}")
            self.command(
                f"CREATE TABLE IF NOT EXISTS {{db}}.{MIGRATIONS_TABLE} "
                "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                "ENGINE = ReplacingMergeTree ORDER BY version"
            )
            recorded = self.query_arrow(f"SELECT version FROM {{db}}.{MIGRATIONS_TABLE} FINAL")
            done = set(recorded["version"].to_pylist())
            applied: list[str] = []
            for migration in migrations:
                if migration.version in done:
                    continue
                for statement in migration.statements(self._db):
                    what = f"migration {migration.label}: `{short_sql(statement)}`"
                    self._guard(what, lambda s=statement: self._run(s, None))
                self.command(
                    f"INSERT INTO {{db}}.{MIGRATIONS_TABLE} (version, name) "
                    f"VALUES ({migration.version}, {quote_string(migration.label)})"
                )
                applied.append(migration.label)
            return applied

    def applied_migrations(self) -> list[str]:
        """Labels of the migrations recorded as applied, in order."""
        rows = self.query_arrow(f"SELECT name FROM {{db}}.{MIGRATIONS_TABLE} FINAL ORDER BY version")
        return rows["name"].to_pylist()

    def table_counts(self) -> dict[str, int]:
        """Rows per MarketTwin table; ReplacingMergeTree tables are counted with FINAL.

        FINAL collapses rows sharing a key, so a replayed event insert does not count twice.
        """
        tables = self.query_arrow(
            "SELECT name, engine FROM system.tables WHERE database = {db_name:String} "
            "AND endsWith(engine, 'MergeTree') AND name != {skip:String} ORDER BY name",
            {"db_name": self._db, "skip": MIGRATIONS_TABLE},
        ).to_pylist()
        parts = [
            f"SELECT {quote_string(t['name'])} AS name, count() AS n FROM {{db}}.{t['name']}"
            + (" FINAL" if "Replacing" in t["engine"] else "")
            for t in tables
            if is_identifier(t["name"])
        ]
        if not parts:
            return {}
        rows = self.query_arrow(" UNION ALL ".join(parts)).to_pylist()
        return {r["name"]: int(r["n"]) for r in sorted(rows, key=lambda r: r["name"])}

    def close(self) -> None:
        """Release the engine or connection; further calls raise StoreError. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Store:
        """Use as a context manager: closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()

    # -- helpers --------------------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run a backend call, turning any failure into a StoreError naming `what`."""
        if self._closed:
            raise StoreError(f"{self.backend}: {what}: the store is closed")
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.backend}: {what} failed: {reason_of(exc)}") from exc
