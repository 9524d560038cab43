"""`markettwin generate` and `markettwin replay …`: run one ingest source on demand.

With NATS_URL set the batches go to that NATS (a running MarketTwin's recorder stores them);
without it the command starts an embedded stack (nats-server + chDB under MT_HOME) with the
recorder, publishes, waits until everything is stored and says how many rows landed where.
`publishing` is that outlet, shared by every on-demand command (the venue commands too).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from libs.bus import Bus
from libs.bus.admin import wait_idle
from libs.clock import check_speed
from libs.config import Settings
from libs.store import Store, open_store
from proto.events import BarBatch, BookBatch, MarketInfo, RawBatch, TradeBatch
from services.ingest import generators, replay_files

MdEvent = BookBatch | TradeBatch | BarBatch | RawBatch | MarketInfo
Publish = Callable[[Sequence[MdEvent]], Awaitable[None]]
MD_TABLES = ("book_tops", "md_trades", "ohlcv", "md_raw", "market_info")


@dataclass(frozen=True)
class Outlet:
    """Where an on-demand command publishes (`publish` routes every market-data event by its subject)
    and, when asked for, the store it reads from (the embedded chDB, or CLICKHOUSE_URL)."""

    publish: Publish
    bus: Bus
    store: Store | None = None


def add_ingest_parsers(sub: Any) -> None:
    """`markettwin generate` and `markettwin replay lobster|bitstamp|bars`."""
    gen = sub.add_parser("generate", help="a synthetic GBM/Heston/Merton market with microstructure")
    generators.add_arguments(gen)
    rep = sub.add_parser("replay", help="replay a recorded file onto the bus on a virtual clock")
    kinds = rep.add_subparsers(dest="replay_kind", required=True)
    lob = kinds.add_parser("lobster", help="a LOBSTER message file (any level) with its orderbook file")
    lob.add_argument("path", type=Path, help="the *_message_N.csv file")
    lob.add_argument("--orderbook", type=Path, default=None, help="default: the sibling *_orderbook_N.csv")
    bit = kinds.add_parser("bitstamp", help="a Bitstamp L3 capture folder (order events + trades)")
    bit.add_argument("path", type=Path)
    bit.add_argument("--levels", type=int, default=10, help="book levels published per row")
    bars = kinds.add_parser("bars", help="an OHLCV file (CSV or Parquet)")
    bars.add_argument("path", type=Path)
    bars.add_argument("--symbol", default=None, help="default: the file name's first `_` part")
    bars.add_argument("--timeframe", default=None, help="default: inferred from the spacing")
    bars.add_argument("--venue", default="file")
    bars.add_argument("--tz", default="UTC", help="time zone of naive timestamps in the file")
    for p in (lob, bit, bars):
        p.add_argument("--speed", type=float, default=0.0, help="N x real time; 0 = as fast as possible")


@asynccontextmanager
async def publishing(settings: Settings, name: str, *, with_store: bool = False) -> AsyncIterator[Outlet]:
    """An outlet onto NATS_URL, or onto an embedded stack whose recorder stores everything.

    With NATS_URL, `with_store` opens CLICKHOUSE_URL (ValueError when unset: the embedded chDB
    belongs to the running MarketTwin). Embedded, the store is the stack's chDB.
    """
    if settings.nats_url:
        if with_store and not settings.clickhouse_url:
            raise ValueError(f"markettwin {name} with NATS_URL needs CLICKHOUSE_URL to read from")
        store = open_store(settings) if with_store else None
        bus = await Bus.connect(settings.nats_url, name=f"markettwin-{name}")
        try:
            yield Outlet(generators.bus_publisher(bus), bus, store)
        finally:
            await bus.close()
            if store is not None:
                store.close()
        return
    from services.demo import RECORDERS
    from services.runtime import Stack

    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect(name)
        before = stack.store.table_counts()
        yield Outlet(generators.bus_publisher(bus), bus, stack.store)
        if not await wait_idle(bus, RECORDERS, timeout_s=600):
            raise RuntimeError("the recorder did not store everything within 600 s")
        after = stack.store.table_counts()
        stored = {t: after[t] - before.get(t, 0) for t in MD_TABLES if after.get(t, 0) != before.get(t, 0)}
        where = settings.home / "clickhouse"
        rows = ", ".join(f"{n} {t}" for t, n in stored.items())
        rows = rows or "no new rows (nothing was published, or every row was already stored)"
        print(f"stored in chDB ({where}): {rows}", flush=True)
    finally:
        await stack.close()


async def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Publish the generated market and print what went out."""
    spec = generators.spec_from_args(args)
    spec.feed(None)  # validate every parameter before connecting to anything
    check_speed(args.speed or None)
    async with publishing(settings, "generate") as out:
        stats = await generators.run_generator(out.publish, spec, args.speed or None, args.seconds)
    print(msgspec.json.encode(stats).decode())
    return 0


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Replay one file and print what went out."""
    speed = check_speed(args.speed or None)  # a bad speed is named before anything starts
    if not args.path.exists():
        raise ValueError(f"{args.path}: no such file or folder")
    async with publishing(settings, f"replay-{args.replay_kind}") as out:
        publish = out.publish
        if args.replay_kind == "lobster":
            stats = await replay_files.replay_lobster(publish, args.path, args.orderbook, speed=speed)
        elif args.replay_kind == "bitstamp":
            stats = await replay_files.replay_bitstamp(publish, args.path, speed=speed, levels=args.levels)
        else:
            stats = await replay_files.replay_bars(
                publish, args.path, speed, symbol=args.symbol, timeframe=args.timeframe, venue=args.venue, tz=args.tz
            )
    print(msgspec.json.encode(stats).decode())
    return 0
