"""An OHLCV bar file as the `BarBatch` events a live bar feed would publish.

Bars come from `libs.bars.files.read_bars_file` (CSV or Parquet, checked, UTC). The timeframe
is given or inferred from the median bar spacing. A live feed publishes a bar when it
closes, so a replayed bar is due at its close (`bar_ts` + the timeframe; a daily bar one day
after its label).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.bars.assets import TIMEFRAME_NS
from libs.bars.files import infer_timeframe, read_bars_file
from libs.ids import new_id, now_ns
from libs.replay.pacing import DEFAULT_BATCH_ROWS, Chunk, chunk_bounds
from proto.events import TIMEFRAMES, BarBatch

__all__ = ["TIMEFRAME_NS", "BarColumns", "bar_chunks", "load_bar_columns"]

SOURCE = "replay"
DEFAULT_VENUE = "file"


@dataclass(frozen=True)
class BarColumns:
    """A bar file converted: one symbol, one timeframe, columns in time order."""

    instrument: str
    timeframe: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.ts)


def load_bar_columns(
    path: Path | str, *, symbol: str | None = None, timeframe: str | None = None, tz: str = "UTC"
) -> BarColumns:
    """Read a bar file; the instrument is `symbol` or the file name's first `_`-separated part."""
    path = Path(path)
    df = read_bars_file(path, tz=tz, symbol=symbol)
    ts = df["ts"].to_physical().to_numpy()
    if timeframe is None:
        timeframe = infer_timeframe(ts) if len(ts) > 1 else "daily"
    elif timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    name = symbol or path.name.split("_")[0].split(".")[0]
    return BarColumns(
        instrument=name,
        timeframe=timeframe,
        ts=ts.astype(np.int64),
        **{c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")},
    )


def bar_chunks(
    cols: BarColumns,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    span_ns: int | None = None,
    venue: str = DEFAULT_VENUE,
    source: str = SOURCE,
) -> Iterator[Chunk]:
    """The bars as publishes, each due at its last bar's close."""
    close_ts = cols.ts + TIMEFRAME_NS[cols.timeframe]
    bounds = chunk_bounds(close_ts, batch_rows, span_ns)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        batch = BarBatch(
            id=new_id(),
            ts=now_ns(),
            venue=venue,
            source=source,
            timeframe=cols.timeframe,  # type: ignore[arg-type]
            instruments=[cols.instrument],
            inst_idx=[0] * (b - a),
            bar_ts=cols.ts[a:b].tolist(),
            open=cols.open[a:b].tolist(),
            high=cols.high[a:b].tolist(),
            low=cols.low[a:b].tolist(),
            close=cols.close[a:b].tolist(),
            volume=cols.volume[a:b].tolist(),
        )
        yield Chunk(int(close_ts[b - 1]), [batch])
