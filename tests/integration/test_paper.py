"""paper on a real nats-server: no look-ahead in replays, and one decision per intent and run."""

from __future__ import annotations

import asyncio

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import codec, streams, subjects
from proto.events import BookBatch, Decision, Intent, PaperTrade
from services.runtime import Stack
from tests.factories import hedged_intent

T = 1_765_000_000_000_000_000
S = 1_000_000_000


def book(venue: str, ts: int, bid: int, ask: int, size: int) -> BookBatch:
    return BookBatch(
        id=f"{venue}-{ts}", ts=ts, venue=venue, source="replay", levels=1, instruments=["EVT"], inst_idx=[0],
        book_ts=[ts], bid_px=[bid], bid_sz=[size], ask_px=[ask], ask_sz=[size],
    )  # fmt: skip


def intent(id: str, book_ts: int) -> Intent:
    return hedged_intent(
        id, "EVT", yes_limit=4_500, no_limit=5_000, size=100, edge_per_contract=32_500, book_ts=book_ts
    )


async def paper_output(stack: Stack) -> tuple[list[Decision], list[PaperTrade]]:
    bus = stack.buses[0]
    info = await bus.js.stream_info(streams.PAPER.name)
    sub = await bus.js.pull_subscribe(">", durable="reader", stream=streams.PAPER.name)
    msgs = await sub.fetch(info.state.messages, timeout=5)
    events = [codec.decode_any(m.data) for m in msgs]
    return [e for e in events if isinstance(e, Decision)], [e for e in events if isinstance(e, PaperTrade)]


async def test_replayed_intent_fills_on_the_book_of_its_time_and_is_decided_once(settings: Settings) -> None:
    stack = await Stack.open(msgspec.structs.replace(settings, nats_url=None, paper_latency_ms=50.0))
    try:
        await stack.start("paper")
        bus = await stack.connect("test")
        # the replay has already moved on by the time the intent arrives: at T+10s the books are thin
        for b in [
            book("polymarket", T, 4_300, 4_500, 100),
            book("kalshi", T, 5_000, 5_200, 100),
            book("polymarket", T + 10 * S, 4_300, 4_500, 7),
            book("kalshi", T + 10 * S, 5_000, 5_200, 7),
            book("nasdaq", T, 4_300, 4_500, 7),  # a venue paper does not trade (a replay, a generator): not kept
        ]:
            await bus.publish(subjects.book(b.venue, "EVT"), b)
        await asyncio.sleep(0.2)  # books go to paper on core NATS
        await bus.publish(subjects.intent("xarb"), intent("I1", T))
        await bus.publish(subjects.intent("xarb"), intent("I1", T), dedup=False)  # redelivered/duplicated
        await bus.publish(subjects.intent("xarb"), intent("I2", T + 10 * S))
        assert await wait_idle(bus, [(streams.INTENT.name, "paper")], timeout_s=20)
        decisions, trades = await paper_output(stack)
        assert sorted(d.intent_id for d in decisions) == ["I1", "I2"], "one decision per intent"
        by_intent = {t.intent_id: t for t in trades}
        assert by_intent["I1"].matched_size == 100  # the book as of T, not the later thin one
        assert by_intent["I2"].matched_size == 7
        first = next(d for d in decisions if d.intent_id == "I1")
        assert f"polymarket@{T}" in next(c.detail for c in first.checks if c.name == "book_present")
        paper = stack.running["paper"]
        assert paper.history.at("nasdaq", "EVT", T) is None  # type: ignore[attr-defined]
        assert paper.history.at("kalshi", "EVT", T) is not None  # type: ignore[attr-defined]
    finally:
        await stack.close()
