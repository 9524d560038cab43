"""Synthetic two-venue binary market: the same events quoted on Polymarket and Kalshi.

Each instrument is an independent YES/NO event. Its fair probability is a latent random
walk in logit space, reflected at `prob_bounds`. Polymarket quotes around the latent plus
its own noise; Kalshi around the latent `lag` updates late plus its own noise (the Fed
data set shows Polymarket leading). Spreads are whole cents (>= 1 tick), deeper levels
are 1-2 ticks apart, sizes lognormal.

Crossings (a YES bid on one venue above the YES ask on the other) come in dislocation
episodes: they start at a rate solved so that a fraction `cross_rate` of updates is
crossed, last `cross_len` updates on average, and cross by `cross_ticks` ticks on average.
Outside an episode arbitrageurs are assumed to keep the venues uncrossed (at most locked),
so the crossed fraction is what the parameter says. Everything is generated a block at a
time with numpy (no per-update Python) from one seeded Generator: same seed, same books.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from libs.ids import new_id, now_ns
from proto.events import BookBatch, TradeBatch
from proto.subjects import token

VENUES = ("polymarket", "kalshi")
SOURCE = "synthetic"
TICK_PX = 100
"""One tick, 0.01 USD, in price units (1/10,000 USD)."""
MAX_TICKS = 99
"""Prices are 1..99 cents: strictly inside (0, 1) USD."""
MAX_SPREAD_TICKS = 20
MAX_CROSS_TICKS = 10
MAX_LEVELS = 50
DEEPER_GAP_2_TICKS = 0.25
"""Chance that a deeper level sits 2 ticks (rather than 1) behind the one before it."""


def _number(name: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """`value` as a float in [lo, hi] ((lo, hi] if lo_open), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value > hi or value < lo or (lo_open and value == lo):
        raise ValueError(f"{name}={value!r} must be in {'(' if lo_open else '['}{lo}, {hi}]")
    return float(value)


def _integer(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """`value` as an int in [lo, hi], else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}={value!r} must be an integer")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name}={value!r} must be in [{lo}, {hi if hi is not None else 'inf'}]")
    return int(value)


def _pair(name: str, value: object, lo: float, hi: float) -> tuple[float, float]:
    """A (polymarket, kalshi) pair of numbers in [lo, hi]."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{name}={value!r} must be a (polymarket, kalshi) pair")
    return _number(f"{name}[0]", value[0], lo, hi), _number(f"{name}[1]", value[1], lo, hi)


def _start_rate(cross_rate: float, cross_len: float) -> float:
    """Per-update episode start chance that leaves a fraction `cross_rate` of updates covered.

    An update is uncovered when no earlier start's episode (geometric length, mean
    `cross_len`) still runs: P = prod_j (1 - lam * q**j), q = 1 - 1/cross_len. Solved by bisection.
    """
    if cross_rate <= 0:
        return 0.0
    q = 1.0 - 1.0 / cross_len
    j = np.arange(int(np.ceil(40 * cross_len)) + 1)
    weights = q**j
    target = math.log1p(-cross_rate)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        lam = (lo + hi) / 2
        if np.log1p(-lam * weights).sum() > target:
            lo = lam
        else:
            hi = lam
    return (lo + hi) / 2


