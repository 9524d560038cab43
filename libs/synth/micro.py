"""Microstructure on a mid path: ticked quotes, a spread that widens with volatility, depth, trades.

Everything is vectorised numpy over all rows at once (no per-row Python). Prices come out as
integer price units (`proto.units.PRICE_SCALE` = 1/10,000 USD) on the tick grid; sizes as
integer counts of the asset's size unit (shares, 0.0001 BTC, contracts: see `assets`).

- Spread (ticks) = max(min_spread_ticks, ceil(spread_bps * mid * (vol / long_run_vol) ** spread_vol_power))
  plus a geometric number of extra ticks with mean `extra_spread_ticks`; the best bid is the
  tick at or below `mid - spread / 2` (rounded), the best ask `spread` ticks above it.
- Depth: level j sits 1 tick behind level j-1, or 2 with probability `gap2_prob`; sizes are
  lognormal (median `size_median` x (1 + depth_growth x j), log-sd `size_sigma`), at least 1.
  Levels that would leave the price grid's bounds (a binary's [1 tick, 1 - 1 tick]) are empty
  (price 0, size 0), as `BookBatch` marks them.
- Trades: market orders arrive as a Poisson process (`trade_rate` per second) during each
  row's step, at a uniform time within it, and trade at the touch of that row's book: a buy
  at the best ask, a sell at the best bid, size lognormal capped at the touch size. A buy is
  more likely when the mid rises over the step: P(buy) = (1 + buy_bias * sign(move)) / 2.

Random draws come from `MicroStreams`: one PCG64 stream per kind of draw (spread, gaps, sizes,
trade counts, times, sizes, sides), each drawn time-major, so the same seed gives the same
books and trades however the rows are cut into chunks (numpy draws element by element).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from libs.synth.paths import check_number


class MicroParams(msgspec.Struct, frozen=True, kw_only=True):
    """How quotes, depth and trades are laid over a mid path (see the module docstring)."""

    min_spread_ticks: int = 1
    spread_bps: float = 0.0
    spread_vol_power: float = 1.0
    extra_spread_ticks: float = 0.0
    gap2_prob: float = 0.25
    size_median: float = 100.0
    size_sigma: float = 0.8
    depth_growth: float = 0.5
    trade_rate: float = 1.0
    trade_size_median: float = 20.0
    trade_size_sigma: float = 1.0
    buy_bias: float = 0.3

    def __post_init__(self) -> None:
        if isinstance(self.min_spread_ticks, bool) or int(self.min_spread_ticks) != self.min_spread_ticks:
            raise ValueError(f"min_spread_ticks={self.min_spread_ticks!r} must be an integer")
        check_number("min_spread_ticks", self.min_spread_ticks, 1.0, 10_000.0)
        check_number("spread_bps", self.spread_bps, 0.0, 10_000.0)
        check_number("spread_vol_power", self.spread_vol_power, 0.0, 10.0)
        check_number("extra_spread_ticks", self.extra_spread_ticks, 0.0, 1_000.0)
        check_number("gap2_prob", self.gap2_prob, 0.0, 1.0)
        check_number("size_median", self.size_median, 1.0, 1e15)
        check_number("size_sigma", self.size_sigma, 0.0, 5.0)
        check_number("depth_growth", self.depth_growth, 0.0, 100.0)
        check_number("trade_rate", self.trade_rate, 0.0, 1e6)
        check_number("trade_size_median", self.trade_size_median, 1.0, 1e15)
        check_number("trade_size_sigma", self.trade_size_sigma, 0.0, 5.0)
        check_number("buy_bias", self.buy_bias, -1.0, 1.0)


def make_micro(base: MicroParams, overrides: dict[str, float] | None) -> MicroParams:
    """`base` with `overrides` applied; an unknown name or bad value raises ValueError naming it."""
    if not overrides:
        return base
    unknown = sorted(set(overrides) - set(MicroParams.__struct_fields__))
    if unknown:
        raise ValueError(
            f"no microstructure parameter {unknown[0]!r} (known: {', '.join(MicroParams.__struct_fields__)})"
        )
    fixed = {k: (int(v) if k == "min_spread_ticks" and float(v).is_integer() else v) for k, v in overrides.items()}
    return msgspec.structs.replace(base, **fixed)


class MicroStreams:
    """One independent random stream per kind of draw, spawned from one SeedSequence."""

    def __init__(self, seq: np.random.SeedSequence) -> None:
        gens = [np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(7)]
        self.spread, self.gaps, self.sizes, self.counts, self.times, self.trade_sizes, self.sides = gens


class Quotes(msgspec.Struct, frozen=True, kw_only=True):
    """(rows, levels) int64 books, best first; price 0 and size 0 mark an empty level."""

    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray


class Trades(msgspec.Struct, frozen=True, kw_only=True):
    """Trades sorted by time: the book row each traded against, time, price, size, aggressor."""

    row: np.ndarray
    ts: np.ndarray
    px: np.ndarray
    size: np.ndarray
    aggressor: np.ndarray


def quote(
    mid_px: np.ndarray,
    vol_ratio: np.ndarray,
    tick_px: int,
    levels: int,
    p: MicroParams,
    rng: MicroStreams,
    max_px: int | None = None,
) -> Quotes:
    """Books for mids `mid_px` (price units, float); prices on multiples of `tick_px` in [tick_px, max_px]."""
    n = len(mid_px)
    m = mid_px / tick_px
    hi_t = None if max_px is None else max_px // tick_px
    spread = np.ceil(p.spread_bps * 1e-4 * m * vol_ratio**p.spread_vol_power)
    spread = np.maximum(spread, p.min_spread_ticks).astype(np.int64)
    if p.extra_spread_ticks > 0:  # geometric extra ticks on {0, 1, ...} with the given mean
        spread += rng.spread.geometric(1.0 / (1.0 + p.extra_spread_ticks), n) - 1
    bid0 = np.floor(m - 0.5 * spread + 0.5).astype(np.int64)
    if hi_t is not None:
        spread = np.minimum(spread, hi_t - 1)
        bid0 = np.clip(bid0, 1, hi_t - 1)
        ask0 = np.minimum(bid0 + spread, hi_t)
    else:
        bid0 = np.maximum(bid0, 1)
        ask0 = bid0 + spread

    gaps = 1 + (rng.gaps.random((n, 2, max(levels - 1, 0))) < p.gap2_prob)
    offsets = np.zeros((n, 2, levels), dtype=np.int64)
    offsets[:, :, 1:] = np.cumsum(gaps, axis=2)
    bid_t = bid0[:, None] - offsets[:, 0]
    ask_t = ask0[:, None] + offsets[:, 1]

    depth = p.size_median * (1.0 + p.depth_growth * np.arange(levels))
    z = rng.sizes.standard_normal((n, 2, levels))
    sizes = np.maximum(1, np.rint(depth * np.exp(p.size_sigma * z))).astype(np.int64)
    bid_sz, ask_sz = sizes[:, 0], sizes[:, 1]
    bid_empty = bid_t < 1
    ask_empty = np.zeros_like(bid_empty) if hi_t is None else ask_t > hi_t
    bid_px = np.where(bid_empty, 0, bid_t * tick_px)
    ask_px = np.where(ask_empty, 0, ask_t * tick_px)
    return Quotes(
        bid_px=bid_px,
        bid_sz=np.where(bid_empty, 0, bid_sz),
        ask_px=ask_px,
        ask_sz=np.where(ask_empty, 0, ask_sz),
    )


def trades(
    quotes: Quotes, book_ts: np.ndarray, step_ns: int, move: np.ndarray, p: MicroParams, rng: MicroStreams
) -> Trades:
    """Market orders during each row's step `[book_ts, book_ts + step_ns)`, at that row's touch."""
    n = len(book_ts)
    counts = rng.counts.poisson(p.trade_rate * step_ns / 1e9, n)
    rows = np.repeat(np.arange(n), counts)
    k = len(rows)
    u = rng.times.random(k)
    z = rng.trade_sizes.standard_normal(k)
    pick = rng.sides.random(k)
    ts = book_ts[rows] + np.floor(u * step_ns).astype(np.int64)
    p_buy = 0.5 * (1.0 + p.buy_bias * np.sign(move[rows]))
    buy = pick < p_buy
    touch = np.where(buy, quotes.ask_sz[rows, 0], quotes.bid_sz[rows, 0])
    size = np.minimum(touch, np.maximum(1, np.rint(p.trade_size_median * np.exp(p.trade_size_sigma * z)))).astype(
        np.int64
    )
    order = np.argsort(ts, kind="stable")
    rows, buy = rows[order], buy[order]
    return Trades(
        row=rows,
        ts=ts[order],
        px=np.where(buy, quotes.ask_px[rows, 0], quotes.bid_px[rows, 0]),
        size=size[order],
        aggressor=np.where(buy, 1, -1).astype(np.int64),
    )


def tick_units(name: str, tick: float, price_scale: int) -> int:
    """A tick in dollars as whole price units, else ValueError naming it (zero, negative, off-grid)."""
    check_number(name, tick, 0.0, open_lo=True)
    units = tick * price_scale
    if units < 1 or not math.isclose(units, round(units), rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"{name}={tick!r} must be a positive multiple of 1/{price_scale} dollar")
    return round(units)
