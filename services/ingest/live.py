"""The live source: polls Polymarket and Kalshi books for the markets in the mapping file.

One asyncio task per venue, so an outage of one venue never stops the other's feed. Each poll
fetches the venue's books (Polymarket: POST /books for every token; Kalshi: one GET orderbook per
ticker, with market status checked every `status_every` polls and closed markets skipped), parses
every response body with the venue parser (`libs.venues.<venue>.parse_response`) and publishes one
BookBatch per book (`md.book.<venue>.<instrument>`). With recording on (MT_VENUES_RECORD), every
response received in a poll — errors and unparseable bodies included — also goes out as one
RawBatch on `md.raw.<venue>`; `services.ingest.replay_raw` re-parses those bodies into the same books.

Market facts: each followed instrument's `MarketInfo` (title, status, tick grid, minimum order,
fee schedule) goes out on `md.info.<venue>.<instrument>` at setup and whenever it changes
(Polymarket: GET /markets/{condition_id}, /clob-markets/{condition_id}, /tick-size, /neg-risk and
/fee-rate, the market re-read every `status_every` polls; Kalshi: GET /markets?tickers=...).
A book price off its market's tick grid is logged and counted as a payload error naming the level;
the book is still published (tick sizes change — Polymarket narrows its tick near 0 and 1 — so the
venue's book is trusted over a possibly stale grid).

Failures never stop a feed. Each HTTP call is rate limited (MT_VENUES_RATE_PER_S per venue) and
retried with backoff (`libs.retry`); when it gives up, one error line names venue, endpoint, status
and reason. A body that does not parse is a payload error (logged with venue, market, field and
value). Anything else a call raises is logged at once with venue, endpoint and error and counted.
In each case the rest of the poll is still published and the next poll tries again. Should a feed
task die all the same (a bug), it is logged at once ("venue feed died") and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from libs.config import Settings
from libs.ids import new_id, now_ns
from libs.retry import RateLimiter, RetriesExhausted, RetryPolicy
from libs.venues import KALSHI, POLYMARKET, VENUES
from libs.venues import kalshi as kalshi_venue
from libs.venues import polymarket as poly_venue
from libs.venues.books import DEFAULT_LEVELS, Parsed, Response, off_grid, to_batch
from libs.venues.errors import PayloadError, VenueHTTPError
from libs.venues.mapping import MarketMap, load_markets
from proto.events import BookBatch, MarketInfo, RawBatch

SOURCE = "live"
STATUS_EVERY = 30
"""Polls between two reads of the markets' status (and facts)."""
RESTART_BACKOFF_S = (1.0, 60.0)
"""A dead feed task is restarted after 1 s, 2 s, 4 s ... at most 60 s."""
PublishBooks = Callable[[Sequence[BookBatch]], Awaitable[Any]]
PublishInfo = Callable[[Sequence[MarketInfo]], Awaitable[Any]]
PublishRaw = Callable[[RawBatch], Awaitable[Any]]
T = TypeVar("T")


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
    """Calls that failed after their retries, or raised something unexpected (each logged)."""
    responses: int = 0
    books: int = 0
    infos: int = 0
    """MarketInfo events published (at setup and on each change)."""
    payload_errors: int = 0
    """Bodies, books or market facts that did not parse, and book prices off the tick grid (each logged)."""
    raw_batches: int = 0
    restarts: int = 0
    """Times the feed task died and was restarted."""
    last_error: str = ""


class LiveStats(msgspec.Struct, kw_only=True):
    """What a live run did, per venue."""

    venues: dict[str, VenueStats] = msgspec.field(default_factory=dict)
    seconds: float = 0.0


