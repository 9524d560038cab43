"""The live source: polls Polymarket and Kalshi books for the markets in the mapping file.

One asyncio task per venue, so an outage of one venue never stops the other's feed. Each poll
fetches the venue's books (Polymarket: POST /books for every token; Kalshi: one GET orderbook per
ticker, with market status checked every `status_every` polls and closed markets skipped), parses
every response body with the venue parser (`libs.venues.<venue>.parse_response`) and publishes one
BookBatch per book (`md.book.<venue>.<instrument>`). With recording on (MT_VENUES_RECORD), every
response received in a poll — errors included — also goes out as one RawBatch on `md.raw.<venue>`;
`services.ingest.replay_raw` re-parses those bodies into the same books.

Failures: each HTTP call is rate limited (MT_VENUES_RATE_PER_S per venue) and retried with backoff
(`libs.retry`); when it gives up, one error line names venue, endpoint, status and reason, and the
next poll tries again (new connections as needed). A malformed payload is logged and counted with
the venue, market and field, and the rest of the poll is still published.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from libs.config import Settings
from libs.ids import new_id, now_ns
from libs.retry import RateLimiter, RetriesExhausted, RetryPolicy
from libs.venues import KALSHI, POLYMARKET, VENUES
from libs.venues import kalshi as kalshi_venue
from libs.venues import polymarket as poly_venue
from libs.venues.books import DEFAULT_LEVELS, Parsed, Response, to_batch
from libs.venues.errors import VenueHTTPError
from libs.venues.mapping import MarketMap, load_markets
from proto.events import BookBatch, RawBatch

SOURCE = "live"
PublishBooks = Callable[[Sequence[BookBatch]], Awaitable[Any]]
PublishRaw = Callable[[RawBatch], Awaitable[Any]]


def parse_response(resp: Response) -> Parsed:
    """The venue parser for one response (live and replay use this one function)."""
    if resp.venue == POLYMARKET:
        return poly_venue.parse_response(resp)
    if resp.venue == KALSHI:
        return kalshi_venue.parse_response(resp)
    raise ValueError(f"no parser for venue {resp.venue!r} (known: {', '.join(VENUES)})")


def raw_batch(venue: str, responses: Sequence[Response], source: str = SOURCE) -> RawBatch:
    """Responses of one poll as one RawBatch, bodies untouched."""
    return RawBatch(
        id=new_id(),
        ts=now_ns(),
        venue=venue,
        source=source,
        recv_ts=[r.recv_ts for r in responses],
        endpoint=[r.endpoint for r in responses],
        status=[r.status for r in responses],
        body=[r.body for r in responses],
    )


class VenueStats(msgspec.Struct, kw_only=True):
    """What one venue's feed did."""

    venue: str
    polls: int = 0
    failed_calls: int = 0
    """Calls that failed after their retries (each logged with endpoint, status and reason)."""
    responses: int = 0
    books: int = 0
    payload_errors: int = 0
    """Books or responses that did not parse (each logged with market, field and value)."""
    raw_batches: int = 0
    last_error: str = ""


class LiveStats(msgspec.Struct, kw_only=True):
    """What a live run did, per venue."""

    venues: dict[str, VenueStats] = msgspec.field(default_factory=dict)
    seconds: float = 0.0


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """venue, endpoint, status and reason of a failed venue call, for one log line."""
    last = exc.last if isinstance(exc, RetriesExhausted) else exc
    if isinstance(last, VenueHTTPError):
        return {"venue": last.venue, "endpoint": last.endpoint, "status": last.status, "reason": last.reason}
    return {"status": 0, "reason": f"{type(last).__name__}: {last}"}


