"""paper on a real nats-server and chDB: the svc.paper API, intents and span starts into decisions,
trades and balance changes in ClickHouse (checked against fills and fees worked out by hand), run
ends, settlement, and the live dashboard events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from libs.bus import Bus
from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from proto import codec, streams, subjects
from proto.events import BookBatch, Intent
from proto.paper import CHECK_BIT, CHECKS, PaperReply, StartRequest, StartRun, StopRun, UserQuery
from services.demo import RECORDERS
from services.paper.service import INTENT_DURABLE, OPP_DURABLE
from services.runtime import Stack
from tests import factories
from tests.unit.test_paper_engine import NO_ASKS, POLY_ASKS, cost, kalshi_fee, take

S = 1_000_000_000
PAPER = [(streams.INTENT.name, INTENT_DURABLE), (streams.OPP.name, OPP_DURABLE)]


def book(venue: str, ts: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> BookBatch:
    lv = max(len(bids), len(asks))

    def col(levels: list[tuple[int, int]], i: int) -> list[int]:
        return [x[i] for x in levels] + [0] * (lv - len(levels))

    return BookBatch(
        id=f"{venue}-{ts}", ts=ts, venue=venue, source="test", levels=lv, instruments=["FED"], inst_idx=[0],
        book_ts=[ts], bid_px=col(bids, 0), bid_sz=col(bids, 1), ask_px=col(asks, 0), ask_sz=col(asks, 1),
    )  # fmt: skip


def intent(id: str, book_ts: int, size: int = 150, edge: int = 40_000, key: str = "k", **kw: Any) -> Intent:
    it = factories.hedged_intent(
        id, "FED", yes_limit=4_100, no_limit=5_600, size=size, edge_per_contract=edge, book_ts=book_ts, ts=now_ns()
    )
    return factories._with(it, {"opportunity_key": key, "opportunity_id": f"opp-{id}", **kw})


def start_req(user: str = "u1", **request: Any) -> StartRun:
    return StartRun(
        user_id=user,
        request=msgspec.convert({"starting_usd": 1_000.0} | request, StartRequest),
        min_net_edge_micros=5_000,
        max_leg_micros=1_000_000_000,
        daily_cap_micros=5_000_000_000,
    )


async def svc(bus: Bus, verb: str, req: Any) -> PaperReply:
    msg = await bus.nc.request(f"svc.paper.{verb}", req if isinstance(req, bytes) else codec.encode(req), timeout=10)
    return codec.decode(msg.data, PaperReply)


async def until(cond: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    s = msgspec.structs.replace(settings, paper_default_run=False, paper_settlement_delay_s=0.5)
    st = await Stack.open(s)
    try:
        await st.start("recorder")
        await st.start("paper")
        yield st
    finally:
        await st.close()


async def publish_books(bus: Bus, t: int) -> None:
    await bus.publish(subjects.book("polymarket", "FED"), book("polymarket", t, [(3_900, 500)], POLY_ASKS))
    await bus.publish(subjects.book("kalshi", "FED"), book("kalshi", t, [(4_500, 60), (4_400, 500)], [(4_700, 500)]))


async def test_the_run_api_limits_stops_and_refusals(stack: Stack) -> None:
    bus = await stack.connect("test")
    ids = []
    for i in range(5):
        r = await svc(bus, "start", start_req(label=f"run {i}"))
        assert r.status == 201 and r.runs[0].status == "running" and r.runs[0].label == f"run {i}"
        ids.append(r.runs[0].run_id)
    sixth = await svc(bus, "start", start_req())
    assert (sixth.status, sixth.detail) == (409, "user u1 already has 5 active runs (the limit): stop one first")
    assert (await svc(bus, "start", start_req("u2"))).status == 201  # another user's limit is their own
    active = await svc(bus, "active", UserQuery(user_id="u1"))
    assert active.status == 200 and [r.run_id for r in active.runs] == ids

    by_id = await svc(bus, "stop", StopRun(user_id="u1", run_id=ids[1]))
    assert by_id.status == 200 and by_id.runs[0].status == "stopped" and by_id.runs[0].stop_reason == "requested"
    current = await svc(bus, "stop", StopRun(user_id="u1"))  # the most recently started active run
    assert current.status == 200 and current.runs[0].run_id == ids[4]
    again = await svc(bus, "stop", StopRun(user_id="u1", run_id=ids[1]))
    assert (again.status, again.detail) == (409, f"run '{ids[1]}' is already stopped (requested)")
    other = await svc(bus, "stop", StopRun(user_id="u2", run_id=ids[0]))
    assert (other.status, other.detail) == (404, f"run '{ids[0]}' not found for user u2")
    unknown = await svc(bus, "stop", StopRun(user_id="u1", run_id="nope"))
    assert (unknown.status, unknown.detail) == (404, "run 'nope' not found for user u1")
    assert (await svc(bus, "start", start_req())).status == 201  # a slot is free again
    assert [r.run_id for r in (await svc(bus, "active", UserQuery(user_id="u1"))).runs][:3] == [ids[0], ids[2], ids[3]]
    for rid in [ids[0], ids[2], ids[3]]:
        await svc(bus, "stop", StopRun(user_id="u1", run_id=rid))
    await svc(bus, "stop", StopRun(user_id="u1"))
    nothing = await svc(bus, "stop", StopRun(user_id="u1"))
    assert (nothing.status, nothing.detail) == (404, "user u1 has no active run")

    bad = await svc(bus, "start", start_req(starting_usd=-5.0))
    assert (bad.status, bad.detail) == (422, "starting_usd=-5.0 must be a positive, finite amount of USD")
    long = await svc(bus, "start", start_req(duration_minutes=10_081))
    assert long.status == 422 and "duration_minutes=10081 exceeds the maximum of 10080 minutes" in long.detail
    garbage = await svc(bus, "start", b"\x93\x01")
    assert garbage.status == 400 and "bad svc.paper.start request" in garbage.detail
    missing = await svc(bus, "start", codec.encode({"user_id": "u1"}))
    assert missing.status == 400 and "missing required field `request`" in missing.detail
    assert (await svc(bus, "pause", UserQuery(user_id="u1"))).status == 404

    assert await wait_idle(bus, RECORDERS, timeout_s=30)
    rows = stack.store.query_df("SELECT state, count() AS n FROM {db}.paper_runs FINAL GROUP BY state ORDER BY state")
    assert rows.rows() == [("running", 1), ("stopped", 6)]  # u2's run, and u1's six


async def test_intents_become_decisions_trades_and_balance_changes_in_clickhouse(stack: Stack) -> None:
    bus = await stack.connect("test")
    got: dict[str, list[dict]] = {"trade": [], "run": []}

    async def on_ui(msg: Any) -> None:
        got[msg.subject.rsplit(".", 1)[-1]].append(json.loads(msg.data))

    await bus.nc.subscribe("ui.simulator.u1.>", cb=on_ui)
    run_a = (await svc(bus, "start", start_req(label="all"))).runs[0]
    run_b = (await svc(bus, "start", start_req(opportunity_keys=["other"], label="keyed"))).runs[0]
    t = now_ns() - 10 * S
    await publish_books(bus, t)
    # taken, below the minimum edge, another key, taken again
    for it in [intent("I1", t), intent("I2", t, edge=4_000), intent("I3", t, key="other"), intent("I4", t)]:
        await bus.publish(subjects.intent("xarb"), it)
    assert await wait_idle(bus, PAPER, timeout_s=30)
    leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    spend = cost(leg0) + cost(leg1) + 0 + kalshi_fee(leg1)  # Polymarket's default rate is 0
    pnl = 150_000_000 - spend
    await until(lambda: len(got["trade"]) >= 4)
    await until(lambda: _settled(bus, run_a.run_id), timeout_s=20)  # every pending trade credited after 0.5 s
    assert await wait_idle(bus, RECORDERS, timeout_s=30)
    st = stack.store
    d = st.query_df(
        "SELECT run_id, intent_id, reason, taken, checks_run, checks_passed, detail, size, trade_id "
        "FROM {db}.decisions FINAL ORDER BY run_id, intent_id"
    )
    by_run = {(r[0], r[1]): r for r in d.rows()}
    a, b = run_a.run_id, run_b.run_id
    assert sorted(k for k in by_run if k[0] == a) == [(a, "I1"), (a, "I2"), (a, "I3"), (a, "I4")]
    assert sorted(k for k in by_run if k[0] == b) == [(b, "I3")]  # run B watches only key "other"
    assert [by_run[(a, i)][2] for i in ("I1", "I2", "I3", "I4")] == ["taken", "min_net_edge", "taken", "taken"]
    assert by_run[(a, "I2")][6] == "net edge 0.40c/contract < minimum 0.50c"
    assert by_run[(a, "I2")][4] == CHECK_BIT["has_orders"] | CHECK_BIT["hedged_pair"] | CHECK_BIT["min_net_edge"]
    assert by_run[(a, "I1")][5] == sum(CHECK_BIT.values()) and by_run[(a, "I1")][8] == f"{a}:I1:T"
    assert len(CHECKS) == 12
    trades = st.query_df(
        "SELECT id, run_id, matched_size, cost_micros, fee_micros, payout_micros, pnl_micros, user_id "
        "FROM {db}.paper_trades FINAL ORDER BY id"
    ).rows()
    assert len(trades) == 4  # 3 for A, 1 for B
    for tr in trades:
        assert tr[2:] == (150, cost(leg0) + cost(leg1), kalshi_fee(leg1), 150_000_000, pnl, "u1")
    changes = st.query_df(
        "SELECT kind, amount_micros, balance_micros, pnl_micros FROM {db}.paper_balance_changes FINAL "
        f"WHERE run_id = '{a}' ORDER BY ts, kind"
    ).rows()
    kinds = sorted(c[0] for c in changes)
    assert kinds == ["fill"] * 3 + ["settle"] * 3 + ["start"]
    assert [c[1] for c in changes if c[0] == "fill"] == [-spend] * 3
    assert [c[1] for c in changes if c[0] == "settle"] == [150_000_000] * 3
    final = st.query_df(
        f"SELECT balance_micros, pnl_micros, trades, decisions, unsettled_micros FROM {{db}}.paper_runs FINAL "
        f"WHERE run_id = '{a}'"
    ).row(0)
    assert final == (1_000_000_000 + 3 * pnl, 3 * pnl, 3, 4, 0)
    # the dashboard got each trade and the run's views
    assert {e["data"]["trade_id"] for e in got["trade"]} >= {f"{a}:I1:T", f"{a}:I3:T", f"{a}:I4:T"}
    assert all(e["event"] == "simulator:trade" for e in got["trade"])
    assert got["run"] and got["run"][-1]["event"] == "simulator:run"
    assert {e["data"]["run_id"] for e in got["run"]} == {a, b}


async def _settled(bus: Bus, run_id: str) -> bool:
    r = await svc(bus, "active", UserQuery(user_id="u1"))
    view = next((v for v in r.runs if v.run_id == run_id), None)
    return view is not None and view.trade_count == 3 and view.unsettled_usd == 0


async def test_success_span_starts_are_decided_and_a_run_ends_at_its_duration(stack: Stack) -> None:
    bus = await stack.connect("test")
    short = (await svc(bus, "start", start_req(duration_minutes=0.02))).runs[0]  # 1.2 s
    long = (await svc(bus, "start", start_req())).runs[0]
    t = now_ns() - 10 * S
    await publish_books(bus, t)
    legs = intent("x", t).legs
    opp = factories.opportunity("E1", opportunity_id="SPAN-1", opportunity_key="k", strategy="xarb", legs=legs,
                                size=150, net_edge_per_contract_micros=40_000, book_ts=t, ts=now_ns())  # fmt: skip
    await bus.publish(subjects.opp("xarb"), opp)
    await bus.publish(subjects.opp("xarb"), factories._with(opp, {"id": "E2", "status": "updated"}))
    assert await wait_idle(bus, PAPER, timeout_s=30)
    # the short run completes on its own (timer), then ignores what comes after
    ended = await until(lambda: _state(bus, short.run_id), timeout_s=20)
    assert ended == ("completed", "duration")
    await bus.publish(subjects.intent("xarb"), intent("LATE", t))
    assert await wait_idle(bus, PAPER, timeout_s=30)
    assert await wait_idle(bus, RECORDERS, timeout_s=30)
    st = stack.store
    spans = st.query_df(
        "SELECT run_id, id, decision_source, taken, reason FROM {db}.decisions FINAL "
        "WHERE decision_source = 'success_span' ORDER BY run_id"
    ).rows()
    assert sorted(spans) == sorted(
        [(r, f"{r}:span:SPAN-1", "success_span", False, "eligible") for r in (short.run_id, long.run_id)]
    )
    late = st.query_df("SELECT run_id FROM {db}.decisions FINAL WHERE intent_id = 'LATE'").rows()
    assert late == [(long.run_id,)]
    run = st.query_df(
        f"SELECT state, stop_reason, stopped_at = ends_at FROM {{db}}.paper_runs FINAL WHERE run_id = '{short.run_id}'"
    ).row(0)
    assert run == ("completed", "duration", True)


async def _state(bus: Bus, run_id: str) -> tuple[str, str] | None:
    r = await svc(bus, "active", UserQuery(user_id="u1"))
    if any(v.run_id == run_id for v in r.runs):
        return None
    stop = await svc(bus, "stop", StopRun(user_id="u1", run_id=run_id))
    return ("completed", "duration") if stop.detail == f"run '{run_id}' is already completed (duration)" else None


async def test_the_default_run_is_started_for_the_demo(settings: Settings) -> None:
    st = await Stack.open(msgspec.structs.replace(settings, paper_starting_usd=2_500.0))
    try:
        await st.start("paper")
        bus = await st.connect("test")
        (run,) = (await svc(bus, "active", UserQuery(user_id="default"))).runs
        assert (run.label, run.starting_usd, run.max_leg_usd) == ("default", 2_500.0, settings.paper_max_leg_usd)
        await st.stop_service("paper")
        await st.start("paper")  # still running after a restart: not started twice
        assert len((await svc(bus, "active", UserQuery(user_id="default"))).runs) == 1
    finally:
        await st.close()


async def test_a_run_without_duration_completes_at_the_7_day_cap(stack: Stack) -> None:
    bus = await stack.connect("test")
    forever = (await svc(bus, "start", start_req())).runs[0]
    week = (await svc(bus, "start", start_req(duration_minutes=7 * 24 * 60))).runs[0]
    paper = stack.running["paper"]
    started = paper.runs[forever.run_id].config.started_at  # type: ignore[attr-defined]
    cap = 7 * 24 * 3600 * S
    assert await paper.complete_due(started + cap - 1) == []  # type: ignore[attr-defined]
    done = await paper.complete_due(paper.runs[week.run_id].config.ends_at + 1)  # type: ignore[attr-defined]
    assert sorted(done) == sorted([forever.run_id, week.run_id])
    assert await wait_idle(bus, RECORDERS, timeout_s=30)
    rows = stack.store.query_df(
        "SELECT run_id, state, stop_reason, stopped_at = ends_at FROM {db}.paper_runs FINAL"
    ).rows()
    got = {r[0]: r[1:] for r in rows}
    assert got[forever.run_id] == ("completed", "max_duration", True)
    assert got[week.run_id] == ("completed", "duration", True)
    assert (await svc(bus, "active", UserQuery(user_id="u1"))).runs == []
