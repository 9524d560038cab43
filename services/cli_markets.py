"""`markettwin markets ...`, `markettwin record` and `markettwin replay-recording`: the venue commands.

- `markets propose --polymarket FILE_OR_HOST --kalshi FILE_OR_HOST [--kalshi-events FILE]`: candidate
  pairs by title/date match, as mapping-file TOML (`confirmed = false`) on stdout.
- `markets check FILE`: validate a mapping file and list its pairs.
- `markets fetch --venue polymarket|kalshi [--out FILE]`: a venue's market list as JSON (for propose).
- `markets balance`: the Kalshi account balance (signed request; MT_KALSHI_API_KEY_ID, MT_KALSHI_PRIVATE_KEY_PATH).
- `record --seconds N`: run the live source with recording on, into ClickHouse (`md_raw`, `book_tops`).
- `replay-recording --venue kalshi [--speed 0] [--start ISO] [--end ISO]`: republish a recording's books.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog

from libs.config import Settings
from libs.retry import RateLimiter, RetriesExhausted
from libs.venues import KALSHI, POLYMARKET, VENUES
from libs.venues.errors import VenueHTTPError
from libs.venues.kalshi import KalshiClient, host_for
from libs.venues.mapping import MappingError, dump_pairs, load_markets
from libs.venues.pairing import flatten_markets, kalshi_candidates, polymarket_candidates, propose
from libs.venues.polymarket import PolymarketClient
from proto import subjects
from proto.events import BookBatch, RawBatch

MARKET_COMMANDS = ("markets", "record", "replay-recording")
"""Top-level commands `cmd_markets` handles."""


def add_markets_parser(sub: Any) -> None:
    """Add `markets`, `record` and `replay-recording` to the CLI's subparsers."""
    m = sub.add_parser("markets", help="venue markets: propose pairs, check a mapping file, fetch lists, balance")
    verbs = m.add_subparsers(dest="markets_cmd", required=True)
    pr = verbs.add_parser("propose", help="candidate cross-venue pairs by title/date match, as TOML")
    pr.add_argument("--polymarket", required=True, help="a JSON file of Polymarket markets, or a CLOB host URL")
    pr.add_argument("--kalshi", required=True, help="a JSON file of Kalshi markets, or a trade API host URL")
    pr.add_argument("--kalshi-events", help="a JSON file of Kalshi events (titles for markets without one)")
    pr.add_argument("--min-score", type=float, default=80.0, help="lowest match score proposed (0-100)")
    pr.add_argument("--max-days", type=int, default=45, help="most days between the two resolution dates")
    ck = verbs.add_parser("check", help="validate a market mapping file")
    ck.add_argument("file", nargs="?", help="default: MT_MARKETS_FILE")
    fe = verbs.add_parser("fetch", help="a venue's market list as JSON")
    fe.add_argument("--venue", choices=VENUES, required=True)
    fe.add_argument("--host", help="default: MT_POLYMARKET_HOST / MT_KALSHI_HOST")
    fe.add_argument("--status", default="open", help="Kalshi market status filter ('' for all)")
    fe.add_argument("--max-pages", type=int, default=50)
    fe.add_argument("--out", help="write here instead of stdout")
    verbs.add_parser("balance", help="the Kalshi account balance (signed)")
    rec = sub.add_parser("record", help="run the live venue source with recording on, into ClickHouse")
    rec.add_argument("--seconds", type=float, required=True)
    rec.add_argument("--venues", default=",".join(VENUES))
    rp = sub.add_parser("replay-recording", help="republish the books of a recorded live feed from md_raw")
    rp.add_argument("--venue", choices=VENUES, required=True)
    rp.add_argument("--speed", type=float, default=0.0, help="N x real time; 0 = as fast as possible")
    rp.add_argument("--start", help="ISO time (UTC), inclusive")
    rp.add_argument("--end", help="ISO time (UTC), exclusive")