class PolymarketFeed:
    """Polls the books of the mapping's Polymarket tokens (YES and NO), in one POST /books."""

    venue = POLYMARKET

    def __init__(self, client: poly_venue.PolymarketClient, tokens: list[str], log: Any) -> None:
        self.client, self.tokens, self.log = client, tokens, log
        self.info: dict[str, dict[str, Any]] = {}

    async def setup(self, record: list[Response]) -> list[BaseException]:
        """Tick size, neg-risk flag and fee rate of each token, logged (not needed to poll books)."""
        failures: list[BaseException] = []
        for t in self.tokens:
            info: dict[str, Any] = {}
            for name, call in (
                ("tick_size", self.client.tick_size),
                ("neg_risk", self.client.neg_risk),
                ("fee_rate_bps", self.client.fee_rate_bps),
            ):
                try:
                    info[name] = await call(t, record)
                except (RetriesExhausted, VenueHTTPError) as e:
                    failures.append(e)
            self.info[t] = info
            self.log.info("polymarket token", token_id=t, **info)
        return failures

    async def poll(self, n: int, record: list[Response]) -> list[BaseException]:
        try:
            await self.client.books(self.tokens, record)
        except (RetriesExhausted, VenueHTTPError) as e:
            return [e]
        return []


class KalshiFeed:
    """Polls the order book of each of the mapping's Kalshi tickers; skips closed markets."""

    venue = KALSHI

    def __init__(self, client: kalshi_venue.KalshiClient, tickers: list[str], log: Any, status_every: int = 30) -> None:
        self.client, self.tickers, self.log, self.status_every = client, tickers, log, status_every
        self.status: dict[str, str] = {}

    async def setup(self, record: list[Response]) -> list[BaseException]:
        return []

    async def _refresh_status(self, record: list[Response]) -> list[BaseException]:
        start = len(record)
        try:
            await self.client.markets(tickers=self.tickers, record=record)
        except (RetriesExhausted, VenueHTTPError) as e:
            return [e]
        for resp in record[start:]:
            for m in kalshi_venue.parse_response(resp).markets:
                if self.status.get(m.market_id) != m.status:
                    self.log.info("kalshi market status", ticker=m.market_id, status=m.status, close_time=m.close_time)
                self.status[m.market_id] = m.status
        return []

    async def poll(self, n: int, record: list[Response]) -> list[BaseException]:
        failures: list[BaseException] = []
        if n % self.status_every == 0:
            failures += await self._refresh_status(record)
        for ticker in self.tickers:
            if self.status.get(ticker) in kalshi_venue.CLOSED_STATUSES:
                continue
            try:
                await self.client.orderbook(ticker, record)
            except (RetriesExhausted, VenueHTTPError) as e:
                failures.append(e)
        return failures


Feed = PolymarketFeed | KalshiFeed


def make_feeds(settings: Settings, market_map: MarketMap, venues: Sequence[str], log: Any) -> list[Feed]:
    """The feeds for `venues`, following the confirmed pairs of the mapping file."""
    policy = RetryPolicy(attempts=3, base_s=0.5, max_s=10.0)
    feeds: list[Feed] = []
    for venue in venues:
        limiter = RateLimiter(settings.venues_rate_per_s)
        vlog = log.bind(venue=venue)
        if venue == POLYMARKET:
            tokens = market_map.polymarket_tokens()
            if tokens:
                client = poly_venue.PolymarketClient(settings.polymarket_host, limiter=limiter, policy=policy, log=vlog)
                feeds.append(PolymarketFeed(client, tokens, vlog))
        elif venue == KALSHI:
            tickers = market_map.kalshi_tickers()
            if tickers:
                auth = bool(settings.kalshi_api_key_id and settings.kalshi_private_key_path)
                client_k = kalshi_venue.KalshiClient(
                    kalshi_venue.host_for(settings.kalshi_host, settings.kalshi_use_demo),
                    key_id=settings.kalshi_api_key_id if auth else "",
                    private_key=settings.kalshi_private_key_path if auth else None,
                    limiter=limiter,
                    policy=policy,
                    log=vlog,
                )
                feeds.append(KalshiFeed(client_k, tickers, vlog))
        else:
            raise ValueError(f"unknown venue {venue!r} (known: {', '.join(VENUES)})")
        if not feeds or feeds[-1].venue != venue:
            log.warning("no confirmed markets to follow", venue=venue, markets_file=market_map.path)
    return feeds


