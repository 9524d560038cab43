"""Replay benchmarks: pure conversion rates, and the LOBSTER AMZN day and the Bitstamp L3 capture
published onto a real nats-server and stored by the recorder in chDB.

Target (issue 4): a full LOBSTER day into ClickHouse in under 2 s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from libs.data.bitstamp import load_bitstamp
from libs.data.lobster import load_lobster
from libs.data.paths import AMZN_DAY, data_dir
from libs.replay.bitstamp import bitstamp_chunks, bitstamp_columns
from libs.replay.lobster import lobster_chunks, lobster_columns
from proto.events import BarBatch, BookBatch, TradeBatch
from tests.benchmarks import line

BITSTAMP = Path("orders/bitstamp_btcusd_l3_2026-05-02")


def _best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def conversion(root: Path) -> list[tuple[str, float, str]]:
    """Rows/s of the pure readers: loaded files to event columns, and columns to batches."""
    day = load_lobster(root / AMZN_DAY)
    cols = lobster_columns(day)
    out = [
        ("replay.lobster_amzn.convert", len(day) / _best(lambda: lobster_columns(day)), "rows/s"),
        ("replay.lobster_amzn.batches", len(day) / _best(lambda: list(lobster_chunks(cols))), "rows/s"),
    ]
    cap = load_bitstamp(root / BITSTAMP)
    bitstamp_columns(cap)  # compile
    bs = bitstamp_columns(cap)
    out.append(("replay.bitstamp.rebuild (order events through the engine, top 10)",
                len(cap.orders) / _best(lambda: bitstamp_columns(cap), 3), "events/s"))  # fmt: skip
    out.append(("replay.bitstamp.batches", bs.rows / _best(lambda: list(bitstamp_chunks(bs))), "book rows/s"))
    return out


async def through_stack(root: Path) -> list[tuple[str, float, str]]:
    """Each source published on the bus (stored by JetStream), then stored in chDB by the recorder."""
    from libs import config
    from libs.bus.admin import wait_idle
    from proto import subjects
    from services.ingest.replay_files import replay_bitstamp, replay_lobster
    from services.recorder.service import CONSUMERS
    from services.runtime import Stack

    recorders = [(stream, durable) for durable, stream, _, _ in CONSUMERS]
    out: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = config.load({}, home=Path(tmp), http_port=0)
        stack = await Stack.open(settings)
        try:
            bus = await stack.connect("bench")

            async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
                await bus.publish_many((subjects.of_batch(b), b) for b in batches)

            for name, run in (
                ("lobster_amzn", lambda: replay_lobster(publish, root / AMZN_DAY)),
                ("bitstamp", lambda: replay_bitstamp(publish, root / BITSTAMP)),
            ):
                # publish with the recorder stopped (bus only), then time the recorder draining it ...
                stats = await run()
                events = stats.book_rows + stats.trade_rows
                out.append((f"replay.{name}.bus", events / stats.seconds, "events/s"))
                out.append((f"replay.{name}.load_s (read files, convert)", stats.load_seconds, "s"))
                t0 = time.perf_counter()
                if "recorder" not in stack.running:
                    await stack.start("recorder")
                await wait_idle(bus, recorders, timeout_s=300, quiet_s=0.05)
                drain = time.perf_counter() - t0
                out.append((f"replay.{name}.recorder_drain_s (bus backlog into chDB)", drain, "s"))
                # ... and end to end with the recorder running: first publish to every row stored
                t0 = time.perf_counter()
                stats = await run()
                await wait_idle(bus, recorders, timeout_s=300, quiet_s=0.05)
                total = time.perf_counter() - t0
                out.append((f"replay.{name}.clickhouse_s (load + publish + store, recorder running)", total, "s"))
                out.append((f"replay.{name}.clickhouse", events / total, "events/s"))
        finally:
            await stack.close()
    return out


def main() -> None:
    root = data_dir()
    for name, value, unit in conversion(root) + asyncio.run(through_stack(root)):
        line(name, value, unit)


if __name__ == "__main__":
    main()
