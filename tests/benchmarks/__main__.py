"""`make bench`: one `name: value unit` line per figure, for this machine.

- e2e.md_updates_per_s: book updates from ingest through NATS (JetStream) into ClickHouse
  (recorder, chDB), batched as ingest publishes them; beside it the same work with one
  update per message (the unbatched peer) and the parts alone (publish, chDB insert).
- paper.*: the paper service with 5 active runs: intents/s decided from a 100k backlog, intent →
  decision latency p50/p99 at steady rates (250, 500, 1,000/s) beside no-logic floors over core
  NATS and JetStream, the engine alone (`tests/benchmarks/paper.py`).
- lob.*: matching-engine operations per second on replayed real flow and a synthetic mix,
  beside peers' published figures (`tests/benchmarks/lob.py`).
- sim.*: a calibrated full day on one core, Monte Carlo throughput, a 100-run job through
  the NATS work queue, and the stylised facts beside the real day's (`tests/benchmarks/sim.py`).
- replay.*: the LOBSTER AMZN day and the Bitstamp L3 sample onto the bus and into ClickHouse
  (`tests/benchmarks/replay.py`); synth.*: GBM/Heston/Merton paths and book rows with a numpy
  peer (`synth.py`); venues.*: Polymarket/Kalshi book parsing (`venues.py`); bars.*: resampling
  10 M one-minute bars to every timeframe beside the pandas peer, chDB bar I/O (`bars.py`);
  bars_api.*: candles served over HTTP (`bars_api.py`).

The lob and sim figures need `../shared/data` (or MT_DATA_DIR); without it they are skipped
with a line saying so.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from libs import config, log
from libs.bus.admin import wait_idle
from libs.ids import now_ns
from libs.store.tables import book_tops_table
from proto import codec, streams, subjects
from proto.events import BookBatch
from services.ingest.synthetic import SyntheticMarket
from services.runtime import Stack
from tests.benchmarks import line


def make_batches(n_messages: int, rows_per_message: int, levels: int = 1) -> list[BookBatch]:
    market = SyntheticMarket(seed=1, levels=levels)
    out: list[BookBatch] = []
    ts = now_ns()
    for _ in range(n_messages // 2):
        poly, kalshi = market.batch(rows_per_message, start_ts=ts, step_ns=1_000_000)
        ts += rows_per_message * 1_000_000
        out += [poly, kalshi]
    return out


async def md_pipeline(home: Path, batches: list[BookBatch], label: str) -> float:
    """Rows/s from the first publish until the recorder has stored (and acked) every row."""
    settings = config.load({}, home=home, http_port=0)
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("bench")
        rows = sum(b.rows for b in batches)
        t0 = time.perf_counter()
        await bus.publish_many((subjects.of_batch(b), b) for b in batches)
        t_pub = time.perf_counter() - t0
        await wait_idle(bus, [(streams.MD.name, "recorder-md")], timeout_s=600, quiet_s=0.05)
        elapsed = time.perf_counter() - t0
        stored = stack.store.table_counts()["book_tops"]
        if stored != rows:
            raise SystemExit(f"{label}: stored {stored} rows, published {rows}")
        line(f"{label}.publish_rows_per_s", rows / t_pub, "updates/s")
        return rows / elapsed
    finally:
        await stack.close()


def chdb_insert(home: Path, batches: list[BookBatch]) -> float:
    from libs.store import open_store

    store = open_store(config.load({}, home=home))
    store.migrate()
    table = book_tops_table(batches)
    t0 = time.perf_counter()
    store.insert_arrow("book_tops", table)
    elapsed = time.perf_counter() - t0
    store.close()
    return table.num_rows / elapsed


async def main() -> None:
    log.setup("console", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        batched = make_batches(n_messages=1_000, rows_per_message=2_000)
        rate = await md_pipeline(root / "batched", batched, "e2e.md_batched")
        line("e2e.md_updates_per_s", rate, "updates/s")
        single = make_batches(n_messages=20_000, rows_per_message=1)
        line(
            "e2e.md_unbatched_updates_per_s (peer: one update per message)",
            await md_pipeline(root / "single", single, "e2e.md_unbatched"),
            "updates/s",
        )
        line("store.chdb_insert_rows_per_s", chdb_insert(root / "insert", batched), "rows/s")
        enc = [codec.encode(b) for b in batched[:200]]
        t0 = time.perf_counter()
        for raw in enc:
            codec.decode(raw, BookBatch)
        line(
            "proto.book_decode_rows_per_s",
            sum(b.rows for b in batched[:200]) / (time.perf_counter() - t0),
            "updates/s",
        )


def engine_figures() -> None:
    """The matching engine and the simulator (they need the shared data sets)."""
    data_dir = Path(os.environ.get("MT_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    if not data_dir.is_dir():
        print(f"lob.*, sim.*: skipped, no market data at {data_dir} (set MT_DATA_DIR)", flush=True)
        return
    from tests.benchmarks import lob, replay, sim

    for name, value, unit in lob.run():
        line(name, value, unit)
    for name, value, unit in sim.run(data_dir):
        line(name, value, unit)
    replay.main()


def market_data_figures() -> None:
    """Generators, venue parsing, bar resampling and the bars HTTP API (no data sets needed)."""
    from tests.benchmarks import bars, bars_api, synth, venues

    for name, value, unit in synth.run():
        line(name, value, unit)
    venues.main()
    for name, value, unit in bars.run():
        line(name, value, unit)
    asyncio.run(bars_api.main())


def paper_figures() -> None:
    """The paper service: throughput, latency, the engine alone (tests/benchmarks/paper.py)."""
    from tests.benchmarks import paper

    for name, value, unit in paper.run():
        line(name, value, unit)


if __name__ == "__main__":
    asyncio.run(main())
    paper_figures()
    market_data_figures()
    engine_figures()
    sys.exit(0)