async def run_feed(
    feed: Feed,
    publish: PublishBooks,
    publish_raw: PublishRaw | None,
    stats: VenueStats,
    *,
    poll_s: float,
    stop: asyncio.Event,
    polls: int | None,
    levels: int,
    source: str,
    log: Any,
) -> VenueStats:
    """Poll one venue until `stop` (or `polls` polls), publishing books and, when given, raw responses."""
    venue = feed.venue
    record: list[Response] = []
    failures = await feed.setup(record)
    n = 0
    while not stop.is_set() and (polls is None or n < polls):
        t0 = time.monotonic()
        failures += await feed.poll(n, record)
        n += 1
        stats.polls = n
        for exc in failures:
            stats.failed_calls += 1
            fields = failure_fields(exc)
            stats.last_error = f"{fields.get('endpoint', '')} {fields['status']} {fields['reason']}".strip()
            log.error("venue call failed", **{"venue": venue, **fields})
        books = []
        for resp in record:
            parsed = parse_response(resp)
            books += parsed.books
            for err in parsed.errors:
                stats.payload_errors += 1
                stats.last_error = str(err)
                log.error(
                    "bad venue payload",
                    venue=venue,
                    endpoint=resp.endpoint,
                    market=err.market,
                    field=err.field,
                    error=str(err),
                )
        stats.responses += len(record)
        try:
            if publish_raw is not None and record:
                await publish_raw(raw_batch(venue, record, source))
                stats.raw_batches += 1
            if books:
                await publish([to_batch(b, venue, source, levels) for b in books])
                stats.books += len(books)
        except Exception as e:  # the bus is down: say so, keep polling
            log.error("publish failed", venue=venue, error=f"{type(e).__name__}: {e}")
        record, failures = [], []
        if polls is not None and n >= polls:
            break
        wait = max(0.0, poll_s - (time.monotonic() - t0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
    return stats


async def run_live(
    publish: PublishBooks,
    publish_raw: PublishRaw | None,
    settings: Settings,
    log: Any,
    *,
    venues: Sequence[str] = VENUES,
    market_map: MarketMap | None = None,
    stop: asyncio.Event | None = None,
    polls: int | None = None,
    levels: int = DEFAULT_LEVELS,
    source: str = SOURCE,
) -> LiveStats:
    """Run the feeds of `venues` side by side until `stop` is set (or each made `polls` polls).

    `publish` takes a sequence of BookBatch; `publish_raw` (None: no recording) takes a RawBatch.
    The markets come from `market_map`, else from MT_MARKETS_FILE.
    """
    if market_map is None:
        if settings.markets_file is None:
            raise ValueError("the live source needs a market mapping file: set MT_MARKETS_FILE")
        market_map = await asyncio.to_thread(load_markets, settings.markets_file)
    stop = stop or asyncio.Event()
    feeds = make_feeds(settings, market_map, venues, log)
    out = LiveStats(venues={f.venue: VenueStats(venue=f.venue) for f in feeds})
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(
            run_feed(
                f,
                publish,
                publish_raw,
                out.venues[f.venue],
                poll_s=settings.venues_poll_s,
                stop=stop,
                polls=polls,
                levels=levels,
                source=source,
                log=log,
            ),
            name=f"live-{f.venue}",
        )
        for f in feeds
    ]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
    for f, r in zip(feeds, results, strict=True):
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            log.error("venue feed died", venue=f.venue, error=f"{type(r).__name__}: {r}")
            out.venues[f.venue].last_error = f"feed died: {type(r).__name__}: {r}"
    out.seconds = time.perf_counter() - t0
    log.info("live done", **{v: msgspec.structs.asdict(s) for v, s in out.venues.items()})
    return out
