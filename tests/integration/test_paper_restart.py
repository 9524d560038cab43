"""A paper-service restart mid-run loses nothing and double-counts nothing: intents published while it
is down are decided once per run when it is back, pending settlements are credited exactly once, and
the balances equal what the fills (worked out by hand) say."""

from __future__ import annotations

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from proto import streams, subjects
from proto.paper import StopRun, UserQuery
from services.demo import RECORDERS
from services.paper.service import INTENT_DURABLE
from services.runtime import Stack
from tests.integration.test_paper import PAPER, intent, publish_books, start_req, svc, until
from tests.unit.test_paper_engine import NO_ASKS, POLY_ASKS, cost, kalshi_fee, take

S = 1_000_000_000


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
