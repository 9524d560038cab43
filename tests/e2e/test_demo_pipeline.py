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
    assert len(report.runs) == 1
    run = report.runs[0]
    assert run.state == "stopped"
    assert run.decisions == report.intents, "every intent has exactly one decision"
    assert run.taken == run.trades and run.trades > 0
    assert run.decisions == sum(run.decisions_by_reason.values())

    store = open_store(settings)
    try:
        # every trade belongs to a taken decision of the same run and intent
        orphans = store.query_df(
            "SELECT count() FROM {db}.paper_trades AS t FINAL LEFT ANY JOIN "
            "(SELECT id, taken, intent_id, run_id FROM {db}.decisions FINAL) AS d ON t.decision_id = d.id "
            "WHERE d.taken != 1 OR d.intent_id != t.intent_id OR d.run_id != t.run_id"
        ).item()
        assert orphans == 0
        # every intent has exactly one decision (no intent without, none with two)
        per_intent = store.query_df(
            "SELECT i.id AS intent_id, countIf(d.id != '') AS n FROM {db}.intents AS i FINAL "
            "LEFT JOIN (SELECT id, intent_id FROM {db}.decisions FINAL) AS d ON d.intent_id = i.id GROUP BY i.id"
        )
        assert per_intent["n"].to_list() == [1] * report.intents
        # P&L is the sum over trades, and each trade's legs add up to the trade
        trades = store.query_df("SELECT * FROM {db}.paper_trades FINAL")
        pnl_micros = int(trades["pnl_micros"].sum())
        assert abs(run.pnl_usd - pnl_micros / 1e6) < 1e-6
        for t in trades.iter_rows(named=True):
            legs = json.loads(t["legs_json"])
            assert sum(leg["cost_micros"] for leg in legs) == t["cost_micros"]
            assert sum(leg["fee_micros"] for leg in legs) == t["fee_micros"]
            assert all(leg["matched_size"] == t["matched_size"] for leg in legs), "equal contracts on both legs"
            assert t["payout_micros"] == t["matched_size"] * 1_000_000
            assert t["pnl_micros"] == t["payout_micros"] - t["cost_micros"] - t["fee_micros"]
            assert 0 < t["matched_size"] <= t["requested_size"]
        # the run's balance moved by exactly what the trades cost
        spent = int(trades["cost_micros"].sum() + trades["fee_micros"].sum())
        assert abs((run.starting_usd - run.balance_usd) - spent / 1e6) < 1e-6
    finally:
        store.close()
