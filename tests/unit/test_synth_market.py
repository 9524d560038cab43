"""Synthetic books, trades and bars: tick grid, spread, depth, trades at the touch, bars, presets, ids."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from libs.synth.assets import resolve
from libs.synth.market import SyntheticFeed
from libs.synth.micro import MicroParams, MicroStreams, quote
from proto.events import BarBatch, BookBatch, TradeBatch
from proto.units import PRICE_SCALE

STEP_NS = 250_000_000


def _feed(asset: str, model: str, seed: int = 1, **kw: object) -> SyntheticFeed:
    params = kw.pop("params", None)
    micro = kw.pop("micro", None)
    return SyntheticFeed(
        resolve(asset, model, params, micro),  # type: ignore[arg-type]
        seed=seed,
        instruments=kw.pop("instruments", ["A", "B"]),  # type: ignore[arg-type]
        start_ns=kw.pop("start_ns", 1_700_000_000_000_000_000),  # type: ignore[arg-type]
        step_ns=kw.pop("step_ns", STEP_NS),  # type: ignore[arg-type]
        levels=kw.pop("levels", 5),  # type: ignore[arg-type]
    )


def _collect(feed: SyntheticFeed, sizes: list[int]) -> tuple[list[BookBatch], list[TradeBatch], list[BarBatch]]:
    books, trades, bars = [], [], []
    for n in sizes:
        c = feed.next_chunk(n)
        books.append(c.books)
        trades.append(c.trades)
        if c.bars is not None:
            bars.append(c.bars)
    final = feed.finish()
    if final is not None:
        bars.append(final)
    return books, trades, bars


def _book_arrays(b: BookBatch) -> dict[str, np.ndarray]:
    shape = (b.rows, b.levels)
    return {
        f: np.asarray(getattr(b, f), dtype=np.int64).reshape(shape) for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")
    }


@pytest.mark.parametrize("asset", ["equity", "crypto", "binary"])
@pytest.mark.parametrize("model", ["gbm", "heston", "merton"])
def test_books_on_the_tick_grid_ordered_and_never_crossed(asset: str, model: str) -> None:
    # strong volatility so binaries reach the edges of (0, 1) and deeper levels run off the grid
    params = {"sigma": 2000.0} if asset == "binary" and model != "heston" else None
    if asset == "binary" and model == "heston":
        params = {"theta": 4e6, "v0": 4e6, "xi": 2000.0}
    feed = _feed(asset, model, params=params)
    cfg = feed.config
    (book,), _, _ = _collect(feed, [20_000])
    a = _book_arrays(book)
    assert book.venue == "synthetic" and book.rows == 40_000
    empty_b, empty_a = a["bid_sz"] == 0, a["ask_sz"] == 0
    assert np.array_equal(empty_b, a["bid_px"] == 0) and np.array_equal(empty_a, a["ask_px"] == 0)
    assert not empty_b[:, 0].any() and not empty_a[:, 0].any(), "the touch is always quoted"
    assert (a["bid_px"][:, 0] < a["ask_px"][:, 0]).all()
    assert ((a["ask_px"][:, 0] - a["bid_px"][:, 0]) >= cfg.tick_px).all(), "spread at least one tick"
    for side, empty, sign in (("bid", empty_b, -1), ("ask", empty_a, 1)):
        px = a[f"{side}_px"]
        assert (px % cfg.tick_px == 0).all()
        assert (a[f"{side}_sz"][~empty] >= 1).all()
        assert not (empty[:, :-1] & ~empty[:, 1:]).any(), "an empty level is followed only by empty ones"
        steps = sign * np.diff(px, axis=1)
        assert (steps[~empty[:, 1:]] > 0).all(), "levels best first, strictly worse behind"
    if asset == "binary":
        quoted = np.concatenate([a["bid_px"][~empty_b], a["ask_px"][~empty_a]])
        assert quoted.min() >= cfg.tick_px and quoted.max() <= PRICE_SCALE - cfg.tick_px
        assert quoted.min() == cfg.tick_px and quoted.max() == PRICE_SCALE - cfg.tick_px, "edges reached"
        assert empty_b.any() and empty_a.any(), "deeper levels off the grid are left empty"


@pytest.mark.parametrize("asset", ["equity", "crypto", "binary"])
def test_trades_hit_the_touch_of_the_latest_book(asset: str) -> None:
    feed = _feed(asset, "heston", micro={"trade_rate": 3.0})
    books, trades, _ = _collect(feed, [3_000, 5_000])
    book_ts = np.concatenate([b.book_ts for b in books])
    inst = np.concatenate([b.inst_idx for b in books])
    tops = {
        f: np.concatenate([_book_arrays(b)[f][:, 0] for b in books]) for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")
    }
    t_ts = np.concatenate([t.trade_ts for t in trades])
    t_inst = np.concatenate([t.inst_idx for t in trades])
    px = np.concatenate([t.px for t in trades])
    size = np.concatenate([t.size for t in trades])
    aggr = np.concatenate([t.aggressor for t in trades])
    assert (np.diff(t_ts) >= 0).all(), "trades in time order"
    n_inst, market_s = 2, 8_000 * STEP_NS / 1e9
    expected = 3.0 * market_s * n_inst
    assert abs(len(t_ts) - expected) < 4 * math.sqrt(expected)
    for i in range(n_inst):
        rows = np.flatnonzero(inst == i)
        mine = t_inst == i
        latest = rows[np.searchsorted(book_ts[rows], t_ts[mine], side="right") - 1]
        assert (t_ts[mine] - book_ts[latest] < STEP_NS).all()
        buy = aggr[mine] == 1
        assert set(np.unique(aggr[mine])) <= {-1, 1}
        assert np.array_equal(px[mine], np.where(buy, tops["ask_px"][latest], tops["bid_px"][latest]))
        touch = np.where(buy, tops["ask_sz"][latest], tops["bid_sz"][latest])
        assert ((size[mine] >= 1) & (size[mine] <= touch)).all()


def test_buyers_lean_with_the_move() -> None:
    feed = _feed("equity", "gbm", micro={"trade_rate": 4.0, "buy_bias": 0.6}, instruments=["A"])
    books, trades, _ = _collect(feed, [40_000])
    mid = np.asarray(books[0].bid_px)[::5] + np.asarray(books[0].ask_px)[::5]
    t = trades[0]
    row = (np.asarray(t.trade_ts) - books[0].book_ts[0]) // STEP_NS
    inside = row + 1 < len(mid)
    up = mid[row[inside] + 1] > mid[row[inside]]
    down = mid[row[inside] + 1] < mid[row[inside]]
    aggr = np.asarray(t.aggressor)[inside]
    assert (aggr[up] == 1).mean() > 0.7 and (aggr[down] == -1).mean() > 0.7


def test_spread_widens_with_volatility() -> None:
    p = MicroParams(spread_bps=10.0, min_spread_ticks=1, extra_spread_ticks=0.0)
    mid = np.full(1_000, 100.0 * PRICE_SCALE)
    calm = quote(mid, np.full(1_000, 1.0), 100, 1, p, MicroStreams(np.random.SeedSequence(1)))
    wild = quote(mid, np.full(1_000, 3.0), 100, 1, p, MicroStreams(np.random.SeedSequence(1)))
    spread = lambda q: (q.ask_px[:, 0] - q.bid_px[:, 0]) / 100  # noqa: E731
    assert (spread(calm) == 10).all()  # 10 bps of $100 = 10 cents
    assert (spread(wild) == 30).all()
    assert (calm.bid_px[:, 0] <= mid).all() and (calm.ask_px[:, 0] >= mid).all()


def test_bars_match_an_independent_resample_of_books_and_trades() -> None:
    feed = _feed("crypto", "merton", step_ns=500_000_000, start_ns=1_700_000_030_000_000_000)  # starts mid-minute
    books, trades, bars = _collect(feed, [250, 1_000, 37])
    level0 = lambda b, f: np.asarray(getattr(b, f))[:: b.levels]  # noqa: E731
    bk = pl.DataFrame(
        {
            "ts": np.concatenate([b.book_ts for b in books]),
            "inst": np.concatenate([b.inst_idx for b in books]),
            "mid": np.concatenate([(level0(b, "bid_px") + level0(b, "ask_px")) / 2 / PRICE_SCALE for b in books]),
        }
    ).with_columns(minute=pl.col("ts") - pl.col("ts") % 60_000_000_000)
    tr = pl.DataFrame(
        {"ts": np.concatenate([t.trade_ts for t in trades]), "inst": np.concatenate([t.inst_idx for t in trades]),
         "size": np.concatenate([t.size for t in trades]).astype(np.float64)}
    ).with_columns(minute=pl.col("ts") - pl.col("ts") % 60_000_000_000)  # fmt: skip
    want = (
        bk.sort("ts")
        .group_by("minute", "inst", maintain_order=True)
        .agg(open=pl.col("mid").first(), high=pl.col("mid").max(), low=pl.col("mid").min(), close=pl.col("mid").last())
        .join(tr.group_by("minute", "inst").agg(volume=pl.col("size").sum() * 1e-4), on=["minute", "inst"], how="left")
        .with_columns(pl.col("volume").fill_null(0.0))
        .sort("minute", "inst")
    )
    got = pl.DataFrame(
        {
            "minute": np.concatenate([np.asarray(b.bar_ts, dtype=np.int64) for b in bars]),
            "inst": np.concatenate([np.asarray(b.inst_idx, dtype=np.int64) for b in bars]),
            **{f: np.concatenate([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")},
        }
    ).sort("minute", "inst")
    assert got["minute"].n_unique() == 12, "643.5 s from :30 ends at 11:13.5: 12 minutes (the last partial)"
    assert got.height == want.height
    assert got.select("minute", "inst").equals(want.select("minute", "inst"))
    for f in ("open", "high", "low", "close", "volume"):
        assert np.allclose(got[f].to_numpy(), want[f].to_numpy(), rtol=1e-12), f
    assert all(b.timeframe == "1min" for b in bars)


def test_same_seed_same_stream_whatever_the_chunking_other_seed_differs() -> None:
    def content(seed: int, sizes: list[int]) -> tuple:
        books, trades, bars = _collect(_feed("binary", "merton", seed=seed, params={"lam": 500.0}), sizes)
        cat = lambda xs, f: [v for x in xs for v in getattr(x, f)]  # noqa: E731
        return (
            *(cat(books, f) for f in ("book_ts", "inst_idx", "bid_px", "bid_sz", "ask_px", "ask_sz")),
            *(cat(trades, f) for f in ("trade_ts", "inst_idx", "px", "size", "aggressor")),
            *(cat(bars, f) for f in ("bar_ts", "open", "close", "volume")),
        )

    one = content(5, [4_800])
    assert content(5, [4_800]) == one
    assert content(5, [1, 239, 2_000, 2_560]) == one
    assert content(6, [4_800]) != one


def test_ids_are_deterministic_per_spec_and_chunk() -> None:
    a, b = _feed("equity", "gbm"), _feed("equity", "gbm")
    c = _feed("equity", "gbm", seed=2)
    ca, cb, cc = a.next_chunk(10), b.next_chunk(10), c.next_chunk(10)
    assert ca.books.id == cb.books.id and ca.trades.id == cb.trades.id
    assert ca.books.id != cc.books.id
    assert a.next_chunk(10).books.id != ca.books.id
    assert len({ca.books.id, ca.trades.id}) == 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"asset": "binary", "s0": 1.2}, r"s0=1\.2"),
        ({"asset": "binary", "s0": 0.0}, r"s0=0\.0"),
        ({"asset": "binary", "s0": 0.005}, r"s0=0\.005"),
        ({"asset": "equity", "s0": -5.0}, r"s0=-5\.0"),
        ({"asset": "equity", "tick": 0.0}, r"tick=0\.0"),
        ({"asset": "equity", "tick": 0.00005}, r"tick=5e-05"),
        ({"asset": "binary", "tick": 0.3}, r"tick=0\.3"),
        ({"asset": "forex"}, r"asset='forex'"),
        ({"asset": "equity", "model": "sabr"}, r"model='sabr'"),
        ({"asset": "crypto", "model": "heston", "params": {"rho": -2.0}}, r"rho=-2\.0"),
        ({"asset": "crypto", "micro": {"trade_rate": -1.0}}, r"trade_rate=-1\.0"),
        ({"asset": "crypto", "micro": {"min_spread_ticks": 0}}, r"min_spread_ticks=0"),
        ({"asset": "crypto", "micro": {"depth": 3}}, r"'depth'"),
        ({"asset": "crypto", "size_unit": 0.0}, r"size_unit=0\.0"),
    ],
)
def test_bad_presets_raise_naming_the_parameter(kwargs: dict, needle: str) -> None:
    asset = kwargs.pop("asset")
    with pytest.raises(ValueError, match=needle):
        resolve(asset, **kwargs)


def test_bad_feed_arguments() -> None:
    cfg = resolve("equity")
    base = {"seed": 1, "instruments": ["A"], "start_ns": 0, "step_ns": 1_000_000_000}
    for change, needle in (
        ({"levels": 0}, "levels=0"),
        ({"instruments": []}, "instruments="),
        ({"instruments": ["A", "A"]}, "duplicates"),
        ({"instruments": ["A.B"]}, "'A.B'"),
        ({"step_ns": 7_000_000}, "step_ms=7.0"),
        ({"seed": -1}, "seed=-1"),
    ):
        with pytest.raises(ValueError, match=needle):
            SyntheticFeed(cfg, **{**base, **change})  # type: ignore[arg-type]