class CallError(RuntimeError):
    """A venue call that raised something other than an HTTP failure or a bad payload (a library
    surprise, a bug): names the venue, the endpoint and the error."""

    def __init__(self, venue: str, endpoint: str, error: BaseException) -> None:
        super().__init__(f"{venue} {endpoint}: {type(error).__name__}: {error}")
        self.venue, self.endpoint, self.error = venue, endpoint, error


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """venue, endpoint, status and reason of a failed venue call, for one log line."""
    last = exc.last if isinstance(exc, RetriesExhausted) else exc
    if isinstance(last, VenueHTTPError):
        return {"venue": last.venue, "endpoint": last.endpoint, "status": last.status, "reason": last.reason}
    if isinstance(last, CallError):
        return {"venue": last.venue, "endpoint": last.endpoint, "status": 0, "reason": str(last.error)}
    return {"status": 0, "reason": f"{type(last).__name__}: {last}"}


def _same_facts(a: MarketInfo, b: MarketInfo) -> bool:
    """Equal but for id and ts (a re-read that says nothing new)."""
    return msgspec.structs.replace(a, id="", ts=0) == msgspec.structs.replace(b, id="", ts=0)


class FeedBase:
    """What both venue feeds share: the latest MarketInfo per instrument, and the changes to publish."""

    venue: str

    def __init__(self, log: Any) -> None:
        self.log = log
        self.info: dict[str, MarketInfo] = {}
        """instrument → its latest MarketInfo (the tick grid books are checked against)."""
        self.pending: list[MarketInfo] = []
        """MarketInfo that changed since the last publish."""

    def update(self, info: MarketInfo) -> None:
        """Keep `info`; queue it for publishing when it says something new (first sight, status change...)."""
        old = self.info.get(info.instrument)
        if old is not None and _same_facts(old, info):
            return
        if old is None or old.status != info.status:
            self.log.info(
                "market status",
                venue=info.venue,
                market=info.market_id,
                status=info.status,
                was=old.status if old else None,
                tick_size=info.tick_size,
            )
        self.info[info.instrument] = info
        self.pending.append(info)

    def observe(self, infos: Sequence[MarketInfo]) -> None:
        """Market facts parsed from this poll's responses (Kalshi's GET /markets); others ignore them."""

    async def guarded(self, endpoint: str, call: Awaitable[T], failures: list[BaseException]) -> T | None:
        """Await one venue call; any failure is added to `failures` (never raised) and gives None."""
        try:
            return await call
        except asyncio.CancelledError:
            raise
        except (RetriesExhausted, VenueHTTPError, PayloadError) as e:
            failures.append(e)
        except Exception as e:  # a library surprise or a bug: named, counted, and the feed goes on
            failures.append(CallError(self.venue, endpoint, e))
        return None


