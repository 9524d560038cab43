"""A synthetic market as event chunks: BookBatch, TradeBatch and 1-minute BarBatch, columnar.

`SyntheticFeed` advances every instrument's path `n` steps at a time and turns the steps into
one BookBatch (a row per instrument per step, step-major), one TradeBatch (the market orders
during those steps) and, when bars are on, a BarBatch of the minutes completed so far.

Book row t of an instrument shows the mid at the start of step t (its path before step t's
move); the trades during [t, t + step) hit that book, and lean buy when the step's move is up.
Bars are built from what was published: open/high/low/close of the quoted mid
((best bid + best ask) / 2, dollars) of the book rows in each minute, volume the traded size in
the asset's units (shares, coins, contracts). Minutes still open at a chunk's end are carried
to the next chunk; `finish()` flushes the last, partial minute.

Ids are deterministic: `syn-<key>-<chunk>-<kind>`, the key a hash of the seed, asset, model,
parameters, instruments, venue, start and step; an event's `ts` is the market time of the
chunk's last step (when the generator "made" it). Every random draw is on its own stream, so
the rows do not depend on how the steps are cut into chunks (the ids and `ts` do). Re-running a
spec reproduces the stream, ids included, so JetStream's duplicate window and the recorder
dedup a repeated run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import msgspec
import numpy as np

from libs.synth.assets import MarketConfig
from libs.synth.micro import MicroStreams, quote, trades
from libs.synth.paths import Heston, PathGenerator, long_run_vol
from proto.events import BarBatch, BookBatch, TradeBatch
from proto.subjects import token
from proto.units import PRICE_SCALE

MINUTE_NS = 60_000_000_000
MAX_LEVELS = 100
MAX_VOL_RATIO = 20.0
"""Cap on instantaneous / long-run volatility when widening the spread (a Heston spike)."""


class FeedChunk(msgspec.Struct, kw_only=True):
    """One chunk of the stream: its steps' books, trades and the bars completed so far."""

    index: int
    first_ts: int
    last_ts: int
    books: BookBatch
    trades: TradeBatch
    bars: BarBatch | None = None

    @property
    def batches(self) -> list[BookBatch | TradeBatch | BarBatch]:
        """What to publish, in order (books, then trades, then bars; empty ones left out)."""
        out: list[BookBatch | TradeBatch | BarBatch] = [self.books]
        if self.trades.rows:
            out.append(self.trades)
        if self.bars is not None and self.bars.rows:
            out.append(self.bars)
        return out


def check_instruments(instruments: Sequence[str]) -> list[str]:
    """Non-empty, unique, valid subject tokens, else ValueError naming the bad one."""
    if isinstance(instruments, str) or not isinstance(instruments, Sequence) or not instruments:
        raise ValueError(f"instruments={instruments!r} must be a non-empty list of names")
    for name in instruments:
        if not isinstance(name, str):
            raise ValueError(f"instrument {name!r} must be a string")
        token(name, "instrument")
    if len(set(instruments)) != len(instruments):
        raise ValueError(f"instruments={list(instruments)!r} has duplicates")
    return list(instruments)


