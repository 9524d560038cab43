"""The paper service's hot path on a real nats-server and chDB: intents are decided from their
core-NATS copy before JetStream delivers them, a publish seen twice is decided once, JetStream's
copies only confirm, and with the hot path off (or behind a backlog) JetStream decides."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import msgspec
import pytest

from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from proto import codec, streams, subjects
from proto.events import DeadLetter
from proto.paper import UserQuery
from services.demo import RECORDERS
from services.paper import service as paper_service
from services.paper.service import INTENT_DURABLE
from services.runtime import Stack
from tests.integration.test_paper import PAPER, intent, publish_books, start_req, svc, until
from tests.unit.test_paper_engine import NO_ASKS, POLY_ASKS, cost, kalshi_fee, take

S = 1_000_000_000


def pair_pnl() -> int:
    """P&L of one taken test intent (150 contracts at the test books), worked out by hand."""
    leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    return 150_000_000 - (cost(leg0) + cost(leg1) + kalshi_fee(leg1))


async def started(settings: Settings, **changes: Any) -> tuple[Stack, Any, Any, Any, int]:
    """A stack with the recorder and paper, one $10,000 run of user u1, and the test books."""
    stack = await Stack.open(msgspec.structs.replace(settings, paper_default_run=False, **changes))
    await stack.start("recorder")
    paper = await stack.start("paper")
    bus = await stack.connect("test")
    run = (await svc(bus, "start", start_req(starting_usd=10_000.0))).runs[0]
    t = now_ns() - 10 * S
    await publish_books(bus, t)
    return stack, paper, bus, run, t


async def decisions_of(stack: Stack, run_id: str) -> list[tuple[str, int]]:
    q = f"SELECT intent_id, count() FROM {{db}}.decisions WHERE run_id = '{run_id}' GROUP BY 1 ORDER BY 1"
    return [(str(r[0]), int(r[1])) for r in stack.store.query_df(q).rows()]


async def test_intents_are_decided_from_core_nats_and_jetstream_only_confirms(settings: Settings) -> None:
    stack, paper, bus, run, t = await started(settings, paper_settlement_delay_s=0.2)
    try:
        consumer = paper.consumers[0]
        gate, handler = asyncio.Event(), consumer.handler

        async def held(pairs: list) -> Any:  # JetStream's copies wait: only the hot path can decide
            await gate.wait()
            return await handler(pairs)

        consumer.handler = held
        first = [intent(f"H{i}", t, edge=40_000 if i % 2 == 0 else 1_000) for i in range(6)]
        for it in first:
            await bus.publish(subjects.intent("xarb"), it)
        # one of them again: a retried publish (JetStream keeps one) and the same id published anew
        await bus.publish(subjects.intent("xarb"), first[0])
        await bus.publish(subjects.intent("xarb"), first[1], dedup=False)
        live = paper.runs[run.run_id]
        await until(lambda: live.snap.decisions == len(first))
        assert paper.hot_decided == len(first)
        assert set(live.snap.ahead) == {it.id for it in first}  # decided ahead of JetStream
        assert live.snap.intent_seq == 0  # nothing reached through JetStream yet
        info = await bus.js.consumer_info(streams.INTENT.name, INTENT_DURABLE)
        assert info.num_ack_pending + info.num_pending == len(first) + 1  # none acked: 7 stored copies
        # let JetStream's copies through: they are skipped, acked, and the run forgets them
        gate.set()
        await until(lambda: not live.snap.ahead, timeout_s=30)
        assert await wait_idle(bus, PAPER, timeout_s=30)
        assert live.snap.decisions == len(first)  # the copies decided nothing more
        assert live.snap.intent_seq == len(first)  # past every copy (the one published anew is dropped by id)
        taken = sum(1 for it in first if it.net_edge_per_contract_micros >= 5_000)
        await until(lambda: live.snap.trades == taken and not live.snap.pending)
        assert live.snap.balance_micros == 10_000_000_000 + taken * pair_pnl()
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        assert await decisions_of(stack, run.run_id) == sorted((it.id, 1) for it in first)
    finally:
        await stack.close()


async def test_with_the_hot_path_off_jetstream_decides_every_intent(settings: Settings) -> None:
    stack, paper, bus, run, t = await started(settings, paper_hot_path=False)
    try:
        todo = [intent(f"J{i}", t) for i in range(5)]
        for it in todo:
            await bus.publish(subjects.intent("xarb"), it)
        assert await wait_idle(bus, PAPER, timeout_s=30)
        live = paper.runs[run.run_id]
        assert (paper.hot_decided, live.snap.decisions, live.snap.ahead) == (0, 5, {})
        assert live.snap.intent_seq == 5  # every decision came through JetStream, in order
    finally:
        await stack.close()


async def test_a_backlog_after_a_restart_is_decided_from_jetstream_in_order_then_the_hot_path_resumes(
    settings: Settings,
) -> None:
    stack, paper, bus, run, t = await started(settings, paper_settlement_delay_s=0.2)
    try:
        await stack.stop_service("paper")
        backlog = [intent(f"B{i:03d}", t) for i in range(40)]
        await bus.publish_many((subjects.intent("xarb"), it) for it in backlog)
        paper = await stack.start("paper")
        assert await wait_idle(bus, PAPER, timeout_s=30)
        live = paper.runs[run.run_id]
        assert paper.hot_decided == 0 and live.snap.decisions == len(backlog)  # all from JetStream
        after = intent("A0", t)
        await bus.publish(subjects.intent("xarb"), after)
        await until(lambda: live.snap.decisions == len(backlog) + 1)
        assert paper.hot_decided == 1  # in sync again: the next intent took the hot path
        views = (await svc(bus, "active", UserQuery(user_id="u1"))).runs
        assert views[0].decision_count == len(backlog) + 1
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        got = await decisions_of(stack, run.run_id)
        assert got == sorted((it.id, 1) for it in [*backlog, after])
    finally:
        await stack.close()


async def test_an_undecodable_core_copy_is_left_to_jetstream(settings: Settings) -> None:
    """A message on the intent subjects that is not an Intent: the hot path passes it, the consumer
    dead-letters it, and the intents around it are decided once each."""
    stack, paper, bus, run, t = await started(settings)
    try:
        await bus.publish(subjects.intent("xarb"), intent("U0", t))
        await bus.js.publish(subjects.intent("xarb"), b"\x93not an intent")
        await bus.publish(subjects.intent("xarb"), intent("U1", t))
        assert await wait_idle(bus, PAPER, timeout_s=30)
        live = paper.runs[run.run_id]
        await until(lambda: not live.snap.ahead)
        assert live.snap.decisions == 2
        msg = await bus.js.get_last_msg(streams.DLQ.name, subjects.dlq(INTENT_DURABLE))
        letter = codec.decode(msg.data, DeadLetter)
        assert letter.data == b"\x93not an intent" and letter.reason.startswith("decode")
    finally:
        await stack.close()


async def test_a_dropped_hot_path_connection_loses_nothing_and_the_hot_path_comes_back(settings: Settings) -> None:
    """The hot path's own connection drops: intents published meanwhile come by JetStream only (the
    hot path is off until the consumer is in sync again), each decided once; then it reconnects and
    decides again."""
    stack, paper, bus, run, t = await started(settings)
    try:
        live = paper.runs[run.run_id]
        await bus.publish(subjects.intent("xarb"), intent("D0", t))
        await until(lambda: paper.hot_decided == 1)
        feed = paper._hot_feed
        feed._transport.abort()
        await until(lambda: not paper._hot_on)  # off: D1 must not be overtaken by a later intent
        await bus.publish(subjects.intent("xarb"), intent("D1", t))
        await until(lambda: live.snap.decisions == 2)
        await until(lambda: feed.connects == 2, timeout_s=10)
        assert await wait_idle(bus, PAPER, timeout_s=30)
        before = paper.hot_decided
        await bus.publish(subjects.intent("xarb"), intent("D2", t))
        await until(lambda: live.snap.decisions == 3)
        assert paper.hot_decided == before + 1  # back on the hot path
        await until(lambda: not live.snap.ahead)
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        assert await decisions_of(stack, run.run_id) == [("D0", 1), ("D1", 1), ("D2", 1)]
    finally:
        await stack.close()


async def test_without_its_own_connection_the_hot_path_rides_the_services_nats_py_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server the feed cannot speak to (TLS): the hot path subscribes through nats-py and still
    decides intents as they are published."""

    async def refuse(self: Any) -> Any:
        raise paper_service.CoreFeedUnsupported("the server requires TLS (test)")

    monkeypatch.setattr(paper_service.CoreFeed, "start", refuse)
    stack, paper, bus, run, t = await started(settings)
    try:
        assert paper._hot_feed is None
        live = paper.runs[run.run_id]
        for i in range(3):
            await bus.publish(subjects.intent("xarb"), intent(f"N{i}", t))
        await until(lambda: live.snap.decisions == 3)
        assert paper.hot_decided == 3
        await until(lambda: not live.snap.ahead)
        assert live.snap.intent_seq == 3 and live.snap.decisions == 3
    finally:
        await stack.close()


class _Node:
    other: Any = None


async def test_automatic_gc_is_off_while_paper_runs_and_its_timer_collects_cycles(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Automatic collection stalled the hot path 25 times a second: paper turns it off and collects on
    a timer instead, so cyclic garbage is still freed; stopping turns it back on."""
    monkeypatch.setattr(paper_service, "GC_EVERY_S", 0.2)
    assert gc.isenabled()
    stack, _paper, _bus, _run, _t = await started(settings)
    try:
        assert not gc.isenabled()
        freed: list[bool] = []
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        weakref.finalize(a, freed.append, True)
        del a, b
        await until(lambda: freed, timeout_s=5)
    finally:
        await stack.close()
    assert gc.isenabled()