class PolymarketFeed(FeedBase):
    """Polls the books of the mapping's Polymarket tokens (YES and NO), in one POST /books."""

    venue = POLYMARKET

    def __init__(
        self,
        client: poly_venue.PolymarketClient,
        tokens: list[str],
        log: Any,
        status_every: int = STATUS_EVERY,
        conditions: dict[str, str] | None = None,
    ) -> None:
        super().__init__(log)
        self.client, self.tokens, self.status_every = client, tokens, status_every
        self.conditions: dict[str, str] = dict(conditions or {})
        """token id → condition id (from the mapping file, else learnt from the token's book)."""
        self.per_token: dict[str, dict[str, Any]] = {t: {} for t in tokens}
        """token id → tick_size, neg_risk, base_fee_bps as the per-token endpoints answered."""
        self.market_obj: dict[str, dict[str, Any]] = {}
        self.clob_obj: dict[str, dict[str, Any]] = {}

    async def setup(self, record: list[Response]) -> list[BaseException]:
        """Per token: tick size, neg-risk flag and base fee; per market known from the mapping file: the
        market object and its CLOB parameters. Markets known only from a book are read after the first poll."""
        failures: list[BaseException] = []
        for t in self.tokens:
            for name, call, endpoint in (
                ("tick_size", self.client.tick_size, "GET /tick-size"),
                ("neg_risk", self.client.neg_risk, "GET /neg-risk"),
                ("base_fee_bps", self.client.fee_rate_bps, "GET /fee-rate"),
            ):
                got = await self.guarded(f"{endpoint}?token_id={t}", call(t, record), failures)
                if got is not None:
                    self.per_token[t][name] = got
        await self._read_markets(record, failures, set(self.conditions.values()), with_clob=True)
        return failures

    def _learn_conditions(self, responses: Sequence[Response]) -> None:
        """Condition ids from the `market` field of the tokens' books (bodies that do not parse are skipped:
        the poll's parse reports them)."""
        for resp in responses:
            if resp.status != 200:
                continue
            try:
                data = json.loads(resp.body)
            except ValueError:
                continue
            for book in data if isinstance(data, list) else [data]:
                if isinstance(book, dict) and isinstance(book.get("asset_id"), str) and book.get("market"):
                    self.conditions.setdefault(book["asset_id"], str(book["market"]))

    async def _read_markets(
        self, record: list[Response], failures: list[BaseException], cids: set[str], with_clob: bool
    ) -> None:
        """Read the markets `cids` (and, the first time, their CLOB parameters); update every token's MarketInfo."""
        for cid in sorted(cids):
            market = await self.guarded(f"GET /markets/{cid}", self.client.market(cid, record), failures)
            if market is not None:
                self.market_obj[cid] = market
            if with_clob:
                clob = await self.guarded(f"GET /clob-markets/{cid}", self.client.clob_market(cid, record), failures)
                if clob is not None:
                    self.clob_obj[cid] = clob
        for t in self.tokens:
            cid = self.conditions.get(t, "")
            try:
                info = poly_venue.token_info(
                    t,
                    now_ns(),
                    self.market_obj.get(cid),
                    self.clob_obj.get(cid),
                    tick_size=self.per_token[t].get("tick_size"),
                    neg_risk=self.per_token[t].get("neg_risk"),
                    base_fee_bps=self.per_token[t].get("base_fee_bps"),
                )
            except PayloadError as e:
                failures.append(e)
                continue
            self.update(info)

    async def poll(self, n: int, record: list[Response]) -> list[BaseException]:
        failures: list[BaseException] = []
        if n and n % self.status_every == 0:
            await self._read_markets(record, failures, set(self.conditions.values()), with_clob=False)
        start = len(record)
        await self.guarded("POST /books", self.client.books(self.tokens, record), failures)
        if any(t not in self.conditions for t in self.tokens):
            known = set(self.conditions.values())
            self._learn_conditions(record[start:])
            new = set(self.conditions.values()) - known
            if new:
                await self._read_markets(record, failures, new, with_clob=True)
        return failures


class KalshiFeed(FeedBase):
    """Polls the order book of each of the mapping's Kalshi tickers; skips closed markets."""

    venue = KALSHI

    def __init__(
        self, client: kalshi_venue.KalshiClient, tickers: list[str], log: Any, status_every: int = STATUS_EVERY
    ) -> None:
        super().__init__(log)
        self.client, self.tickers, self.status_every = client, tickers, status_every
        self.followed = {kalshi_venue.instrument_of(t) for t in tickers}

    async def setup(self, record: list[Response]) -> list[BaseException]:
        return []

    def observe(self, infos: Sequence[MarketInfo]) -> None:
        """Status and facts of the followed tickers, from this poll's GET /markets answers."""
        for info in infos:
            if info.instrument in self.followed:
                self.update(info)

    def closed(self, ticker: str) -> bool:
        info = self.info.get(kalshi_venue.instrument_of(ticker))
        return info is not None and info.status in kalshi_venue.CLOSED_STATUSES

    async def _refresh_status(self, record: list[Response]) -> list[BaseException]:
        failures: list[BaseException] = []
        endpoint = "GET /markets?tickers=" + ",".join(self.tickers)
        start = len(record)
        await self.guarded(endpoint, self.client.markets(tickers=self.tickers, record=record), failures)
        if any(isinstance(e, PayloadError) for e in failures) and len(record) > start:
            # the bad body is in `record`: the poll's parse of it reports it, once
            failures = [e for e in failures if not isinstance(e, PayloadError)]
        return failures

    async def poll(self, n: int, record: list[Response]) -> list[BaseException]:
        failures: list[BaseException] = []
        if n % self.status_every == 0:
            failures += await self._refresh_status(record)
        for ticker in self.tickers:
            if self.closed(ticker):
                continue
            await self.guarded(f"GET /markets/{ticker}/orderbook", self.client.orderbook(ticker, record), failures)
        return failures


