"""detect on a real nats-server: the opportunity lifecycle, intents, and same-time evaluation."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import msgspec

from libs.bus import Bus, PullConsumer
from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import streams, subjects
from proto.events import BookBatch, Intent, Opportunity
from services.ingest.service import synced
from services.runtime import Stack
from tests import factories

T = 1_765_000_000_000_000_000


def book(venue: str, ts: int, bid: int, ask: int, size: int = 100) -> BookBatch:
    return BookBatch(
        id=f"{venue}-{ts}",
        ts=ts,
        venue=venue,
        source="test",
        levels=1,
        instruments=["EVT"],
        inst_idx=[0],
        book_ts=[ts],
        bid_px=[bid],
        bid_sz=[size],
        ask_px=[ask],
        ask_sz=[size],
    )


async def run_detect(settings: Settings, books: list[BookBatch]) -> tuple[list[Opportunity], list[Intent]]:
    """Run detect alone on its own nats-server over `books`; return what it published."""
    stack = await Stack.open(msgspec.structs.replace(settings, nats_url=None))
    try:
        await stack.start("detect")
        bus = await stack.connect("test")
        for b in books:
            await bus.publish(subjects.book(b.venue, "EVT"), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        return await read_all(bus, streams.OPP.name, Opportunity), await read_all(bus, streams.INTENT.name, Intent)
    finally:
        await stack.close()


async def read_all(bus: Bus, stream: str, kind: type) -> list:
    info = await bus.js.stream_info(stream)
    out: list = []
    if not info.state.messages:
        return out

    async def handler(events: list) -> None:
        out.extend(events)

    c = await PullConsumer(
        bus, stream=stream, durable=f"reader-{stream}", filter_subjects=[">"], kind=kind, handler=handler
    ).start()
    while len(out) < info.state.messages:
        await asyncio.sleep(0.05)
    await c.stop()
    return out


async def test_crossing_opens_updates_and_closes_with_one_intent(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, min_edge_cents=0.5)
    books = [
        # t0: no crossing (kalshi YES bid 0.40 < polymarket YES ask 0.45)
        book("polymarket", T, 4_300, 4_500),
        book("kalshi", T, 4_000, 4_200),
        # t1: kalshi YES bid 0.50 > polymarket YES ask 0.45: buy YES@polymarket, NO@kalshi at 0.50
        book("polymarket", T + 1, 4_300, 4_500),
        book("kalshi", T + 1, 5_000, 5_200),
        # t2: deeper on kalshi: same prices, more size -> updated, no second intent
        book("polymarket", T + 2, 4_300, 4_500, size=300),
        book("kalshi", T + 2, 5_000, 5_200, size=300),
        # t3: gone
        book("polymarket", T + 3, 4_300, 4_500),
        book("kalshi", T + 3, 4_400, 4_600),
    ]
    grouped = [b for i in range(0, len(books), 2) for b in synced(f"t{i}", books[i], books[i + 1])]
    opps, intents = await run_detect(settings, grouped)
    assert [o.status for o in opps] == ["opened", "updated", "closed"]
    assert len({o.opportunity_id for o in opps}) == 1
    opened = opps[0]
    assert opened.opportunity_key == "xarb:EVT:yes@polymarket+no@kalshi"
    assert (opened.book_ts, opened.opened_at, opps[-1].closed_at) == (T + 1, T + 1, T + 3)
    assert opened.size == 100 and opps[1].size == 300
    yes, no = opened.legs
    assert (yes.venue, yes.outcome, yes.limit_px) == ("polymarket", "yes", 4_500)
    assert (no.venue, no.outcome, no.limit_px) == ("kalshi", "no", 5_000)
    # 100 pairs at 0.45 + 0.50 = $95; Kalshi fee ceil(0.07 x 100 x 0.5 x 0.5) = $1.75; Polymarket 0
    assert opened.gross_cost_micros == 95_000_000
    assert opened.fees_micros == 1_750_000
    assert opened.net_edge_micros == 100_000_000 - 95_000_000 - 1_750_000
    assert len(intents) == 1
    assert intents[0].opportunity_id == opened.opportunity_id
    assert intents[0].net_edge_per_contract_micros == 32_500


async def test_a_sync_group_is_judged_whole(settings: Settings) -> None:
    # At t1 both venues move up by 10c. Judged half-updated (new polymarket vs old kalshi) the
    # pair crosses; judged as the one instant it is, it does not.
    def moves(sync: bool) -> list[BookBatch]:
        pairs = [
            (book("polymarket", T, 4_300, 4_500), book("kalshi", T, 4_300, 4_500)),
            (book("polymarket", T + 1, 5_300, 5_500), book("kalshi", T + 1, 5_300, 5_500)),
        ]
        return [b for pair in pairs for b in (synced(f"s{pair[0].ts}", *pair) if sync else pair)]

    opps, intents = await run_detect(settings, moves(sync=True))
    assert opps == [] and intents == []
    phantom, _ = await run_detect(msgspec.structs.replace(settings, home=settings.home / "b"), moves(sync=False))
    assert [o.status for o in phantom] == ["opened", "closed"], "without the group the half-update shows"


async def test_an_incomplete_sync_group_is_applied_after_the_timeout(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, detect_sync_timeout_ms=3_000.0)
    lone = synced("only-one", book("kalshi", T + 1, 5_000, 5_200), book("polymarket", T + 1, 4_300, 4_500))[:1]
    books = [*synced("s0", book("polymarket", T, 4_300, 4_500), book("kalshi", T, 4_000, 4_200)), *lone]
    stack = await Stack.open(settings)
    try:
        detect = await stack.start("detect")
        bus = await stack.connect("test")
        for b in books:
            await bus.publish(subjects.book(b.venue, "EVT"), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        assert detect.open == {}  # type: ignore[attr-defined]  (the lone half waits for its sibling)
        for _ in range(100):
            if detect.open:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        assert list(detect.open) == ["xarb:EVT:yes@polymarket+no@kalshi"]  # type: ignore[attr-defined]
    finally:
        await stack.close()


async def test_a_bad_book_is_dead_lettered_and_another_venues_book_is_left_alone(settings: Settings) -> None:
    good = [book("polymarket", T, 4_300, 4_500), book("kalshi", T, 4_000, 4_200)]
    bad_order = msgspec.structs.replace(
        book("kalshi", T + 1, 5_000, 5_200),
        levels=2,
        bid_px=[4_000, 5_000],
        bid_sz=[1, 1],
        ask_px=[5_200, 5_300],
        ask_sz=[1, 1],
    )
    other_venue = book("nasdaq", T + 2, 2_238_100, 2_238_200)  # a LOBSTER replay ($223.81): not a binary market
    stack = await Stack.open(settings)
    try:
        detect = await stack.start("detect")
        bus = await stack.connect("test")
        for b in [*good, bad_order, other_venue]:
            await bus.publish(subjects.book(b.venue, "EVT"), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=30)
        books = detect.books  # type: ignore[attr-defined]
        assert sorted(books) == [("kalshi", "EVT"), ("polymarket", "EVT")]
        assert books[("kalshi", "EVT")].book_ts == T
        assert detect.consumer.dead_lettered == 1  # type: ignore[attr-defined]
        assert detect.ignored == {"nasdaq"}  # type: ignore[attr-defined]
    finally:
        await stack.close()


async def test_edge_below_threshold_opens_but_sends_no_intent(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, min_edge_cents=5.0)
    books = [book("polymarket", T, 4_300, 4_500), book("kalshi", T, 5_000, 5_200)]
    opps, intents = await run_detect(settings, books)
    assert [o.status for o in opps] == ["opened"]
    assert opps[0].net_edge_per_contract_micros < 50_000
    assert intents == []


MAPPING = """
[[pair]]
opportunity_key = "FEDHOLD"
resolution_date = 2025-12-10
orientation = "{orientation}"
confirmed = true
[pair.kalshi]
ticker = "KXFED-25DEC-H0"
[pair.polymarket]
yes_token = "111"
no_token = "222"
"""


def venue_book(venue: str, instrument: str, ts: int, bid: int, ask: int) -> BookBatch:
    return msgspec.structs.replace(book(venue, ts, bid, ask), id=f"{venue}-{instrument}-{ts}", instruments=[instrument])


async def detect_with_mapping(settings: Settings, tmp_path, orientation: str, poly_token: str) -> list[Intent]:
    path = tmp_path / "markets.toml"
    path.write_text(MAPPING.format(orientation=orientation))
    # a home of its own: a second run in one test must not see the first run's streams
    home = settings.home / f"{orientation}-{poly_token}"
    settings = msgspec.structs.replace(settings, markets_file=path, nats_url=None, min_edge_cents=0.5, home=home)
    stack = await Stack.open(settings)
    try:
        await stack.start("detect")
        bus = await stack.connect("test")
        books = [
            venue_book("polymarket", poly_token, T, 4_300, 4_500),  # the pair's YES at 0.45 on Polymarket
            venue_book("kalshi", "KXFED-25DEC-H0", T, 5_000, 5_200),  # and bid at 0.50 on Kalshi
            venue_book("polymarket", "333", T, 100, 9_900),  # an unmapped market: left alone
        ]
        for b in books:
            await bus.publish(subjects.book(b.venue, b.instruments[0]), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        return await read_all(bus, streams.INTENT.name, Intent)
    finally:
        await stack.close()


async def test_the_mapping_file_pairs_a_kalshi_ticker_with_the_polymarket_token(settings: Settings, tmp_path) -> None:
    intents = await detect_with_mapping(settings, tmp_path, "same", "111")
    assert [i.opportunity_key for i in intents] == ["xarb:FEDHOLD:yes@polymarket+no@kalshi"]
    legs = {(leg.venue, leg.outcome): leg.instrument for leg in intents[0].legs}
    assert legs == {("polymarket", "yes"): "111", ("kalshi", "no"): "KXFED-25DEC-H0"}  # each venue's own id


async def test_an_inverted_pair_reads_the_polymarket_no_token_as_the_pairs_yes(settings: Settings, tmp_path) -> None:
    intents = await detect_with_mapping(settings, tmp_path, "inverted", "222")
    assert [i.opportunity_key for i in intents] == ["xarb:FEDHOLD:yes@polymarket+no@kalshi"]
    assert {leg.instrument for leg in intents[0].legs} == {"222", "KXFED-25DEC-H0"}
    # the YES token's book is the other side of the market: with an inverted pair it does not pair
    assert await detect_with_mapping(settings, tmp_path, "inverted", "111") == []


def _ceil_cents_micros(dollars: Fraction) -> int:
    """Dollars rounded up to the cent, in micro-dollars."""
    return -(-dollars * 100 // 1) * 10_000


def _half_up_5dp_micros(dollars: Fraction) -> int:
    """Dollars rounded half up to 5 decimals, in micro-dollars."""
    return int((dollars * 100_000 + Fraction(1, 2)) // 1) * 10


async def test_a_polymarket_market_info_fee_rate_prices_that_instrument(settings: Settings, tmp_path) -> None:
    """The MarketInfo's own taker rate (4%), not MT_POLYMARKET_FEE_RATE (0), prices the Polymarket leg."""
    path = tmp_path / "markets.toml"
    path.write_text(MAPPING.format(orientation="same"))
    settings = msgspec.structs.replace(settings, markets_file=path, nats_url=None, min_edge_cents=0.5)
    info = factories.market_info(
        "fee-111", venue="polymarket", instrument="111", market_id="111", taker_fee_rate="0.04", fee_exponent="1"
    )
    stack = await Stack.open(settings)
    try:
        await stack.start("detect")
        bus = await stack.connect("test")
        await bus.publish(subjects.info("polymarket", "111"), info)
        for b in (
            venue_book("polymarket", "111", T, 4_300, 4_500),
            venue_book("kalshi", "KXFED-25DEC-H0", T, 5_000, 5_200),
        ):
            await bus.publish(subjects.book(b.venue, b.instruments[0]), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        opps = await read_all(bus, streams.OPP.name, Opportunity)
        intents = await read_all(bus, streams.INTENT.name, Intent)
    finally:
        await stack.close()
    (opened,) = opps
    # independently: 100 YES at $0.45 on Polymarket, C x 0.04 x p(1-p) to 5 places; 100 NO at $0.50 on
    # Kalshi (YES bid 0.50 -> NO ask 0.50), ceil(0.07 x C x P(1-P)) to the cent
    poly_fee = _half_up_5dp_micros(100 * Fraction(4, 100) * Fraction(45, 100) * Fraction(55, 100))
    kalshi_fee = _ceil_cents_micros(Fraction(7, 100) * 100 * Fraction(1, 2) * Fraction(1, 2))
    assert (poly_fee, kalshi_fee) == (990_000, 1_750_000)
    assert opened.fees_micros == poly_fee + kalshi_fee
    fees = {leg.venue: leg.fee_micros for leg in opened.legs}
    assert fees == {"polymarket": poly_fee, "kalshi": kalshi_fee}
    assert opened.net_edge_micros == 100_000_000 - 95_000_000 - poly_fee - kalshi_fee
    assert [i.opportunity_id for i in intents] == [opened.opportunity_id]
    assert {leg.venue: leg.fee_micros for leg in intents[0].legs} == fees
