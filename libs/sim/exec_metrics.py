"""What executing a parent order cost, from its fills and the mid paths of the algo run and of the
baseline run with the same seed (so the mid difference is the algo's own market impact).

Prices come in as $0.0001 units (`proto.units.PRICE_SCALE`), times as seconds of day; reported
prices and cash are in dollars, costs in basis points with a positive number meaning a cost to
the trader (a buy paying up, a sell selling down). The mid "at" a time is the last path point at
or before it. A metric that cannot be defined is NaN: no fills (avg_fill_price, slippage_bps),
no arrival mid (slippage and shortfall), no algo mid at end_s while part of the order is unfilled
(the shortfall's opportunity cost), no path point at or before end_s or inside [start_s, end_s]
(the impacts), a path point with no mid on either run (skipped in the average).
"""

from __future__ import annotations

import numpy as np

from proto.units import PRICE_SCALE

EXEC_METRIC_KEYS = (
    "avg_fill_price",
    "filled_qty",
    "n_fills",
    "fill_ratio",
    "slippage_bps",
    "implementation_shortfall_usd",
    "implementation_shortfall_bps",
    "market_impact_bps",
    "market_impact_avg_bps",
    "market_impact_close_bps",
)
NAN = float("nan")


def exec_metrics(
    side: int,
    requested: int,
    fill_t: np.ndarray,
    fill_px: np.ndarray,
    fill_qty: np.ndarray,
    arrival_mid: float,
    path_t: np.ndarray,
    algo_mid: np.ndarray,
    base_mid: np.ndarray,
    start_s: float,
    end_s: float,
) -> dict[str, float]:
    """The execution metrics of EXEC_METRIC_KEYS for one algo run; ValueError on inconsistent input.

    slippage_bps = side * (avg fill - arrival mid) / arrival mid * 1e4. The implementation
    shortfall (Perold) is side * [sum q_i (p_i - arrival) + unfilled * (algo mid at end_s - arrival)],
    in dollars and in bps of requested * arrival mid. market_impact_* is side * (algo mid - base mid)
    / base mid * 1e4 at end_s, averaged over the path points in [start_s, end_s], and at the last
    path point.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
    if isinstance(requested, bool) or not isinstance(requested, int | np.integer) or requested <= 0:
        raise ValueError(f"requested must be a positive integer number of shares, got {requested!r}")
    ft, fp, fq = (np.asarray(a, dtype=np.float64) for a in (fill_t, fill_px, fill_qty))
    if not (ft.ndim == fp.ndim == fq.ndim == 1 and ft.size == fp.size == fq.size):
        raise ValueError(f"fill_t, fill_px, fill_qty must be 1-D of one length, got {ft.shape}, {fp.shape}, {fq.shape}")
    if (fq < 0).any() or (fp <= 0).any() or not (np.isfinite(fp).all() and np.isfinite(fq).all()):
        raise ValueError("fills need finite positive prices and non-negative quantities")
    pt, am, bm = (np.asarray(a, dtype=np.float64) for a in (path_t, algo_mid, base_mid))
    if not (pt.ndim == am.ndim == bm.ndim == 1 and pt.size == am.size == bm.size):
        raise ValueError(
            f"path_t, algo_mid, base_mid must be 1-D of one length, got {pt.shape}, {am.shape}, {bm.shape}"
        )
    if pt.size > 1 and (np.diff(pt) < 0).any():
        raise ValueError("path_t must be sorted in time")
    if not end_s >= start_s:
        raise ValueError(f"end_s {end_s} must not be before start_s {start_s}")
    arrival = float(arrival_mid)
    if arrival <= 0:
        raise ValueError(f"arrival_mid must be a positive price, got {arrival_mid!r}")

    filled = float(fq.sum())
    if filled > requested:
        raise ValueError(f"filled {filled:g} shares, more than the {requested} requested")
    notional = float(np.dot(fp, fq))
    avg_px = notional / filled if filled > 0 else NAN
    slippage_bps = side * (avg_px - arrival) / arrival * 1e4

    unfilled = requested - filled
    executed_cost = side * (notional - filled * arrival)
    opportunity_cost = side * unfilled * (asof(pt, am, end_s) - arrival) if unfilled > 0 else 0.0
    shortfall = executed_cost + opportunity_cost

    with np.errstate(divide="ignore", invalid="ignore"):
        impact = np.where(bm > 0, side * (am - bm) / bm * 1e4, np.nan)
    window = impact[(pt >= start_s) & (pt <= end_s) & np.isfinite(impact)]
    return {
        "avg_fill_price": avg_px / PRICE_SCALE,
        "filled_qty": filled,
        "n_fills": float(fq.size),
        "fill_ratio": filled / requested,
        "slippage_bps": slippage_bps,
        "implementation_shortfall_usd": shortfall / PRICE_SCALE,
        "implementation_shortfall_bps": shortfall / (requested * arrival) * 1e4,
        "market_impact_bps": asof(pt, impact, end_s),
        "market_impact_avg_bps": float(window.mean()) if window.size else NAN,
        "market_impact_close_bps": asof(pt, impact, float(pt[-1])) if pt.size else NAN,
    }


def asof(t: np.ndarray, values: np.ndarray, at: float) -> float:
    """The last finite value at a point of `t` at or before `at` (a one-sided book leaves a
    gap in a mid path: the mid before it stands), NaN when there is none."""
    i = int(np.searchsorted(t, at, side="right")) - 1
    while i >= 0 and not np.isfinite(values[i]):
        i -= 1
    return float(values[i]) if i >= 0 else NAN
