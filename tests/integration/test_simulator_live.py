"""Live simulator events on the real stack: the report service's WebSocket bridge (`/simulator/ws`)
and NATS over WebSocket (what a dashboard can subscribe to directly), from events published on
core NATS `ui.simulator.<user_id>.<kind>` as the paper service does. An open socket is closed
(4401) when its token expires, or its user is disabled or their key rotated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from libs import config
from libs.bus import Bus
from libs.bus import subscriptions_live as subscribed
from libs.bus.server import free_port
from libs.paper.views import trade_view
from libs.users.tokens import issue, verify
from proto import subjects
from services.report.live import CLOSE_UNAUTHORIZED
from services.runtime import Stack
from tests.factories import paper_trade

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = "admin-token-for-live-tests"
RECV_TIMEOUT_S = 10.0


@dataclass
class Live:
    stack: Stack
    port: int
    bus: Bus
    users: dict[str, tuple[str, str]]
    """name -> (user_id, access token)"""

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/simulator/ws?token={token}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    home: Path = tmp_path_factory.mktemp("simlive")
    port = free_port()
    settings = config.load({}, home=home / "home", http_port=port, admin_token=ADMIN, jwt_secret="k" * 40)
    stack = await Stack.open(settings)  # no NATS_URL: a local nats-server with WebSocket on
    try:
        await stack.start("report")
        users = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for name in ("alice", "bob"):
                r = await http.post("/admin/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN}"})
                assert r.status_code == 201, r.text
                user = r.json()
                r = await http.post("/auth/token", json={"api_key": user["api_key"]})
                users[name] = (user["user_id"], r.json()["access_token"])
        yield Live(stack, port, await stack.connect("publisher"), users)
    finally:
        await stack.close()


def trade_event(trade_id: str) -> bytes:
    """A `simulator:trade` event as the paper service publishes it: JSON of a TradeView."""
    view = trade_view(paper_trade(trade_id), time.time_ns())
    return msgspec.json.encode({"event": "simulator:trade", "data": view})


async def recv(ws: ClientConnection) -> str:
    msg = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    assert isinstance(msg, str)
    return msg


async def hello(ws: ClientConnection, user_id: str) -> None:
    """The bridge's first message: the subscription is in place from here on."""
    first = msgspec.json.decode(await recv(ws))
    assert first == {
        "event": "simulator:hello",
        "data": {"user_id": user_id, "subject": f"ui.simulator.{user_id}.>"},
    }


def report_subscriptions(live: Live) -> int:
    """Subscriptions on the report service's NATS connection (one per open WebSocket, plus its own)."""
    nc: Any = live.stack.running["report"].ctx.bus.nc
    return len(nc._subs)


async def until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_each_client_gets_only_its_own_users_events(live: Live) -> None:
    (a, token_a), (b, token_b) = live.users["alice"], live.users["bob"]
    base = report_subscriptions(live)
    async with connect(live.ws_url(token_a)) as ws_a, connect(live.ws_url(token_b)) as ws_b:
        await hello(ws_a, a)
        await hello(ws_b, b)
        assert report_subscriptions(live) == base + 2
        nc = live.bus.nc
        for_a = trade_event("tA")
        for_b = msgspec.json.encode({"event": "simulator:run", "data": {"run_id": "rB", "status": "running"}})
        await nc.publish(subjects.ui_simulator(b, "run"), for_b)
        await nc.publish(subjects.ui_simulator(a, "trade"), for_a)
        await nc.publish(subjects.ui_simulator("uother0000000", "trade"), trade_event("tX"))  # nobody's here
        sentinel = trade_event("tA-2")
        await nc.publish(subjects.ui_simulator(a, "trade"), sentinel)
        await nc.flush()
        # unchanged JSON text, in order; B's event (published first) never reaches A
        assert await recv(ws_a) == for_a.decode()
        assert await recv(ws_a) == sentinel.decode()
        assert await recv(ws_b) == for_b.decode()
        event = msgspec.json.decode(for_a)
        assert event["event"] == "simulator:trade" and event["data"]["trade_id"] == "tA"
        await nc.publish(subjects.ui_simulator(b, "trade"), for_a)
        assert await recv(ws_b) == for_a.decode()  # the next thing B gets is its own next event
    # both clients gone: their subscriptions are removed
    await until(lambda: report_subscriptions(live) == base)


