"""ingest: turns every source into one stream of book events on `md.book.<venue>.<instrument>`.

Sources (MT_INGEST_SOURCES, comma list): `synthetic` (the two-venue binary market),
`replay` (the recorded Fed December 2025 "no change" market, Polymarket vs Kalshi),
`polymarket` / `kalshi` (live books of the markets in MT_MARKETS_FILE, see `live.py`) and
generator specs such as `heston:crypto?seed=2` (`generators.py`). File replays (LOBSTER,
Bitstamp L3, bar files) and recordings run on demand: `markettwin replay …`, `replay-recording`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from libs.clock import VirtualClock
from libs.ids import now_ns
from proto import subjects
from proto.events import BarBatch, BookBatch, RawBatch, TradeBatch
from services.ingest.generators import is_generator_spec, parse_spec, run_generator
from services.ingest.live import run_live
from services.ingest.replay_fed import load_fed
from services.ingest.stats import SourceStats
from services.ingest.synthetic import SyntheticMarket
from services.runtime import Service


def synced(sync_id: str, *batches: BookBatch) -> list[BookBatch]:
    """The batches marked as one sync group: the same instants, quoted on several venues."""
    n = len(batches)
    return [msgspec.structs.replace(b, sync_id=sync_id, sync_count=n) for b in batches]


class IngestService(Service):
    """Runs the sources named in MT_INGEST_SOURCES until stopped; the CLI can run them on demand."""

    name = "ingest"

    async def start(self) -> None:
        self._tasks: list[asyncio.Task[SourceStats]] = []
        sources = [s.strip() for s in self.ctx.settings.ingest_sources.split(",") if s.strip() not in ("", "none")]
        for source in sources:
            if source == "synthetic":
                self._tasks.append(asyncio.create_task(self.run_synthetic(duration_s=None)))
            elif source == "replay":
                speed = self.ctx.settings.replay_speed or None
                self._tasks.append(asyncio.create_task(self.run_replay(speed=speed)))
            elif source in ("polymarket", "kalshi"):
                self._tasks.append(asyncio.create_task(self.run_live(source)))
            elif is_generator_spec(source):
                spec = parse_spec(source)
                self._tasks.append(asyncio.create_task(run_generator(self.publish, spec, speed=1.0, duration_s=None)))
            else:
                raise ValueError(
                    f"MT_INGEST_SOURCES names unknown source {source!r} "
                    "(known: synthetic, replay, polymarket, kalshi, "
                    "or a generator such as gbm:equity, heston:crypto?seed=2)"
                )
        for task in self._tasks:
            task.add_done_callback(self._report_failure)

    def _report_failure(self, task: asyncio.Task[SourceStats]) -> None:
        """A source that dies says so (a source runs in the background: nobody awaits it)."""
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log.error("source failed", error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def publish(self, batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
        """Publish batches in order, each stored by JetStream before the next goes."""
        for b in batches:
            await self.ctx.bus.publish(subjects.of_batch(b), b)

    async def run_live(self, venue: str) -> SourceStats:
        """Poll one venue's books for the markets in MT_MARKETS_FILE until stopped (recorded with MT_VENUES_RECORD)."""
        settings = self.ctx.settings

        async def publish_raw(batch: RawBatch) -> None:
            await self.ctx.bus.publish(subjects.raw(batch.venue), batch)

        live = await run_live(
            self.publish, publish_raw if settings.venues_record else None, settings, self.log, venues=(venue,)
        )
        got = live.venues.get(venue)
        books = got.books if got else 0
        return SourceStats(source=venue, messages=books, book_rows=books, seconds=live.seconds)

    async def run_replay(self, path: Path | None = None, speed: float | None = None) -> SourceStats:
        """Replay the Fed recording on a virtual clock: as fast as possible, or `speed` x real time.

        The recording samples both venues at one instant: each instant's two books go out as
        one sync group, so detect judges them together.
        """
        replay = await asyncio.to_thread(load_fed, path)
        clock = VirtualClock(speed)
        stats = SourceStats(source="replay")
        t0 = time.perf_counter()
        for market_ts, poly, kalshi in replay.batches(1):
            await clock.wait_until(market_ts)
            await self.publish(synced(f"fed-{market_ts}", poly, kalshi))
            stats.messages += 2
            stats.book_rows += poly.rows + kalshi.rows
        stats.seconds = time.perf_counter() - t0
        self.log.info("replay done", **msgspec.structs.asdict(stats))
        return stats

    async def run_synthetic(
        self, duration_s: float | None, rate: float | None = None, rows_per_message: int = 1
    ) -> SourceStats:
        """Publish the synthetic two-venue market (books and trades) at `rate` updates/s per venue."""
        settings = self.ctx.settings
        rate = rate or settings.synth_rate
        market = SyntheticMarket(seed=settings.synth_seed)
        step_ns = int(1e9 / rate)
        stats = SourceStats(source="synthetic")
        t0 = time.perf_counter()
        ts = now_ns()
        while duration_s is None or time.perf_counter() - t0 < duration_s:
            poly, kalshi, poly_trades, kalshi_trades = market.batch_with_trades(
                rows_per_message, start_ts=ts, step_ns=step_ns
            )
            ts += step_ns * rows_per_message
            out: list[BookBatch | TradeBatch] = list(synced(f"syn-{poly.id}", poly, kalshi))
            out += [t for t in (poly_trades, kalshi_trades) if t.rows]
            await self.publish(out)
            stats.messages += len(out)
            stats.book_rows += poly.rows + kalshi.rows
            stats.trade_rows += poly_trades.rows + kalshi_trades.rows
            delay = (ts - now_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
        stats.seconds = time.perf_counter() - t0
        self.log.info("synthetic done", **msgspec.structs.asdict(stats))
        return stats


SERVICE = IngestService
