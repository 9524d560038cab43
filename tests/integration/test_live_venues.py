"""The live source on a real nats-server, against local venue servers: books flow, and one venue's
outage never stops the other venue's feed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import structlog

from libs.bus import Bus, LocalNatsServer
from libs.config import Settings
from libs.venues.kalshi import instrument_of
from libs.venues.mapping import load_markets
from proto import codec, streams, subjects
from proto.events import BookBatch, MarketInfo
from services.ingest.live import run_live
from tests.fixtures.venues.venue_server import FIXTURES, VenueServer, fixture, kalshi_route, polymarket_route

TICKER = "KXFEDDECISION-25DEC-H0"
YES = fixture("polymarket_book_yes.json")["asset_id"]
NO = fixture("polymarket_book_no.json")["asset_id"]


def mapping(tmp_path: Path) -> Path:
    p = tmp_path / "markets.toml"
    p.write_text(
        f"""
[[pair]]
opportunity_key = "FED-DEC25-NOCHANGE"
resolution_date = 2025-12-10
orientation = "same"
confirmed = true
[pair.kalshi]
ticker = "{TICKER}"
[pair.polymarket]
yes_token = "{YES}"
no_token = "{NO}"
"""
    )
    return p


def servers() -> tuple[VenueServer, VenueServer]:
    poly_books = {
        YES: (FIXTURES / "polymarket_book_yes.json").read_bytes(),
        NO: (FIXTURES / "polymarket_book_no.json").read_bytes(),
    }
    poly = VenueServer(polymarket_route(poly_books)).start()
    kal = VenueServer(
        kalshi_route(
            {TICKER: (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()}, fixture("kalshi_markets.json")["markets"]
        )
    ).start()
    return poly, kal


def live_settings(settings: Settings, poly: VenueServer, kal: VenueServer, markets: Path) -> Settings:
    return msgspec.structs.replace(
        settings,
        polymarket_host=poly.url,
        kalshi_host=kal.url + "/trade-api/v2",
        markets_file=markets,
        venues_poll_s=0.05,
        venues_rate_per_s=200.0,
    )


async def test_live_books_reach_nats_and_an_outage_does_not_stop_the_other_venue(
    settings: Settings, nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    poly, kal = servers()
    s = live_settings(settings, poly, kal, mapping(tmp_path))
    bus = await Bus.connect(nats_server.url, name="live-test")
    await bus.ensure_streams(streams.ALL)
    got: list[tuple[str, BookBatch]] = []

    async def collect(msg) -> None:
        got.append((msg.subject, codec.decode(msg.data, BookBatch)))

    sub = await bus.nc.subscribe("md.book.>", cb=collect)
    publish_calls: list[str] = []

    async def publish(batches: Sequence[BookBatch]) -> None:
        for b in batches:
            publish_calls.append(b.venue)
            await bus.publish(subjects.book(b.venue, b.instruments[0]), b)

    infos: list[MarketInfo] = []

    async def publish_info(events: Sequence[MarketInfo]) -> None:
        infos.extend(events)

    stop = asyncio.Event()
    log = structlog.get_logger().bind(service="test")
    try:
        task = asyncio.create_task(run_live(publish, None, s, log, stop=stop, publish_info=publish_info))
        await _until(lambda: publish_calls.count("kalshi") >= 2 and publish_calls.count("polymarket") >= 4)
        kal.mode = "500"  # Kalshi down: errors for a while
        seen = len(kal.requests)
        await _until(lambda: len(kal.requests) >= seen + 2)
        kal.mode = "close"  # then it drops connections
        before = publish_calls.count("polymarket"), publish_calls.count("kalshi")
        # at least one whole poll's retries spent (3 attempts), while Polymarket keeps publishing
        await _until(lambda: len(kal.requests) >= seen + 5 and publish_calls.count("polymarket") >= before[0] + 10)
        assert publish_calls.count("kalshi") == before[1]  # nothing from Kalshi while it is down
        kal.mode = "ok"  # Kalshi recovers: its feed resumes by itself
        await _until(lambda: publish_calls.count("kalshi") >= before[1] + 2)
        stop.set()
        stats = await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        await sub.unsubscribe()
        await bus.close()
        poly.stop()
        kal.stop()
    ks, ps = stats.venues["kalshi"], stats.venues["polymarket"]
    assert ks.failed_calls >= 1 and ps.failed_calls == 0
    assert ks.books >= 4 and ps.books >= 2 * 14
    assert ps.payload_errors == ks.payload_errors == 0
    await asyncio.sleep(0.2)
    by_subject = {subj for subj, _ in got}
    assert by_subject == {
        f"md.book.polymarket.{YES}",
        f"md.book.polymarket.{NO}",
        f"md.book.kalshi.{instrument_of(TICKER)}",
    }
    kal_book = next(b for subj, b in got if b.venue == "kalshi")
    assert kal_book.levels == 10 and kal_book.bid_px[:3] == [4_500, 4_400, 4_000] and kal_book.ask_px[0] == 4_650
    yes_book = next(b for subj, b in got if b.instruments == [YES])
    assert yes_book.book_ts == [int(fixture("polymarket_book_yes.json")["timestamp"]) * 1_000_000]
    assert load_markets(s.markets_file).translate(kal_book).instruments == ["FED-DEC25-NOCHANGE"]


async def test_malformed_and_unknown_markets_are_logged_and_the_feed_goes_on(
    settings: Settings, tmp_path: Path, capsys
) -> None:
    bad = fixture("polymarket_book_no.json")
    bad["bids"][0]["price"] = "1.5"
    poly_books = {YES: (FIXTURES / "polymarket_book_yes.json").read_bytes(), NO: json.dumps(bad).encode()}
    poly = VenueServer(polymarket_route(poly_books)).start()
    kal = VenueServer(kalshi_route({}, fixture("kalshi_markets.json")["markets"])).start()  # no book: 404
    s = live_settings(settings, poly, kal, mapping(tmp_path))
    published: list[BookBatch] = []

    async def publish(batches: Sequence[BookBatch]) -> None:
        published.extend(b for b in batches if isinstance(b, BookBatch))

    try:
        stats = await run_live(publish, None, s, structlog.get_logger(), polls=3)
    finally:
        poly.stop()
        kal.stop()
    ps, ks = stats.venues["polymarket"], stats.venues["kalshi"]
    assert ps.polls == ks.polls == 3
    assert ps.books == 3 and ps.payload_errors == 3  # the good YES book every poll, the bad NO book never
    assert {b.instruments[0] for b in published} == {YES}
    assert ks.books == 0 and ks.failed_calls == 3
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "bad venue payload" in err and "bids[0].price" in err and NO in err
    assert "venue call failed" in err and "404" in err and f"/markets/{TICKER}/orderbook" in err


async def _until(cond, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Switchable:
    """A Kalshi route whose GET /markets answer can be swapped while the feed runs."""

    def __init__(self, route, markets_answer: tuple[int, bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
        self.route = route
        self.markets_answer = markets_answer

    def __call__(self, req):  # type: ignore[no-untyped-def]
        if req.path == "/trade-api/v2/markets" and self.markets_answer is not None:
            return self.markets_answer
        return self.route(req)


async def test_a_malformed_kalshi_markets_answer_never_stops_either_feed(
    settings: Settings, tmp_path: Path, capsys
) -> None:
    poly, _ = servers()
    kroute = Switchable(
        kalshi_route(
            {TICKER: (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()}, fixture("kalshi_markets.json")["markets"]
        ),
        (200, b"<html>bad gateway</html>"),
    )
    kal = VenueServer(kroute).start()
    s = live_settings(settings, poly, kal, mapping(tmp_path))
    books: list[BookBatch] = []
    infos: list[MarketInfo] = []
    raws: list = []

    async def publish(batches: Sequence[BookBatch]) -> None:
        books.extend(batches)

    async def publish_info(events: Sequence[MarketInfo]) -> None:
        infos.extend(events)

    async def publish_raw(batch) -> None:  # type: ignore[no-untyped-def]
        raws.append(batch)

    def orderbook_calls() -> int:
        return kal.count(f"/trade-api/v2/markets/{TICKER}/orderbook")

    def logged() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(publish, publish_raw, s, structlog.get_logger(), stop=stop, publish_info=publish_info, status_every=1)
    )
    try:
        # an HTML page with status 200: logged at once, and both feeds keep polling
        await _until(lambda: orderbook_calls() >= 3 and sum(b.venue == "polymarket" for b in books) >= 6)
        text = logged()
        assert "bad venue payload" in text and "is not JSON" in text and "kalshi" in text
        assert not task.done()
        # then a JSON body with no market list
        kroute.markets_answer = (200, b'{"markets": null}')
        seen = orderbook_calls()
        await _until(lambda: orderbook_calls() >= seen + 3)
        text = logged()
        assert "field markets = None: must be a list of markets" in text
        assert not [i for i in infos if i.venue == "kalshi"]  # no facts from either bad answer
        # the venue is fixed: Kalshi's market facts come through, books never stopped
        kroute.markets_answer = None
        await _until(lambda: any(i.venue == "kalshi" for i in infos))
        kal_books = sum(b.venue == "kalshi" for b in books)
        await _until(lambda: sum(b.venue == "kalshi" for b in books) >= kal_books + 2)
        stop.set()
        stats = await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        poly.stop()
        kal.stop()
    ks, ps = stats.venues["kalshi"], stats.venues["polymarket"]
    assert ks.payload_errors >= 2 and ks.failed_calls == 0 and ks.restarts == 0
    assert ps.payload_errors == ps.failed_calls == ps.restarts == 0 and ps.books >= 6
    (info,) = [i for i in infos if i.venue == "kalshi"]  # published once: nothing changed after
    assert (info.market_id, info.status, info.tick_size) == (TICKER, "active", 10)
    # the failing polls' responses are recorded too, bad bodies byte for byte
    bodies = {body for r in raws if r.venue == "kalshi" for body in r.body}
    assert b"<html>bad gateway</html>" in bodies and b'{"markets": null}' in bodies


async def test_market_info_goes_out_at_setup_and_on_each_status_change(
    settings: Settings, tmp_path: Path, capsys
) -> None:
    poly, _ = servers()
    markets = [dict(m) for m in fixture("kalshi_markets.json")["markets"]]
    markets[0] |= {"price_level_structure": "linear_cent", "price_ranges": None}  # whole cents: 0.4650 is off it
    kal = VenueServer(kalshi_route({TICKER: (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()}, markets)).start()
    s = live_settings(settings, poly, kal, mapping(tmp_path))
    books: list[BookBatch] = []
    infos: list[MarketInfo] = []

    async def publish(batches: Sequence[BookBatch]) -> None:
        books.extend(batches)

    async def publish_info(events: Sequence[MarketInfo]) -> None:
        infos.extend(events)

    def kalshi_infos() -> list[MarketInfo]:
        return [i for i in infos if i.venue == "kalshi"]

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(publish, None, s, structlog.get_logger(), stop=stop, publish_info=publish_info, status_every=2)
    )
    try:
        await _until(lambda: len(kalshi_infos()) == 1 and len({i.instrument for i in infos}) == 3)
        await _until(lambda: sum(b.venue == "kalshi" for b in books) >= 3)
        markets[0]["status"] = "closed"  # the venue closes the market
        await _until(lambda: len(kalshi_infos()) == 2)
        seen = kal.count(f"/trade-api/v2/markets/{TICKER}/orderbook")
        reads = kal.count("/trade-api/v2/markets")
        await _until(lambda: kal.count("/trade-api/v2/markets") >= reads + 2)  # status still read...
        assert kal.count(f"/trade-api/v2/markets/{TICKER}/orderbook") == seen  # ...its book no longer polled
        stop.set()
        stats = await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        poly.stop()
        kal.stop()
    opened, closed = kalshi_infos()
    assert (opened.status, closed.status) == ("active", "closed") and opened.tick_size == closed.tick_size == 100
    assert opened.instrument == instrument_of(TICKER) and opened.close_ts == 1_765_393_140_000_000_000
    poly_infos = {i.instrument: i for i in infos if i.venue == "polymarket"}
    assert set(poly_infos) == {YES, NO}  # learnt the condition id from the books, then read the market
    yes = poly_infos[YES]
    assert (yes.status, yes.taker_fee_rate, yes.tick_size, yes.min_order_size) == ("open", "0.04", 10, 5.0)
    assert yes.title == "Fed decision in December? No change [Yes]"
    # per token: what setup knew (tick, base fee: no status yet), then the market's facts; nothing re-published
    # when a re-read (every 2 polls) says the same
    assert [i.status for i in infos if i.instrument == YES] == ["", "open"]
    # the Kalshi YES ask 0.4650 is off the whole-cent grid: logged and counted, the book still published
    ks = stats.venues["kalshi"]
    assert ks.payload_errors >= 3 and ks.books >= 3 and ks.infos == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert "asks[0].price" in text and "off the market's tick grid of 0.01 dollars" in text
    assert stats.venues["polymarket"].payload_errors == 0
