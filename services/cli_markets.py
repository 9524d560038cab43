"""`markettwin markets ...`, `markettwin record` and `markettwin replay-recording`: the venue commands.

- `markets propose --polymarket FILE_OR_HOST --kalshi FILE_OR_HOST [--kalshi-events FILE]`: candidate
  pairs by title/date match, as mapping-file TOML (`confirmed = false`) on stdout.
- `markets check FILE`: validate a mapping file and list its pairs.
- `markets fetch --venue polymarket|kalshi [--out FILE]`: a venue's market list as JSON (for propose).
- `markets balance`: the Kalshi account balance (signed request; MT_KALSHI_API_KEY_ID, MT_KALSHI_PRIVATE_KEY_PATH).
- `record --seconds N`: run the live source with recording on, into ClickHouse (`md_raw`, `book_tops`,
  `market_info`).
- `replay-recording --venue kalshi [--speed 0] [--start ISO] [--end ISO]`: republish a recording's books.

Like `markettwin generate`/`replay`, `record` and `replay-recording` publish onto NATS_URL when set,
else into an embedded stack whose recorder stores everything (`cli_ingest.publishing`).
Exit codes: 2 for bad input (a missing file, a bad mapping file, a bad option value or setting),
1 when a venue fails (no usable answer after retries, a payload that does not parse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog

from libs.clock import check_speed
from libs.config import Settings
from libs.retry import RateLimiter, RetriesExhausted
from libs.venues import KALSHI, POLYMARKET, VENUES
from libs.venues.errors import PayloadError, VenueHTTPError
from libs.venues.kalshi import KalshiClient, auth_settings, host_for
from libs.venues.mapping import MappingError, dump_pairs, load_markets
from libs.venues.pairing import flatten_markets, kalshi_candidates, polymarket_candidates, propose
from libs.venues.polymarket import PolymarketClient
from proto.events import RawBatch
from services.cli_ingest import publishing
from services.ingest.generators import parse_start

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


def _iso_ns(value: str | None, option: str) -> int | None:
    """An ISO time option as exact UTC ns (None when not given); ValueError naming the option."""
    return parse_start(value, option) if value else None


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
        resolves = p.resolution_date.isoformat() if p.resolution_date else "? (no resolution_date yet)"
        print(
            f"  {p.opportunity_key}: kalshi {p.kalshi.ticker} <-> polymarket yes {p.polymarket.yes_token[:12]}… "
            f"no {p.polymarket.no_token[:12]}… ({p.orientation}, resolves {resolves}, {mark})"
        )
    return 0


async def _balance(settings: Settings) -> int:
    key_id, key_path = auth_settings(settings)
    kc = KalshiClient(
        host_for(settings.kalshi_host, settings.kalshi_use_demo),
        key_id=key_id,
        private_key=key_path,
        log=structlog.get_logger().bind(service="cli", venue=KALSHI),
    )
    bal = await kc.balance()
    print(msgspec.json.encode(bal).decode())
    return 0


async def _record(settings: Settings, seconds: float, venues: Sequence[str]) -> int:
    from services.ingest.live import run_live

    log = structlog.get_logger().bind(service="record")
    async with publishing(settings, "record") as out:

        async def publish_raw(batch: RawBatch) -> None:
            await out.publish([batch])

        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        stats = await run_live(out.publish, publish_raw, settings, log, venues=venues, stop=stop)
    print(msgspec.json.encode(stats).decode(), flush=True)
    return 0


async def _replay(settings: Settings, args: argparse.Namespace, start_ns: int | None, end_ns: int | None) -> int:
    from services.ingest.replay_raw import replay_recording

    async with publishing(settings, "replay-recording", with_store=True) as out:
        assert out.store is not None
        stats = await replay_recording(
            out.store,
            out.publish,
            venue=args.venue,
            start_ns=start_ns,
            end_ns=end_ns,
            speed=args.speed or None,
            log=structlog.get_logger().bind(service="replay-recording"),
        )
    print(msgspec.json.encode(stats).decode(), flush=True)
    return 0


def _venues(text: str) -> list[str]:
    """A --venues comma list, each one known; ValueError naming an unknown one."""
    venues = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in venues if v not in VENUES]
    if unknown or not venues:
        raise ValueError(f"--venues {text!r}: unknown venue(s) {unknown} (known: {', '.join(VENUES)})")
    return venues


def cmd_markets(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of the venue commands; bad input is one clear line and exit 2, a venue failure exit 1."""
    try:
        if args.cmd == "record":
            if not (math.isfinite(args.seconds) and args.seconds > 0):
                raise ValueError(f"--seconds {args.seconds!r} must be a positive number of seconds")
            venues = _venues(args.venues)
            if settings.markets_file is None:  # checked before anything starts
                raise ValueError("markettwin record needs a market mapping file: set MT_MARKETS_FILE")
            load_markets(settings.markets_file)
            if KALSHI in venues:
                auth_settings(settings)
            return asyncio.run(_record(settings, args.seconds, venues))
        if args.cmd == "replay-recording":
            check_speed(args.speed or None)
            start_ns, end_ns = _iso_ns(args.start, "--start"), _iso_ns(args.end, "--end")
            return asyncio.run(_replay(settings, args, start_ns, end_ns))
        if args.markets_cmd == "propose":
            return asyncio.run(_propose(settings, args))
        if args.markets_cmd == "check":
            return _check(settings, args)
        if args.markets_cmd == "fetch":
            if args.max_pages < 1:
                raise ValueError(f"--max-pages {args.max_pages!r} must be at least 1")
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
    except (RetriesExhausted, VenueHTTPError, PayloadError) as e:
        print(f"markettwin {args.cmd}: venue failed: {e}", file=sys.stderr)
        return 1
    except (MappingError, FileNotFoundError, ValueError) as e:
        print(f"markettwin {args.cmd}: {e}", file=sys.stderr)
        return 2
    raise ValueError(f"unknown markets command {args!r}")
