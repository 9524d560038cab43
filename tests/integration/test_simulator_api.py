"""The simulator HTTP API on the real stack: nats-server, chDB, the recorder and the report service over HTTP.

Run steps (`RunUpdate`), intents and opportunities are published on the bus by the test, the
recorder stores them, and the API reads them back: views, user isolation, pagination, filters,
bad parameters and tokens, and the success-span report. Users are made through the admin API.
Expected numbers are worked out by hand from the published events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from libs import config
from libs.bus import Bus
from libs.bus.admin import wait_idle
from libs.bus.server import free_port
from libs.ids import now_ns
from libs.paper.views import CHECK_RUN_ORDER, decision_views, run_view
from proto import codec, streams, subjects
from proto.events import Intent, Leg, LegFill, Opportunity, PaperTrade
from proto.paper import (
    CHECK_BIT,
    BalanceChange,
    DecisionColumns,
    PaperReply,
    RunConfig,
    RunFilters,
    RunSnapshot,
    RunUpdate,
    UserQuery,
)
from services.runtime import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

S = 1_000_000_000
H = 3600 * S
M = 1_000_000  # micro-dollars per dollar
NOW = now_ns()
R = NOW - 10 * H  # the success-span report's window is [R, R + 1 h] (market time)
W = R + 3 * H  # a second window, [W, W + 1 h], for what comes after `to`
ADMIN = "admin-token-for-simulator-tests"
ALL_CHECKS = sum(CHECK_BIT.values())
UP_TO_DAILY_CAP = sum(CHECK_BIT[c] for c in CHECK_RUN_ORDER[: CHECK_RUN_ORDER.index("daily_cap") + 1])


def iso(ns: int) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the published world ------------------------------------------------------------------------


def config_of(run_id: str, user: str, started: int, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "run_id": run_id,
        "user_id": user,
        "label": run_id.lower(),
        "starting_micros": 1_000 * M,
        "min_net_edge_micros": 20_000,
        "max_leg_micros": 100 * M,
        "daily_cap_micros": 500 * M,
        "settlement_delay_ns": 60 * S,
        "started_at": started,
        "ends_at": started + H,
        "duration_minutes": 60.0,
        "keys_present": ["kalshi"],
    }
    return RunConfig(**(base | kw))


def snapshot(version: int, balance: int, **kw: Any) -> RunSnapshot:
    return RunSnapshot(**({"version": version, "state": "running", "balance_micros": balance} | kw))


def decisions(run_id: str, ts: int, rows: list[dict[str, Any]]) -> DecisionColumns:
    """Decision columns from rows; unspecified fields: an intent decision skipped at the daily cap."""
    cols: dict[str, list[Any]] = {f: [] for f in DecisionColumns.__struct_fields__}
    for i, row in enumerate(rows):
        r = {
            "source": "intent",
            "intent_id": "",
            "opportunity_key": "K1",
            "taken": False,
            "reason": "daily_cap",
            "checks_run": UP_TO_DAILY_CAP,
            "checks_passed": UP_TO_DAILY_CAP & ~CHECK_BIT["daily_cap"],
            "detail": "daily cap $500.00 reached",
            "net_edge_per_contract_micros": 30_000,
            "size": 0,
            "trade_id": "",
            "ts": ts + i * 1_000_000,  # a millisecond apart: distinct in the views
            "intent_ts": ts,
            "book_ts": ts,
        } | row
        r.setdefault(
            "id", f"{run_id}:{r['intent_id']}" if r["source"] == "intent" else f"{run_id}:span:{r['opportunity_id']}"
        )
        for f in cols:
            cols[f].append(r[f])
    return DecisionColumns(**cols)


def taken(intent_id: str, opp_id: str, trade_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "opportunity_id": opp_id,
        "taken": True,
        "reason": "taken",
        "checks_run": ALL_CHECKS,
        "checks_passed": ALL_CHECKS,
        "detail": "10 of 10",
        "net_edge_per_contract_micros": 40_000,
        "size": 10,
        "trade_id": trade_id,
    } | kw


def trade(
    trade_id: str, run_id: str, user: str, intent_id: str, executed: int, settle_after: int, **kw: Any
) -> PaperTrade:
    """10 pairs: YES at 0.45 on polymarket, NO at 0.45 on kalshi; $9.00 cost, $0.10 fees, $0.90 P&L."""
    legs = [
        LegFill(
            venue=v, instrument="EVT", outcome=o, side="buy", requested_size=10, matched_size=10,
            cost_micros=4_500_000, fee_micros=50_000, worst_px=4_500, fill_pct=100.0, executed_at=executed,
            book_ts=executed - 50_000_000,
        )
        for v, o in (("polymarket", "yes"), ("kalshi", "no"))
    ]  # fmt: skip
    base: dict[str, Any] = {
        "id": trade_id,
        "ts": executed,
        "run_id": run_id,
        "intent_id": intent_id,
        "decision_id": f"{run_id}:{intent_id}",
        "opportunity_key": "K1",
        "requested_size": 10,
        "matched_size": 10,
        "fill_pct": 100.0,  # a percent, 0-100, as the engine writes it
        "legs": legs,
        "cost_micros": 9_000_000,
        "fee_micros": 100_000,
        "payout_micros": 10_000_000,
        "pnl_micros": 900_000,
        "executed_at": executed,
        "settled_at": executed + settle_after,
        "user_id": user,
        "opportunity_id": "oX",
    }
    return PaperTrade(**(base | kw))


def intent(intent_id: str, opp_id: str, ts: int, key: str = "K1") -> Intent:
    legs = [
        Leg(
            venue="polymarket",
            instrument="EVT",
            outcome="yes",
            size=10,
            limit_px=4_500,
            cost_micros=4_500_000,
            fee_micros=50_000,
        ),
        Leg(
            venue="kalshi",
            instrument="EVT",
            outcome="no",
            size=10,
            limit_px=4_500,
            cost_micros=4_500_000,
            fee_micros=50_000,
        ),
    ]
    return Intent(
        id=intent_id,
        ts=ts,
        opportunity_id=opp_id,
        opportunity_key=key,
        strategy="xarb",
        legs=legs,
        size=10,
        net_edge_micros=400_000,
        net_edge_per_contract_micros=40_000,
        book_ts=ts,
    )


def opportunity(
    event_id: str, opp_id: str, key: str, status: str, opened: int, at: int, per: int, net: int
) -> Opportunity:
    return Opportunity(
        id=event_id,
        ts=NOW,
        opportunity_id=opp_id,
        opportunity_key=key,
        strategy="xarb",
        status=status,  # type: ignore[arg-type]
        legs=[],
        size=10,
        gross_cost_micros=9_000_000,
        fees_micros=100_000,
        net_edge_micros=net,
        net_edge_per_contract_micros=per,
        book_ts=at,
        opened_at=opened,
        closed_at=at if status == "closed" else None,
    )


@dataclass
class World:
    http: httpx.AsyncClient
    stack: Stack
    a: str
    b: str
    a_hdr: dict[str, str]
    b_hdr: dict[str, str]
    updates: dict[str, list[RunUpdate]]
    trades: dict[str, PaperTrade]
    c_hdr: dict[str, str]
    """carol: two stopped runs that both traded o1 (the success-span report's several-runs case)."""
    bus: Bus


def carol_updates(c: str) -> dict[str, list[RunUpdate]]:
    """rC1 and rC2 both took io1 (o1, $0.50 available): $0.30 and $0.45, $0.75 together (150 %)."""
    out = {}
    for run_id, trade_id, pnl in (("rC1", "tC1", 300_000), ("rC2", "tC2", 450_000)):
        t = trade(trade_id, run_id, c, "io1", R + 112 * S, 60 * S, opportunity_id="o1", pnl_micros=pnl)
        out[run_id] = [
            RunUpdate(
                id=f"u-{run_id}",
                ts=R + H,
                run=config_of(run_id, c, R, ends_at=R + H),
                snapshot=snapshot(1, 1_000 * M + pnl, state="stopped", stop_reason="duration", stopped_at=R + H,
                                  decisions=1, taken=1, trades=1),
                decisions=decisions(run_id, R + 110 * S, [taken("io1", "o1", trade_id)]),
                trades=[t],
            )
        ]  # fmt: skip
    return out


def build_updates(a: str, b: str) -> tuple[dict[str, list[RunUpdate]], dict[str, PaperTrade]]:
    t_a1 = trade("tA1", "rA1", a, "iA1", NOW - 3 * H, 60 * S)  # settled long ago
    t_a2 = trade("tA2", "rA2", a, "iA2", NOW - 60 * S, H)  # executed, settles in an hour
    t_a3 = trade("tA3", "rA2", a, "iA3", NOW + H, H)  # queued: executes in an hour
    t_b1 = trade("tB1", "rB1", b, "iA1", NOW - 20 * 60 * S, 60 * S)
    t_r1 = trade("tR1", "rA3", a, "io1", R + 110 * S, 60 * S, opportunity_id="o1", pnl_micros=120_000)
    c1 = config_of(
        "rA1",
        a,
        NOW - 3 * H,
        notes="first",
        opportunity_keys=["K1"],
        filters=RunFilters(venues=["kalshi", "polymarket"], min_net_edge_cents=3.5),
    )
    c2 = config_of("rA2", a, NOW - H, duration_minutes=0.0, ends_at=NOW - H + 7 * 24 * H, validation="off")
    c3 = config_of("rA3", a, R, ends_at=R + H)
    cb = config_of("rB1", b, NOW - 30 * 60 * S)
    start = 1_000 * M
    fill = 9_100_000  # cost + fees of one trade
    updates = {
        "rA1": [
            RunUpdate(
                id="u-rA1-1",
                ts=NOW - 3 * H + S,
                run=c1,
                snapshot=snapshot(
                    1, start - fill, fees_micros=100_000, unsettled_micros=10 * M, decisions=3, taken=1, trades=1
                ),
                decisions=decisions(
                    "rA1",
                    NOW - 3 * H,
                    [
                        taken("iA1", "oX", "tA1"),
                        {"intent_id": "iA2", "opportunity_id": "oY"},
                        {
                            "source": "success_span",
                            "opportunity_id": "oX",
                            "reason": "eligible",
                            "checks_run": CHECK_BIT["min_net_edge"],
                            "checks_passed": CHECK_BIT["min_net_edge"],
                            "detail": "",
                        },
                    ],
                ),
                trades=[t_a1],
                balance_changes=[
                    BalanceChange(
                        id="rA1:start",
                        ts=NOW - 3 * H,
                        kind="start",
                        amount_micros=start,
                        balance_micros=start,
                        pnl_micros=0,
                    ),
                    BalanceChange(
                        id="tA1:fill",
                        ts=NOW - 3 * H,
                        kind="fill",
                        trade_id="tA1",
                        amount_micros=-fill,
                        balance_micros=start - fill,
                        pnl_micros=0,
                    ),
                ],
            ),
            RunUpdate(
                id="u-rA1-2",
                ts=NOW - 2 * H,
                run=c1,
                snapshot=snapshot(
                    2,
                    start - fill + 10 * M,
                    state="stopped",
                    stop_reason="duration",
                    stopped_at=NOW - 2 * H,
                    pnl_micros=900_000,
                    fees_micros=100_000,
                    decisions=3,
                    taken=1,
                    trades=1,
                ),
                balance_changes=[
                    BalanceChange(
                        id="tA1:settle",
                        ts=NOW - 3 * H + 60 * S,
                        kind="settle",
                        trade_id="tA1",
                        amount_micros=10 * M,
                        balance_micros=start - fill + 10 * M,
                        pnl_micros=900_000,
                    ),
                ],
            ),
        ],
        "rA2": [
            RunUpdate(
                id="u-rA2-1",
                ts=NOW - 60 * S,
                run=c2,
                snapshot=snapshot(
                    1, start - 2 * fill, fees_micros=200_000, unsettled_micros=20 * M, decisions=4, taken=2, trades=2
                ),
                decisions=decisions(
                    "rA2",
                    NOW - 120 * S,
                    [
                        taken("iA2", "oY", "tA2"),
                        taken("iA3", "oZ", "tA3"),
                        {
                            "intent_id": "iA4",
                            "opportunity_id": "oW",
                            "reason": "liquidity",
                            "checks_run": ALL_CHECKS,
                            "checks_passed": ALL_CHECKS & ~CHECK_BIT["liquidity"],
                            "detail": "no depth on kalshi",
                        },
                        {
                            "source": "success_span",
                            "opportunity_id": "oW",
                            "reason": "min_net_edge",
                            "checks_run": CHECK_BIT["has_orders"] | CHECK_BIT["min_net_edge"],
                            "checks_passed": CHECK_BIT["has_orders"],
                            "detail": "1.5c < 2c",
                        },
                    ],
                ),
                trades=[t_a2, t_a3],
            )
        ],
        "rA3": [
            RunUpdate(
                id="u-rA3-1",
                ts=R + H,
                run=c3,
                snapshot=snapshot(
                    1, start, state="stopped", stop_reason="duration", stopped_at=R + H, decisions=4, taken=1, trades=1
                ),
                decisions=decisions(
                    "rA3",
                    R,
                    [
                        {"source": "success_span", "opportunity_id": "o1", "reason": "eligible"},
                        taken("io1", "o1", "tR1"),
                        {"source": "success_span", "opportunity_id": "o2", "reason": "eligible"},
                        {
                            "intent_id": "io2",
                            "opportunity_id": "o2",
                            "reason": "balance",
                            "detail": "balance $1.00 < $9.10",
                        },
                    ],
                ),
                trades=[t_r1],
            )
        ],
        "rB1": [
            RunUpdate(
                id="u-rB1-1",
                ts=NOW - 20 * 60 * S,
                run=cb,
                snapshot=snapshot(
                    1, start - fill, fees_micros=100_000, unsettled_micros=10 * M, decisions=1, taken=1, trades=1
                ),
                decisions=decisions("rB1", NOW - 20 * 60 * S, [taken("iA1", "oX", "tB1")]),
                trades=[t_b1],
            )
        ],
    }
    return updates, {t.id: t for t in (t_a1, t_a2, t_a3, t_b1, t_r1)}


def market_events() -> tuple[list[Intent], list[Opportunity]]:
    intents = [
        intent("iA1", "oX", NOW - 3 * H),
        intent("iA2", "oY", NOW - 3 * H),
        intent("iA3", "oZ", NOW - 120 * S),  # iA4 is never published: only rA2's decision knows it
        intent("io1", "o1", R + 105 * S),
        intent("io2", "o2", R + 1005 * S),
    ]
    opps = [
        # o1 (K1): opened at 4c, up to 5c, closed at 4.5c: peak 5c, $0.50 available
        opportunity("e1", "o1", "K1", "opened", R + 100 * S, R + 100 * S, 40_000, 400_000),
        opportunity("e2", "o1", "K1", "updated", R + 100 * S, R + 120 * S, 50_000, 500_000),
        opportunity("e3", "o1", "K1", "closed", R + 100 * S, R + 160 * S, 45_000, 450_000),
        # o2 (K1): 840 s after o1 closed (more than max_gap_s): its own span
        opportunity("e4", "o2", "K1", "opened", R + 1000 * S, R + 1000 * S, 40_000, 400_000),
        opportunity("e5", "o2", "K1", "closed", R + 1000 * S, R + 1010 * S, 40_000, 400_000),
        # o3 (K2): 2 cents at best: not a span at min_edge_cents=3
        opportunity("e6", "o3", "K2", "opened", R + 2000 * S, R + 2000 * S, 20_000, 100_000),
        opportunity("e7", "o3", "K2", "closed", R + 2000 * S, R + 2100 * S, 20_000, 100_000),
        # o4 (K2): 3.5 cents, nobody watching
        opportunity("e8", "o4", "K2", "opened", R + 2500 * S, R + 2500 * S, 35_000, 350_000),
        opportunity("e9", "o4", "K2", "closed", R + 2500 * S, R + 2600 * S, 35_000, 350_000),
        # before the window (and more than max_gap_s before o1): left out
        opportunity("e10", "o0", "K1", "opened", R - 900 * S, R - 900 * S, 90_000, 900_000),
        opportunity("e11", "o0", "K1", "closed", R - 900 * S, R - 800 * S, 90_000, 900_000),
        # oA (K4): opened 2 hours before the window and never closed, no row since: not an open span of
        # every later window (only rows from max_gap_s before the window start are read)
        opportunity("e12", "oA", "K4", "opened", R - 2 * H, R - 2 * H, 80_000, 800_000),
        # o5 (K3), in the window [W, W + 1 h]: 4c at first; after W + 1 h it rose to 9c and closed
        opportunity("e13", "o5", "K3", "opened", W + 600 * S, W + 600 * S, 40_000, 400_000),
        opportunity("e14", "o5", "K3", "updated", W + 600 * S, W + 3000 * S, 35_000, 300_000),
        opportunity("e15", "o5", "K3", "updated", W + 600 * S, W + H + 300 * S, 90_000, 900_000),
        opportunity("e16", "o5", "K3", "closed", W + 600 * S, W + H + 600 * S, 90_000, 900_000),
    ]
    return intents, opps


async def make_user(http: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    r = await http.post("/admin/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    user = r.json()
    r = await http.post("/auth/token", json={"api_key": user["api_key"]})
    assert r.status_code == 200, r.text
    return user["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    home: Path = tmp_path_factory.mktemp("simapi")
    port = free_port()
    settings = config.load(
        {}, home=home / "home", http_port=port, admin_token=ADMIN, jwt_secret="j" * 40, paper_default_run=False
    )
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        await stack.start("report")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            a, a_hdr = await make_user(http, "alice")
            b, b_hdr = await make_user(http, "bob")
            c, c_hdr = await make_user(http, "carol")
            updates, trades = build_updates(a, b)
            bus: Bus = await stack.connect("test")
            intents, opps = market_events()
            for i in intents:
                await bus.publish(subjects.intent("xarb"), i)
            for o in opps:
                await bus.publish(subjects.opp("xarb"), o)
            for run_id, steps in (updates | carol_updates(c)).items():
                for u in steps:
                    await bus.publish(subjects.paper("update", run_id), u)
            assert await wait_idle(
                bus,
                [
                    (streams.PAPER.name, "recorder-paper"),
                    (streams.INTENT.name, "recorder-intent"),
                    (streams.OPP.name, "recorder-opp"),
                ],
                timeout_s=60,
            )
            yield World(http, stack, a, b, a_hdr, b_hdr, updates, trades, c_hdr, bus)
    finally:
        await stack.close()


# -- runs ---------------------------------------------------------------------------------------


async def test_runs_are_the_users_own_newest_first_with_their_latest_state(world: World) -> None:
    r = await world.http.get("/simulator/runs", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and [v["run_id"] for v in body["runs"]] == ["rA2", "rA1", "rA3"]
    a1 = body["runs"][1]
    # the latest step wins: stopped at its duration, the trade settled
    assert a1["status"] == "stopped" and a1["stop_reason"] == "duration" and a1["stopped_at"] == iso(NOW - 2 * H)
    assert (a1["starting_usd"], a1["balance_usd"], a1["pnl_usd"], a1["fees_usd"]) == (1000.0, 1000.9, 0.9, 0.1)
    assert (a1["trade_count"], a1["decision_count"], a1["taken_count"], a1["unsettled_usd"]) == (1, 3, 1, 0.0)
    assert a1["label"] == "ra1" and a1["notes"] == "first" and a1["opportunity_keys"] == ["K1"]
    assert a1["filters"] == {"venues": ["kalshi", "polymarket"], "strategies": [], "instruments": [],
                             "min_net_edge_cents": 3.5}  # fmt: skip
    assert (a1["min_net_edge_cents"], a1["max_leg_usd"], a1["daily_cap_usd"]) == (2.0, 100.0, 500.0)
    assert a1["settlement_delay_s"] == 60.0 and a1["started_at"] == iso(NOW - 3 * H)
    # and exactly what the live view of the same step shows
    last = world.updates["rA1"][-1]
    assert a1 == msgspec.to_builtins(run_view(last.run, last.snapshot))
    a2 = body["runs"][0]
    assert a2["status"] == "running" and a2["stopped_at"] is None and a2["validation"] == "off"
    assert a2["balance_usd"] == 981.8  # two fills of $9.10

    r = await world.http.get("/simulator/runs", headers=world.b_hdr)
    assert [v["run_id"] for v in r.json()["runs"]] == ["rB1"] and r.json()["total"] == 1


async def test_runs_pages(world: World) -> None:
    page1 = (await world.http.get("/simulator/runs", params={"limit": 2}, headers=world.a_hdr)).json()
    page2 = (await world.http.get("/simulator/runs", params={"limit": 2, "offset": 2}, headers=world.a_hdr)).json()
    page3 = (await world.http.get("/simulator/runs", params={"limit": 2, "offset": 4}, headers=world.a_hdr)).json()
    assert [v["run_id"] for v in page1["runs"]] == ["rA2", "rA1"]
    assert [v["run_id"] for v in page2["runs"]] == ["rA3"]
    assert page3["runs"] == [] and page1["total"] == page2["total"] == page3["total"] == 3


# -- trades -------------------------------------------------------------------------------------


async def test_run_trades_with_status_filter(world: World) -> None:
    r = await world.http.get("/simulator/runs/rA2/trades", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == "rA2" and body["total"] == 2
    assert [(t["trade_id"], t["status"]) for t in body["trades"]] == [("tA3", "queued"), ("tA2", "executed")]
    for wanted, ids in (("queued", ["tA3"]), ("executed", ["tA2"]), ("settled", [])):
        r = await world.http.get("/simulator/runs/rA2/trades", params={"status": wanted}, headers=world.a_hdr)
        assert [t["trade_id"] for t in r.json()["trades"]] == ids and r.json()["total"] == len(ids)
    r = await world.http.get("/simulator/runs/rA2/trades", params={"limit": 1, "offset": 1}, headers=world.a_hdr)
    assert [t["trade_id"] for t in r.json()["trades"]] == ["tA2"] and r.json()["total"] == 2

    t = (await world.http.get("/simulator/runs/rA1/trades", headers=world.a_hdr)).json()["trades"][0]
    assert t["trade_id"] == "tA1" and t["status"] == "settled"
    assert (t["cost_usd"], t["fees_usd"], t["payout_usd"], t["pnl_usd"]) == (9.0, 0.1, 10.0, 0.9)
    assert (t["requested_size"], t["matched_size"], t["fill_pct"], t["broken"]) == (10, 10, 100.0, False)
    assert [leg["fill_pct"] for leg in t["legs"]] == [100.0, 100.0]
    assert t["executed_at"] == iso(NOW - 3 * H) and t["settled_at"] == iso(NOW - 3 * H + 60 * S)
    assert t["settlement_delay_s"] == 60.0
    assert [(leg["venue"], leg["outcome"], leg["avg_price"], leg["cost_usd"], leg["fee_usd"]) for leg in t["legs"]] == [
        ("polymarket", "yes", 0.45, 4.5, 0.05),
        ("kalshi", "no", 0.45, 4.5, 0.05),
    ]


async def test_trade_detail_has_its_decision_intent_and_cash(world: World) -> None:
    r = await world.http.get("/simulator/trades/tA1", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["trade"]["trade_id"] == "tA1" and body["trade"]["run_id"] == "rA1"
    d = body["decision"]
    assert d["decision_id"] == "rA1:iA1" and d["taken"] is True and d["trade_id"] == "tA1"
    assert [c["name"] for c in d["checks"]] == list(CHECK_RUN_ORDER) and all(c["passed"] for c in d["checks"])
    i = body["intent"]
    assert (i["intent_id"], i["opportunity_id"], i["net_edge_cents"], i["net_edge_usd"]) == ("iA1", "oX", 4.0, 0.4)
    assert [(x["venue"], x["limit_price"], x["size"]) for x in i["legs"]] == [
        ("polymarket", 0.45, 10),
        ("kalshi", 0.45, 10),
    ]
    assert [(c["kind"], c["amount_usd"], c["balance_usd"], c["pnl_usd"]) for c in body["balance_changes"]] == [
        ("fill", -9.1, 990.9, 0.0),
        ("settle", 10.0, 1000.9, 0.9),
    ]


async def test_status_without_the_paper_service_still_shows_the_stored_trades(world: World) -> None:
    r = await world.http.get("/simulator/status", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["paper_service"] == "unavailable" and st["active"] == []
    assert (st["balance_usd"], st["pnl_usd"], st["trade_count"]) == (None, None, None)  # unknown, not zero
    assert [t["trade_id"] for t in st["recent_trades"]] == ["tA3", "tA2", "tA1", "tR1"]  # from ClickHouse
    r = await world.http.get("/simulator/active", headers=world.a_hdr)
    assert r.status_code == 503 and "paper service not answering" in r.json()["detail"]


# -- decisions and intents ----------------------------------------------------------------------


async def test_run_decisions_say_what_was_considered_and_why_passed(world: World) -> None:
    r = await world.http.get("/simulator/runs/rA2/decisions", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 4
    expected = sorted(
        msgspec.to_builtins(decision_views("rA2", world.updates["rA2"][0].decisions)),
        key=lambda d: d["decided_at"],
        reverse=True,
    )
    assert body["decisions"] == expected  # newest first, the same views the live events carry
    liquidity = next(d for d in body["decisions"] if d["reason"] == "liquidity")
    failed = [c for c in liquidity["checks"] if not c["passed"]]
    assert failed == [{"name": "liquidity", "passed": False, "detail": "no depth on kalshi"}]
    assert liquidity["net_edge_cents"] == 3.0 and liquidity["decision_source"] == "intent"

    async def ids(**params: str) -> tuple[list[str], int]:
        r = await world.http.get("/simulator/runs/rA2/decisions", params=params, headers=world.a_hdr)
        return sorted(d["decision_id"] for d in r.json()["decisions"]), r.json()["total"]

    assert await ids(source="success_span") == (["rA2:span:oW"], 1)
    assert await ids(source="intent", taken="false") == (["rA2:iA4"], 1)
    assert await ids(taken="true") == (["rA2:iA2", "rA2:iA3"], 2)
    assert (await ids(limit="3", offset="3"))[1] == 4 and len((await ids(limit="3", offset="3"))[0]) == 1


async def test_intent_shows_only_the_callers_decisions_and_trades(world: World) -> None:
    a = (await world.http.get("/execution/intents/iA1", headers=world.a_hdr)).json()
    b = (await world.http.get("/execution/intents/iA1", headers=world.b_hdr)).json()
    assert a["intent"] == b["intent"] and a["intent"]["intent_id"] == "iA1"  # a market signal: the same for both
    assert [d["decision_id"] for d in a["decisions"]] == ["rA1:iA1"] and [t["trade_id"] for t in a["trades"]] == ["tA1"]
    assert [d["decision_id"] for d in b["decisions"]] == ["rB1:iA1"] and [t["trade_id"] for t in b["trades"]] == ["tB1"]
    two = (await world.http.get("/execution/intents/iA2", headers=world.a_hdr)).json()
    assert sorted((d["run_id"], d["reason"]) for d in two["decisions"]) == [("rA1", "daily_cap"), ("rA2", "taken")]
    # iA4 was never stored as an intent: A sees its own decision on it, B nothing at all
    four = await world.http.get("/execution/intents/iA4", headers=world.a_hdr)
    assert four.status_code == 200 and four.json()["intent"] is None
    assert [d["reason"] for d in four.json()["decisions"]] == ["liquidity"]
    r = await world.http.get("/execution/intents/iA4", headers=world.b_hdr)
    assert r.status_code == 404 and r.json()["detail"] == "intent 'iA4' not found"


# -- isolation and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/simulator/runs/rA1/trades", "run 'rA1' not found"),
        ("/simulator/runs/rA1/decisions", "run 'rA1' not found"),
        ("/simulator/trades/tA1", "trade 'tA1' not found"),
        ("/simulator/runs/nope/trades", "run 'nope' not found"),
        ("/simulator/trades/nope", "trade 'nope' not found"),
        ("/execution/intents/nope", "intent 'nope' not found"),
    ],
)
async def test_another_users_run_or_trade_is_not_found(world: World, path: str, detail: str) -> None:
    r = await world.http.get(path, headers=world.b_hdr)
    assert r.status_code == 404 and r.json() == {"detail": detail}
    assert "tA1" not in r.text.replace(detail, "") and "rA1" not in r.text.replace(detail, "")


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/simulator/runs", {"limit": "0"}, "limit must be 1..1000, got 0"),
        ("/simulator/runs", {"limit": "ten"}, "limit must be an integer, got 'ten'"),
        ("/simulator/runs", {"offset": "-1"}, "offset must be 0..10000000, got -1"),
        (
            "/simulator/runs/rA2/trades",
            {"status": "done"},
            "status must be one of queued, executed, settled, got 'done'",
        ),
        ("/simulator/runs/rA2/decisions", {"source": "gut"}, "source must be one of intent, success_span, got 'gut'"),
        ("/simulator/runs/rA2/decisions", {"taken": "maybe"}, "taken must be true or false, got 'maybe'"),
        ("/simulator/report", {"hours": "0"}, "hours must be a number > 0 and <= 720, got '0'"),
        ("/simulator/report", {"hours": "721"}, "hours must be a number > 0 and <= 720, got '721'"),
        ("/simulator/report", {"hours": "nan"}, "hours must be a number > 0 and <= 720, got 'nan'"),
        ("/simulator/report", {"max_gap_s": "-1"}, "max_gap_s must be a number >= 0"),
        ("/simulator/report", {"min_edge_cents": "-0.5"}, "min_edge_cents must be a number >= 0"),
        ("/simulator/report", {"min_edge_cents": "lots"}, "min_edge_cents must be a number, got 'lots'"),
        ("/simulator/report", {"to": "yesterday"}, "to must be a date YYYY-MM-DD or an ISO time, got 'yesterday'"),
    ],
)
async def test_bad_parameters_are_422_naming_them(world: World, path: str, params: dict[str, str], detail: str) -> None:
    r = await world.http.get(path, params=params, headers=world.a_hdr)
    assert r.status_code == 422, r.text
    assert detail in r.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"starting_usd": -5}', "starting_usd must be a positive finite number of dollars, got -5.0"),
        (b'{"starting_usd": 0}', "starting_usd must be a positive finite number of dollars, got 0.0"),
        (b'{"starting_usd": 1e999}', "Number out of range - at `$.starting_usd`"),
        (b'{"starting_usd": "lots"}', "Expected `float`, got `str` - at `$.starting_usd`"),
        (b"{}", "Object missing required field `starting_usd`"),
        (b"", "Object missing required field `starting_usd`"),
        (b'{"starting_usd": 100, "budget": 5}', "unknown field `budget`"),
        (b'{"starting_usd": 100, "duration_minutes": -1}', "duration_minutes must be 0 (until stopped) or a positive"),
        (b'{"starting_usd": 100, "filters": {"venues": "kalshi"}}', "at `$.filters.venues`"),
        (b'{"starting_usd": 100, "opportunity_keys": "K1"}', "at `$.opportunity_keys`"),
    ],
)
async def test_bad_start_bodies_are_422_naming_the_field(world: World, raw: bytes, detail: str) -> None:
    r = await world.http.post(
        "/simulator/start", content=raw, headers=world.a_hdr | {"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert detail in r.json()["detail"]


async def test_start_and_stop_without_the_paper_service_are_503(world: World) -> None:
    r = await world.http.post("/simulator/start", json={"starting_usd": 100}, headers=world.a_hdr)
    assert r.status_code == 503 and r.json()["detail"].startswith("paper service not answering")
    r = await world.http.post("/simulator/stop", headers=world.a_hdr)
    assert r.status_code == 503 and r.json()["detail"].startswith("paper service not answering")
    r = await world.http.post("/simulator/stop", content=b"{not json", headers=world.a_hdr)
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = await world.http.post("/simulator/stop", json={"run": "rA1"}, headers=world.a_hdr)
    assert r.status_code == 422 and "unknown field `run`" in r.json()["detail"]


ENDPOINTS = [
    ("GET", "/simulator/runs"),
    ("GET", "/simulator/status"),
    ("GET", "/simulator/active"),
    ("GET", "/simulator/runs/rA1/trades"),
    ("GET", "/simulator/runs/rA1/decisions"),
    ("GET", "/simulator/trades/tA1"),
    ("GET", "/execution/intents/iA1"),
    ("GET", "/simulator/report"),
    ("POST", "/simulator/start"),
    ("POST", "/simulator/stop"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": "Bearer not.a.jwt"}, ""),
        ({"Authorization": "Basic abc"}, "malformed Authorization header"),
    ],
)
async def test_every_endpoint_needs_a_valid_token(
    world: World, method: str, path: str, headers: dict[str, str], detail: str
) -> None:
    r = await world.http.request(
        method, path, headers=headers, json={"starting_usd": 100} if method == "POST" else None
    )
    assert r.status_code == 401, r.text
    assert detail in r.json()["detail"] and "tA1" not in r.text and "iA1" not in r.text


# -- the success-span report --------------------------------------------------------------------


async def test_success_span_report(world: World) -> None:
    params = {"hours": "1", "max_gap_s": "120", "min_edge_cents": "3", "to": iso(R + H)}
    r = await world.http.get("/simulator/report", params=params, headers=world.a_hdr)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["window"] == {
        "hours": 1.0, "max_gap_s": 120.0, "min_edge_cents": 3.0, "from": iso(R), "to": iso(R + H), "run_id": None,
    }  # fmt: skip
    # spans: o1 (caught by tR1), o2 (skipped: balance), o4 (no run of A's watched it); o3 under 3c, o0 before the window
    assert (rep["spans_total"], rep["caught"], rep["missed"]) == (3, 1, 2)
    assert rep["missed_by_reason"] == {"balance": 1, "no run watching": 1}
    assert rep["edge_available_usd"] == 1.25  # 0.50 + 0.40 + 0.35
    assert rep["edge_captured_usd"] == 0.12 and rep["capture_pct"] == 9.6
    spans = {s["opportunity_ids"][0]: s for s in rep["spans"]}
    assert [s["opportunity_ids"] for s in rep["spans"]] == [["o4"], ["o2"], ["o1"]]  # newest first
    o1 = spans["o1"]
    assert (o1["opened_at"], o1["closed_at"], o1["duration_s"]) == (iso(R + 100 * S), iso(R + 160 * S), 60.0)
    assert (o1["peak_edge_cents"], o1["available_usd"], o1["caught"], o1["trade_ids"]) == (5.0, 0.5, True, ["tR1"])
    assert o1["captured_usd"] == 0.12 and o1["reason"] == "" and o1["decision_reasons"] == {"eligible": 1, "taken": 1}
    assert o1["captured_run_id"] == "rA3" and spans["o2"]["captured_run_id"] is None
    assert spans["o2"]["reason"] == "balance" and spans["o2"]["decision_reasons"] == {"balance": 1, "eligible": 1}
    assert spans["o4"]["reason"] == "no run watching" and spans["o4"]["opportunity_key"] == "K2"

    # a lower bar takes o3 in; a wider gap merges o3 and o4 (400 s apart) into one K2 span
    r = await world.http.get("/simulator/report", params=params | {"min_edge_cents": "2", "max_gap_s": "500"},
                             headers=world.a_hdr)  # fmt: skip
    rep = r.json()
    assert sorted(s["opportunity_ids"] for s in rep["spans"]) == [["o1"], ["o2"], ["o3", "o4"]]
    k2 = next(s for s in rep["spans"] if s["opportunity_key"] == "K2")
    assert (
        k2["available_usd"] == 0.45 and k2["duration_s"] == 600.0
    )  # o3 $0.10 + o4 $0.35: two chances and k2["peak_edge_cents"] == 3.5

    # B sees the same spans but none of A's trades or decisions
    rep = (await world.http.get("/simulator/report", params=params, headers=world.b_hdr)).json()
    assert (rep["spans_total"], rep["caught"], rep["edge_captured_usd"]) == (3, 0, 0.0)
    assert rep["missed_by_reason"] == {"no run watching": 3} and rep["capture_pct"] == 0.0
    assert all(s["trade_ids"] == [] and s["decision_reasons"] == {} for s in rep["spans"])


async def test_report_defaults_to_the_last_day(world: World) -> None:
    r = await world.http.get("/simulator/report", headers=world.a_hdr)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["window"]["hours"] == 24.0 and rep["window"]["max_gap_s"] == 120.0
    assert rep["window"]["min_edge_cents"] == 3.0
    to = dt.datetime.fromisoformat(rep["window"]["to"].replace("Z", "+00:00"))
    assert abs((to - dt.datetime.now(dt.UTC)).total_seconds()) < 3600
    # R is 10 hours ago: the three spans of the hour after R, o0 before it, oA (still open) and o5 (W is 7 hours
    # ago) are in the last 24 h
    assert sorted(s["opportunity_ids"][0] for s in rep["spans"]) == ["o0", "o1", "o2", "o4", "o5", "oA"]


async def test_report_reads_nothing_after_to(world: World) -> None:
    """o5 rose to 9c and closed after W + 1 h: as of `to` = W + 1 h it is a 4c span still open."""
    params = {"hours": "1", "max_gap_s": "120", "min_edge_cents": "3", "to": iso(W + H)}
    rep = (await world.http.get("/simulator/report", params=params, headers=world.a_hdr)).json()
    assert [s["opportunity_ids"] for s in rep["spans"]] == [["o5"]]  # and not oA, opened 5 h before, never closed
    (o5,) = rep["spans"]
    assert (o5["peak_edge_cents"], o5["available_usd"]) == (4.0, 0.4)  # not 9c / $0.90 from the later rows
    assert (o5["opened_at"], o5["closed_at"]) == (iso(W + 600 * S), None)
    assert o5["duration_s"] == pytest.approx(3000.0, abs=1e-3)  # open: up to `to` (given to the microsecond)
    assert rep["edge_available_usd"] == 0.4 and rep["missed_by_reason"] == {"no run watching": 1}
    # a window that includes the later rows sees the rise and the close
    later = (await world.http.get("/simulator/report", params=params | {"to": iso(W + 2 * H)},
                                  headers=world.a_hdr)).json()  # fmt: skip
    (o5,) = later["spans"]
    assert (o5["peak_edge_cents"], o5["available_usd"], o5["closed_at"]) == (9.0, 0.9, iso(W + H + 600 * S))


async def test_report_counts_the_best_run_and_can_be_cut_to_one_run(world: World) -> None:
    """carol's two runs both took o1 ($0.50 available): $0.30 and $0.45. Summed that is 150 % of o1."""
    params = {"hours": "1", "max_gap_s": "120", "min_edge_cents": "3", "to": iso(R + H)}
    rep = (await world.http.get("/simulator/report", params=params, headers=world.c_hdr)).json()
    spans = {s["opportunity_ids"][0]: s for s in rep["spans"]}
    o1 = spans["o1"]
    assert sorted(o1["trade_ids"]) == ["tC1", "tC2"] and o1["caught"]
    assert (o1["captured_usd"], o1["captured_run_id"]) == (0.45, "rC2")
    assert (rep["edge_available_usd"], rep["edge_captured_usd"], rep["capture_pct"]) == (1.25, 0.45, 36.0)
    assert rep["window"]["run_id"] is None

    one = (await world.http.get("/simulator/report", params=params | {"run_id": "rC1"}, headers=world.c_hdr)).json()
    o1 = next(s for s in one["spans"] if s["opportunity_ids"] == ["o1"])
    assert (o1["trade_ids"], o1["captured_usd"], o1["captured_run_id"]) == (["tC1"], 0.3, "rC1")
    assert (one["edge_captured_usd"], one["capture_pct"], one["window"]["run_id"]) == (0.3, 24.0, "rC1")
    # with only A's rA3, o2's skip (balance) is still explained, o4 still unwatched
    a3 = (await world.http.get("/simulator/report", params=params | {"run_id": "rA3"}, headers=world.a_hdr)).json()
    assert a3["missed_by_reason"] == {"balance": 1, "no run watching": 1} and a3["edge_captured_usd"] == 0.12
    a1 = (await world.http.get("/simulator/report", params=params | {"run_id": "rA1"}, headers=world.a_hdr)).json()
    assert a1["caught"] == 0 and a1["missed_by_reason"] == {"no run watching": 3}  # rA1 saw nothing in that hour
    # another user's run, or no run at all: 404, the same words
    for hdr, run in ((world.c_hdr, "rA3"), (world.a_hdr, "rC1"), (world.a_hdr, "nope")):
        r = await world.http.get("/simulator/report", params=params | {"run_id": run}, headers=hdr)
        assert r.status_code == 404 and r.json() == {"detail": f"run '{run}' not found"}


@pytest.mark.parametrize(
    ("to", "status", "window_to"),
    [
        ("9999-12-31", 422, None),  # its end overflowed datetime: a 500
        ("2262-04-12", 422, None),
        ("2262-04-11T23:47:17Z", 422, None),
        ("1969-12-30", 422, None),  # (the end of 1969-12-31 is 1970-01-01T00:00:00Z: allowed)
        ("1969-12-31T23:59:59Z", 422, None),
        ("0001-01-01T00:00:00+05:00", 422, None),
        ("2262-04-11", 200, "2262-04-11T23:47:16.854775Z"),  # its end is the last nanosecond there is
        ("1970-01-01T00:00:00Z", 200, "1970-01-01T00:00:00.000000Z"),
    ],
)
async def test_report_to_must_be_between_1970_and_2262(
    world: World, to: str, status: int, window_to: str | None
) -> None:
    r = await world.http.get("/simulator/report", params={"to": to, "max_gap_s": "2592000"}, headers=world.a_hdr)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json() == {"detail": f"to must be between 1970-01-01 and 2262-04-11 (UTC), got {to!r}"}
    else:
        window = r.json()["window"]
        assert window["to"] == window_to
        # from = to - 24 h, written like to: before 1970 for the earliest `to`
        want_from = dt.datetime.fromisoformat(window_to.replace("Z", "+00:00")) - dt.timedelta(hours=24)  # type: ignore[union-attr]
        assert window["from"] == want_from.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert r.json()["spans"] == []


async def test_bad_bodies_and_empty_ids(world: World) -> None:
    hdr = world.a_hdr | {"content-type": "application/json"}
    for path, raw in (("/simulator/start", b'{"label": "\xff"}'), ("/simulator/stop", b'{"run_id": "\xff"}'),
                      ("/simulator/start", b"\xfe\xff")):  # fmt: skip
        r = await world.http.post(path, content=raw, headers=hdr)
        assert r.status_code == 400, r.text  # was a UnicodeDecodeError: a 500
        assert r.json()["detail"].startswith("the request body is not valid JSON: ")
    for path, body, detail in [
        ("/simulator/stop", {"run_id": ""}, "run_id must not be empty"),
        ("/simulator/stop", {"run_id": "  "}, "run_id must not be empty"),
        ("/simulator/start", {"starting_usd": 100, "opportunity_key": ""}, "opportunity_key must not be empty"),
        ("/simulator/start", {"starting_usd": 100, "opportunity_keys": ["K1", ""]},
         "opportunity_keys[1] must not be empty, got ''"),
    ]:  # fmt: skip
        r = await world.http.post(path, json=body, headers=world.a_hdr)
        assert r.status_code == 422 and detail in r.json()["detail"], r.text  # before asking the paper service

    big = b'{"starting_usd": 100, "label": "' + b"x" * 70_000 + b'"}'

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8_192):
            yield big[i : i + 8_192]

    for content in (big, chunked()):
        r = await world.http.post("/simulator/start", content=content, headers=hdr)
        assert r.status_code == 413, r.text
        assert r.json() == {"detail": "the request body is larger than 65536 bytes; at most 65536 are accepted"}


# -- start and stop through the paper service (last: it adds runs to A's history) -----------------


@pytest_asyncio.fixture(loop_scope="module")
async def paper(world: World) -> AsyncIterator[World]:
    await world.stack.start("paper")
    try:
        yield world
    finally:
        await world.stack.stop_service("paper")


async def test_start_status_stop_through_the_paper_service(paper: World) -> None:
    w = paper
    r = await w.http.put(
        "/profile", json={"min_net_edge_cents": 4.5, "max_leg_usd": 200, "daily_cap_usd": 1500}, headers=w.a_hdr
    )
    assert r.status_code == 200, r.text
    body = {"starting_usd": 250, "opportunity_keys": ["K9"], "label": "live one", "notes": "n", "duration_minutes": 30}
    r = await w.http.post("/simulator/start", json=body, headers=w.a_hdr)
    assert r.status_code == 201, r.text
    run = r.json()["run"]
    rid = run["run_id"]
    assert (run["status"], run["label"], run["notes"], run["opportunity_keys"]) == ("running", "live one", "n", ["K9"])
    (warning,) = r.json()["warnings"]  # K1 and K2 are known (their opportunities are stored), K9 is not
    assert "'K9' has never been seen by detect" in warning
    assert (run["starting_usd"], run["balance_usd"], run["pnl_usd"], run["trade_count"]) == (250.0, 250.0, 0.0, 0)
    assert run["duration_minutes"] == 30.0
    # the user's profile thresholds went with the request
    assert (run["min_net_edge_cents"], run["max_leg_usd"], run["daily_cap_usd"]) == (4.5, 200.0, 1500.0)
    started = dt.datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
    ends = dt.datetime.fromisoformat(run["ends_at"].replace("Z", "+00:00"))
    assert ends - started == dt.timedelta(minutes=30)

    # the paper service resumed the runs still running in the published history (rA2, rB1) too
    r = await w.http.get("/simulator/active", headers=w.a_hdr)
    assert r.status_code == 200 and sorted(v["run_id"] for v in r.json()["runs"]) == sorted([rid, "rA2"])
    assert [v["run_id"] for v in (await w.http.get("/simulator/active", headers=w.b_hdr)).json()["runs"]] == ["rB1"]

    r = await w.http.get("/simulator/status", headers=w.a_hdr)
    assert r.status_code == 200, r.text
    st = r.json()
    active = {v["run_id"]: v for v in st["active"]}
    assert sorted(active) == sorted([rid, "rA2"]) and active[rid]["balance_usd"] == 250.0
    assert st["balance_usd"] == round(active[rid]["balance_usd"] + active["rA2"]["balance_usd"], 6)
    assert st["pnl_usd"] == round(active[rid]["pnl_usd"] + active["rA2"]["pnl_usd"], 6)
    assert st["trade_count"] == active["rA2"]["trade_count"] >= 2  # rA2 had two trades, the new run none
    # A's trades across runs, newest first by execution: tA3 (in an hour), tA2, tA1, tR1 (10 h ago)
    assert [t["trade_id"] for t in st["recent_trades"]][:4] == ["tA3", "tA2", "tA1", "tR1"]
    r = await w.http.get("/simulator/status", headers=w.b_hdr)
    assert [v["run_id"] for v in r.json()["active"]] == ["rB1"]
    assert "tB1" in [t["trade_id"] for t in r.json()["recent_trades"]]
    assert not {"tA1", "tA2", "tA3", "tR1"} & {t["trade_id"] for t in r.json()["recent_trades"]}

    # B cannot stop A's run; A can
    r = await w.http.post("/simulator/stop", json={"run_id": rid}, headers=w.b_hdr)
    assert r.status_code == 404 and f"run '{rid}' not found" in r.json()["detail"]
    r = await w.http.post("/simulator/stop", json={"run_id": rid}, headers=w.a_hdr)
    assert r.status_code == 200, r.text
    (stopped,) = r.json()["runs"]
    assert (stopped["run_id"], stopped["status"], stopped["stop_reason"]) == (rid, "stopped", "requested")
    assert stopped["stopped_at"] is not None
    r = await w.http.post("/simulator/stop", json={"run_id": rid}, headers=w.a_hdr)
    assert r.status_code == 409 and "already stopped" in r.json()["detail"]
    assert [v["run_id"] for v in (await w.http.get("/simulator/active", headers=w.a_hdr)).json()["runs"]] == ["rA2"]

    # the stopped run reaches the history through the recorder
    deadline = dt.datetime.now() + dt.timedelta(seconds=20)
    while True:
        runs = (await w.http.get("/simulator/runs", headers=w.a_hdr)).json()["runs"]
        mine = [v for v in runs if v["run_id"] == rid]
        if mine and mine[0]["status"] == "stopped":
            break
        assert dt.datetime.now() < deadline, f"run {rid} not stored as stopped: {mine}"
        await asyncio.sleep(0.1)
    assert mine[0]["label"] == "live one" and runs[0]["run_id"] == rid  # the newest


async def test_the_sixth_run_and_a_too_long_run_are_refused(paper: World) -> None:
    w = paper
    ids = []
    for i in range(4):  # B already has rB1 running: four more make five
        r = await w.http.post("/simulator/start", json={"starting_usd": 10 + i}, headers=w.b_hdr)
        assert r.status_code == 201, r.text
        ids.append(r.json()["run"]["run_id"])
    r = await w.http.post("/simulator/start", json={"starting_usd": 99}, headers=w.b_hdr)
    assert r.status_code == 409 and "5 active runs" in r.json()["detail"]
    r = await w.http.post("/simulator/start", json={"starting_usd": 99, "duration_minutes": 7 * 24 * 60 + 1},
                          headers=w.a_hdr)  # fmt: skip
    assert r.status_code == 422 and "duration_minutes" in r.json()["detail"]
    # an empty stop body stops the most recently started run
    r = await w.http.post("/simulator/stop", headers=w.b_hdr)
    assert r.status_code == 200 and [v["run_id"] for v in r.json()["runs"]] == [ids[-1]]
    active = (await w.http.get("/simulator/active", headers=w.b_hdr)).json()["runs"]
    assert sorted(v["run_id"] for v in active) == sorted(["rB1", *ids[:-1]])
    st = (await w.http.get("/simulator/status", headers=w.b_hdr)).json()
    new_runs = [v for v in st["active"] if v["run_id"] in ids]
    assert sorted(v["balance_usd"] for v in new_runs) == [10.0, 11.0, 12.0]
    assert st["balance_usd"] == round(sum(v["balance_usd"] for v in st["active"]), 6)


async def test_disabling_a_user_stops_their_active_runs(paper: World) -> None:
    w = paper
    admin = {"Authorization": f"Bearer {ADMIN}"}
    dora, hdr = await make_user(w.http, "dora")
    started = []
    for i in range(2):
        keys = ["K1", "K2"] if i else []
        body = {"starting_usd": 20 + i, "label": f"d{i}", "opportunity_keys": keys}
        r = await w.http.post("/simulator/start", json=body, headers=hdr)
        assert r.status_code == 201, r.text
        assert r.json()["warnings"] == []  # no keys (every opportunity), or keys detect has reported
        started.append(r.json()["run"]["run_id"])

    async def active_of(user: str) -> list[str]:
        msg = await w.bus.nc.request(subjects.svc("paper", "active"), codec.encode(UserQuery(user_id=user)), timeout=5)
        return sorted(v.run_id for v in codec.decode(msg.data, PaperReply).runs)

    assert await active_of(dora) == sorted(started)
    r = await w.http.patch(f"/admin/users/{dora}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["disabled"] is True and sorted(body["stopped_runs"]) == sorted(started) and body["stop_error"] is None
    assert await active_of(dora) == []  # stopped at once, not at their duration
    paper_svc: Any = w.stack.running["paper"]
    reasons = {paper_svc.runs[r].snap.stop_reason if r in paper_svc.runs else paper_svc.retired[r][2] for r in started}
    assert reasons == {"disabled"}  # not "requested" by the user (a run with nothing pending may be retired already)
    assert (await w.http.get("/simulator/active", headers=hdr)).status_code == 401
    # a second disable finds nothing left to stop
    r = await w.http.patch(f"/admin/users/{dora}", json={"disabled": True}, headers=admin)
    assert r.json()["stopped_runs"] == [] and r.json()["stop_error"] is None
