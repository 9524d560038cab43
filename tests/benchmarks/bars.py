"""OHLCV resampling throughput: 1-minute bars to all seven timeframes (5min ... daily).

- `bars.resample_all`: 10 million crypto 1-minute bars (19 years of minutes, one frame) through
  `libs.bars.resample.resample_all`; `bars.resample_all_10m_s` the wall time (target < 5 s).
- `bars.resample_all.us_equity`: 10 million US-equity 1-minute bars (four symbols of 2.5 million
  regular-session minutes each, 2000-2025 NYSE sessions), binned on each session's New York open.
- `bars.resample_all.pandas_peer`: the reference tool's method on the same kind of bars, pandas
  `DataFrame.resample(rule, offset=...).agg(first/max/min/last/sum)` per timeframe (on fewer bars,
  stated in the name, to keep the run short; throughput scales linearly).
- `bars.check_frame.unsorted`: the same 10 million crypto bars shuffled, through `check_frame`
  (sort by time, the duplicate-timestamp check); `bars.check_frame.sorted` the already-sorted case;
  `bars.resample_all.unsorted` the whole resampling of the shuffled frame.
- `bars.chdb_write_rows_per_s` / `bars.chdb_read_rows_per_s`: 1 million bars into and out of the
  `ohlcv` table on chDB (write_bars / read_bars with FINAL).

Each figure is the best of a few runs; frame construction is excluded.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from libs.bars.calendars import expected_minutes
from libs.bars.resample import RESAMPLE_TARGETS, resample_all
from libs.bars.schema import check_frame

N = 10_000_000
PEER_N = 2_000_000
MINUTE_NS = 60_000_000_000
PANDAS_RULES = {"5min": "5min", "15min": "15min", "30min": "30min", "1h": "1h", "2h": "2h", "4h": "4h", "daily": "1D"}


def frame_at(ts_ns: np.ndarray, seed: int = 1) -> pl.DataFrame:
    """Random-walk OHLCV bars at the given UTC ns times."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.01, len(ts_ns)))
    return pl.DataFrame(
        {
            "ts": pl.Series(ts_ns, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
            "open": close + 0.005,
            "high": close + 0.01,
            "low": close - 0.01,
            "close": close,
            "volume": rng.random(len(ts_ns)) * 1_000,
        }
    )


def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def pandas_peer(frame: pl.DataFrame) -> None:
    """The reference's resampling: one pandas resample per timeframe with a session offset."""
    df = frame.to_pandas().set_index("ts")
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    for tf, rule in PANDAS_RULES.items():
        offset = "13h30min" if tf in ("5min", "15min", "30min") else None
        df.resample(rule, offset=offset).agg(agg).dropna(subset=["open"])


def chdb_figures(frame: pl.DataFrame) -> list[tuple[str, float, str]]:
    from libs import config
    from libs.bars.store import read_bars, write_bars
    from libs.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(config.load({}, home=Path(tmp)))
        try:
            store.migrate()
            t0 = time.perf_counter()
            write_bars(store, "BENCH", frame)
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = read_bars(store, "BENCH")
            read_s = time.perf_counter() - t0
            if back.height != frame.height:
                raise SystemExit(f"bars: stored {back.height} of {frame.height} bars")
        finally:
            store.close()
    return [
        ("bars.chdb_write_rows_per_s", frame.height / write_s, "rows/s"),
        ("bars.chdb_read_rows_per_s", frame.height / read_s, "rows/s"),
    ]


def run() -> list[tuple[str, float, str]]:
    out: list[tuple[str, float, str]] = []
    start = np.datetime64("2006-01-01", "ns").astype(np.int64)
    crypto = frame_at(start + np.arange(N, dtype=np.int64) * MINUTE_NS)
    resample_all(crypto.head(100_000), "crypto")  # warm-up (calendar and allocator)
    secs = best_of(lambda: resample_all(crypto, "crypto", RESAMPLE_TARGETS))
    out += [("bars.resample_all", N / secs, "bars/s"), ("bars.resample_all_10m_s", secs, "s")]

    shuffled = crypto.sample(fraction=1.0, shuffle=True, seed=7)
    secs = best_of(lambda: check_frame(crypto), repeats=2)
    out.append(("bars.check_frame.sorted", N / secs, "bars/s"))
    secs = best_of(lambda: check_frame(shuffled), repeats=2)
    out.append(("bars.check_frame.unsorted", N / secs, "bars/s"))
    secs = best_of(lambda: resample_all(shuffled, "crypto", RESAMPLE_TARGETS), repeats=2)
    out += [("bars.resample_all.unsorted", N / secs, "bars/s"), ("bars.resample_all.unsorted_10m_s", secs, "s")]

    minutes = expected_minutes("us_equity", dt.date(2000, 1, 1), dt.date(2025, 12, 31))
    per_symbol = N // 4
    equities = [frame_at(minutes[:per_symbol], seed=s) for s in range(4)]
    resample_all(equities[0].head(100_000), "us_equity")
    secs = best_of(lambda: [resample_all(f, "us_equity") for f in equities])
    out += [("bars.resample_all.us_equity", N / secs, "bars/s"), ("bars.resample_all.us_equity_10m_s", secs, "s")]

    peer = crypto.head(PEER_N)
    secs = best_of(lambda: pandas_peer(peer), repeats=2)
    out.append((f"bars.resample_all.pandas_peer ({PEER_N // 1_000_000}M bars)", PEER_N / secs, "bars/s"))
    out += chdb_figures(crypto.head(1_000_000))
    return out


def main() -> None:
    for name, value, unit in run():
        print(f"{name}: {value:.6g} {unit}", flush=True)


if __name__ == "__main__":
    main()
