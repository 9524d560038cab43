"""Synthetic two-venue market: reproducible, well-formed books, crossings at the set rate."""

from __future__ import annotations

import numpy as np
import pytest

from proto import codec
from proto.events import BookBatch, TradeBatch
from services.ingest.synthetic import SyntheticMarket


def _content(b: BookBatch) -> tuple:
    """Everything but the per-message id and ts."""
    return (b.venue, b.levels, b.instruments, b.inst_idx, b.book_ts, b.bid_px, b.bid_sz, b.ask_px, b.ask_sz)


def _arrays(b: BookBatch) -> dict[str, np.ndarray]:
    shape = (b.rows, b.levels)
    return {
        f: np.asarray(getattr(b, f), dtype=np.int64).reshape(shape) for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")
    }


def _crossed(poly: BookBatch, kalshi: BookBatch) -> np.ndarray:
    p, k = _arrays(poly), _arrays(kalshi)
    return (p["bid_px"][:, 0] > k["ask_px"][:, 0]) | (k["bid_px"][:, 0] > p["ask_px"][:, 0])


def _assert_well_formed(b: BookBatch) -> None:
    a = _arrays(b)
    assert b.source == "synthetic"
    assert len(b.bid_px) == len(b.ask_sz) == b.rows * b.levels
    empty_bid, empty_ask = a["bid_sz"] == 0, a["ask_sz"] == 0
    assert np.array_equal(empty_bid, a["bid_px"] == 0) and np.array_equal(empty_ask, a["ask_px"] == 0)
    assert not empty_bid[:, 0].any() and not empty_ask[:, 0].any(), "best level always quoted"
    for side, empty in (("bid", empty_bid), ("ask", empty_ask)):
        px = a[f"{side}_px"][~empty]
        assert ((px > 0) & (px < 10_000) & (px % 100 == 0)).all()
        assert (a[f"{side}_sz"][~empty] >= 1).all()
        # once a level is empty, every deeper one is too
        assert not (empty[:, :-1] & ~empty[:, 1:]).any()
    bids = np.where(empty_bid, -1, a["bid_px"])
    asks = np.where(empty_ask, 1_000_000, a["ask_px"])
    assert (np.diff(bids, axis=1)[~empty_bid[:, 1:]] < 0).all(), "bids strictly descending"
    assert (np.diff(asks, axis=1)[~empty_ask[:, 1:]] > 0).all(), "asks strictly ascending"
    assert (a["bid_px"][:, 0] < a["ask_px"][:, 0]).all(), "bid below ask within a venue"


def test_same_seed_same_books_other_seed_other_books() -> None:
    def run(seed: int) -> list[tuple]:
        m = SyntheticMarket(seed, ["A", "B"])
        out = []
        for i in range(3):
            p, k = m.batch(1_000, 1_000_000 * i, 1_000)
            out += [_content(p), _content(k)]
        return out

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_stream_does_not_depend_on_batch_sizes() -> None:
    def rows(sizes: list[int]) -> dict[tuple[str, str], list[int]]:
        m = SyntheticMarket(21, ["A", "B", "C"])
        out: dict[tuple[str, str], list[int]] = {}
        for n in sizes:
            for b in m.batch(n, 0, 1):
                for f in ("inst_idx", "bid_px", "bid_sz", "ask_px", "ask_sz"):
                    out.setdefault((b.venue, f), []).extend(getattr(b, f))
        return out

    one_go = rows([40_000])
    assert rows([1, 2, 16_000, 3, 23_994]) == one_go  # across the generator's internal blocks
    assert rows([20_000, 20_000]) == one_go


def test_books_well_formed_and_stamped() -> None:
    m = SyntheticMarket(1, ["X", "Y", "Z"], levels=5)
    poly, kalshi = m.batch(20_000, 5_000, 7)
    assert (poly.venue, kalshi.venue) == ("polymarket", "kalshi")
    assert poly.id != kalshi.id and poly.ts > 0
    assert poly.book_ts == kalshi.book_ts == [5_000 + 7 * i for i in range(20_000)]
    assert poly.instruments == kalshi.instruments == ["X", "Y", "Z"]
    for b in (poly, kalshi):
        assert b.levels == 5 and b.rows == 20_000
        _assert_well_formed(b)
    assert codec.decode(codec.encode(poly), BookBatch) == poly


def test_books_well_formed_near_the_price_bounds() -> None:
    # Fair value around 1-3 cents: deeper bids run off the price range and are left empty.
    for bounds in ((0.005, 0.03), (0.97, 0.995)):
        m = SyntheticMarket(2, levels=8, prob_bounds=bounds, spread_ticks=(3.0, 5.0), cross_rate=0.2)
        poly, kalshi = m.batch(20_000, 0, 1)
        for b in (poly, kalshi):
            _assert_well_formed(b)
        side = "bid_sz" if bounds[0] < 0.5 else "ask_sz"
        assert (_arrays(poly)[side][:, -1] == 0).any()
        assert _crossed(poly, kalshi).mean() == pytest.approx(0.2, abs=0.03)


def test_one_level_and_many_levels() -> None:
    for levels in (1, 20):
        poly, kalshi = SyntheticMarket(3, levels=levels).batch(2_000, 0, 1)
        _assert_well_formed(poly)
        _assert_well_formed(kalshi)


@pytest.mark.parametrize(("rate", "instruments"), [(0.03, 1), (0.03, 5), (0.1, 2)])
def test_crossings_at_the_configured_rate(rate: float, instruments: int) -> None:
    m = SyntheticMarket(4, [f"I{i}" for i in range(instruments)], cross_rate=rate)
    crossed = np.concatenate([_crossed(*m.batch(50_000, 0, 1)) for _ in range(4)])
    assert crossed.mean() == pytest.approx(rate, rel=0.15)