def _fold(z: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect values into [lo, hi] (a random walk's path reflected at both bounds)."""
    w = hi - lo
    y = np.mod(z - lo, 2 * w)
    return lo + np.where(y > w, 2 * w - y, y)


def _by_instrument(prefix: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """`values` laid out (rows, k): prefix (k values) first, padded; column = one instrument."""
    n = len(values)
    m = (k + n + k - 1) // k
    out = np.zeros(m * k, dtype=np.result_type(prefix, values))
    out[:k] = prefix
    out[k : k + n] = values
    return out.reshape(m, k)


class SyntheticMarket:
    """Seeded generator of correlated Polymarket/Kalshi books for binary events.

    Rows cycle through the instruments in order; each call continues where the last ended.
    """

    def __init__(
        self,
        seed: int,
        instruments: list[str] | None = None,
        levels: int = 5,
        cross_rate: float = 0.03,
        *,
        cross_len: float = 3.0,
        cross_ticks: float = 1.5,
        vol: float = 0.02,
        noise: tuple[float, float] = (0.01, 0.01),
        lag: int = 1,
        spread_ticks: tuple[float, float] = (1.5, 2.5),
        size_median: float = 500.0,
        size_sigma: float = 1.0,
        prob_bounds: tuple[float, float] = (0.05, 0.95),
        start_prob: float | None = None,
    ) -> None:
        """Parameters (a bad one raises ValueError naming it):

        seed: the numpy Generator seed (>= 0). instruments: event ids, the same on both
        venues (default one, "SYN-EVENT-0"). levels: book depth per side.
        cross_rate: fraction of updates where the venues cross (0..0.9).
        cross_len: mean updates a crossing episode lasts (>= 1). cross_ticks: mean ticks
        the crossing venue's bid clears the other's ask (1..10). vol: latent logit step
        std per update. noise: per-venue logit noise std. lag: Kalshi's lag in updates.
        spread_ticks: per-venue mean spread (1..20 ticks). size_median, size_sigma:
        lognormal level sizes (contracts). prob_bounds: where the latent probability is
        reflected. start_prob: the latent's start (default: uniform within the bounds).
        """
        self.seed = _integer("seed", seed, 0)
        names = ["SYN-EVENT-0"] if instruments is None else instruments
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise ValueError(f"instruments={instruments!r} must be a non-empty list of ids")
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"instrument {name!r} must be a string")
            token(name, "instrument")
        if len(set(names)) != len(names):
            raise ValueError(f"instruments={instruments!r} has duplicates")
        self.instruments = list(names)
        self.levels = _integer("levels", levels, 1, MAX_LEVELS)
        self.cross_rate = _number("cross_rate", cross_rate, 0.0, 0.9)
        self.cross_len = _number("cross_len", cross_len, 1.0, 1e6)
        self.cross_ticks = _number("cross_ticks", cross_ticks, 1.0, MAX_CROSS_TICKS)
        self.vol = _number("vol", vol, 0.0, 1.0)
        self.noise = _pair("noise", noise, 0.0, 1.0)
        self.lag = _integer("lag", lag, 0, 10_000)
        self.spread_ticks = _pair("spread_ticks", spread_ticks, 1.0, MAX_SPREAD_TICKS)
        self.size_median = _number("size_median", size_median, 1.0, 1e9)
        self.size_sigma = _number("size_sigma", size_sigma, 0.0, 3.0)
        lo_p, hi_p = _pair("prob_bounds", prob_bounds, 0.0, 1.0)
        if not 0.0 < lo_p < hi_p < 1.0:
            raise ValueError(f"prob_bounds={prob_bounds!r} must satisfy 0 < low < high < 1")
        self.prob_bounds = (lo_p, hi_p)
        if start_prob is not None:
            _number("start_prob", start_prob, lo_p, hi_p)

        book_seq, trade_seq = np.random.SeedSequence(self.seed).spawn(2)
        self._rng = np.random.default_rng(book_seq)
        self._trade_rng = np.random.default_rng(trade_seq)
        """Trades draw from their own stream, so books are the same with or without them."""
        self._start_rate = _start_rate(self.cross_rate, self.cross_len)
        self._logit_bounds = (math.log(lo_p / (1 - lo_p)), math.log(hi_p / (1 - hi_p)))

        k = len(self.instruments)
        if start_prob is None:
            p0 = self._rng.uniform(lo_p, hi_p, size=k)
        else:
            p0 = np.full(k, float(start_prob))
        x0 = np.log(p0 / (1 - p0))
        self._rows = 0
        """Rows generated so far: row r of the stream is instrument r % k."""
        self._x_tail = np.tile(x0, max(self.lag, 1))
        """The latent of the last max(lag, 1) * k stream rows (one per instrument per lag)."""
        self._ep_left = np.zeros(k, dtype=np.int64)
        self._ep_dir = np.zeros(k, dtype=np.int64)
        self._ep_mag = np.zeros(k, dtype=np.int64)
        """Per instrument: updates left in the running crossing episode, its direction, size."""
        self._last_best = np.zeros((4, 2, k), dtype=np.int64)
        """Per venue, per instrument: last best (bid px, bid size, ask px, ask size), for trades."""

    @property
    def rows(self) -> int:
        """Book rows per venue generated so far."""
        return self._rows

    def batch(self, n_rows: int, start_ts: int, step_ns: int) -> tuple[BookBatch, BookBatch]:
        """The next `n_rows` updates as (polymarket, kalshi) batches; row i at start_ts + i*step_ns."""
        books, _, ts, inst = self._generate(n_rows, start_ts, step_ns)
        return self._book_batch(0, books, ts, inst), self._book_batch(1, books, ts, inst)

    def batch_with_trades(
        self, n_rows: int, start_ts: int, step_ns: int
    ) -> tuple[BookBatch, BookBatch, TradeBatch, TradeBatch]:
        """Like `batch`, plus each venue's trades implied by its book moves.

        When an instrument's mid rises, a buyer took the previous best ask (aggressor +1);
        when it falls, a seller hit the previous best bid (-1); the size is a random part
        of that level. Trades carry the time of the update that revealed them.
        """
        books, prev, ts, inst = self._generate(n_rows, start_ts, step_ns)
        return (
            self._book_batch(0, books, ts, inst),
            self._book_batch(1, books, ts, inst),
            self._trade_batch(0, books, prev, ts, inst),
            self._trade_batch(1, books, prev, ts, inst),
        )

    # -- generation ------------------------------------------------------------------------

    def _generate(
        self, n_rows: int, start_ts: int, step_ns: int
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray, np.ndarray]:
        """Books for both venues (tick prices), previous best per row, times and instrument index."""
        n = _integer("n_rows", n_rows, 1)
        start_ts = _integer("start_ts", start_ts, 0)
        step_ns = _integer("step_ns", step_ns, 0)
        rng, k, g = self._rng, len(self.instruments), self._rows
        inst = (g + np.arange(n)) % k
        prefix_inst = (g + np.arange(k)) % k
        """Instrument of each of the k stream rows before this block (column order below)."""

        # Latent: per-instrument cumulative sum (columns of a (rows, k) layout), reflected.
        steps = rng.standard_normal(n) * self.vol
        walk = _by_instrument(self._x_tail[-k:], steps, k).cumsum(axis=0).ravel()[k : k + n]
        x = _fold(walk, *self._logit_bounds)
        tail = np.concatenate([self._x_tail, x])
        t = len(self._x_tail)
        x_lag = tail[t - self.lag * k : t - self.lag * k + n]
        self._x_tail = tail[-t:]

        bid = np.empty((2, n), dtype=np.int64)
        spread = np.empty((2, n), dtype=np.int64)
        for v, latent in enumerate((x, x_lag)):
            logit = latent + rng.standard_normal(n) * self.noise[v]
            fair = 100.0 / (1.0 + np.exp(-logit))
            s = 1 + rng.poisson(self.spread_ticks[v] - 1.0, n)
            np.minimum(s, MAX_SPREAD_TICKS, out=s)
            spread[v] = s
            bid[v] = np.floor(fair - s / 2 + 0.5)
        ask = bid + spread

        self._cross(bid, ask, n, k, prefix_inst)

        # Keep the whole quote inside 1..99 cents by moving both venues together.
        low = bid.min(axis=0)
        high = ask.max(axis=0)
        shift = np.maximum(0, 1 - low) - np.maximum(0, high - MAX_TICKS)
        bid += shift
        ask += shift
        np.clip(bid, 1, MAX_TICKS - 1, out=bid)
        np.clip(ask, bid + 1, MAX_TICKS, out=ask)

        books = [self._ladder(bid[v], ask[v]) for v in range(2)]
        prev = self._previous_best(books, inst, prefix_inst, n, k)
        self._rows = g + n
        ts = start_ts + np.arange(n, dtype=np.int64) * step_ns
        return books, prev, ts, inst

    def _cross(self, bid: np.ndarray, ask: np.ndarray, n: int, k: int, prefix_inst: np.ndarray) -> None:
        """Shift books so episode rows cross by their size and other rows do not cross (in place)."""
        rng = self._rng
        starts = rng.random(n) < self._start_rate
        n_starts = int(starts.sum())
        dur = rng.geometric(1.0 / self.cross_len, n_starts)
        direction = np.where(rng.random(n_starts) < 0.5, 1, -1)
        mag = np.minimum(rng.geometric(1.0 / self.cross_ticks, n_starts), MAX_CROSS_TICKS)

        # (rows, k) layout, row 0 the running episodes carried in; an episode starting at
        # layout row i lasting d covers rows i .. i+d-1. The running max of end*M + start
        # gives, per row, the episode reaching furthest and where it started.
        row_of = np.arange(n) // k + 1
        m = row_of[-1] + 1 if n else 1
        big = m + 1
        key = np.zeros(n, dtype=np.int64)  # 0: no episode (ends at row 0, covers nothing)
        key[starts] = (row_of[starts] + dur) * big + row_of[starts]
        carry = np.where(self._ep_left[prefix_inst] > 0, (1 + self._ep_left[prefix_inst]) * big, 0)
        acc = np.maximum.accumulate(_by_instrument(carry, key, k), axis=0)
        end, start = np.divmod(acc, big)
        dir_m = _by_instrument(self._ep_dir[prefix_inst], np.zeros(n, dtype=np.int64), k)
        mag_m = _by_instrument(self._ep_mag[prefix_inst], np.zeros(n, dtype=np.int64), k)
        flat_starts = np.flatnonzero(starts) + k
        dir_m.ravel()[flat_starts] = direction
        mag_m.ravel()[flat_starts] = mag
        cols = np.arange(k)
        ep_dir = dir_m[start, cols]
        ep_mag = mag_m[start, cols]

        # Carry the running episodes to the next block (columns map to instruments).
        last_row = np.where(cols < n, (n - 1 - cols) // k + 1, 0)
        left = np.maximum(0, end[last_row, cols] - (last_row + 1))
        self._ep_left[prefix_inst] = left
        self._ep_dir[prefix_inst] = ep_dir[last_row, cols]
        self._ep_mag[prefix_inst] = ep_mag[last_row, cols]

        rows = np.arange(acc.shape[0])[:, None]
        covered = (end > rows).ravel()[k : k + n]
        ep_dir = ep_dir.ravel()[k : k + n]
        ep_mag = ep_mag.ravel()[k : k + n]

        gap_pk = bid[0] - ask[1]  # > 0: Polymarket's YES bid above Kalshi's YES ask
        gap_kp = bid[1] - ask[0]
        poly_rich = np.where(covered, ep_dir > 0, gap_pk > 0)
        kalshi_rich = np.where(covered, ep_dir < 0, gap_kp > 0)
        target = np.where(covered, ep_mag, 0)
        # Close the gap to `target`, half the move on each venue.
        move = np.where(poly_rich, target - gap_pk, np.where(kalshi_rich, target - gap_kp, 0))
        half_up = -((-move) // 2)
        rest = move - half_up
        shift_p = np.where(poly_rich, half_up, np.where(kalshi_rich, -rest, 0))
        shift_k = np.where(poly_rich, -rest, np.where(kalshi_rich, half_up, 0))
        bid[0] += shift_p
        ask[0] += shift_p
        bid[1] += shift_k
        ask[1] += shift_k

    def _ladder(self, best_bid: np.ndarray, best_ask: np.ndarray) -> dict[str, np.ndarray]:
        """Full `levels`-deep book in ticks from the best quotes; levels past 1..99 are empty."""
        rng, n, lv = self._rng, len(best_bid), self.levels
        out: dict[str, np.ndarray] = {}
        for side, best, sign in (("bid", best_bid, -1), ("ask", best_ask, 1)):
            px = np.empty((n, lv), dtype=np.int64)
            px[:, 0] = best
            if lv > 1:
                wide = np.frombuffer(rng.bytes(n * (lv - 1)), dtype=np.uint8).reshape(n, lv - 1)
                gaps = 1 + (wide < round(256 * DEEPER_GAP_2_TICKS))
                px[:, 1:] = best[:, None] + sign * np.cumsum(gaps, axis=1)
            z = rng.standard_normal((n, lv), dtype=np.float32)
            sz = np.exp(z * np.float32(self.size_sigma)) * np.float32(self.size_median)
            sz *= (1.0 + 0.5 * np.arange(lv, dtype=np.float32))[None, :]  # deeper levels hold more
            size = sz.astype(np.int64) + 1
            empty = (px < 1) | (px > MAX_TICKS)
            px[empty] = 0
            size[empty] = 0
            out[f"{side}_px"] = px
            out[f"{side}_sz"] = size
        return out

    def _previous_best(
        self, books: list[dict[str, np.ndarray]], inst: np.ndarray, prefix_inst: np.ndarray, n: int, k: int
    ) -> np.ndarray:
        """(4, 2, n): per venue, each row's instrument's previous best bid px/sz, ask px/sz."""
        cur = np.stack(
            [np.stack([b["bid_px"][:, 0], b["bid_sz"][:, 0], b["ask_px"][:, 0], b["ask_sz"][:, 0]]) for b in books],
            axis=1,
        )
        before = self._last_best[:, :, prefix_inst]
        prev = np.concatenate([before, cur], axis=2)[:, :, :n]
        # Last row per instrument in this block (columns in stream order).
        cols = np.arange(min(k, n))
        last = cols + ((n - 1 - cols) // k) * k
        self._last_best[:, :, inst[last]] = cur[:, :, last]
        return prev

    # -- messages --------------------------------------------------------------------------

    def _book_batch(self, v: int, books: list[dict[str, np.ndarray]], ts: np.ndarray, inst: np.ndarray) -> BookBatch:
        b = books[v]
        return BookBatch(
            id=new_id(),
            ts=now_ns(),
            venue=VENUES[v],
            source=SOURCE,
            levels=self.levels,
            instruments=list(self.instruments),
            inst_idx=inst.tolist(),
            book_ts=ts.tolist(),
            bid_px=(b["bid_px"] * TICK_PX).ravel().tolist(),
            bid_sz=b["bid_sz"].ravel().tolist(),
            ask_px=(b["ask_px"] * TICK_PX).ravel().tolist(),
            ask_sz=b["ask_sz"].ravel().tolist(),
        )

    def _trade_batch(
        self, v: int, books: list[dict[str, np.ndarray]], prev: np.ndarray, ts: np.ndarray, inst: np.ndarray
    ) -> TradeBatch:
        b = books[v]
        p_bid, p_bsz, p_ask, p_asz = prev[:, v]
        mid2 = b["bid_px"][:, 0] + b["ask_px"][:, 0]
        up = (mid2 > p_bid + p_ask) & (p_asz > 0) & (p_bsz > 0)
        down = (mid2 < p_bid + p_ask) & (p_bsz > 0) & (p_asz > 0)
        rows = np.flatnonzero(up | down)
        buy = up[rows]
        level_sz = np.where(buy, p_asz[rows], p_bsz[rows])
        size = np.ceil(level_sz * self._trade_rng.random(len(rows))).astype(np.int64)
        np.maximum(size, 1, out=size)
        return TradeBatch(
            id=new_id(),
            ts=now_ns(),
            venue=VENUES[v],
            source=SOURCE,
            instruments=list(self.instruments),
            inst_idx=inst[rows].tolist(),
            trade_ts=ts[rows].tolist(),
            px=(np.where(buy, p_ask[rows], p_bid[rows]) * TICK_PX).tolist(),
            size=size.tolist(),
            aggressor=np.where(buy, 1, -1).tolist(),
        )
