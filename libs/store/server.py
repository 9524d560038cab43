"""The ClickHouse-server backend over HTTP (clickhouse-connect), for `CLICKHOUSE_URL`.

The client runs without a ClickHouse session id so one client is safe to share between
threads; every statement names its database explicitly (`{db}.table`), so the database
need not exist before `migrate()` creates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from libs.store.base import Store, StoreError, reason_of


@dataclass(frozen=True)
class ServerAddress:
    """Where a ClickHouse server is and how to log in, parsed from `CLICKHOUSE_URL`."""

    host: str
    port: int
    username: str | None
    password: str
    secure: bool
    database: str | None

    @property
    def display(self) -> str:
        """The address without the password, for messages."""
        scheme = "https" if self.secure else "http"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_url(url: str) -> ServerAddress:
    """Parse `http(s)://user:pass@host:port/database`; a bad URL is a StoreError (password hidden)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"clickhouse: CLICKHOUSE_URL is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise StoreError(f"clickhouse: CLICKHOUSE_URL {shown!r} must look like http(s)://user:pass@host:8123/db")
    secure = parts.scheme == "https"
    database = unquote(parts.path.strip("/")) or None
    return ServerAddress(
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else "",
        secure=secure,
        database=database,
    )


class ServerStore(Store):
    """A Store on a ClickHouse server reached over HTTP."""

    backend = "clickhouse"

    def __init__(self, url: str, default_database: str) -> None:
        self.address = parse_url(url)
        super().__init__(self.address.database or default_database)
        import clickhouse_connect

        try:
            self._client = clickhouse_connect.get_client(
                host=self.address.host,
                port=self.address.port,
                username=self.address.username,
                password=self.address.password,
                secure=self.address.secure,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise StoreError(f"clickhouse: cannot connect to {self.address.display}: {reason_of(exc)}") from exc

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> None:
        self._client.command(sql, parameters=dict(params) if params else None)

    def _select(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        return self._client.query_arrow(sql, parameters=dict(params) if params else None, use_strings=True)

    def _insert(self, table: str, data: pa.Table, dedup_token: str | None) -> None:
        settings = None if dedup_token is None else {"insert_deduplication_token": dedup_token}
        self._client.insert_arrow(table, data, database=self._db, settings=settings)

    def _close(self) -> None:
        self._client.close()
