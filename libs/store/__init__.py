"""ClickHouse access for MarketTwin: one `Store` interface over chDB (embedded) or a server.

`open_store(settings)` picks the backend: a ClickHouse server when `CLICKHOUSE_URL` is set
(clickhouse-connect over HTTP), otherwise chDB with data under `<MT_HOME>/clickhouse`.
"""

from __future__ import annotations

from pathlib import Path

from libs.config import Settings
from libs.store.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store"]


def open_store(settings: Settings) -> Store:
    """Open the store the settings describe (not yet migrated: call `migrate()`)."""
    if settings.clickhouse_url:
        from libs.store.server import ServerStore

        return ServerStore(settings.clickhouse_url, settings.clickhouse_database)
    from libs.store.embedded import ChdbStore

    return ChdbStore(Path(settings.home) / "clickhouse", settings.clickhouse_database)