Feed = PolymarketFeed | KalshiFeed


def make_feeds(
    settings: Settings, market_map: MarketMap, venues: Sequence[str], log: Any, status_every: int = STATUS_EVERY
) -> list[Feed]:
    """The feeds for `venues`, following the confirmed pairs of the mapping file."""
    policy = RetryPolicy(attempts=3, base_s=0.5, max_s=10.0)
    feeds: list[Feed] = []
    for venue in venues:
        if venue not in VENUES:
            raise ValueError(f"unknown venue {venue!r} (known: {', '.join(VENUES)})")
    key_id, key_path = kalshi_venue.auth_settings(settings) if KALSHI in venues else ("", None)
    for venue in venues:
        limiter = RateLimiter(settings.venues_rate_per_s)
        vlog = log.bind(venue=venue)
        if venue == POLYMARKET:
            tokens = market_map.polymarket_tokens()
            if tokens:
                client = poly_venue.PolymarketClient(settings.polymarket_host, limiter=limiter, policy=policy, log=vlog)
                conditions = {
                    t: p.polymarket.condition_id
                    for p in market_map.confirmed
                    if p.polymarket.condition_id
                    for t in (p.polymarket.yes_token, p.polymarket.no_token)
                }
                feeds.append(PolymarketFeed(client, tokens, vlog, status_every, conditions))
        else:
            tickers = market_map.kalshi_tickers()
            if tickers:
                client_k = kalshi_venue.KalshiClient(
                    kalshi_venue.host_for(settings.kalshi_host, settings.kalshi_use_demo),
                    key_id=key_id,
                    private_key=key_path,
                    limiter=limiter,
                    policy=policy,
                    log=vlog,
                )
                feeds.append(KalshiFeed(client_k, tickers, vlog, status_every))
        if not feeds or feeds[-1].venue != venue:
            log.warning("no confirmed markets to follow", venue=venue, markets_file=market_map.path)
    return feeds


def _report_failures(venue: str, failures: Sequence[BaseException], stats: VenueStats, log: Any) -> None:
    """One error line per failure, counted: payload errors as such, every other failure as a failed call."""
    for exc in failures:
        if isinstance(exc, PayloadError):
            _report_payload(venue, "", exc, stats, log)
            continue
        stats.failed_calls += 1
        fields = failure_fields(exc)
        stats.last_error = f"{fields.get('endpoint', '')} {fields['status']} {fields['reason']}".strip()
        if isinstance(exc, CallError):
            log.error("venue call error", venue=venue, endpoint=exc.endpoint, error=fields["reason"])
        else:
            log.error("venue call failed", **{"venue": venue, **fields})


def _report_payload(venue: str, endpoint: str, err: PayloadError, stats: VenueStats, log: Any) -> None:
    stats.payload_errors += 1
    stats.last_error = str(err)
    log.error("bad venue payload", venue=venue, endpoint=endpoint, market=err.market, field=err.field, error=str(err))


