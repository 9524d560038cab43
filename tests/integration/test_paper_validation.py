"""Live exchange validation (MT_PAPER_VALIDATION=live) against local servers answering like Polymarket's
CLOB and Kalshi's API with recorded responses: the real client libraries make real HTTP calls, with
the user's stored (encrypted) keys. An open market with a book and enough balance is taken; a closed
market, a missing book, missing keys and a short balance are refused with the reason named."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.ids import now_ns
from libs.users.secretbox import secret_box
from libs.users.secrets import validate
from libs.users.store import write_secret_row
from proto import subjects
from proto.events import BookBatch, Leg
from proto.paper import StartRequest, StartRun
from services.demo import RECORDERS
from services.runtime import Stack
from tests import factories
from tests.fixtures.venues.venue_server import (
    FIXTURES,
    Request,
    VenueServer,
    fixture,
    js,
    kalshi_route,
    polymarket_route,
)
from tests.integration.test_paper import PAPER, svc
from tests.unit.test_paper_engine import kalshi_fee

S = 1_000_000_000
TOKEN = fixture("polymarket_book_yes.json")["asset_id"]
CONDITION = fixture("polymarket_book_yes.json")["market"]
TICKER = "KXFEDDECISION-25DEC-H0"
CLOSED = "KXFEDDECISION-25OCT-H0"
FULL, POOR, NOKEYS = "u00000000f011", "u00000000b00e", "u000000000000"


def poly_server() -> VenueServer:
    """The CLOB with the Fed YES book and market, plus the two authenticated calls a balance check makes."""
    books = {TOKEN: (FIXTURES / "polymarket_book_yes.json").read_bytes()}
    public = polymarket_route(books)

    def route(req: Request) -> Any:
        if req.path == "/auth/derive-api-key":
            if "POLY_ADDRESS" not in {k.upper() for k in req.headers}:
                return js({"error": "Unauthorized"}, 401)
            secret = base64.urlsafe_b64encode(b"s" * 32).decode()
            return js({"apiKey": "00000000-0000-0000-0000-000000000001", "secret": secret, "passphrase": "p"})
        if req.path == "/balance-allowance":
            if "POLY_API_KEY" not in {k.upper() for k in req.headers}:
                return js({"error": "Unauthorized"}, 401)
            return js({"balance": "5000000000", "allowances": {}})  # 5,000 USDC
        return public(req)

    return VenueServer(route).start()


def kalshi_server(public_key: Any, balance_cents: int) -> VenueServer:
    markets = fixture("kalshi_markets.json")["markets"]
    closed = dict(markets[0], ticker=CLOSED, status="closed")
    book = (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()
    return VenueServer(
        kalshi_route(
            {TICKER: book, CLOSED: book}, [*markets, closed], public_key,
            json.dumps({"balance": balance_cents}).encode(),
        )
    ).start()  # fmt: skip


def bus_book(venue: str, inst: str, ts: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> BookBatch:
    return BookBatch(
        id=f"{venue}-{inst}-{ts}", ts=ts, venue=venue, source="test", levels=1, instruments=[inst], inst_idx=[0],
        book_ts=[ts], bid_px=[bids[0][0]], bid_sz=[bids[0][1]], ask_px=[asks[0][0]], ask_sz=[asks[0][1]],
    )  # fmt: skip


def pair(id: str, t: int, token: str = TOKEN, ticker: str = TICKER, size: int = 100):
    legs = [
        Leg(
            venue="polymarket", instrument=token, outcome="yes", size=size, limit_px=5_500, cost_micros=0, fee_micros=0
        ),
        Leg(venue="kalshi", instrument=ticker, outcome="no", size=size, limit_px=5_600, cost_micros=0, fee_micros=0),
    ]
    return factories._with(
        factories.intent(id),
        {"legs": legs, "size": size, "ts": now_ns(), "book_ts": t, "net_edge_per_contract_micros": 40_000,
         "opportunity_key": id, "opportunity_id": f"opp-{id}", "strategy": "xarb"},
    )  # fmt: skip


def store_secrets(settings: Settings, store: Any, user: str, venue: str, body: dict) -> None:
    fields = validate(venue, body, settings=settings, user_id=user)
    box = secret_box(settings)
    assert box is not None
    write_secret_row(store, user, venue, list(fields), box.seal(fields))


async def test_live_validation_takes_open_markets_and_refuses_closed_missing_keyless_and_short(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    key = rsa.generate_private_key(public_exponent=65_537, key_size=2_048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    poly, kal, poor_kal = (
        poly_server(),
        kalshi_server(key.public_key(), 1_234_567),
        kalshi_server(key.public_key(), 100),
    )
    s = msgspec.structs.replace(
        settings,
        paper_default_run=False,
        paper_validation="live",
        polymarket_host=poly.url,
        kalshi_host=kal.url + "/trade-api/v2",
        venue_hosts_allowed=poor_kal.url,  # the second Kalshi server one user's keys point at
    )
    stack = await Stack.open(s)
    try:
        store_secrets(s, stack.store, FULL, "kalshi", {"api_key": "kid-1", "private_key": pem})
        store_secrets(s, stack.store, FULL, "polymarket", {"private_key": "0x" + "11" * 32})
        store_secrets(s, stack.store, POOR, "kalshi", {"api_key": "kid-2", "private_key": pem,
                                                         "host": poor_kal.url + "/trade-api/v2"})  # fmt: skip
        await stack.start("recorder")
        await stack.start("paper")
        bus = await stack.connect("test")

        async def start(user: str, keys: list[str], opp_keys: list[str]) -> str:
            r = await svc(bus, "start", StartRun(
                user_id=user, request=StartRequest(starting_usd=10_000.0, opportunity_keys=opp_keys),
                min_net_edge_micros=5_000, max_leg_micros=1_000_000_000, daily_cap_micros=5_000_000_000,
                keys_present=keys))  # fmt: skip
            assert r.status == 201, r.detail
            assert r.runs[0].validation == "live"
            return r.runs[0].run_id

        full = await start(FULL, ["kalshi", "polymarket"], ["OPEN", "SHUT", "NOBOOK"])
        keyless = await start(NOKEYS, [], ["OPEN"])
        poor = await start(POOR, ["kalshi", "polymarket"], ["OPEN"])
        t = now_ns() - 5 * S
        for b in [
            bus_book("polymarket", TOKEN, t, [(3_900, 500)], [(4_000, 500)]),
            bus_book("polymarket", "999", t, [(3_900, 500)], [(4_000, 500)]),
            bus_book("kalshi", TICKER, t, [(4_500, 500)], [(4_700, 500)]),
            bus_book("kalshi", CLOSED, t, [(4_500, 500)], [(4_700, 500)]),
        ]:
            await bus.publish(subjects.book(b.venue, b.instruments[0]), b)
        for it in [pair("OPEN", t), pair("SHUT", t, ticker=CLOSED), pair("NOBOOK", t, token="999")]:
            await bus.publish(subjects.intent("xarb"), it)
        assert await wait_idle(bus, PAPER, timeout_s=60)
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        rows = stack.store.query_df("SELECT run_id, intent_id, reason, detail FROM {db}.decisions FINAL").rows()
        got = {(r[0], r[1]): (r[2], r[3]) for r in rows}
        assert got[(full, "OPEN")][0] == "taken", got[(full, "OPEN")]
        assert got[(full, "SHUT")] == ("exchange_validation", f"leg 1: kalshi market {CLOSED} is closed")
        reason, detail = got[(full, "NOBOOK")]
        assert reason == "exchange_validation" and "polymarket has no market or book for 999" in detail
        reason, detail = got[(keyless, "OPEN")]
        assert reason == "exchange_keys" and "no exchange keys for kalshi, polymarket" in detail
        reason, detail = got[(poor, "OPEN")]
        assert reason == "exchange_validation"
        need = 100 * 5_600 * 100 + kalshi_fee([(5_600, 100)])  # the NO leg's worst case: $56.00 + $1.73 fee
        assert detail == f"leg 1: kalshi balance $1.00 < ${need / 1e6:.2f} needed (worst case with fees)"
        # what the venues saw: signed balance calls, the books and market status of the legs
        assert kal.count("/trade-api/v2/portfolio/balance") >= 1 and poor_kal.count("/trade-api/v2/portfolio/balance")
        assert kal.count(f"/trade-api/v2/markets/{TICKER}/orderbook") >= 1
        assert poly.count("/book") >= 2 and poly.count("/balance-allowance") >= 1
        out = capfd.readouterr()
        for secret in (pem.splitlines()[1], "11" * 32):  # never in a log line
            assert secret not in out.out and secret not in out.err
    finally:
        await stack.close()
        for server in (poly, kal, poor_kal):
            server.stop()
