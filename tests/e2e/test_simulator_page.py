"""The /simulator web page in a real headless browser (Debian's chromium via Playwright) on the real
stack: nats-server, chDB, recorder, detect, paper and report with HTTP on a free port.

A user made through the admin API signs in with their key, starts a labelled run from the form,
and market data crossing between two venues makes detect emit an intent that paper takes: the
trade must appear in the page's list without a reload (from the WebSocket), its detail modal must
show the legs and fees the API reports (and that this test computes from the books and Kalshi's
fee rule), the socket must come back after the server restarts, and the stopped run must show in
the history with its label. The header names the user (their id beside it), and the detail modal
fits a 1280x720 laptop screen: status, times, P&L, fees, legs and the settle row without scrolling.
Bad input (a wrong key, a negative amount) shows the API's own error.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from libs.bus import Bus
from libs.config import Settings
from proto import subjects
from proto.events import BookBatch
from services.ingest.service import synced
from services.report.routes_page import ASSETS, SECURITY_HEADERS
from services.runtime import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's chromium is not installed at {CHROMIUM}: `make test` installs it "
    "(apt-get install chromium, as root or with passwordless sudo)",
)

ADMIN_TOKEN = "page-test-admin-token-0123456789"
WAIT_MS = 30_000
LAPTOP = {"width": 1280, "height": 720}
"""The viewport the trade modal must fit whole (its key rows shown without scrolling)."""
USER_NAME = "page tester"
"""Deadline of every wait on the page (a poll, not a sleep: it returns as soon as the page matches)."""

# The market: Polymarket sells YES at 0.45, Kalshi bids 0.53 for YES (so sells NO at 0.47), 100
# contracts each. Buying both sides costs 0.92 per pair that pays $1.
INSTRUMENT = "EVT"
OPPORTUNITY_KEY = f"xarb:{INSTRUMENT}:yes@polymarket+no@kalshi"
SIZE = 100
PM_YES_ASK = Fraction(45, 100)
KALSHI_YES_BID = Fraction(53, 100)
KALSHI_NO = 1 - KALSHI_YES_BID
STARTING_USD = 1000


def kalshi_fee(contracts: int, price: Fraction) -> Fraction:
    """Kalshi's taker fee as published: ceil(0.07 × C × P × (1 − P)) to the cent."""
    cents = Fraction(7, 100) * contracts * price * (1 - price) * 100
    return Fraction(math.ceil(cents), 100)


PM_COST = SIZE * PM_YES_ASK  # $45.00; Polymarket's fee rate is 0 unless the market sets one
KALSHI_COST = SIZE * KALSHI_NO  # $47.00
FEE = kalshi_fee(SIZE, KALSHI_NO)  # ceil(174.37c) = $1.75
PNL = SIZE - PM_COST - KALSHI_COST - FEE  # $6.25 locked in per trade


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def money(text: str) -> float:
    """A dollar amount as the page shows it ("$1,006.25", "+$6.25", "-$0.50") as a number."""
    m = re.fullmatch(r"([+-]?)\$([\d,]+(?:\.\d+)?)", text.strip())
    assert m, f"not a dollar amount: {text!r}"
    value = float(m.group(2).replace(",", ""))
    return -value if m.group(1) == "-" else value


def page_time(iso: str) -> str:
    """How the page shows an API timestamp: "2026-01-02T03:04:05.123456Z" → "2026-01-02 03:04:05.123 UTC"."""
    return f"{iso[:10]} {iso[11:23]} UTC"


def book(venue: str, ts: int, bid: Fraction, ask: Fraction) -> BookBatch:
    return BookBatch(
        id=f"{venue}-{ts}", ts=ts, venue=venue, source="test", levels=1, instruments=[INSTRUMENT], inst_idx=[0],
        book_ts=[ts], bid_px=[int(bid * 10_000)], bid_sz=[SIZE], ask_px=[int(ask * 10_000)], ask_sz=[SIZE],
    )  # fmt: skip


async def publish_market(bus: Bus, crossing: bool) -> None:
    """Both venues' books for one instant (a sync group, judged whole by detect), stamped now."""
    ts = time.time_ns()
    kalshi_bid = KALSHI_YES_BID if crossing else Fraction(40, 100)
    group = synced(
        f"g{ts}",
        book("polymarket", ts, Fraction(43, 100), PM_YES_ASK),
        book("kalshi", ts, kalshi_bid, kalshi_bid + Fraction(2, 100)),
    )
    for b in group:
        await bus.publish(subjects.book(b.venue, INSTRUMENT), b)


