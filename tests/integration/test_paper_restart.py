"""A paper-service restart mid-run loses nothing and double-counts nothing: intents published while it
is down are decided once per run when it is back, pending settlements are credited exactly once, and
the balances equal what the fills (worked out by hand) say."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.js.errors import NotFoundError

from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from proto import codec, streams, subjects
from proto.paper import RunUpdate, StopRun, UserQuery
from services.demo import RECORDERS
from services.paper.intake import LAST_UPDATES_REJECTED
from services.paper.service import INTENT_DURABLE
from services.runtime import Stack
from tests.integration.test_paper import PAPER, intent, publish_books, start_req, svc, until
from tests.unit.test_paper_engine import NO_ASKS, POLY_ASKS, cost, kalshi_fee, take

S = 1_000_000_000


async def assert_each_decided_once(stack: Stack, bus: Any, runs: list[Any], intents: list[Any]) -> None:
    """Every run (user u1, $10,000) decided every intent exactly once, took those at or above the
    0.5c minimum (150 contracts at the test books each, P&L worked out by hand), and its stored
    balance, decision and trade counts say so once everything has settled."""
    taken_n = sum(1 for it in intents if it.net_edge_per_contract_micros >= 5_000)
    leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
    pnl = 150_000_000 - (cost(leg0) + cost(leg1) + kalshi_fee(leg1))

    async def settled() -> bool:
        views = (await svc(bus, "active", UserQuery(user_id="u1"))).runs
        return len(views) == len(runs) and all(v.trade_count == taken_n and v.unsettled_usd == 0 for v in views)

    await until(settled, timeout_s=30)
    assert await wait_idle(bus, RECORDERS, timeout_s=60)
    st = stack.store
    want = sorted(it.id for it in intents)
    for run in runs:
        where = f"WHERE run_id = '{run.run_id}'"
        got = st.query_df(f"SELECT intent_id, count() FROM {{db}}.decisions {where} GROUP BY 1 ORDER BY 1").rows()
        assert [g[0] for g in got] == want  # every intent decided by every run ...
        assert all(g[1] == 1 for g in got)  # ... exactly once
        last = st.query_df(f"SELECT balance_micros, decisions, trades FROM {{db}}.paper_runs FINAL {where}").row(0)
        assert last == (10_000_000_000 + taken_n * pnl, len(intents), taken_n)


async def test_restart_mid_run_decides_every_intent_once_and_settles_once(settings: Settings) -> None:
    s = msgspec.structs.replace(settings, paper_default_run=False, paper_settlement_delay_s=3.0)
    stack = await Stack.open(s)
    try:
        await stack.start("recorder")
        await stack.start("paper")
        bus = await stack.connect("test")
        runs = [(await svc(bus, "start", start_req(label=f"r{i}", starting_usd=10_000.0))).runs[0] for i in range(3)]
        stopped = (await svc(bus, "start", start_req(label="stopped early"))).runs[0]
        t = now_ns() - 10 * S
        await publish_books(bus, t)
        before = [intent(f"A{i}", t, edge=40_000 if i % 3 else 4_000) for i in range(6)]  # 2 of 6 below the minimum
        for it in before:
            await bus.publish(subjects.intent("xarb"), it)
        assert await wait_idle(bus, PAPER, timeout_s=30)
        pending = (await svc(bus, "active", UserQuery(user_id="u1"))).runs
        assert all(v.unsettled_usd > 0 for v in pending)  # trades awaiting settlement when the service stops
        assert (await svc(bus, "stop", StopRun(user_id="u1", run_id=stopped.run_id))).status == 200

        # the service goes away with trades pending settlement; intents keep coming
        await stack.stop_service("paper")
        during = [intent(f"B{i}", t, edge=40_000 if i % 3 else 4_000) for i in range(9)]
        for it in during:
            await bus.publish(subjects.intent("xarb"), it)
        # the same intent again: a retried publish (deduplicated by JetStream), and one published anew
        await bus.publish(subjects.intent("xarb"), during[0])
        await bus.publish(subjects.intent("xarb"), during[1], dedup=False)
        await stack.start("paper")
        assert await wait_idle(bus, PAPER, timeout_s=30)
        intents = before + during
        taken_n = sum(1 for it in intents if it.net_edge_per_contract_micros >= 5_000)
        leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
        spend = cost(leg0) + cost(leg1) + kalshi_fee(leg1)
        pnl = 150_000_000 - spend

        async def all_settled() -> bool:
            views = (await svc(bus, "active", UserQuery(user_id="u1"))).runs
            return len(views) == 3 and all(v.trade_count == taken_n and v.unsettled_usd == 0 for v in views)

        await until(all_settled, timeout_s=30)
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        st = stack.store
        for run in runs:
            rid = run.run_id
            where = f"WHERE run_id = '{rid}'"
            decided = st.query_df(f"SELECT intent_id, reason FROM {{db}}.decisions FINAL {where} ORDER BY intent_id")
            assert sorted(r[0] for r in decided.rows()) == sorted(it.id for it in intents)
            for table in ("decisions", "paper_trades", "paper_balance_changes"):
                raw = st.query_df(f"SELECT count() FROM {{db}}.{table} {where}").item()
                final = st.query_df(f"SELECT count() FROM {{db}}.{table} FINAL {where}").item()
                assert raw == final, f"{table}: {raw} rows, {final} distinct"
            assert st.query_df(f"SELECT count() FROM {{db}}.paper_trades FINAL {where}").item() == taken_n
            kinds = st.query_df(
                f"SELECT kind, count() AS n, sum(amount_micros) AS amount FROM {{db}}.paper_balance_changes FINAL "
                f"{where} GROUP BY kind ORDER BY kind"
            ).rows()
            assert kinds == [
                ("fill", taken_n, -taken_n * spend),
                ("settle", taken_n, taken_n * 150_000_000),
                ("start", 1, 10_000_000_000),
            ]
            last = st.query_df(
                f"SELECT balance_micros, pnl_micros, decisions, trades, state FROM {{db}}.paper_runs FINAL {where}"
            ).row(0)
            assert last == (10_000_000_000 + taken_n * pnl, taken_n * pnl, len(intents), taken_n, "running")
        # the run stopped before the restart decided nothing after its stop, and stayed stopped
        late = st.query_df(
            f"SELECT count() FROM {{db}}.decisions FINAL WHERE run_id = '{stopped.run_id}' AND intent_id LIKE 'B%'"
        ).item()
        assert late == 0
        assert (
            st.query_df(f"SELECT state FROM {{db}}.paper_runs FINAL WHERE run_id = '{stopped.run_id}'").item()
            == "stopped"
        )
        # settled, the stopped run leaves memory, and not before: its trades are all credited
        paper: Any = stack.running["paper"]
        await until(lambda: stopped.run_id not in paper.runs, timeout_s=10)
        assert paper.retired[stopped.run_id] == ("u1", "stopped", "requested")
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        where = f"WHERE run_id = '{stopped.run_id}'"
        early_trades = st.query_df(f"SELECT count() FROM {{db}}.paper_trades FINAL {where}").item()
        settles = st.query_df(f"SELECT count() FROM {{db}}.paper_balance_changes FINAL {where} AND kind = 'settle'")
        assert early_trades > 0 and settles.item() == early_trades
        # a stop naming it is still told it is stopped (its owner) or not found (anyone else) ...
        again = await svc(bus, "stop", StopRun(user_id="u1", run_id=stopped.run_id))
        assert (again.status, again.detail) == (409, f"run '{stopped.run_id}' is already stopped (requested)")
        other = await svc(bus, "stop", StopRun(user_id="u2", run_id=stopped.run_id))
        assert (other.status, other.detail) == (404, f"run '{stopped.run_id}' not found for user u2")
        # ... and a restart does not load it again, while the running runs resume
        await stack.stop_service("paper")
        paper = await stack.start("paper")
        assert stopped.run_id not in paper.runs and paper.retired[stopped.run_id] == ("u1", "stopped", "requested")
        assert {r.run_id for r in runs} <= set(paper.runs)
        again = await svc(bus, "stop", StopRun(user_id="u1", run_id=stopped.run_id))
        assert again.status == 409
    finally:
        await stack.close()


async def test_steps_wait_for_a_lost_stream_and_are_stored_once_when_it_is_back(settings: Settings) -> None:
    """The PAPER stream is deleted under a running service: decisions cannot be stored, so the intents
    stay unacked and the steps are retried; once the stream exists again everything is stored, once."""
    s = msgspec.structs.replace(settings, paper_default_run=False, paper_settlement_delay_s=0.2)
    stack = await Stack.open(s)
    try:
        await stack.start("paper")
        bus = await stack.connect("test")
        run = (await svc(bus, "start", start_req(starting_usd=10_000.0))).runs[0]
        t = now_ns() - 10 * S
        await publish_books(bus, t)
        await bus.js.delete_stream(streams.PAPER.name)
        for i in range(4):
            await bus.publish(subjects.intent("xarb"), intent(f"L{i}", t))
        paper = stack.running["paper"]
        await until(lambda: paper.committer.retries >= 2, timeout_s=20)  # type: ignore[attr-defined]
        info = await bus.js.consumer_info(streams.INTENT.name, INTENT_DURABLE)
        assert info.num_ack_pending == 4  # decided, not stored: not acked
        await bus.ensure_streams([streams.PAPER])
        assert await wait_idle(bus, PAPER, timeout_s=30)
        await until(lambda: not paper.runs[run.run_id].parts, timeout_s=20)  # type: ignore[attr-defined]
        await stack.start("recorder")
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        st = stack.store
        rid = run.run_id
        decided = st.query_df(f"SELECT intent_id, count() FROM {{db}}.decisions WHERE run_id = '{rid}' GROUP BY 1")
        assert sorted(decided.rows()) == [(f"L{i}", 1) for i in range(4)]
        leg0, leg1 = take(POLY_ASKS, 150, 4_100), take(NO_ASKS, 150, 5_600)
        pnl = 150_000_000 - cost(leg0) - cost(leg1) - kalshi_fee(leg1)
        await until(lambda: not paper.runs[rid].snap.pending and not paper.runs[rid].parts)  # type: ignore[attr-defined]
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        last = st.query_df(f"SELECT balance_micros, trades FROM {{db}}.paper_runs FINAL WHERE run_id = '{rid}'").row(0)
        assert last == (10_000_000_000 + 4 * pnl, 4)
    finally:
        await stack.close()


async def test_restart_while_a_backlog_is_in_hand_decides_every_intent_exactly_once(settings: Settings) -> None:
    """The service is stopped while it holds a queue of fetched, undecided intents (a slowed handler);
    more intents arrive while it is down. The next instance must decide the ones the first fetched
    and never stored before moving on (a reused durable would hand out the new ones first, the runs
    would move past the gap, and acking everything up to a batch's last message would lose it). The
    JetStream path alone (MT_PAPER_HOT_PATH off): the hot path would decide the queue at once."""
    s = msgspec.structs.replace(
        settings, paper_default_run=False, paper_settlement_delay_s=0.2, ack_wait_s=3.0, paper_hot_path=False
    )
    stack = await Stack.open(s)
    try:
        await stack.start("recorder")
        paper = await stack.start("paper")
        bus = await stack.connect("test")
        runs = [(await svc(bus, "start", start_req(label=f"r{i}", starting_usd=10_000.0))).runs[0] for i in range(2)]
        t = now_ns() - 10 * S
        await publish_books(bus, t)
        c = paper.consumers[0]  # type: ignore[attr-defined]
        real = c.handler

        async def slow(pairs: list) -> Any:
            await asyncio.sleep(0.05)
            return await real(pairs)

        c.handler, c.batch = slow, 50
        n = 800
        # every 40th intent clears the 0.5 c minimum edge and is taken; the rest are skipped (decided too)
        first = [intent(f"P{i:04d}", t, edge=40_000 if i % 40 == 0 else 1_000) for i in range(n)]
        await bus.publish_many((subjects.intent("xarb"), it) for it in first)
        await until(lambda: paper.decided >= 2 * 200, timeout_s=30)  # type: ignore[attr-defined]
        await stack.stop_service("paper")
        assert paper.decided < 2 * n  # type: ignore[attr-defined]  # stopped with intents still queued
        later = [intent(f"Q{i:03d}", t, edge=40_000 if i % 10 == 0 else 1_000) for i in range(50)]
        await bus.publish_many((subjects.intent("xarb"), it) for it in later)
        await stack.start("paper")
        assert await wait_idle(bus, PAPER, timeout_s=60)
        await assert_each_decided_once(stack, bus, runs, first + later)
    finally:
        await stack.close()


async def test_hot_path_decisions_are_not_repeated_when_jetstream_redelivers_them(settings: Settings) -> None:
    """The hot path decides intents as core NATS delivers them; the service stops before its intent
    consumer has reached their JetStream copies (held back here), so nothing is acked. The next
    instance gets every one of them again from JetStream, plus those published while it was down:
    the runs skip what their stored snapshots list as decided ahead, and decide the rest, once."""
    s = msgspec.structs.replace(settings, paper_default_run=False, paper_settlement_delay_s=0.2)
    stack = await Stack.open(s)
    try:
        await stack.start("recorder")
        paper: Any = await stack.start("paper")
        bus = await stack.connect("test")
        runs = [(await svc(bus, "start", start_req(label=f"r{i}", starting_usd=10_000.0))).runs[0] for i in range(2)]
        t = now_ns() - 10 * S
        await publish_books(bus, t)
        paper.consumers[0].linger = lambda: 3600.0  # JetStream's copies wait: only the hot path decides
        hot = [intent(f"H{i:03d}", t, edge=40_000 if i % 10 == 0 else 1_000) for i in range(60)]
        await bus.publish_many((subjects.intent("xarb"), it) for it in hot)
        await until(lambda: paper.hot_decided >= len(hot), timeout_s=30)
        live = [paper.runs[r.run_id] for r in runs]
        await until(lambda: all(r.stored == r.queued for r in live), timeout_s=30)
        assert all(set(r.snap.ahead) == {it.id for it in hot} for r in live)  # decided, JetStream not reached
        info = await bus.js.consumer_info(streams.INTENT.name, INTENT_DURABLE)
        assert info.ack_floor.stream_seq == 0  # nothing acked: all of them come again
        await stack.stop_service("paper")
        down = [intent(f"D{i:03d}", t, edge=40_000 if i % 5 == 0 else 1_000) for i in range(20)]
        await bus.publish_many((subjects.intent("xarb"), it) for it in down)
        paper = await stack.start("paper")
        assert await wait_idle(bus, PAPER, timeout_s=60)
        await assert_each_decided_once(stack, bus, runs, hot + down)
        assert all(not paper.runs[r.run_id].snap.ahead for r in runs)  # every JetStream copy reached
    finally:
        await stack.close()


async def test_a_quiet_run_resumes_after_paper_discarded_its_last_update(settings: Settings) -> None:
    """PAPER (discard old at its byte limit) is filled by a busy run until the quiet run's only update
    is gone; the quiet run still resumes after a restart, from its PAPERSTATE snapshot. An update that
    does not decode is logged and counted, not silently dropped."""
    s = msgspec.structs.replace(settings, paper_default_run=False, paper_settlement_delay_s=0.2)
    stack = await Stack.open(s)
    try:
        bus = await stack.connect("test")
        cfg = (await bus.js.stream_info(streams.PAPER.name)).config
        cfg.max_bytes = 40_000  # stands in for 4 GiB filled by busy runs (their updates are grouped: 20 ms each)
        await bus.js.update_stream(cfg)
        await stack.start("paper")
        quiet = (await svc(bus, "start", start_req("u1", label="quiet", opportunity_keys=["rare"]))).runs[0]
        busy = (await svc(bus, "start", start_req("u2", label="busy", starting_usd=1e6))).runs[0]
        t = now_ns() - 10 * S
        await publish_books(bus, t)
        skipped = [intent(f"N{i}", t, edge=1) for i in range(400)]  # below the minimum: decided, skipped
        for it in skipped:  # one at a time: an update each for the busy run
            await bus.publish(subjects.intent("xarb"), it)
        assert await wait_idle(bus, PAPER, timeout_s=30)
        with pytest.raises(NotFoundError):  # the quiet run's only update is gone from PAPER
            await bus.js.get_last_msg(streams.PAPER.name, subjects.paper("update", quiet.run_id))
        await bus.js.publish(subjects.paper("update", "garbled"), b"\x93not a run update")
        rejected = LAST_UPDATES_REJECTED.get(streams.PAPER.name, 0)
        await stack.stop_service("paper")
        paper = await stack.start("paper")
        assert LAST_UPDATES_REJECTED.get(streams.PAPER.name, 0) == rejected + 1
        (q,) = (await svc(bus, "active", UserQuery(user_id="u1"))).runs
        assert (q.run_id, q.label, q.status, q.balance_usd) == (quiet.run_id, "quiet", "running", 1_000.0)
        (b,) = (await svc(bus, "active", UserQuery(user_id="u2"))).runs
        assert b.run_id == busy.run_id
        assert paper.runs[busy.run_id].snap.decisions == len(skipped)  # type: ignore[attr-defined]
        # the resumed quiet run goes on deciding what it watches
        await bus.publish(subjects.intent("xarb"), intent("R0", t, key="rare"))
        await until(lambda: paper.runs[quiet.run_id].snap.decisions == 1, timeout_s=20)  # type: ignore[attr-defined]
        assert paper.runs[quiet.run_id].snap.taken == 1  # type: ignore[attr-defined]
    finally:
        await stack.close()


async def test_a_restart_writes_again_a_paperstate_copy_the_last_instance_did_not(settings: Settings) -> None:
    """PAPERSTATE's copy is written at most once a second; a service killed in that second leaves it
    older than PAPER's last update (here: removed). The next instance resumes from PAPER and writes
    the copy again, so the run survives PAPER discarding that update later. A stop is written
    through at once."""
    s = msgspec.structs.replace(settings, paper_default_run=False)
    stack = await Stack.open(s)
    try:
        paper: Any = await stack.start("paper")
        bus = await stack.connect("test")
        run = (await svc(bus, "start", start_req(label="kept"))).runs[0]
        state = f"paperstate.{run.run_id}"
        await until(lambda: not paper.committer._unsaved)
        await bus.js.purge_stream(streams.PAPERSTATE.name, subject=state)  # as if never written
        with pytest.raises(NotFoundError):
            await bus.js.get_last_msg(streams.PAPERSTATE.name, state)
        await stack.stop_service("paper")
        paper = await stack.start("paper")

        async def copied() -> bool:
            try:
                msg = await bus.js.get_last_msg(streams.PAPERSTATE.name, state)
            except NotFoundError:
                return False
            return codec.decode(msg.data, RunUpdate).snapshot.state == "running"

        await until(copied, timeout_s=10)
        assert (await svc(bus, "stop", StopRun(user_id="u1", run_id=run.run_id))).status == 200
        msg = await bus.js.get_last_msg(streams.PAPERSTATE.name, state)  # written through with the stop
        assert codec.decode(msg.data, RunUpdate).snapshot.stop_reason == "requested"
    finally:
        await stack.close()
