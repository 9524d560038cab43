"""Synthetic two-venue binary market: the same events quoted on Polymarket and Kalshi.

Each instrument is an independent YES/NO event. Its fair probability is a latent random
walk in logit space, reflected at `prob_bounds`. Polymarket quotes around the latent plus
its own noise; Kalshi around the latent `lag` updates late plus its own noise (the Fed
data set shows Polymarket leading). Spreads are whole cents (>= 1 tick, geometric above
that), deeper levels sit 1-2 ticks apart, sizes are lognormal (growing with depth).

Crossings (a YES bid on one venue above the YES ask on the other) come in dislocation
episodes: they start at a rate solved so that a fraction `cross_rate` of updates is
crossed, last `cross_len` updates on average, and cross by `cross_ticks` ticks on average.
Outside an episode arbitrageurs are assumed to keep the venues uncrossed (at most locked),
so the crossed fraction is what the parameter says. Everything is generated BLOCK_ROWS
updates at a time with numpy (no per-update Python) from one seeded Generator and handed
out in order: the same seed gives the same stream of books however it is cut into batches.

Speed: small discrete draws (spreads, level gaps, sizes) are one random byte each, looked
up in a 256-entry inverse-CDF table (sizes: 256 lognormal quantiles per level). Turning
numbers into the lists a BookBatch carries costs more than making them, so prices and
sizes are gathered from tables of ready-made Python ints (no int object per value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

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
BLOCK_ROWS = 16_384
"""Rows generated per round of numpy calls (batches are cut from these blocks)."""
DEEPER_GAP_2_TICKS = 64
"""Out of 256: chance (25%) that a deeper level sits 2 ticks (rather than 1) behind the last."""
QUANTILES = (np.arange(256) + 0.5) / 256
"""The probability each value of a random byte stands for, in inverse-CDF tables."""

_PX_OBJ = np.array(
    [t * TICK_PX if 1 <= t <= MAX_TICKS else 0 for t in range(MAX_TICKS + 2 * MAX_LEVELS + 2)], dtype=object
)
"""Price units (Python ints) per tick index; 0 (empty level) below 1 and above 99 cents."""


def _number(name: str, value: object, lo: float, hi: float) -> float:
    """`value` as a float in [lo, hi], else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value > hi or value < lo:
        raise ValueError(f"{name}={value!r} must be in [{lo}, {hi}]")
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


def _spread_table(mean: float) -> np.ndarray:
    """Spread in ticks per random byte: 1 + geometric extra ticks, mean `mean` (capped)."""
    if mean <= 1.0:
        return np.ones(256, dtype=np.int64)
    r = (mean - 1.0) / mean  # P(extra >= e) = r**e gives mean extra r / (1 - r) = mean - 1
    extra = np.floor(np.log1p(-QUANTILES) / math.log(r)).astype(np.int64)
    return 1 + np.minimum(extra, MAX_SPREAD_TICKS - 1)


