"""The bar frame every part of the bar manager passes around: columns, types, the empty frame, the check.

A bar frame is a polars DataFrame with `ts` (bar open, Datetime ns UTC) and Float64 `open`,
`high`, `low`, `close`, `volume`, sorted by `ts` with no timestamp twice.
"""

from __future__ import annotations

import polars as pl

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
COLUMNS = ("ts", *VALUE_COLUMNS)
TS_TYPE = pl.Datetime("ns", "UTC")
SCHEMA = {"ts": TS_TYPE, **{c: pl.Float64 for c in VALUE_COLUMNS}}


def empty_frame() -> pl.DataFrame:
    """A bar frame with no rows."""
    return pl.DataFrame(schema=SCHEMA)


def check_frame(frame: pl.DataFrame, what: str = "bars") -> pl.DataFrame:
    """`frame` as a bar frame (sorted by ts); a ValueError names what is wrong.

    Refused: a missing column, a `ts` without a time zone, empty values, and a timestamp that
    appears twice (a public function does not guess which of two bars is right; the error names
    the first duplicate).
    """
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{what} must be a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame is missing column(s) {missing}; it has {frame.columns}")
    ts_type = frame.schema["ts"]
    if not isinstance(ts_type, pl.Datetime) or ts_type.time_zone is None:
        raise ValueError(f"{what} column 'ts' must be a time-zone-aware Datetime (UTC), got {ts_type}")
    out = frame.select(
        pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("ns"),
        *(pl.col(c).cast(pl.Float64) for c in VALUE_COLUMNS),
    )
    nulls = {c: n for c, n in zip(out.columns, out.null_count().row(0), strict=True) if n}
    if nulls:
        raise ValueError(f"{what} frame has empty values: {nulls} (null count per column)")
    if not out["ts"].is_sorted():
        out = out.sort("ts")
    ts = out["ts"].cast(pl.Int64).to_numpy()
    if len(ts) > 1:
        same = ts[1:] == ts[:-1]
        if same.any():
            first = out["ts"][int(same.argmax())]
            raise ValueError(
                f"{what} frame has {int(same.sum())} duplicate timestamp(s), the first {first.isoformat()}; "
                "keep one bar per time"
            )
    return out
