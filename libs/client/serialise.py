"""Request values as JSON: algo configs (a css `orders` schedule as [ISO datetime, shares] pairs),
durations as seconds, numpy scalars as Python numbers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """A JSON-able form of a request value (recursively for dicts and lists)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, np.timedelta64):
        return float(value / np.timedelta64(1, "ns")) / 1e9
    if isinstance(value, dt.datetime | dt.date | dt.time):  # a pandas Timestamp keeps its nanoseconds
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    raise ValueError(f"cannot send {type(value).__name__} {value!r} in a simulation request")


def schedule_pairs(orders: Any) -> list[list[Any]]:
    """A css schedule as [[ISO datetime, shares], ...]: from a pandas Series indexed by datetimes,
    a polars DataFrame (one datetime and one integer column), a dict or a list of pairs."""
    if hasattr(orders, "schema") and hasattr(orders, "get_column"):  # polars DataFrame
        times = [c for c, t in orders.schema.items() if t.is_temporal()]
        sizes = [c for c, t in orders.schema.items() if t.is_integer()]
        if len(times) != 1 or len(sizes) != 1:
            raise ValueError(f"a polars schedule needs one datetime and one integer column, got {dict(orders.schema)}")
        items = list(zip(orders.get_column(times[0]).to_list(), orders.get_column(sizes[0]).to_list(), strict=True))
    elif hasattr(orders, "index") and hasattr(orders, "to_numpy"):  # pandas Series
        items = list(zip(list(orders.index), orders.to_numpy().tolist(), strict=True))
    elif isinstance(orders, Mapping):
        items = list(orders.items())
    elif isinstance(orders, list | tuple):
        items = [tuple(item) if isinstance(item, list | tuple) else (item,) for item in orders]
    else:
        raise ValueError(
            f"css orders must be a pandas Series, polars DataFrame, dict or list, got {type(orders).__name__}"
        )
    pairs: list[list[Any]] = []
    for i, item in enumerate(items):
        if len(item) != 2:
            raise ValueError(f"css orders item {i} must be a (datetime, size) pair, got {item!r}")
        when, size = item
        pairs.append([plain(when), plain(size)])
    return pairs


def algo_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """One exec_algos entry as JSON-able values."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"each exec_algos entry must be a dict, got {type(cfg).__name__}")
    return {str(k): schedule_pairs(v) if k == "orders" else plain(v) for k, v in cfg.items()}