def _iso_ns(value: str | None) -> int | None:
    if not value:
        return None
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1_000_000_000)


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _read_json(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(p.read_text(encoding="utf-8"))


async def _fetch(settings: Settings, venue: str, host: str | None, status: str, max_pages: int) -> list[dict[str, Any]]:
    log = structlog.get_logger().bind(service="cli", venue=venue)
    limiter = RateLimiter(settings.venues_rate_per_s)
    if venue == POLYMARKET:
        pc = PolymarketClient(host or settings.polymarket_host, limiter=limiter, log=log)
        return await pc.markets(max_pages=max_pages)
    kc = KalshiClient(host_for(host or settings.kalshi_host, settings.kalshi_use_demo), limiter=limiter, log=log)
    return await kc.markets(status=status or None, max_pages=max_pages)


async def _propose(settings: Settings, args: argparse.Namespace) -> int:
    poly = (
        await _fetch(settings, POLYMARKET, args.polymarket, "", 1_000)
        if _is_url(args.polymarket)
        else flatten_markets(_read_json(args.polymarket))
    )
    kal = (
        await _fetch(settings, KALSHI, args.kalshi, "open", 100)
        if _is_url(args.kalshi)
        else flatten_markets(_read_json(args.kalshi))
    )
    events = _read_json(args.kalshi_events) if args.kalshi_events else []
    kc, pc = kalshi_candidates(kal, events if isinstance(events, list) else []), polymarket_candidates(poly)
    pairs = propose(kc, pc, min_score=args.min_score, max_days=args.max_days)
    header = (
        f"Candidate pairs proposed by markettwin markets propose: {len(pairs)} of {len(kc)} Kalshi x {len(pc)} "
        f"Polymarket markets (min score {args.min_score:g}, dates within {args.max_days} days).\n"
        "Check each pair's rules and YES/NO orientation on both venues, then set confirmed = true."
    )
    sys.stdout.write(dump_pairs(pairs, header))
    return 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.markets_file
    if not path:
        print("markets check: give a FILE or set MT_MARKETS_FILE", file=sys.stderr)
        return 2
    mm = load_markets(path)
    print(f"{mm.path}: {len(mm.pairs)} pair(s), {len(mm.confirmed)} confirmed")
    for p in mm.pairs:
        mark = "confirmed" if p.confirmed else "UNCONFIRMED"
        print(
            f"  {p.opportunity_key}: kalshi {p.kalshi.ticker} <-> polymarket yes {p.polymarket.yes_token[:12]}… "
            f"no {p.polymarket.no_token[:12]}… ({p.orientation}, resolves {p.resolution_date}, {mark})"
        )
    return 0


async def _balance(settings: Settings) -> int:
    kc = KalshiClient(
        host_for(settings.kalshi_host, settings.kalshi_use_demo),
        key_id=settings.kalshi_api_key_id,
        private_key=settings.kalshi_private_key_path,
        log=structlog.get_logger().bind(service="cli", venue=KALSHI),
    )
    bal = await kc.balance()
    print(msgspec.json.encode(bal).decode())
    return 0


def _book_subject(b: BookBatch) -> str:
    return subjects.book(b.venue, b.instruments[0] if len(b.instruments) == 1 else subjects.MULTI)


async def _record(settings: Settings, seconds: float, venues: Sequence[str]) -> int:
    from libs.bus.admin import wait_idle
    from services.demo import RECORDERS
    from services.ingest.live import run_live
    from services.runtime import Stack

    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("record")
        log = structlog.get_logger().bind(service="record")

        async def publish(batches: Sequence[BookBatch]) -> None:
            for b in batches:
                await bus.publish(_book_subject(b), b)

        async def publish_raw(batch: RawBatch) -> None:
            await bus.publish(subjects.raw(batch.venue), batch)

        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        stats = await run_live(publish, publish_raw, settings, log, venues=venues, stop=stop)
        await wait_idle(bus, RECORDERS, timeout_s=60)
        print(msgspec.json.encode(stats).decode())
        return 0
    finally:
        await stack.close()


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from libs.bus.admin import wait_idle
    from services.demo import RECORDERS
    from services.ingest.replay_raw import replay_recording
    from services.runtime import Stack

    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("replay-recording")

        async def publish(batches: Sequence[BookBatch]) -> None:
            for b in batches:
                await bus.publish(_book_subject(b), b)

        stats = await replay_recording(
            stack.store,
            publish,
            venue=args.venue,
            start_ns=_iso_ns(args.start),
            end_ns=_iso_ns(args.end),
            speed=args.speed or None,
            log=structlog.get_logger().bind(service="replay-recording"),
        )
        await wait_idle(bus, RECORDERS, timeout_s=60)
        print(msgspec.json.encode(stats).decode())
        return 0
    finally:
        await stack.close()


def cmd_markets(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the venue commands; a bad mapping file or input is one clear line and exit 1."""
    try:
        if args.cmd == "record":
            return asyncio.run(_record(settings, args.seconds, [v for v in args.venues.split(",") if v]))
        if args.cmd == "replay-recording":
            return asyncio.run(_replay(settings, args))
        if args.markets_cmd == "propose":
            return asyncio.run(_propose(settings, args))
        if args.markets_cmd == "check":
            return _check(settings, args)
        if args.markets_cmd == "fetch":
            markets = asyncio.run(_fetch(settings, args.venue, args.host, args.status, args.max_pages))
            text = json.dumps(markets, indent=1)
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
                print(f"{len(markets)} {args.venue} markets written to {args.out}")
            else:
                print(text)
            return 0
        if args.markets_cmd == "balance":
            return asyncio.run(_balance(settings))
    except (MappingError, FileNotFoundError, ValueError, RetriesExhausted, VenueHTTPError) as e:
        print(f"markettwin {args.cmd}: {e}", file=sys.stderr)
        return 1
    raise ValueError(f"unknown markets command {args!r}")
