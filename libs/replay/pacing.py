"""How replayed rows are cut into messages so a paced replay stays honest.

A chunk is the rows one publish carries; it goes out when its LAST row is due on the virtual
clock (`Chunk.due_ns`), so no row is ever published before its market time. Unpaced, a chunk
is up to `max_rows` rows. Paced at `speed` x real time, a chunk also spans at most
`flush_s * speed` seconds of market time, so its first row is at most `flush_s` of wall time
late (a 10x replay does not sit on a half-full 5,000-row batch).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from proto.events import BarBatch, BookBatch, TradeBatch

DEFAULT_BATCH_ROWS = 5_000
DEFAULT_FLUSH_S = 0.05
"""Most wall time a paced row waits for the rest of its chunk."""

Batch = BookBatch | TradeBatch | BarBatch


class Chunk(NamedTuple):
    """One publish: the batches to send once market time `due_ns` is due."""

    due_ns: int
    batches: list[Batch]


def window_ns(speed: float | None, flush_s: float = DEFAULT_FLUSH_S) -> int | None:
    """Market-time span one chunk may cover at `speed` (None: unlimited, i.e. unpaced)."""
    if speed is None or speed == 0:
        return None
    if flush_s <= 0:
        raise ValueError(f"flush_s={flush_s!r} must be positive")
    return max(1, round(flush_s * speed * 1e9))


def chunk_bounds(ts: np.ndarray, max_rows: int, span_ns: int | None) -> np.ndarray:
    """Start indices of the chunks of sorted times `ts`, plus len(ts) at the end.

    Each chunk has at most `max_rows` rows and, when `span_ns` is given, its rows lie within
    `span_ns` of its first row's time.
    """
    if max_rows < 1:
        raise ValueError(f"batch_rows={max_rows!r} must be at least 1")
    n = len(ts)
    if span_ns is None:
        return np.append(np.arange(0, n, max_rows), n).astype(np.int64)
    starts = [0]
    i = 0
    while i < n:
        end = int(np.searchsorted(ts, ts[i] + span_ns, side="left"))
        i = min(max(end, i + 1), i + max_rows, n)
        starts.append(i)
    if n == 0:
        starts = [0]
    return np.asarray(starts, dtype=np.int64)


def rows_in(keys: np.ndarray, lo: int, hi: int) -> slice:
    """The slice of sorted `keys` with lo <= key < hi."""
    return slice(int(np.searchsorted(keys, lo, "left")), int(np.searchsorted(keys, hi, "left")))
