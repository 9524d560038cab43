"""Synthetic price generators as an ingest source: a spec, and an async runner paced in market time.

A spec names the asset preset (equity, crypto, binary), the model (gbm, heston, merton), a seed
and overrides. It is a msgspec Struct decoded from JSON, or from the short form

    <model>:<asset>[?key=value&key=value...]      e.g.  heston:crypto?seed=3&step_ms=100&kappa=2

where a key is a spec field (seed, step_ms, levels, chunk_steps, venue, bars, start, s0, tick,
instruments as A|B|C), a model parameter (mu, sigma, kappa, theta, xi, rho, v0, lam, jump_mu,
jump_sigma) or a microstructure parameter (libs.synth.micro.MicroParams). The short form has no
commas, so it fits in MT_INGEST_SOURCES (e.g. `synthetic,gbm:equity,heston:crypto?seed=2`).

`run_generator` publishes chunks through the `publish` callable it is given (the ingest
service's) on a `VirtualClock`: as fast as possible (speed None) or N x real time, never
publishing an event before its market time is due. `duration_s` is market seconds.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from libs import log
from libs.clock import VirtualClock, check_speed
from libs.config import parse_bool
from libs.ids import now_ns
from libs.synth.assets import ASSETS, PRESETS, resolve
from libs.synth.market import MINUTE_NS, SyntheticFeed
from libs.synth.micro import MicroParams
from libs.synth.paths import GBM, MODELS, Heston, Merton
from libs.venues.books import iso_ns
from proto import subjects
from proto.events import BarBatch, BookBatch, MarketInfo, RawBatch, TradeBatch
from services.ingest.stats import GeneratorStats

AnyBatch = BookBatch | TradeBatch | BarBatch
Publish = Callable[[Sequence[AnyBatch]], Awaitable[object]]
PACED_CHUNK_WALL_S = 0.1
"""When paced, a chunk spans at most this much wall time (so events are never held back long)."""
_MODEL_KEYS = set(GBM.__struct_fields__) | set(Heston.__struct_fields__) | set(Merton.__struct_fields__)


class GeneratorSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to generate; defaults come from the asset preset (libs.synth.assets)."""

    asset: str = "equity"
    model: str | None = None
    """gbm, heston or merton (default: the preset's)."""
    seed: int = 0
    params: dict[str, float] = {}
    """Model parameter overrides (annualised: mu, sigma, kappa, theta, xi, rho, v0, lam, jump_mu, jump_sigma)."""
    micro: dict[str, float] = {}
    """Microstructure overrides (spread, depth, trade rate: libs.synth.micro.MicroParams)."""
    instruments: list[str] | None = None
    """Instrument names (default: the preset's one, e.g. SYN-EQ); each gets its own path."""
    step_ms: int = 1_000
    """Market time between book updates (must divide a minute when bars are on)."""
    levels: int = 5
    chunk_steps: int = 1_000
    """Steps per published chunk when unpaced (one BookBatch holds chunk_steps x instruments rows)."""
    venue: str = "synthetic"
    bars: bool = True
    """Also publish 1-minute bars built from the books and trades."""
    start: str | None = None
    """Market time of the first step, ISO 8601 (naive = UTC). Default: now — exactly now when paced
    (the first bar is a partial minute, and no event is stamped in the past), or now floored to the
    minute when generating as fast as possible. An explicit start is reproducible."""
    s0: float | None = None
    tick: float | None = None

    def __post_init__(self) -> None:
        for name, lo in (("step_ms", 1), ("levels", 1), ("chunk_steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name}={value!r} must be an integer >= {lo}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        if self.asset not in PRESETS:
            raise ValueError(f"asset={self.asset!r} is not one of {', '.join(ASSETS)}")
        if self.model is not None and self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {', '.join(MODELS)}")
        if self.start is not None:
            parse_start(self.start)

    @property
    def label(self) -> str:
        """`model:asset`, for logs and stats."""
        return f"{self.model or PRESETS[self.asset].model}:{self.asset}"

    def start_ns(self, paced: bool = False) -> int:
        """The first step's market time: `start` when given; else now (paced) or now floored to the minute."""
        if self.start is not None:
            return parse_start(self.start)
        now = now_ns()
        return now if paced else now // MINUTE_NS * MINUTE_NS

    def feed(self, start_ns: int | None = None, paced: bool = False) -> SyntheticFeed:
        """The feed this spec describes (every parameter checked), starting at `start_ns` if given."""
        cfg = resolve(self.asset, self.model, self.params, self.micro, s0=self.s0, tick=self.tick)
        if start_ns is None:
            start_ns = self.start_ns(paced)
        return SyntheticFeed(
            cfg,
            seed=self.seed,
            instruments=self.instruments or [PRESETS[self.asset].instrument],
            start_ns=start_ns,
            step_ns=self.step_ms * 1_000_000,
            levels=self.levels,
            venue=self.venue,
            bars=self.bars,
        )


def parse_start(text: str, name: str = "start") -> int:
    """An ISO 8601 time (naive = UTC) as exact UTC nanoseconds, else ValueError naming `name` and the text."""
    ns = iso_ns(text) if isinstance(text, str) else None
    if ns is None:
        raise ValueError(f"{name}={text!r} is not an ISO 8601 time (e.g. 2024-03-01T14:30:00Z)")
    return ns


def _scalar(key: str, text: str) -> Any:
    """A short-form value: int, float, bool or string, by what the key expects."""
    if key in ("venue", "start", "asset", "model"):
        return text
    if key == "instruments":
        return [s for s in text.split("|") if s]
    if key == "bars":
        try:
            return parse_bool(text)
        except ValueError:
            raise ValueError(f"bars={text!r} must be true or false") from None
    try:
        return int(text) if key in ("seed", "step_ms", "levels", "chunk_steps", "min_spread_ticks") else float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number") from None


def is_generator_spec(text: str) -> bool:
    """Whether a source name is a generator spec: JSON, `model:asset[?…]`, or a bare model or preset name."""
    head = text.strip().partition("?")[0]
    return text.strip().startswith("{") or ":" in head or head in MODELS or head in PRESETS


def parse_spec(text: str) -> GeneratorSpec:
    """A spec from JSON (`{"model": "heston", ...}`) or the short form `model:asset?key=value&...`."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return msgspec.json.decode(text, type=GeneratorSpec)
        except msgspec.ValidationError as e:
            raise ValueError(f"generator spec {text!r}: {e}") from None
        except msgspec.DecodeError as e:
            raise ValueError(f"generator spec {text!r} is not valid JSON: {e}") from None
    head, _, query = text.partition("?")
    parts = head.split(":")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"generator spec {text!r} must look like model:asset[?key=value&...], e.g. gbm:equity")
    if len(parts) == 1:
        name = parts[0]
        fields: dict[str, Any] = {"model": name} if name in MODELS else {"asset": name}
    else:
        fields = {"model": parts[0], "asset": parts[1]}
    params: dict[str, float] = {}
    micro: dict[str, float] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)) if query else []:
        if key in _MODEL_KEYS:
            params[key] = _scalar(key, value)
        elif key in MicroParams.__struct_fields__:
            micro[key] = _scalar(key, value)
        elif key in GeneratorSpec.__struct_fields__ and key not in ("params", "micro"):
            fields[key] = _scalar(key, value)
        else:
            raise ValueError(f"generator spec {text!r}: unknown key {key!r}")
    try:
        return GeneratorSpec(**fields, params=params, micro=micro)
    except ValueError as e:
        raise ValueError(f"generator spec {text!r}: {e}") from None


def bus_publisher(bus: Any) -> Callable[[Sequence[AnyBatch | RawBatch | MarketInfo]], Awaitable[None]]:
    """A `publish` callable onto a `libs.bus.Bus` (JetStream, acks awaited, deduped by event id), routing
    every market-data event by `subjects.of_batch` (books, trades, bars, raw responses, market facts)."""

    async def publish(batches: Sequence[AnyBatch | RawBatch | MarketInfo]) -> None:
        await bus.publish_many((subjects.of_batch(b), b) for b in batches)

    return publish


async def run_generator(
    publish: Publish,
    spec: GeneratorSpec,
    speed: float | None = None,
    duration_s: float | None = None,
    *,
    start_ns: int | None = None,
    clock: VirtualClock | None = None,
) -> GeneratorStats:
    """Generate and publish `duration_s` market seconds (None: until cancelled) at `speed` x real time.

    speed None or 0 is as fast as possible. Each chunk goes out once its last step's market time
    is due; the last partial minute's bar is published at the end of a finite run.
    """
    speed = check_speed(speed or None)
    if duration_s is not None:
        duration_s = float(duration_s)
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(
                f"duration_s={duration_s!r} must be a positive number of market seconds (None: until stopped)"
            )
    paced = (clock.speed if clock is not None else speed) is not None
    feed = spec.feed(start_ns, paced=paced)
    clock = clock or VirtualClock(speed, start_ns=feed.start_ns)
    step_ns = feed.step_ns
    if clock.speed is None:
        per_chunk = spec.chunk_steps
    else:
        per_chunk = max(1, min(spec.chunk_steps, int(PACED_CHUNK_WALL_S * clock.speed * 1e9 / step_ns)))
    total = None if duration_s is None else max(1, math.ceil(duration_s * 1e9 / step_ns))
    stats = GeneratorStats(source=spec.label, first_ts=feed.start_ns)
    t0 = time.perf_counter()
    await clock.wait_until(feed.start_ns)
    try:
        while total is None or stats.steps < total:
            n = per_chunk if total is None else min(per_chunk, total - stats.steps)
            chunk = feed.next_chunk(n)
            await clock.wait_until(chunk.last_ts)
            out = chunk.batches
            await publish(out)
            stats.steps += n
            stats.count(out)
            stats.last_ts = chunk.last_ts
        final = feed.finish()
        if final is not None:
            await publish([final])
            stats.count([final])
    finally:
        stats.market_s = stats.steps * step_ns / 1e9
        stats.seconds = time.perf_counter() - t0
        log.get("ingest.generators").info("generator done", **msgspec.structs.asdict(stats))
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `markettwin generate` options (the lead's CLI wires this to `spec_from_args`)."""
    parser.add_argument("--model", choices=MODELS, default=None, help="default: the asset preset's")
    parser.add_argument("--asset", choices=ASSETS, default="equity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0, help="market seconds to generate")
    parser.add_argument("--speed", type=float, default=0.0, help="x real time; 0 = as fast as possible")
    parser.add_argument("--step-ms", type=int, default=1_000)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--instruments", default=None, help="comma list (default: the preset's one)")
    parser.add_argument("--venue", default="synthetic")
    parser.add_argument(
        "--start", default=None, help="ISO 8601 market start (default: now; to the minute when not paced)"
    )
    parser.add_argument("--no-bars", action="store_true")
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="model or microstructure override")
    parser.add_argument("--spec", default=None, help="a whole spec: JSON or model:asset?k=v&... (overrides the rest)")


def spec_from_args(args: argparse.Namespace) -> GeneratorSpec:
    """The spec `markettwin generate` options describe (ValueError naming a bad option)."""
    if args.spec:
        return parse_spec(args.spec)
    params: dict[str, float] = {}
    micro: dict[str, float] = {}
    for item in args.param:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--param {item!r} must be KEY=VALUE")
        if key in _MODEL_KEYS:
            params[key] = _scalar(key, value)
        elif key in MicroParams.__struct_fields__:
            micro[key] = _scalar(key, value)
        else:
            raise ValueError(f"--param {item!r}: {key!r} is neither a model nor a microstructure parameter")
    instruments = [s.strip() for s in args.instruments.split(",") if s.strip()] if args.instruments else None
    return GeneratorSpec(
        asset=args.asset,
        model=args.model,
        seed=args.seed,
        params=params,
        micro=micro,
        instruments=instruments,
        step_ms=args.step_ms,
        levels=args.levels,
        venue=args.venue,
        bars=not args.no_bars,
        start=args.start,
    )