def _size_table(median: float, sigma: float, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Level sizes per (level * 256 + random byte), the last entry 0 for empty levels.

    Level j holds (1 + j/2) times a lognormal (median, sigma) quantile: deeper is larger.
    Returned as int64 (for arithmetic) and as Python ints (for building lists fast).
    """
    z = np.array([NormalDist().inv_cdf(q) for q in QUANTILES])
    depth = 1.0 + 0.5 * np.arange(levels)[:, None]
    sizes = np.maximum(1, np.rint(median * np.exp(sigma * z)[None, :] * depth)).astype(np.int64)
    flat = np.append(sizes.ravel(), 0)
    return flat, np.array(flat.tolist(), dtype=object)


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


@dataclass(slots=True)
class _Book:
    """One venue's rows: (levels, rows) tick prices (0 = empty) and size-table indexes."""

    venue: int
    """Index into VENUES."""
    bid_px: np.ndarray
    bid_size: np.ndarray
    ask_px: np.ndarray
    ask_size: np.ndarray
    prev: np.ndarray
    """(4, rows): previous best bid tick, bid size, ask tick, ask size of the row's instrument."""

    def cut(self, lo: int, hi: int) -> _Book:
        """Rows lo:hi (views)."""
        return _Book(self.venue, *(a[:, lo:hi] for a in self._arrays()))

    def copy(self) -> _Book:
        return _Book(self.venue, *(a.copy() for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.bid_px, self.bid_size, self.ask_px, self.ask_size, self.prev)

    @staticmethod
    def join(parts: list[_Book]) -> _Book:
        """The rows of `parts` one after another."""
        arrays = zip(*(p._arrays() for p in parts), strict=True)
        return _Book(parts[0].venue, *(np.concatenate(a, axis=1) for a in arrays))


@dataclass(slots=True)
class _Rows:
    """A run of generated updates: each row's instrument index and both venues' books."""

    inst: np.ndarray
    books: tuple[_Book, _Book]

    def __len__(self) -> int:
        return len(self.inst)

    def cut(self, lo: int, hi: int) -> _Rows:
        """Rows lo:hi (views)."""
        return _Rows(self.inst[lo:hi], (self.books[0].cut(lo, hi), self.books[1].cut(lo, hi)))

    def copy(self) -> _Rows:
        return _Rows(self.inst.copy(), (self.books[0].copy(), self.books[1].copy()))

    @staticmethod
    def empty(levels: int) -> _Rows:
        """No rows yet."""

        def book(v: int) -> _Book:
            px = np.zeros((levels, 0), dtype=np.int16)
            return _Book(v, px, px.copy(), px.copy(), px.copy(), np.zeros((4, 0), dtype=np.int64))

        return _Rows(np.zeros(0, dtype=np.int64), (book(0), book(1)))

    @staticmethod
    def join(parts: list[_Rows]) -> _Rows:
        """The rows of `parts` one after another."""
        if len(parts) == 1:
            return parts[0]
        books = (_Book.join([p.books[0] for p in parts]), _Book.join([p.books[1] for p in parts]))
        return _Rows(np.concatenate([p.inst for p in parts]), books)


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
        self.cross_len = _number("cross_len", cross_len, 1.0, 10_000.0)
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
        self._spread_tables = (_spread_table(self.spread_ticks[0]), _spread_table(self.spread_ticks[1]))
        self._size_num, self._size_obj = _size_table(self.size_median, self.size_sigma, self.levels)
        self._size_zero = len(self._size_num) - 1
        self._level_base = (256 * np.arange(self.levels, dtype=np.int16))[:, None]
        self._logit_bounds = (math.log(lo_p / (1 - lo_p)), math.log(hi_p / (1 - hi_p)))

        k = len(self.instruments)
        p0 = self._rng.uniform(lo_p, hi_p, size=k) if start_prob is None else np.full(k, float(start_prob))
        x0 = np.log(p0 / (1 - p0))
        self._rows = 0
        """Rows handed out so far."""
        self._generated = 0
        """Rows generated so far: row r of the stream is instrument r % k."""
        self._x_tail = np.tile(x0, max(self.lag, 1))
        """The latent of the last max(lag, 1) * k stream rows (one per instrument per lag)."""
        self._ep_left = np.zeros(k, dtype=np.int64)
        self._ep_code = np.zeros(k, dtype=np.int64)
        """Per instrument: updates left in the running crossing episode, and its code."""
        self._last_best = np.zeros((4, 2, k), dtype=np.int64)
        """Per venue, per instrument: last best (bid px, bid size, ask px, ask size), for trades."""
        self._pending = _Rows.empty(self.levels)
        self._offset = 0
        """Rows generated but not yet handed out: self._pending from self._offset on."""

    @property
    def rows(self) -> int:
        """Book rows per venue handed out so far."""
        return self._rows

    def batch(self, n_rows: int, start_ts: int, step_ns: int) -> tuple[BookBatch, BookBatch]:
        """The next `n_rows` updates as (polymarket, kalshi) batches; row i at start_ts + i*step_ns."""
        rows, ts = self._next(n_rows, start_ts, step_ns)
        return self._book_batches(rows, ts)

    def batch_with_trades(
        self, n_rows: int, start_ts: int, step_ns: int
    ) -> tuple[BookBatch, BookBatch, TradeBatch, TradeBatch]:
        """Like `batch`, plus each venue's trades implied by its book moves.

        When an instrument's mid rises and its best ask moves up, a buyer took the previous
        best ask (aggressor +1); when the mid falls and the best bid moves down, a seller hit
        the previous best bid (-1). The size is a random part of that level; a trade carries
        the time of the update that revealed it.
        """
        rows, ts = self._next(n_rows, start_ts, step_ns)
        return (
            *self._book_batches(rows, ts),
            self._trade_batch(rows.books[0], ts, rows.inst),
            self._trade_batch(rows.books[1], ts, rows.inst),
        )

    # -- generation ------------------------------------------------------------------------

    def _next(self, n_rows: int, start_ts: int, step_ns: int) -> tuple[_Rows, np.ndarray]:
        """The next `n_rows` rows of the stream and their times.

        Rows are made BLOCK_ROWS at a time and handed out in order, so the stream depends
        on the seed alone, not on how it is cut into batches, and one-row batches cost a
        slice rather than a round of numpy calls.
        """
        n = _integer("n_rows", n_rows, 1)
        start_ts = _integer("start_ts", start_ts, 0)
        step_ns = _integer("step_ns", step_ns, 0)
        pending, offset = self._pending, self._offset
        if len(pending) - offset >= n:
            rows = pending.cut(offset, offset + n)
            self._offset = offset + n
        else:
            parts = [pending.cut(offset, len(pending))]
            have = len(pending) - offset
            while have < n:
                parts.append(self._block(BLOCK_ROWS))
                have += BLOCK_ROWS
            joined = _Rows.join(parts)
            rows = joined.cut(0, n)
            rest = joined.cut(n, have)
            # Keep the rest as views of its block, but copy it out of a large join.
            self._pending = rest.copy() if len(parts) > 2 else rest
            self._offset = 0
        self._rows += n
        ts = start_ts + np.arange(n, dtype=np.int64) * step_ns
        return rows, ts

    def _block(self, n: int) -> _Rows:
        """Generate the next `n` rows of the stream (both venues)."""
        rng, k, g = self._rng, len(self.instruments), self._generated
        inst = (g + np.arange(n)) % k
        # The instruments of the k stream rows before this block: the column order of the
        # (rows, k) layouts below, where column j is always instrument prefix_inst[j].
        prefix_inst = (g + np.arange(k)) % k

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
        spread_bytes = np.frombuffer(rng.bytes(2 * n), dtype=np.uint8).reshape(2, n)
        for v, latent in enumerate((x, x_lag)):
            logit = latent + rng.standard_normal(n) * self.noise[v]
            fair = 100.0 / (1.0 + np.exp(-logit))
            spread[v] = self._spread_tables[v][spread_bytes[v]]
            bid[v] = np.floor(fair - 0.5 * spread[v] + 0.5)
        ask = bid + spread

        self._cross(bid, ask, n, k, prefix_inst)

        # Keep the whole quote inside 1..99 cents by moving both venues together.
        shift = np.maximum(0, 1 - bid.min(axis=0)) - np.maximum(0, ask.max(axis=0) - MAX_TICKS)
        bid += shift
        ask += shift
        np.clip(bid, 1, MAX_TICKS - 1, out=bid)
        np.clip(ask, bid + 1, MAX_TICKS, out=ask)

        books = (self._ladder(0, bid[0], ask[0], inst, prefix_inst), self._ladder(1, bid[1], ask[1], inst, prefix_inst))
        self._generated = g + n
        return _Rows(inst, books)

    def _cross(self, bid: np.ndarray, ask: np.ndarray, n: int, k: int, prefix_inst: np.ndarray) -> None:
        """Shift books so episode rows cross by their size and other rows do not cross (in place)."""
        if self._start_rate > 0 or self._ep_left.any():
            covered, code = self._episodes(n, k, prefix_inst)
        else:
            covered, code = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        poly_up = (code & 1).astype(bool)
        gap_pk = bid[0] - ask[1]  # > 0: Polymarket's YES bid above Kalshi's YES ask
        gap_kp = bid[1] - ask[0]
        poly_rich = np.where(covered, poly_up, gap_pk > 0)
        kalshi_rich = np.where(covered, ~poly_up, gap_kp > 0)
        # Close each gap to its target (the episode's size, else 0), half the move on each venue.
        target = np.where(covered, code >> 1, 0)
        move = np.where(poly_rich, target - gap_pk, np.where(kalshi_rich, target - gap_kp, 0))
        half_up = -((-move) // 2)
        rest = move - half_up
        shift_p = np.where(poly_rich, half_up, np.where(kalshi_rich, -rest, 0))
        shift_k = np.where(poly_rich, -rest, np.where(kalshi_rich, half_up, 0))
        bid[0] += shift_p
        ask[0] += shift_p
        bid[1] += shift_k
        ask[1] += shift_k

    def _episodes(self, n: int, k: int, prefix_inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: inside a crossing episode?, and its code (2 * size + 1 if Polymarket is rich).

        Rows are laid out (layout row, instrument column), layout row 0 holding the episodes
        carried in; an episode starting at layout row i lasting d covers rows i .. i+d-1.
        The running max of `end * B + code` gives each row the episode reaching furthest.
        """
        rng = self._rng
        starts = np.flatnonzero(rng.random(n, dtype=np.float32) < self._start_rate)
        dur = rng.geometric(1.0 / self.cross_len, len(starts))
        size = np.minimum(rng.geometric(1.0 / self.cross_ticks, len(starts)), MAX_CROSS_TICKS)
        poly_up = rng.random(len(starts)) < 0.5
        b = 2 * MAX_CROSS_TICKS + 2
        row_of = starts // k + 1
        key = np.zeros(n, dtype=np.int64)  # 0: no episode (ends at row 0, covers nothing)
        key[starts] = (row_of + dur) * b + 2 * size + poly_up
        left = self._ep_left[prefix_inst]
        carry = np.where(left > 0, (1 + left) * b + self._ep_code[prefix_inst], 0)
        acc = np.maximum.accumulate(_by_instrument(carry, key, k), axis=0)
        end, code = np.divmod(acc, b)

        # Carry the running episodes to the next block (columns map to instruments).
        cols = np.arange(k)
        last_row = np.where(cols < n, (n - 1 - cols) // k + 1, 0)
        self._ep_left[prefix_inst] = np.maximum(0, end[last_row, cols] - (last_row + 1))
        self._ep_code[prefix_inst] = code[last_row, cols]

        covered = (end > np.arange(acc.shape[0])[:, None]).ravel()[k : k + n]
        return covered, code.ravel()[k : k + n]

    def _ladder(
        self, venue: int, best_bid: np.ndarray, best_ask: np.ndarray, inst: np.ndarray, prefix_inst: np.ndarray
    ) -> _Book:
        """`levels`-deep book from the best quotes: tick prices and size-table indexes.

        Built level-major (levels, rows) in int16 so each level is one contiguous vector op.
        """
        rng, n, lv = self._rng, len(best_bid), self.levels
        sides = []
        for best, sign in ((best_bid, -1), (best_ask, 1)):
            px = np.empty((lv, n), dtype=np.int16)
            px[0] = best
            if lv > 1:
                wide = np.frombuffer(rng.bytes(n * (lv - 1)), dtype=np.uint8).reshape(lv - 1, n) < DEEPER_GAP_2_TICKS
                for j in range(1, lv):
                    np.add(px[j - 1], sign, out=px[j])
                    px[j] += sign * wide[j - 1]
            size = np.frombuffer(rng.bytes(n * lv), dtype=np.uint8).reshape(lv, n).astype(np.int16)
            size += self._level_base
            # Only near 0 or 1 do deeper levels run off the price range: they are left empty.
            if (px[-1].min() <= 0) if sign < 0 else (px[-1].max() > MAX_TICKS):
                empty = px <= 0 if sign < 0 else px > MAX_TICKS
                px[empty] = 0
                size[empty] = self._size_zero
            sides.append((px, size))
        (bid_px, bid_size), (ask_px, ask_size) = sides
        prev = self._previous_best(venue, bid_px, bid_size, ask_px, ask_size, inst, prefix_inst)
        return _Book(venue, bid_px, bid_size, ask_px, ask_size, prev)

    def _previous_best(
        self,
        v: int,
        bid_px: np.ndarray,
        bid_size: np.ndarray,
        ask_px: np.ndarray,
        ask_size: np.ndarray,
        inst: np.ndarray,
        prefix_inst: np.ndarray,
    ) -> np.ndarray:
        """(4, n): each row's instrument's previous best bid tick, bid size, ask tick, ask size."""
        n, k = len(inst), len(self.instruments)
        sizes = self._size_num
        cur = np.stack([bid_px[0], sizes[bid_size[0]], ask_px[0], sizes[ask_size[0]]])
        prev = np.concatenate([self._last_best[:, v, prefix_inst], cur], axis=1)[:, :n]
        cols = np.arange(min(k, n))
        last = cols + ((n - 1 - cols) // k) * k  # each instrument's last row in this block
        self._last_best[:, v, inst[last]] = cur[:, last]
        return prev

    # -- messages --------------------------------------------------------------------------

    def _book_batches(self, rows: _Rows, ts: np.ndarray) -> tuple[BookBatch, BookBatch]:
        """Both venues' BookBatch; the time and instrument columns are built once, then copied."""
        ts_list = ts.tolist()
        inst_list = [0] * len(rows) if len(self.instruments) == 1 else rows.inst.tolist()
        return (
            self._book_batch(rows.books[0], ts_list, inst_list),
            self._book_batch(rows.books[1], ts_list.copy(), inst_list.copy()),
        )

    def _book_batch(self, book: _Book, ts: list[int], inst: list[int]) -> BookBatch:
        """One venue's block as a BookBatch, prices and sizes gathered from Python-int tables."""
        size_obj = self._size_obj
        return BookBatch(
            id=new_id(),
            ts=now_ns(),
            venue=VENUES[book.venue],
            source=SOURCE,
            levels=self.levels,
            instruments=list(self.instruments),
            inst_idx=inst,
            book_ts=ts,
            # take() of the transposed (levels, rows) arrays gives row-major (rows, levels).
            bid_px=_PX_OBJ.take(book.bid_px.T).ravel().tolist(),
            bid_sz=size_obj.take(book.bid_size.T).ravel().tolist(),
            ask_px=_PX_OBJ.take(book.ask_px.T).ravel().tolist(),
            ask_sz=size_obj.take(book.ask_size.T).ravel().tolist(),
        )

    def _trade_batch(self, book: _Book, ts: np.ndarray, inst: np.ndarray) -> TradeBatch:
        """The trades one venue's book moves imply (see `batch_with_trades`)."""
        p_bid, p_bsz, p_ask, p_asz = book.prev
        bid, ask = book.bid_px[0].astype(np.int64), book.ask_px[0].astype(np.int64)
        known = (p_bsz > 0) & (p_asz > 0)
        up = known & (bid + ask > p_bid + p_ask) & (ask > p_ask)  # the old best ask is gone
        down = known & (bid + ask < p_bid + p_ask) & (bid < p_bid)  # the old best bid is gone
        rows = np.flatnonzero(up | down)
        buy = up[rows]
        level = np.where(buy, p_asz[rows], p_bsz[rows])
        size = np.maximum(1, np.ceil(level * self._trade_rng.random(len(rows)))).astype(np.int64)
        return TradeBatch(
            id=new_id(),
            ts=now_ns(),
            venue=VENUES[book.venue],
            source=SOURCE,
            instruments=list(self.instruments),
            inst_idx=inst[rows].tolist(),
            trade_ts=ts[rows].tolist(),
            px=(np.where(buy, p_ask[rows], p_bid[rows]) * TICK_PX).tolist(),
            size=size.tolist(),
            aggressor=np.where(buy, 1, -1).tolist(),
        )
