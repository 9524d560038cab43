"""The chDB backend: ClickHouse embedded in this process, data in one directory.

chDB facts this module is shaped by:
- One process per data directory (ClickHouse flocks `<dir>/status`), and one data
  directory per process (the embedded server is a process singleton). The error chDB
  raises for the first is a bare "Error initializing EmbeddedServer", so we probe the
  lock ourselves to say what happened.
- `INSERT … SELECT … FROM Python(name)` finds the Arrow table by walking the calling
  thread's frames for a variable called `name`, but binds it in a process-wide cache
  keyed by that name: two threads inserting concurrently under the same name can both
  read the first thread's table. Every insert therefore publishes its table under a
  fresh name (a module global, removed when the query returns).
- chDB 4.x deadlocks when a query with `{name:Type}` parameters waits for the connection
  while another thread's `INSERT … FROM Python(...)` needs the Python lock that query
  holds. One lock per store serialises every query (chDB runs them one at a time anyway).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from libs.store.base import Store, StoreError, reason_of
from libs.store.sql import format_params, quote_string

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_ARROW_NAME = "_markettwin_arrow_{}"
_arrow_seq = itertools.count()
_scope = globals()
"""Where `Python(name)` finds the table being inserted: this module's globals, which are
the f_globals of the `_insert` frame on the query's call stack."""


class ChdbStore(Store):
    """A Store on chDB (embedded ClickHouse) with data under `path`."""

    backend = "chdb"

    def __init__(self, path: Path, database: str) -> None:
        super().__init__(database)
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"chdb: cannot create data directory {self.path}: {exc}") from exc
        from chdb import session  # imported here: server-mode processes never load chDB

        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(self.path))
        except Exception as exc:
            raise _open_error(self.path, exc) from exc

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._session.query(sql, "CSV", params=format_params(params))

    def _select(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        with self._lock:
            return self._session.query(sql, "ArrowTable", params=format_params(params))

    def _insert(self, table: str, data: pa.Table, dedup_token: str | None) -> None:
        name = _ARROW_NAME.format(next(_arrow_seq))
        cols = ", ".join(data.column_names)
        settings = ""
        if dedup_token is not None:
            settings = f" SETTINGS insert_deduplication_token = {quote_string(dedup_token)}"
        sql = f"INSERT INTO {self._db}.{table} ({cols}){settings} SELECT {cols} FROM Python({name})"
        _scope[name] = data
        try:
            with self._lock:
                self._session.query(sql, "CSV")
        finally:
            del _scope[name]

    def _close(self) -> None:
        with self._lock:
            self._session.close()


def _open_error(path: Path, exc: Exception) -> StoreError:
    """Explain why chDB could not open `path`: another process, another directory, or other."""
    reason = reason_of(exc)
    if _lock_held(path / "status"):
        return StoreError(
            f"chdb: another MarketTwin process holds the ClickHouse data directory {path} "
            "(chDB allows one process per directory): stop it, or point MT_HOME or "
            "CLICKHOUSE_URL elsewhere"
        )
    if "already initialized with path" in reason:
        return StoreError(
            f"chdb: cannot open {path}: this process already has chDB open on another directory "
            f"and chDB embeds one per process; close that store first ({reason})"
        )
    return StoreError(f"chdb: cannot open data directory {path}: {reason}")


def _lock_held(status: Path) -> bool:
    """True if another process holds ClickHouse's flock on the directory's status file."""
    if fcntl is None:
        return False
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