@dataclass
class Env:
    stack: Stack
    base: str
    http: httpx.AsyncClient
    bus: Bus


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    port = free_port()
    settings = msgspec.structs.replace(
        settings,
        http_port=port,
        admin_token=ADMIN_TOKEN,
        paper_settlement_delay_s=1.0,
        paper_default_run=False,
    )
    stack = await Stack.open(settings)
    try:
        for name in ("recorder", "paper", "detect", "report"):
            await stack.start(name)
        bus = await stack.connect("page-test")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Env(stack=stack, base=base, http=http, bus=bus)
    finally:
        await stack.close()


async def new_user(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await http.post("/admin/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code in (200, 201), r.text
    return r.json()


async def stored(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], ready: Callable[[Any], bool] = lambda body: True
) -> Any:
    """GET `path` until it answers 200 with a body `ready` accepts (the recorder stores what paper did
    a moment after the live event), or fail at the deadline with the last answer."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        r = await http.get(path, headers=headers)
        if r.status_code == 200 and ready(r.json()):
            return r.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {path}: {r.status_code} {r.text[:500]}")
        await asyncio.sleep(0.1)


async def bearer(http: httpx.AsyncClient, api_key: str) -> dict[str, str]:
    r = await http.post("/auth/token", json={"api_key": api_key})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# -- served files (no browser needed) -------------------------------------------------------------------


async def test_the_page_and_its_assets_are_served_locally_with_a_strict_policy(settings: Settings) -> None:
    port = free_port()
    stack = await Stack.open(msgspec.structs.replace(settings, http_port=port))
    try:
        await stack.start("report")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.get("/simulator")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            policy = r.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "default-src 'none'" in policy
            assert r.headers["x-content-type-options"] == "nosniff"
            html = r.text
            referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert {"/static/simulator.js", "/static/simulator.css"} <= set(referenced)
            texts = {"/simulator": html}
            for ref in referenced:
                if ref.startswith("data:"):
                    continue
                assert ref.startswith("/"), f"{ref} is not served by this origin (the page must work offline)"
                a = await http.get(ref)
                assert a.status_code == 200, ref
                assert a.headers["content-type"] == ASSETS[ref.rsplit("/", 1)[1]]
                assert a.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
                texts[ref] = a.text
            for ref, text in texts.items():  # nothing from a CDN or any other origin
                assert not re.search(r"""(?:src|href|url\()\s*=?\s*["']?(?:https?:)?//""", text), ref
            assert "innerHTML" not in texts["/static/simulator.js"], "data reaches the DOM as text only"

            for path in ("/static/nope.js", "/static/..%2Fstatic%2Fsimulator.html", "/static/simulator.html"):
                r = await http.get(path)
                assert r.status_code == 404, path
                assert r.json()["detail"].startswith("Not Found"), path
    finally:
        await stack.close()


# -- the page in a browser -------------------------------------------------------------------------------


@needs_chromium
async def test_simulator_page_end_to_end(env: Env, tmp_path: Path) -> None:
    pytest.importorskip("playwright.async_api", reason="playwright is a dev dependency: `make setup` installs it")
    from playwright.async_api import async_playwright, expect

    user = await new_user(env.http, USER_NAME)
    api_key = user["api_key"]
    auth = await bearer(env.http, api_key)
    label = "<b>fed</b> arb & 'night' run"  # markup in data must show as text
    notes = "watching the Fed market\nsecond line"

    console: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        tid = page.get_by_test_id
        try:
            await page.goto(f"{env.base}/simulator")
            await expect(tid("signin")).to_be_visible()
            await expect(tid("app")).to_be_hidden()

            # a wrong key: the API's detail, verbatim
            r = await env.http.post("/auth/token", json={"api_key": "mt_not-a-key"})
            assert r.status_code == 401 or r.status_code == 422, r.text
            await tid("api-key").fill("mt_not-a-key")
            await tid("signin-button").click()
            await expect(tid("signin-error")).to_have_text(r.json()["detail"], timeout=WAIT_MS)
            await expect(tid("app")).to_be_hidden()

            await tid("api-key").fill(api_key)
            await tid("signin-button").click()
            await expect(tid("app")).to_be_visible(timeout=WAIT_MS)
            # the header names the user; the id stays at hand beside it and in the tooltip
            await expect(tid("whoami")).to_have_text(USER_NAME, timeout=WAIT_MS)
            await expect(tid("whoami")).to_have_attribute("title", f"user id {user['user_id']}")
            await expect(tid("whoami-id")).to_have_text(user["user_id"])
            await expect(tid("ws-status")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
            await expect(tid("no-runs")).to_be_visible()

            # a bad start: the API's error next to the form, and no run
            r = await env.http.post("/simulator/start", json={"starting_usd": -5}, headers=auth)
            assert 400 <= r.status_code < 500, r.text
            await tid("starting-usd").fill("-5")
            await tid("start-button").click()
            await expect(tid("start-error")).to_have_text(r.json()["detail"], timeout=WAIT_MS)
            await expect(tid("active-run")).to_have_count(0)
            assert (await env.http.get("/simulator/status", headers=auth)).json()["active"] == []

            # a good start
            await tid("starting-usd").fill(str(STARTING_USD))
            await tid("opportunity-keys").fill(OPPORTUNITY_KEY)
            await tid("label").fill(label)
            await tid("notes").fill(notes)
            await tid("start-button").click()
            await expect(tid("active-run")).to_have_count(1, timeout=WAIT_MS)
            await expect(tid("start-error")).to_have_text("")
            # the market has not crossed yet: detect has never reported this key, and the page says so
            await expect(tid("start-warning")).to_contain_text(f"{OPPORTUNITY_KEY!r} has never been seen by detect")
            active = tid("active-run")
            run_id = await active.get_attribute("data-run-id")
            assert run_id
            await expect(active.get_by_test_id("run-label")).to_have_text(label)
            assert await active.locator("b").count() == 0, "the label's markup must not become elements"
            await expect(active.get_by_test_id("run-balance")).to_have_text("$1,000.00")
            await expect(tid("no-trades")).to_be_visible()

            # the market crosses: detect emits an intent, paper takes it, the page shows it live
            await page.evaluate("window.__sameDocument = true")
            await publish_market(env.bus, crossing=True)
            rows = tid("trade-row")
            await expect(rows).to_have_count(1, timeout=WAIT_MS)
            assert await page.evaluate("window.__sameDocument === true"), "the page must not reload"
            assert int(await tid("ws-status").get_attribute("data-events") or 0) > 0, "live events arrived"
            row = rows.first
            trade_id = await row.get_attribute("data-trade-id")
            assert trade_id
            await expect(row.get_by_test_id("trade-key")).to_have_text(OPPORTUNITY_KEY)
            await expect(row.get_by_test_id("trade-requested")).to_have_text(str(SIZE))
            await expect(row.get_by_test_id("trade-matched")).to_have_text(str(SIZE))
            await expect(row.get_by_test_id("trade-fill")).to_have_text("100%")
            await expect(row.get_by_test_id("trade-pair")).to_have_text("hedged")
            assert money(await row.get_by_test_id("trade-cost").inner_text()) == float(PM_COST + KALSHI_COST)
            assert money(await row.get_by_test_id("trade-fees").inner_text()) == float(FEE)
            assert money(await row.get_by_test_id("trade-pnl").inner_text()) == float(PNL)
            assert await row.get_by_test_id("trade-status").inner_text() in ("queued", "executed", "settled")

            # the API says the same (once the recorder has stored it)
            detail = await stored(env.http, f"/simulator/trades/{trade_id}", auth)
            api_trade = detail["trade"]
            assert api_trade["run_id"] == run_id
            assert (api_trade["cost_usd"], api_trade["fees_usd"], api_trade["pnl_usd"]) == (
                float(PM_COST + KALSHI_COST),
                float(FEE),
                float(PNL),
            )

            # the detail modal: legs, fees, timestamps, the decision's checks
            await row.click()
            modal = tid("trade-modal")
            await expect(modal).to_be_visible()
            await expect(modal).to_have_attribute("data-state", "loaded", timeout=WAIT_MS)
            await expect(modal.get_by_test_id("trade-field-trade_id")).to_have_text(trade_id)
            await expect(modal.get_by_test_id("trade-field-executed_at")).to_have_text(
                page_time(api_trade["executed_at"])
            )
            settled_at = page_time(api_trade["settled_at"])
            await expect(modal.get_by_test_id("trade-field-settled_at")).to_have_text(settled_at)
            assert money(await modal.get_by_test_id("trade-field-fees_usd").inner_text()) == api_trade["fees_usd"]
            assert money(await modal.get_by_test_id("trade-field-payout_usd").inner_text()) == float(SIZE)
            legs = modal.get_by_test_id("leg-row")
            await expect(legs).to_have_count(len(api_trade["legs"]))
            assert len(api_trade["legs"]) == 2
            expected_legs = {
                "polymarket": ("yes", PM_COST, Fraction(0)),
                "kalshi": ("no", KALSHI_COST, FEE),
            }
            shown_fees = 0.0
            for i, api_leg in enumerate(api_trade["legs"]):
                leg = legs.nth(i)
                outcome, cost, fee = expected_legs[api_leg["venue"]]
                await expect(leg.get_by_test_id("leg-venue")).to_have_text(api_leg["venue"])
                await expect(leg.get_by_test_id("leg-instrument")).to_have_text(INSTRUMENT)
                await expect(leg.get_by_test_id("leg-outcome")).to_have_text(outcome)
                await expect(leg.get_by_test_id("leg-matched")).to_have_text(str(api_leg["matched_size"]))
                assert api_leg["matched_size"] == SIZE
                shown_cost = money(await leg.get_by_test_id("leg-cost").inner_text())
                shown_fee = money(await leg.get_by_test_id("leg-fee").inner_text())
                assert (shown_cost, shown_fee) == (api_leg["cost_usd"], api_leg["fee_usd"]) == (float(cost), float(fee))
                shown_fees += shown_fee
            assert shown_fees == float(FEE)
            decision = detail["decision"]
            assert decision is not None and decision["taken"] is True
            checks = modal.get_by_test_id("check-row")
            await expect(checks).to_have_count(len(decision["checks"]))
            assert len(decision["checks"]) > 0
            for i, check in enumerate(decision["checks"]):
                await expect(checks.nth(i)).to_have_attribute("data-check", check["name"])
                await expect(checks.nth(i)).to_have_attribute("data-passed", "true")
            await tid("trade-modal-close").click()
            await expect(modal).to_be_hidden()

            # settlement (1 s after execution) credits the payout: balance and P&L follow
            await expect(row.get_by_test_id("trade-status")).to_have_text("settled", timeout=WAIT_MS)
            await expect(tid("status-trades")).to_have_text("1", timeout=WAIT_MS)
            await expect(tid("status-pnl")).to_have_text(f"+${float(PNL):.2f}", timeout=WAIT_MS)
            await expect(tid("status-balance")).to_have_text(f"${STARTING_USD + float(PNL):,.2f}", timeout=WAIT_MS)

            # on a 1280x720 laptop screen the settled trade's modal shows its key rows without scrolling
            await stored(
                env.http,
                f"/simulator/trades/{trade_id}",
                auth,
                lambda body: [b["kind"] for b in body["balance_changes"]] == ["fill", "settle"],
            )
            await page.set_viewport_size(LAPTOP)
            await row.click()
            await expect(modal).to_have_attribute("data-state", "loaded", timeout=WAIT_MS)
            await expect(modal.get_by_test_id("trade-field-status")).to_have_text("settled")
            balance_rows = modal.get_by_test_id("balance-row")
            await expect(balance_rows).to_have_count(2)
            await expect(balance_rows.nth(0)).to_have_attribute("data-kind", "fill")
            settle = balance_rows.nth(1)
            await expect(settle).to_have_attribute("data-kind", "settle")
            # settling credits the payout ($1 a pair); the run's cash and P&L after it
            assert money(await settle.get_by_test_id("balance-amount").inner_text()) == float(SIZE)
            assert money(await settle.get_by_test_id("balance-balance").inner_text()) == STARTING_USD + float(PNL)
            assert money(await settle.get_by_test_id("balance-pnl").inner_text()) == float(PNL)
            key_rows = {
                name: modal.get_by_test_id(f"trade-field-{name}")
                for name in ("status", "executed_at", "settled_at", "pnl_usd", "fees_usd", "cost_usd", "payout_usd")
            }
            key_rows |= {f"leg {i}": legs.nth(i) for i in range(2)}
            key_rows |= {"settle row": settle, "check list": modal.get_by_test_id("trade-checks-scroll")}
            for name, node in key_rows.items():
                box = await node.bounding_box()
                assert box is not None, f"{name} is not shown"
                assert box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"], (name, box)
                assert box["x"] >= 0 and box["x"] + box["width"] <= LAPTOP["width"], (name, box)
            scroll = await modal.evaluate(
                "d => ({top: d.scrollTop, height: d.scrollHeight, client: d.clientHeight, page: window.scrollY})"
            )
            assert scroll["top"] == 0 and scroll["height"] <= scroll["client"], f"the modal itself scrolls: {scroll}"
            await tid("trade-modal-close").click()
            await expect(modal).to_be_hidden()
            await page.set_viewport_size({"width": 1400, "height": 1000})

            # the token survives a reload (sessionStorage); the key does not need to be typed again
            await page.reload()
            await expect(tid("app")).to_be_visible(timeout=WAIT_MS)
            await expect(tid("whoami")).to_have_text(USER_NAME, timeout=WAIT_MS)
            await expect(tid("trade-row")).to_have_count(1, timeout=WAIT_MS)
            await expect(tid("ws-status")).to_have_attribute("data-state", "open", timeout=WAIT_MS)

            # the server goes away and comes back: the socket reconnects and the next trade shows live
            await env.stack.stop_service("report")
            await expect(tid("ws-status")).not_to_have_attribute("data-state", "open", timeout=WAIT_MS)
            await env.stack.start("report")
            await expect(tid("ws-status")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
            await page.evaluate("window.__sameDocument = true")
            await publish_market(env.bus, crossing=False)  # the first opportunity closes
            await publish_market(env.bus, crossing=True)  # a new one opens: a second intent
            await expect(tid("trade-row")).to_have_count(2, timeout=WAIT_MS)
            assert await page.evaluate("window.__sameDocument === true")
            newest = await tid("trade-row").first.get_attribute("data-trade-id")
            assert newest != trade_id, "newest first"
            await expect(tid("trade-row").nth(1)).to_have_attribute("data-trade-id", trade_id)

            # stop: the run leaves the active list and shows in the history with its label and notes
            await tid("stop-run").click()
            await expect(tid("active-run")).to_have_count(0, timeout=WAIT_MS)
            history = page.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')
            await expect(history).to_have_count(1)
            await expect(history.get_by_test_id("run-label")).to_have_text(label)
            await expect(history.get_by_test_id("run-notes")).to_have_text(notes)
            await expect(history.get_by_test_id("run-status")).to_have_text(re.compile(r"^stopped"), timeout=WAIT_MS)
            await expect(history.get_by_test_id("run-trades")).to_have_text("2", timeout=WAIT_MS)
            # a stopped run still settles what it had pending: the history follows live
            final_usd = STARTING_USD + 2 * float(PNL)
            await expect(history.get_by_test_id("run-balance")).to_have_text(f"${final_usd:,.2f}", timeout=WAIT_MS)
            await expect(history.get_by_test_id("run-pnl")).to_have_text(f"+${2 * float(PNL):.2f}")
            runs = await stored(
                env.http,
                "/simulator/runs",
                auth,
                lambda body: any(x["run_id"] == run_id and x["status"] == "stopped" for x in body["runs"]),
            )
            api_run = next(x for x in runs["runs"] if x["run_id"] == run_id)
            assert (api_run["label"], api_run["notes"], api_run["trade_count"]) == (label, notes, 2)

            # its decisions (one per intent, both taken; span starts may add untaken ones)
            api_decisions = (
                await stored(
                    env.http,
                    f"/simulator/runs/{run_id}/decisions",
                    auth,
                    lambda body: sum(d["taken"] for d in body["decisions"]) == 2,
                )
            )["decisions"]
            await history.click()
            await tid("decisions-button").click()
            decisions = tid("decision-row")
            await expect(decisions).to_have_count(len(api_decisions), timeout=WAIT_MS)
            taken = page.locator('[data-testid="decision-row"][data-taken="true"]')
            await expect(taken).to_have_count(2)
            for i in range(2):
                await expect(taken.nth(i).get_by_test_id("decision-outcome")).to_have_text("taken")
                await expect(taken.nth(i).get_by_test_id("decision-source")).to_have_text("intent")

            # sign out: the token is gone, a reload asks for the key again
            await tid("signout-button").click()
            await expect(tid("signin")).to_be_visible()
            await page.reload()
            await expect(tid("signin")).to_be_visible()
            await expect(tid("app")).to_be_hidden()
            assert not [line for line in console if line.startswith("pageerror")], console
        except BaseException:
            shot = tmp_path / "simulator-failure.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}\nbrowser console:\n" + "\n".join(console))
            raise
        finally:
            await browser.close()