async def test_the_same_event_over_nats_websocket(live: Live) -> None:
    a, token_a = live.users["alice"]
    assert live.stack.server is not None
    dashboard = await nats.connect(live.stack.server.ws_url)  # nats-py over ws:// (aiohttp)
    try:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            await got.put(msg.data)

        await dashboard.subscribe(f"ui.simulator.{a}.>", cb=on_msg)
        await subscribed(dashboard)  # the SUB is at the server (see libs.bus.subscriptions_live)
        async with connect(live.ws_url(token_a)) as ws:
            await hello(ws, a)
            event = trade_event("tW")
            await live.bus.nc.publish(subjects.ui_simulator(a, "trade"), event)
            assert await asyncio.wait_for(got.get(), RECV_TIMEOUT_S) == event
            assert await recv(ws) == event.decode()
    finally:
        await dashboard.close()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?token=not-a-jwt", "not a valid jwt"),
        ("", "missing token"),
        ("?token=", "missing token"),
    ],
)
async def test_a_bad_token_closes_with_4401(live: Live, query: str, reason: str) -> None:
    base = report_subscriptions(live)
    async with connect(f"ws://127.0.0.1:{live.port}/simulator/ws{query}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHORIZED == 4401
    assert reason in closed.value.rcvd.reason.lower()
    assert report_subscriptions(live) == base  # nothing was subscribed for it


async def test_a_token_signed_with_another_key_is_refused(live: Live) -> None:
    a, _ = live.users["alice"]
    forged, _ = issue(b"x" * 40, a, "0" * 64, 600.0)
    async with connect(live.ws_url(forged)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Wait (bounded) for the server to close the socket; (code, reason)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_socket_is_closed_when_its_token_expires(live: Live) -> None:
    a, token_a = live.users["alice"]
    kh = verify(b"k" * 40, token_a).kh  # the same API key as alice's token: only the lifetime differs
    short, claims = issue(b"k" * 40, a, kh, ttl_s=2.0)
    base = report_subscriptions(live)
    async with connect(live.ws_url(short)) as ws:
        await hello(ws, a)
        code, reason = await closed_with(ws)
    assert code == CLOSE_UNAUTHORIZED
    assert reason.startswith("token expired at ") and "POST /auth/token" in reason
    assert time.time() >= claims.exp  # not before the token's exp
    await until(lambda: report_subscriptions(live) == base)


@pytest.mark.parametrize("change", ["disable", "rotate"])
async def test_a_socket_is_closed_when_its_user_is_disabled_or_its_key_rotated(
    live: Live, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.report.live.RECHECK_S", 0.2)  # checked every 5 s by default
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}", timeout=30) as http:
        r = await http.post("/admin/users", json={"name": f"ws-{change}"}, headers=admin)
        user = r.json()
        token = (await http.post("/auth/token", json={"api_key": user["api_key"]})).json()["access_token"]
        async with connect(live.ws_url(token)) as ws:
            await hello(ws, user["user_id"])
            event = trade_event("tBefore")
            await live.bus.nc.publish(subjects.ui_simulator(user["user_id"], "trade"), event)
            assert await recv(ws) == event.decode()  # open and working until the change
            if change == "disable":
                r = await http.patch(f"/admin/users/{user['user_id']}", json={"disabled": True}, headers=admin)
                assert r.status_code == 200 and r.json()["disabled"] is True
            else:
                r = await http.post(f"/admin/users/{user['user_id']}/api-key", headers=admin)
                assert r.status_code == 200
            code, reason = await closed_with(ws)
    assert code == CLOSE_UNAUTHORIZED
    expected = f"user {user['user_id']} is disabled" if change == "disable" else "rotated"
    assert expected in reason
