"""Replay of our own live recordings: `md_raw` rows re-parsed into the books the live feed published.

Rows of one venue (and optional time range) come back in receive order (ts, batch, row); each body
goes through the same parser the live source used (`services.ingest.live.parse_response`), with the
recorded receive time, so the books — prices, sizes, instruments, book times — equal the live ones.
They are published on a `VirtualClock`: as fast as possible, or N× the recorded pace.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from libs.clock import VirtualClock
from libs.store import Store
from libs.venues.books import DEFAULT_LEVELS, Response, to_batch
from services.ingest.live import PublishBooks, parse_response

SOURCE = "recording"

_SQL = (
    "SELECT toUnixTimestamp64Nano(ts) AS ts_ns, endpoint, status, hex(body) AS body_hex "
    "FROM {db}.md_raw FINAL WHERE venue = {venue:String}"
)


class ReplayStats(msgspec.Struct, kw_only=True):
    """What a replay of a recording published."""

    venue: str
    responses: int = 0
    books: int = 0
    payload_errors: int = 0
    seconds: float = 0.0


def load_recording(store: Store, venue: str, start_ns: int | None = None, end_ns: int | None = None) -> list[Response]:
    """The recorded responses of `venue` in [start_ns, end_ns), in receive order, bodies byte for byte."""
    sql = _SQL
    params: dict[str, Any] = {"venue": venue}
    if start_ns is not None:
        sql += " AND ts >= fromUnixTimestamp64Nano(toInt64({lo:Int64}), 'UTC')"
        params["lo"] = int(start_ns)
    if end_ns is not None:
        sql += " AND ts < fromUnixTimestamp64Nano(toInt64({hi:Int64}), 'UTC')"
        params["hi"] = int(end_ns)
    sql += " ORDER BY ts, batch_id, row"
    table = store.query_arrow(sql, params)
    return [
        Response(venue=venue, endpoint=e, recv_ts=int(t), status=int(s), body=bytes.fromhex(b))
        for t, e, s, b in zip(
            table["ts_ns"].to_pylist(),
            table["endpoint"].to_pylist(),
            table["status"].to_pylist(),
            table["body_hex"].to_pylist(),
            strict=True,
        )
    ]


async def replay_recording(
    store: Store,
    publish: PublishBooks,
    *,
    venue: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
    speed: float | None = None,
    levels: int = DEFAULT_LEVELS,
    source: str = SOURCE,
    log: Any = None,
) -> ReplayStats:
    """Re-parse a venue's recording and publish its books at their receive times on a virtual clock."""
    responses = await asyncio.to_thread(load_recording, store, venue, start_ns, end_ns)
    clock = VirtualClock(speed)
    stats = ReplayStats(venue=venue, responses=len(responses))
    t0 = time.perf_counter()
    for resp in responses:
        parsed = parse_response(resp)
        for err in parsed.errors:
            stats.payload_errors += 1
            if log is not None:
                log.error(
                    "bad venue payload in recording",
                    venue=venue,
                    endpoint=resp.endpoint,
                    field=err.field,
                    error=str(err),
                )
        if not parsed.books:
            continue
        await clock.wait_until(resp.recv_ts)
        await publish([to_batch(b, venue, source, levels) for b in parsed.books])
        stats.books += len(parsed.books)
    stats.seconds = time.perf_counter() - t0
    if log is not None:
        log.info("recording replayed", **msgspec.structs.asdict(stats))
    return stats
