"""Replay of our own live recordings: `md_raw` rows re-parsed into the books the live feed published.

Rows of one venue (and optional time range) come back in receive order (ts, batch, row), a page at
a time (`PAGE_ROWS` rows, keyset-paginated on that order, so memory stays one page whatever the
recording's length); the binary `body` column is read as bytes directly (chDB hands a String column
to Arrow as utf8 without checking it: it is cast to binary, byte for byte). Each body goes through
the same parser the live source used (`services.ingest.live.parse_response`), with the recorded
receive time, so the books — prices, sizes, instruments, book times — equal the live ones.
They are published on a `VirtualClock`: as fast as possible, or N× the recorded pace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pyarrow as pa

from libs.clock import VirtualClock
from libs.store import Store
from libs.venues.books import DEFAULT_LEVELS, Response, to_batch
from services.ingest.live import PublishBooks, parse_response

SOURCE = "recording"
PAGE_ROWS = 5_000
"""Responses read from the store per query."""

_SQL = (
    "SELECT toUnixTimestamp64Nano(ts) AS ts_ns, endpoint, status, body, batch_id, row "
    "FROM {db}.md_raw FINAL WHERE venue = {venue:String}"
)


class ReplayStats(msgspec.Struct, kw_only=True):
    """What a replay of a recording published."""

    venue: str
    responses: int = 0
    books: int = 0
    payload_errors: int = 0
    seconds: float = 0.0


def recording_pages(
    store: Store,
    venue: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
    page_rows: int = PAGE_ROWS,
) -> Iterator[list[Response]]:
    """The recorded responses of `venue` in [start_ns, end_ns), in receive order, `page_rows` at a time."""
    if page_rows < 1:
        raise ValueError(f"page_rows={page_rows!r} must be at least 1")
    base = _SQL
    params: dict[str, Any] = {"venue": venue, "n": page_rows}
    if start_ns is not None:
        base += " AND ts >= fromUnixTimestamp64Nano(toInt64({lo:Int64}), 'UTC')"
        params["lo"] = int(start_ns)
    if end_ns is not None:
        base += " AND ts < fromUnixTimestamp64Nano(toInt64({hi:Int64}), 'UTC')"
        params["hi"] = int(end_ns)
    after = ""
    while True:
        table = store.query_arrow(base + after + " ORDER BY ts, batch_id, row LIMIT {n:UInt32}", params)
        if table.num_rows == 0:
            return
        ts = table["ts_ns"].to_pylist()
        page = [
            Response(venue=venue, endpoint=e, recv_ts=int(t), status=int(s), body=b)
            for t, e, s, b in zip(
                ts,
                table["endpoint"].to_pylist(),
                table["status"].to_pylist(),
                table["body"].cast(pa.binary()).to_pylist(),
                strict=True,
            )
        ]
        yield page
        if table.num_rows < page_rows:
            return
        # the next page starts after the last (ts, batch_id, row) of this one
        after = (
            " AND (ts, batch_id, row) > (fromUnixTimestamp64Nano(toInt64({last_ts:Int64}), 'UTC'), "
            "{last_batch:String}, toUInt32({last_row:UInt32}))"
        )
        params |= {
            "last_ts": int(ts[-1]),
            "last_batch": table["batch_id"][-1].as_py(),
            "last_row": int(table["row"][-1].as_py()),
        }


def load_recording(store: Store, venue: str, start_ns: int | None = None, end_ns: int | None = None) -> list[Response]:
    """The recorded responses of `venue` in [start_ns, end_ns), in receive order, bodies byte for byte (all in memory:
    for tests and small windows; `replay_recording` pages)."""
    return [r for page in recording_pages(store, venue, start_ns, end_ns) for r in page]


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
    page_rows: int = PAGE_ROWS,
) -> ReplayStats:
    """Re-parse a venue's recording and publish its books at their receive times on a virtual clock,
    reading one page of responses at a time."""
    clock = VirtualClock(speed)
    stats = ReplayStats(venue=venue)
    t0 = time.perf_counter()
    pages = recording_pages(store, venue, start_ns, end_ns, page_rows)
    while True:
        page = await asyncio.to_thread(next, pages, None)
        if page is None:
            break
        stats.responses += len(page)
        for resp in page:
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