async def _publish(publish: Callable[[Any], Awaitable[Any]], what: Any, venue: str, log: Any) -> bool:
    """Publish; a failure (the bus is down) is logged and the feed goes on. True when it went out."""
    try:
        await publish(what)
        return True
    except Exception as e:
        kind = type(what).__name__ if not isinstance(what, list) else type(what[0]).__name__
        log.error("publish failed", venue=venue, what=kind, error=f"{type(e).__name__}: {e}")
        return False


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()


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
    publish_info: PublishInfo | None = None,
) -> VenueStats:
    """Poll one venue until `stop` (or until `stats.polls` reaches `polls`), publishing books, market facts
    and, when given, raw responses. Continues the poll count of `stats` (a restarted feed goes on)."""
    venue = feed.venue
    record: list[Response] = []
    failures = await feed.setup(record)
    n = stats.polls
    while not stop.is_set() and (polls is None or n < polls):
        t0 = time.monotonic()
        failures += await feed.poll(n, record)
        n += 1
        stats.polls = n
        _report_failures(venue, failures, stats, log)
        books = []
        for resp in record:
            parsed = parse_response(resp)
            feed.observe(parsed.markets)
            books += parsed.books
            for err in parsed.errors:
                _report_payload(venue, resp.endpoint, err, stats, log)
        for book in books:
            info = feed.info.get(book.instrument)
            for err in off_grid(book, info) if info is not None else []:
                _report_payload(venue, "", err, stats, log)
        stats.responses += len(record)
        infos, feed.pending = [msgspec.structs.replace(i, source=source) for i in feed.pending], []
        if (
            publish_raw is not None
            and record
            and await _publish(publish_raw, raw_batch(venue, record, source), venue, log)
        ):
            stats.raw_batches += 1
        if infos and await _publish(publish_info or publish, infos, venue, log):  # type: ignore[arg-type]
            stats.infos += len(infos)
        if books and await _publish(publish, [to_batch(b, venue, source, levels) for b in books], venue, log):
            stats.books += len(books)
        record, failures = [], []
        if polls is not None and n >= polls:
            break
        await _wait(stop, poll_s - (time.monotonic() - t0))
    return stats


async def supervise(
    feed: Feed,
    stats: VenueStats,
    stop: asyncio.Event,
    log: Any,
    backoff_s: tuple[float, float] = RESTART_BACKOFF_S,
    **run: Any,
) -> VenueStats:
    """Run `run_feed` for one venue; if it dies, log it at once and restart it after a growing pause."""
    base, cap = backoff_s
    while True:
        try:
            return await run_feed(feed, stats=stats, stop=stop, log=log, **run)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            wait = min(cap, base * 2 ** min(stats.restarts, 16))
            stats.restarts += 1
            stats.last_error = f"feed died: {type(e).__name__}: {e}"
            log.exception(
                "venue feed died",
                venue=feed.venue,
                error=f"{type(e).__name__}: {e}",
                restart_in_s=wait,
                restarts=stats.restarts,
            )
            if await _wait(stop, wait):
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
    publish_info: PublishInfo | None = None,
    status_every: int = STATUS_EVERY,
    restart_backoff_s: tuple[float, float] = RESTART_BACKOFF_S,
) -> LiveStats:
    """Run the feeds of `venues` side by side until `stop` is set (or each made `polls` polls).

    `publish` takes a sequence of BookBatch; `publish_raw` (None: no recording) takes a RawBatch;
    `publish_info` takes MarketInfo events — when None they go through `publish` too (route them with
    `proto.subjects.of_batch`, which knows every market-data event). The markets come from
    `market_map`, else from MT_MARKETS_FILE. A bad configuration (no mapping file, half a Kalshi key,
    an unknown venue) is a ValueError before anything starts.
    """
    if market_map is None:
        if settings.markets_file is None:
            raise ValueError("the live source needs a market mapping file: set MT_MARKETS_FILE")
        market_map = await asyncio.to_thread(load_markets, settings.markets_file)
    stop = stop or asyncio.Event()
    feeds = make_feeds(settings, market_map, venues, log, status_every)
    out = LiveStats(venues={f.venue: VenueStats(venue=f.venue) for f in feeds})
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(
            supervise(
                f,
                out.venues[f.venue],
                stop,
                log,
                restart_backoff_s,
                publish=publish,
                publish_raw=publish_raw,
                publish_info=publish_info,
                poll_s=settings.venues_poll_s,
                polls=polls,
                levels=levels,
                source=source,
            ),
            name=f"live-{f.venue}",
        )
        for f in feeds
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.seconds = time.perf_counter() - t0
    log.info("live done", **{v: msgspec.structs.asdict(s) for v, s in out.venues.items()})
    return out
