"""detect on a real nats-server: the opportunity lifecycle, intents, and same-time evaluation."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import msgspec

from libs.bus import Bus, PullConsumer
from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from proto import codec, streams, subjects
from proto.events import BookBatch, Intent, Opportunity
from proto.paper import PaperReply, StartRequest, StartRun
from services.demo import RECORDERS
from services.detect.service import OpenOpportunity
from services.ingest.service import synced
from services.paper.service import INTENT_DURABLE, OPP_DURABLE
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


def _xarb_edge_per_contract(poly_yes_ask: Fraction, kalshi_yes_bid: Fraction, size: int) -> int:
    """Independently: `size` YES at the Polymarket ask (no fee) + `size` NO on Kalshi at 1 - its YES bid,
    Kalshi's fee ceil(0.07 x C x P(1-P)) to the cent; the pair pays $1; per contract, floored, in micros."""
    no_px = 1 - kalshi_yes_bid
    net_micros = size * 1_000_000 - int(size * (poly_yes_ask + no_px) * 1_000_000)
    net_micros -= _ceil_cents_micros(Fraction(7, 100) * size * no_px * (1 - no_px))
    return net_micros // size


async def test_an_intent_per_improvement_of_the_edge_and_again_after_a_re_arm(settings: Settings) -> None:
    """Intents fire at each better edge (so a stricter user sees it), not once per crossing of detect's minimum."""
    settings = msgspec.structs.replace(settings, min_edge_cents=3.0)
    ask = Fraction(45, 100)  # Polymarket YES ask throughout; Kalshi's YES bid moves
    steps = [  # (Kalshi YES bid in cents, size on both venues)
        (50, 100),  # crosses at E1 -> intent 1
        (52, 100),  # E2 > E1 -> intent 2
        (51, 100),  # worse, still above -> none
        (52, 300),  # back to E2 with more size: same edge as the last intent -> none
        (48, 100),  # open but below 3c -> none, re-arms
        (50, 100),  # crosses again at E1 < E2 -> intent 3
        (52, 102),  # E3 > E1 (Kalshi's fee rounds up to the cent: a little under E2) -> intent 4
        (52, 101),  # better by a fee-rounding wiggle, inside the same 0.01c -> none
        (44, 100),  # gone
    ]
    books = [
        b
        for i, (bid, size) in enumerate(steps)
        for b in synced(
            f"s{i}",
            book("polymarket", T + i, 4_300, 4_500, size=size),
            book("kalshi", T + i, bid * 100, bid * 100 + 200, size=size),
        )
    ]
    edges = [_xarb_edge_per_contract(ask, Fraction(bid, 100), size) for bid, size in steps[:-1]]
    e1, e2, worse, e2_deeper, below, e1_again, e3, wiggle = edges
    assert (e1, e2, worse, e2_deeper, below, e1_again) == (32_500, 52_500, 42_500, 52_500, 12_500, 32_500)
    assert (e3, wiggle) == (52_450, 52_475)
    assert e2 > worse >= 30_000 > below > 0 and e3 < wiggle and e3 // 100 == wiggle // 100  # tests what it says

    opps, intents = await run_detect(settings, books)
    assert [o.status for o in opps] == ["opened", *["updated"] * 7, "closed"]
    assert [(o.size, o.net_edge_per_contract_micros) for o in opps[:-1]] == [
        (size, e) for (_, size), e in zip(steps[:-1], edges, strict=True)
    ]
    assert len({o.opportunity_id for o in opps}) == 1
    sent = [(i.net_edge_per_contract_micros, i.size, i.book_ts) for i in intents]
    assert sent == [(e1, 100, T), (e2, 100, T + 1), (e1, 100, T + 5), (e3, 102, T + 6)]
    assert {i.opportunity_id for i in intents} == {opps[0].opportunity_id}
    assert len({i.id for i in intents}) == 4
    assert intents[1].net_edge_micros == 100 * e2  # E2 divides evenly: the whole quote, not the first one's


