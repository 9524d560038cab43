"""The demo pipeline end to end on the Fed replay and the synthetic market: the report adds up."""

from __future__ import annotations

import json

import msgspec

from libs.config import Settings
from libs.store import open_store
from services.demo import run_demo
from tests.conftest import needs_data


async def test_demo_pipeline_report_is_consistent(settings: Settings) -> None:
    needs_data("prediction_markets", "fed_dec2025_nochange_poly_vs_kalshi")
    settings = msgspec.structs.replace(settings, nats_url=None)  # the demo embeds its own nats-server
    report = await run_demo(settings, synthetic_s=3.0, replay_speed=None)

    # the Fed replay alone: 1006 rows per venue, every one stored
    assert report.rows["book_tops"] >= 2 * 1006
    assert report.opportunities > 0, "the Fed data crosses by 1-3c: detect must see opportunities"
    assert report.intents > 0
    # the built-in default run and the demo user's three runs (started over the HTTP API), all stopped
    assert sorted(r.label for r in report.runs) == ["default", "small", "strict", "wide"]
    assert {r.state for r in report.runs} == {"stopped"}
    assert {r.stop_reason for r in report.runs} == {"requested"}  # the demo stops them (not a duration or a disable)
    users = {r.label: r.user_id for r in report.runs}
    assert users["default"] == "default" and len({users["wide"], users["strict"], users["small"]} - {"default"}) == 1
    by_label = {r.label: r for r in report.runs}
    assert by_label["wide"].trades > 0 and by_label["default"].trades > 0
    assert by_label["strict"].trades > 0, "the Fed market's edge reaches 1.5c (up to about 2.1c)"
    assert by_label["small"].decisions_by_reason.get("balance", 0) > 0, "$25 cannot pay for most intents"

    store = open_store(settings)
    try:
        opened = store.query_df(
            "SELECT uniqExactIf(opportunity_id, status = 'opened') FROM {db}.opportunities FINAL"
        ).item()
        for run in report.runs:
            assert run.taken == run.trades
            assert run.decisions == sum(run.decisions_by_reason.values())
            sources = dict(
                store.query_df(
                    "SELECT decision_source, count() FROM {db}.decisions FINAL WHERE run_id = {r:String} "
                    "GROUP BY decision_source",
                    {"r": run.run_id},
                ).rows()
            )
            # every run watches everything from before the first book: one decision per intent and per span start
            assert sources == {"intent": report.intents, "success_span": opened}, run.label
        # every trade belongs to a taken intent decision of the same run and intent
        orphans = store.query_df(
            "SELECT count() FROM {db}.paper_trades AS t FINAL LEFT ANY JOIN "
            "(SELECT id, taken, intent_id, run_id FROM {db}.decisions FINAL) AS d ON t.decision_id = d.id "
            "WHERE d.taken != 1 OR d.intent_id != t.intent_id OR d.run_id != t.run_id"
        ).item()
        assert orphans == 0
        # every intent has exactly one decision per run (none without, none with two)
        per_intent = store.query_df(
            "SELECT i.id AS intent_id, countIf(d.id != '') AS n FROM {db}.intents AS i FINAL "
            "LEFT JOIN (SELECT id, intent_id FROM {db}.decisions FINAL WHERE decision_source = 'intent') AS d "
            "ON d.intent_id = i.id GROUP BY i.id"
        )
        assert per_intent["n"].to_list() == [len(report.runs)] * report.intents
        # `strict` (1.5c) took only intents at or above its minimum, each a better intent detect sent
        # for an opening whose earlier, smaller ones it had passed (`wide` took those first ones)
        strict = by_label["strict"].run_id
        strict_taken = store.query_df(
            "SELECT opportunity_id, net_edge_per_contract_micros FROM {db}.decisions FINAL "
            "WHERE run_id = {r:String} AND taken",
            {"r": strict},
        )
        assert strict_taken["net_edge_per_contract_micros"].min() >= 15_000
        passed_first = store.query_df(
            "SELECT count() FROM {db}.decisions FINAL WHERE run_id = {r:String} AND reason = 'min_net_edge' "
            "AND decision_source = 'intent' AND opportunity_id IN {ids:Array(String)}",
            {"r": strict, "ids": strict_taken["opportunity_id"].to_list()},
        ).item()
        assert passed_first > 0
        trades = store.query_df("SELECT * FROM {db}.paper_trades FINAL")
        for t in trades.iter_rows(named=True):
            legs = json.loads(t["legs_json"])
            assert sum(leg["cost_micros"] for leg in legs) == t["cost_micros"]
            assert sum(leg["fee_micros"] for leg in legs) == t["fee_micros"]
            # legs fill in turn: the second gets at most what the first got; the hedged pairs are the least
            assert legs[1]["matched_size"] <= legs[0]["matched_size"] <= t["requested_size"]
            assert t["matched_size"] == legs[1]["matched_size"] > 0
            assert t["unhedged_size"] == legs[0]["matched_size"] - legs[1]["matched_size"]
            assert t["broken"] == (t["unhedged_size"] > 0)
            assert t["payout_micros"] == t["matched_size"] * 1_000_000
            assert t["pnl_micros"] == t["payout_micros"] - t["cost_micros"] - t["fee_micros"]
        for run in report.runs:
            mine = trades.filter(trades["run_id"] == run.run_id)
            assert abs(run.pnl_usd - int(mine["pnl_micros"].sum()) / 1e6) < 1e-6
            # the cash ledger: the start, one fill per trade (its cost and fees), one payout per settled trade
            ledger = store.query_df(
                "SELECT kind, trade_id, amount_micros FROM {db}.paper_balance_changes FINAL WHERE run_id = {r:String}",
                {"r": run.run_id},
            )
            fills = {r["trade_id"]: -r["amount_micros"] for r in ledger.iter_rows(named=True) if r["kind"] == "fill"}
            settles = {r["trade_id"]: r["amount_micros"] for r in ledger.iter_rows(named=True) if r["kind"] == "settle"}
            cost = {t["id"]: t["cost_micros"] + t["fee_micros"] for t in mine.iter_rows(named=True)}
            payout = {t["id"]: t["payout_micros"] for t in mine.iter_rows(named=True)}
            assert fills == cost
            assert set(settles) <= set(payout) and all(settles[k] == payout[k] for k in settles)
            starting = round(run.starting_usd * 1e6)
            expected = starting - sum(cost.values()) + sum(settles.values())
            assert round(run.balance_usd * 1e6) == expected, run.label
    finally:
        store.close()
