"""detect on a real nats-server: the opportunity lifecycle, intents, and same-time evaluation."""

from __future__ import annotations

import asyncio

import msgspec

from libs.bus import Bus, PullConsumer
from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import streams, subjects
from proto.events import BookBatch, Intent, Opportunity
from services.runtime import Stack

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
    stack = await Stack.open(settings)
    try:
        await stack.start("detect")
        bus = await stack.connect("test")
        for b in books:
            await bus.publish(subjects.book(b.venue, "EVT"), b)
        assert await wait_idle(bus, [(streams.MD.name, "detect")], timeout_s=20)
        await asyncio.sleep(settings.detect_settle_ms / 1000 + 0.2)
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
    opps, intents = await run_detect(settings, books)
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


async def test_rows_of_one_market_time_are_judged_together(settings: Settings) -> None:
    # At t1 both venues move up by 10c. Judged half-updated (new polymarket vs old kalshi) the
    # pair would cross; judged together it does not. No opportunity must appear. A wide settle
    # window keeps the test about the rule, not about how fast this machine publishes.
    settings = msgspec.structs.replace(settings, detect_settle_ms=200.0)
    books = [
        book("polymarket", T, 4_300, 4_500),
        book("kalshi", T, 4_300, 4_500),
        book("polymarket", T + 1, 5_300, 5_500),
        book("kalshi", T + 1, 5_300, 5_500),
    ]
    opps, intents = await run_detect(settings, books)
    assert opps == [] and intents == []


async def test_edge_below_threshold_opens_but_sends_no_intent(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, min_edge_cents=5.0)
    books = [book("polymarket", T, 4_300, 4_500), book("kalshi", T, 5_000, 5_200)]
    opps, intents = await run_detect(settings, books)
    assert [o.status for o in opps] == ["opened"]
    assert opps[0].net_edge_per_contract_micros < 50_000
    assert intents == []