def test_no_crossings_at_rate_zero() -> None:
    m = SyntheticMarket(5, ["A", "B"], cross_rate=0.0, noise=(0.2, 0.2), lag=5)
    assert not _crossed(*m.batch(50_000, 0, 1)).any()


def test_crossings_last_cross_len_updates_on_average() -> None:
    m = SyntheticMarket(6, cross_rate=0.05, cross_len=4.0)
    crossed = np.concatenate([_crossed(*m.batch(25_000, 0, 1)) for _ in range(8)]).astype(np.int8)
    starts = np.flatnonzero(np.diff(crossed) == 1)
    runs = crossed.sum() / len(starts)
    # Overlapping episodes merge into longer runs, so a run is at least as long as an episode.
    assert 3.5 < runs < 5.5


def test_instruments_cycle_across_batches_and_stay_continuous() -> None:
    m = SyntheticMarket(7, ["A", "B", "C"], start_prob=None, prob_bounds=(0.05, 0.95))
    p1, _ = m.batch(5, 0, 1)
    p2, _ = m.batch(4, 5, 1)
    assert p1.inst_idx == [0, 1, 2, 0, 1] and p2.inst_idx == [2, 0, 1, 2]
    poly, _ = m.batch(30_000, 0, 1)
    mid = np.asarray(poly.bid_px[:: poly.levels]) + np.asarray(poly.ask_px[:: poly.levels])
    same_instrument = np.abs(np.diff(mid.reshape(-1, 3), axis=0)).mean()
    assert same_instrument < 500  # a few ticks per update: one walk per instrument
    assert SyntheticMarket(7, ["A", "B", "C"]).rows == 0 and m.rows == 30_009


def test_kalshi_lags_polymarket() -> None:
    lag = 5
    m = SyntheticMarket(8, levels=1, vol=0.02, noise=(0.0, 0.0), lag=lag, cross_rate=0.0, spread_ticks=(1.0, 1.0))
    poly, kalshi = m.batch(20_000, 0, 1)
    pm = np.asarray(poly.bid_px) + np.asarray(poly.ask_px)
    km = np.asarray(kalshi.bid_px) + np.asarray(kalshi.ask_px)
    far = 3 * lag
    distance = [np.abs(km[far:] - pm[far - s : len(pm) - s]).mean() for s in range(far + 1)]
    assert int(np.argmin(distance)) == lag  # Kalshi now is closest to Polymarket `lag` updates ago


def test_trades_follow_book_moves_and_leave_books_unchanged() -> None:
    books_only = SyntheticMarket(9, ["A", "B"]).batch(5_000, 0, 10)
    m = SyntheticMarket(9, ["A", "B"])
    poly, kalshi, poly_trades, kalshi_trades = m.batch_with_trades(5_000, 0, 10)
    assert (_content(poly), _content(kalshi)) == tuple(_content(b) for b in books_only)
    for book, trades in ((poly, poly_trades), (kalshi, kalshi_trades)):
        assert isinstance(trades, TradeBatch) and trades.venue == book.venue
        assert 0 < trades.rows < book.rows
        assert set(trades.aggressor) <= {1, -1} and min(trades.size) >= 1
        a = _arrays(book)
        row_of = {ts: r for r, ts in enumerate(book.book_ts)}
        for ts, inst, px, side in zip(trades.trade_ts, trades.inst_idx, trades.px, trades.aggressor, strict=True):
            r = row_of[ts]
            assert book.inst_idx[r] == inst
            prev = r - 2  # two instruments alternate: the same instrument's previous update
            assert prev >= 0
            if side == 1:  # a buyer took the old best ask: it is gone, the mid rose
                assert px == a["ask_px"][prev, 0] < a["ask_px"][r, 0]
            else:
                assert px == a["bid_px"][prev, 0] > a["bid_px"][r, 0]
    assert codec.decode(codec.encode(poly_trades), TradeBatch) == poly_trades


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"instruments": []}, "instruments"),
        ({"instruments": ["A", "A"]}, "instruments"),
        ({"instruments": ["bad.id"]}, "instrument"),
        ({"levels": 0}, "levels"),
        ({"levels": 51}, "levels"),
        ({"cross_rate": -0.1}, "cross_rate"),
        ({"cross_rate": 1.0}, "cross_rate"),
        ({"cross_rate": float("nan")}, "cross_rate"),
        ({"cross_len": 0.5}, "cross_len"),
        ({"cross_ticks": 0}, "cross_ticks"),
        ({"vol": -1.0}, "vol"),
        ({"noise": (0.1,)}, "noise"),
        ({"noise": (0.1, -0.1)}, r"noise\[1\]"),
        ({"lag": -1}, "lag"),
        ({"spread_ticks": (0.5, 2.0)}, r"spread_ticks\[0\]"),
        ({"size_median": 0}, "size_median"),
        ({"size_sigma": 9}, "size_sigma"),
        ({"prob_bounds": (0.6, 0.4)}, "prob_bounds"),
        ({"prob_bounds": (0.0, 0.5)}, "prob_bounds"),
        ({"start_prob": 0.99}, "start_prob"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, name: str) -> None:
    args = {"seed": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        SyntheticMarket(**args)


@pytest.mark.parametrize(("args", "name"), [((0, 0, 1), "n_rows"), ((10, -1, 1), "start_ts"), ((10, 0, -5), "step_ns")])
def test_bad_batch_arguments_are_named(args: tuple[int, int, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SyntheticMarket(1).batch(*args)
