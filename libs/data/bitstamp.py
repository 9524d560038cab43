"""Bitstamp L3 captures (order-by-order events and trades) as integer numpy columns.

A capture directory holds `orders.csv.gz` (or `orders.csv`): `id, timestamp, exchange_timestamp,
price, volume, action, direction`, one row per `live_orders` WebSocket message (`created`,
`changed`, `deleted`; a synthetic snapshot of `created` rows opens the file), and `trades.csv`:
`trade_id, timestamp, exchange_timestamp, price, amount, buy_order_id, sell_order_id, side`
(`side` is the aggressor's). Times are UTC milliseconds (`timestamp` when received,
`exchange_timestamp` as Bitstamp stamped it).

Integer units: prices in `proto.units.PRICE_SCALE` units ($0.0001, so $78,318 is 783_180_000),
amounts in `AMOUNT_SCALE` units (1e-8 BTC, a satoshi, the finest amount Bitstamp reports).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from proto.units import PRICE_SCALE

AMOUNT_SCALE = 100_000_000
"""Amount units per BTC (satoshi)."""

CREATED, CHANGED, DELETED = 1, 2, 3
BUY, SELL = 1, -1

ORDER_COLUMNS = ("id", "timestamp", "exchange_timestamp", "price", "volume", "action", "direction")
TRADE_COLUMNS = (
    "trade_id",
    "timestamp",
    "exchange_timestamp",
    "price",
    "amount",
    "buy_order_id",
    "sell_order_id",
    "side",
)
_ACTIONS = {"created": CREATED, "changed": CHANGED, "deleted": DELETED}
_DIRECTIONS = {"bid": BUY, "ask": SELL}
_SIDES = {"buy": BUY, "sell": SELL}


@dataclass(frozen=True)
class BitstampOrders:
    """Order events in file order. `action` is CREATED/CHANGED/DELETED, `side` BUY (bid) or
    SELL (ask); `price` in $0.0001, `amount` (the order's volume after the event) in satoshi."""

    id: np.ndarray
    ts_ms: np.ndarray
    exchange_ts_ms: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    action: np.ndarray
    side: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class BitstampTrades:
    """Trades in file order; `side` is the aggressor's side (BUY or SELL)."""

    trade_id: np.ndarray
    ts_ms: np.ndarray
    exchange_ts_ms: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    buy_order_id: np.ndarray
    sell_order_id: np.ndarray
    side: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True)
class BitstampCapture:
    """One capture directory: its order events and trades."""

    orders: BitstampOrders
    trades: BitstampTrades
    path: Path


def load_bitstamp(path: Path | str) -> BitstampCapture:
    """Read a capture directory (orders.csv.gz or orders.csv, and trades.csv)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Bitstamp capture directory")
    orders = next((p for p in (path / "orders.csv.gz", path / "orders.csv") if p.exists()), None)
    if orders is None:
        raise FileNotFoundError(f"{path}: no orders.csv.gz or orders.csv")
    trades = path / "trades.csv"
    if not trades.exists():
        raise FileNotFoundError(f"{trades}: the trades file is missing")
    return BitstampCapture(load_orders(orders), load_trades(trades), path)


def load_orders(path: Path | str) -> BitstampOrders:
    """Read an orders file; raises ValueError naming the file, row and field of bad data."""
    path = Path(path)
    df = _read(path, ORDER_COLUMNS, {"price": pl.Float64, "volume": pl.Float64, "action": pl.String,
                                     "direction": pl.String})  # fmt: skip
    return BitstampOrders(
        id=_ints(df, "id", path),
        ts_ms=_ints(df, "timestamp", path),
        exchange_ts_ms=_ints(df, "exchange_timestamp", path),
        price=_scaled(df, "price", PRICE_SCALE, path, allow_zero=True),
        amount=_scaled(df, "volume", AMOUNT_SCALE, path, allow_zero=True),
        action=_codes(df, "action", _ACTIONS, path),
        side=_codes(df, "direction", _DIRECTIONS, path),
        source=path.name,
    )


def load_trades(path: Path | str) -> BitstampTrades:
    """Read a trades file; raises ValueError naming the file, row and field of bad data."""
    path = Path(path)
    df = _read(path, TRADE_COLUMNS, {"price": pl.Float64, "amount": pl.Float64, "side": pl.String})
    return BitstampTrades(
        trade_id=_ints(df, "trade_id", path),
        ts_ms=_ints(df, "timestamp", path),
        exchange_ts_ms=_ints(df, "exchange_timestamp", path),
        price=_scaled(df, "price", PRICE_SCALE, path, allow_zero=False),
        amount=_scaled(df, "amount", AMOUNT_SCALE, path, allow_zero=False),
        buy_order_id=_ints(df, "buy_order_id", path),
        sell_order_id=_ints(df, "sell_order_id", path),
        side=_codes(df, "side", _SIDES, path),
        source=path.name,
    )


def _read(path: Path, columns: tuple[str, ...], text: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    """The file as strings per column (parsed below, so a bad cell gets a row number)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
        df = pl.read_csv(raw, infer_schema=False)
    except (OSError, EOFError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path.name}: not a readable CSV file ({exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    if df.height == 0:
        raise ValueError(f"{path.name}: no rows")
    for c in columns:
        nulls = df[c].is_null()
        if nulls.any():
            raise ValueError(f"{path.name} row {_first(nulls) + 2}: {c} is empty")
    return df.select(columns)


def _first(mask: pl.Series | np.ndarray) -> int:
    return int(np.argmax(np.asarray(mask)))


def _ints(df: pl.DataFrame, col: str, path: Path) -> np.ndarray:
    parsed = df[col].str.strip_chars().cast(pl.Int64, strict=False)
    bad = parsed.is_null()
    if bad.any():
        row = _first(bad)
        raise ValueError(f"{path.name} row {row + 2}: {col} {df[col][row]!r} is not an integer")
    return parsed.to_numpy().astype(np.int64)


def _scaled(df: pl.DataFrame, col: str, scale: int, path: Path, *, allow_zero: bool) -> np.ndarray:
    """Decimal strings to integers of 1/scale, refusing values finer than that."""
    values = df[col].str.strip_chars().cast(pl.Float64, strict=False)
    bad = values.is_null() | values.is_nan() | values.is_infinite()
    if bad.any():
        row = _first(bad)
        raise ValueError(f"{path.name} row {row + 2}: {col} {df[col][row]!r} is not a number")
    x = values.to_numpy() * scale
    out = np.rint(x)
    fine = np.abs(x - out) > 1e-6 + 1e-14 * np.abs(x)  # float rounding of an exact decimal stays far below
    if fine.any():
        row = _first(fine)
        raise ValueError(f"{path.name} row {row + 2}: {col} {df[col][row]!r} is finer than 1/{scale}")
    low = out < 0 if allow_zero else out <= 0
    if low.any():
        row = _first(low)
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{path.name} row {row + 2}: {col} {df[col][row]!r} must be {need}")
    return out.astype(np.int64)


def _codes(df: pl.DataFrame, col: str, codes: dict[str, int], path: Path) -> np.ndarray:
    s = df[col].str.strip_chars()
    known = s.is_in(list(codes))
    if not known.all():
        row = _first(~known)
        raise ValueError(f"{path.name} row {row + 2}: {col} {df[col][row]!r} is not one of {', '.join(codes)}")
    return s.replace_strict(codes, return_dtype=pl.Int8).to_numpy()