class SyntheticFeed:
    """Seeded books, trades and bars for `instruments` under one market config."""

    def __init__(
        self,
        config: MarketConfig,
        *,
        seed: int,
        instruments: Sequence[str],
        start_ns: int,
        step_ns: int,
        levels: int = 5,
        venue: str = "synthetic",
        source: str = "synthetic",
        bars: bool = True,
    ) -> None:
        """Paths start at `config.s0` at `start_ns` (UTC ns) and step every `step_ns`."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an integer >= 0")
        self.instruments = check_instruments(instruments)
        if isinstance(step_ns, bool) or not isinstance(step_ns, int) or step_ns <= 0:
            raise ValueError(f"step_ns={step_ns!r} must be a positive integer")
        if bars and MINUTE_NS % step_ns:
            raise ValueError(f"step_ms={step_ns / 1e6!r} must divide a minute (60000 ms) when bars are on")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels={levels!r} must be an integer in [1, {MAX_LEVELS}]")
        if isinstance(start_ns, bool) or not isinstance(start_ns, int) or start_ns < 0:
            raise ValueError(f"start_ns={start_ns!r} must be a UTC nanosecond time >= 0")
        self.config, self.seed, self.levels = config, seed, levels
        self.venue, self.source = token(venue, "venue"), token(source, "source")
        self.step_ns, self.start_ns, self.bars = step_ns, start_ns, bars
        self.next_ts = start_ns
        self.chunks = 0
        k = len(self.instruments)
        path_seq, micro_seq = np.random.SeedSequence(seed).spawn(2)
        latent = config.kind == "binary"
        x0 = math.log(config.s0 / (1 - config.s0)) if latent else config.s0
        dt = step_ns / 1e9 / config.seconds_per_year
        self._paths = PathGenerator(config.model, x0, dt, n_paths=k, seed=path_seq, latent=latent)
        self._rng = MicroStreams(micro_seq)
        self._x = np.full(k, x0 if latent else math.log(config.s0))
        """Each path's value at the start of the next step."""
        self._var = np.full(k, config.model.v0) if isinstance(config.model, Heston) else None
        self._inst = np.arange(k, dtype=np.int64)
        self._bar: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        """The open minute carried between chunks: (minute ts, open, high, low, close, volume units)."""
        self._key = self._stream_key()

    def _stream_key(self) -> str:
        c = self.config
        text = msgspec.json.encode(
            [self.seed, c.asset, c.model, c.s0, c.tick, c.micro, self.instruments, self.venue, self.start_ns,
             self.step_ns, self.levels, c.seconds_per_year, c.size_unit]
        )  # fmt: skip
        return hashlib.blake2b(text, digest_size=6).hexdigest()

    def event_id(self, chunk: int, kind: str) -> str:
        """The deterministic id of chunk `chunk`'s `kind` batch ("book", "trade", "bar")."""
        return f"syn-{self._key}-{chunk:08d}-{kind}"

    def next_chunk(self, n_steps: int) -> FeedChunk:
        """The next `n_steps` steps of every instrument as events."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r} must be an integer >= 1")
        cfg, k, step = self.config, len(self.instruments), self.step_ns
        path = self._paths.advance(n_steps)
        x_rows = np.vstack([self._x[None, :], path.log_s[:-1]])  # each step's start
        move = path.log_s - x_rows
        self._x = path.log_s[-1].copy()
        mid = 1.0 / (1.0 + np.exp(-x_rows)) if cfg.kind == "binary" else np.exp(x_rows)
        lrv = long_run_vol(cfg.model)
        if path.var is not None and self._var is not None and lrv > 0:
            var_rows = np.vstack([self._var[None, :], path.var[:-1]])
            self._var = path.var[-1].copy()
            ratio = np.minimum(np.sqrt(var_rows) / lrv, MAX_VOL_RATIO)
        else:
            ratio = np.ones_like(mid)

        step_ts = self.next_ts + np.arange(n_steps, dtype=np.int64) * step
        book_ts = np.repeat(step_ts, k)
        inst = np.tile(self._inst, n_steps)
        q = quote(
            (mid * PRICE_SCALE).ravel(), ratio.ravel(), cfg.tick_px, self.levels, cfg.micro, self._rng, cfg.max_px
        )
        tr = trades(q, book_ts, step, move.ravel(), cfg.micro, self._rng)

        index = self.chunks
        made = int(step_ts[-1])
        books = BookBatch(
            id=self.event_id(index, "book"),
            ts=made,
            venue=self.venue,
            source=self.source,
            levels=self.levels,
            instruments=list(self.instruments),
            inst_idx=inst.tolist(),
            book_ts=book_ts.tolist(),
            bid_px=q.bid_px.ravel().tolist(),
            bid_sz=q.bid_sz.ravel().tolist(),
            ask_px=q.ask_px.ravel().tolist(),
            ask_sz=q.ask_sz.ravel().tolist(),
        )
        trade_batch = TradeBatch(
            id=self.event_id(index, "trade"),
            ts=made,
            venue=self.venue,
            source=self.source,
            instruments=list(self.instruments),
            inst_idx=inst[tr.row].tolist(),
            trade_ts=tr.ts.tolist(),
            px=tr.px.tolist(),
            size=tr.size.tolist(),
            aggressor=tr.aggressor.tolist(),
        )
        self.next_ts = int(step_ts[-1]) + step
        self.chunks += 1
        bars = None
        if self.bars:
            quoted = ((q.bid_px[:, 0] + q.ask_px[:, 0]) / (2 * PRICE_SCALE)).reshape(n_steps, k)
            vol = np.zeros((n_steps, k))
            np.add.at(vol, (tr.row // k, inst[tr.row]), tr.size)
            bars = self._bars(index, made, step_ts, quoted, vol)
        return FeedChunk(
            index=index, first_ts=int(step_ts[0]), last_ts=made, books=books, trades=trade_batch, bars=bars
        )

    def _bars(self, index: int, made: int, step_ts: np.ndarray, mid: np.ndarray, vol: np.ndarray) -> BarBatch:
        """Minutes completed by this chunk (with the minute carried in), as one BarBatch."""
        minute = step_ts - step_ts % MINUTE_NS
        starts = np.concatenate([[0], np.flatnonzero(np.diff(minute)) + 1])
        ends = np.append(starts[1:], len(minute))
        o, c = mid[starts], mid[ends - 1]
        h = np.maximum.reduceat(mid, starts, axis=0)
        lo = np.minimum.reduceat(mid, starts, axis=0)
        v = np.add.reduceat(vol, starts, axis=0)
        m = minute[starts]
        if self._bar is not None and self._bar[0] == m[0]:  # the carried minute continues here
            _, co, ch, cl, _, cv = self._bar
            o[0], h[0], lo[0], v[0] = co, np.maximum(ch, h[0]), np.minimum(cl, lo[0]), cv + v[0]
        done = len(m) if self.next_ts - self.next_ts % MINUTE_NS > m[-1] else len(m) - 1
        self._bar = None if done == len(m) else (int(m[-1]), o[-1], h[-1], lo[-1], c[-1], v[-1])
        return self._bar_batch(
            self.event_id(index, "bar"), made, m[:done], o[:done], h[:done], lo[:done], c[:done], v[:done]
        )

    def finish(self) -> BarBatch | None:
        """The last, still open minute as a (partial) bar, or None when there is none."""
        if self._bar is None or not self.bars:
            return None
        m, o, h, lo, c, v = self._bar
        self._bar = None
        made = self.next_ts - self.step_ns
        return self._bar_batch(
            self.event_id(self.chunks, "bar-final"), made, np.array([m]), o[None], h[None], lo[None], c[None], v[None]
        )

    def _bar_batch(
        self, bar_id: str, made: int, minutes: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
        v: np.ndarray,
    ) -> BarBatch:  # fmt: skip
        k = len(self.instruments)
        return BarBatch(
            id=bar_id,
            ts=made,
            venue=self.venue,
            source=self.source,
            timeframe="1min",
            instruments=list(self.instruments),
            inst_idx=np.tile(self._inst, len(minutes)).tolist(),
            bar_ts=np.repeat(minutes, k).tolist(),
            open=o.ravel().tolist(),
            high=h.ravel().tolist(),
            low=lo.ravel().tolist(),
            close=c.ravel().tolist(),
            volume=(v.ravel() * self.config.size_unit).tolist(),
        )