async def test_a_run_stricter_than_detect_takes_the_later_better_intent(settings: Settings) -> None:
    """The point of an intent per improvement: with detect at 0.5c, a paper run asking 4c skips the
    crossing's first intent (3.25c) and takes the same opportunity's better one (5.25c)."""
    settings = msgspec.structs.replace(
        settings, min_edge_cents=0.5, paper_default_run=False, paper_settlement_delay_s=0.5, nats_url=None
    )
    stack = await Stack.open(settings)
    try:
        for name in ("recorder", "paper", "detect"):
            await stack.start(name)
        bus = await stack.connect("test")
        start = StartRun(
            user_id="u1",
            request=StartRequest(starting_usd=1_000.0, label="strict"),
            min_net_edge_micros=40_000,
            max_leg_micros=1_000_000_000,
            daily_cap_micros=5_000_000_000,
        )
        msg = await bus.nc.request("svc.paper.start", codec.encode(start), timeout=10)
        reply = codec.decode(msg.data, PaperReply)
        assert reply.status == 201, reply.detail
        run_id = reply.runs[0].run_id
        t0 = now_ns() - 10 * 1_000_000_000  # fresh enough for paper's book-age check
        for t, bid in ((t0, 5_000), (t0 + 1_000_000_000, 5_200)):  # Kalshi's YES bid 0.50, then 0.52
            for b in synced(f"g{t}", book("polymarket", t, 4_300, 4_500), book("kalshi", t, bid, bid + 200)):
                await bus.publish(subjects.book(b.venue, "EVT"), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        intents = await read_all(bus, streams.INTENT.name, Intent)
        paper = [(streams.INTENT.name, INTENT_DURABLE), (streams.OPP.name, OPP_DURABLE)]
        assert await wait_idle(bus, paper, timeout_s=30)
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        decided = stack.store.query_df(
            "SELECT intent_id, reason, taken FROM {db}.decisions FINAL "
            "WHERE run_id = {r:String} AND decision_source = 'intent'",
            {"r": run_id},
        ).rows()
    finally:
        await stack.close()
    e1 = _xarb_edge_per_contract(Fraction(45, 100), Fraction(50, 100), 100)
    e2 = _xarb_edge_per_contract(Fraction(45, 100), Fraction(52, 100), 100)
    assert e1 < 40_000 <= e2
    assert [i.net_edge_per_contract_micros for i in intents] == [e1, e2]
    assert intents[0].opportunity_id == intents[1].opportunity_id
    first, better = intents
    assert sorted(decided) == sorted([(first.id, "min_net_edge", False), (better.id, "taken", True)])


def test_the_intent_rule_re_sends_at_each_new_hundredth_of_a_cent_and_re_arms_below() -> None:
    """The rule on its own, to the micro-dollar: fee-rounding wiggles inside one 0.01c send nothing,
    reaching a new 0.01c sends even by 1 micro, worse sends nothing, below re-arms."""
    opp = OpenOpportunity(opportunity_id="o", opened_at=T, quote=None)  # type: ignore[arg-type]
    steps = [  # (per-contract edge in micros, sent?) with detect's minimum at 5_000 (0.5c)
        (4_999, False),  # below
        (5_000, True),  # crosses
        (5_000, False),  # same edge
        (5_099, False),  # better, but still 0.50c: a fee-rounding wiggle
        (5_100, True),  # reaches 0.51c (1 micro more than the last edge seen)
        (6_853, True),
        (6_873, False),  # the demo's synthetic market as its book deepened
        (6_874, False),
        (6_900, True),  # reaches 0.69c
        (5_500, False),  # worse, still above
        (4_999, False),  # below: re-arms
        (5_000, True),  # the next crossing sends, though smaller than the last intent's
    ]
    got = []
    for edge, _ in steps:
        sent = opp.wants_intent(edge, min_edge=5_000)
        if sent:
            opp.intent_edge = edge
        got.append(sent)
    assert got == [sent for _, sent in steps]
    assert opp.intent_edge == 5_000
    # a user minimum that is a whole hundredth of a cent above the last intent's edge always gets an intent
    for last in range(5_000, 5_400, 7):
        for user_min in range(last + 1, 5_500):
            if user_min % 100 == 0:
                opp.intent_edge = last
                assert opp.wants_intent(user_min, min_edge=5_000), (last, user_min)


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
