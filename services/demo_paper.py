"""The demo's paper-trading part, driven the way a user drives it: over the HTTP API.

Before the markets play, `PaperDemo.open` creates a user through the admin API, exchanges the API
key for a token, sets the profile thresholds, starts three runs (`wide` watches everything, `strict`
asks for 1.5 cents of net edge, so it passes an opening's first intents and takes a better one
detect sends later, `small` has $25 to spend, so its balance check bites) and listens on
the `/simulator/ws` WebSocket. Once the markets have played and been drained, `PaperDemo.close`
reads the runs back (status, decisions by reason, the success-span report), stops them and
returns the lines it prints; the count of live `simulator:trade` events is checked against the
trades the API lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import httpx
import websockets

from libs.config import Settings
from libs.users.secretbox import admin_token

RUNS: list[dict[str, Any]] = [
    {"label": "wide", "starting_usd": 10_000, "notes": "every opportunity, profile thresholds"},
    {"label": "strict", "starting_usd": 10_000, "filters": {"min_net_edge_cents": 1.5}, "notes": "1.5c minimum"},
    {"label": "small", "starting_usd": 25, "notes": "a $25 balance: most intents fail the balance check"},
]
PROFILE = {"min_net_edge_cents": 0.5, "max_leg_usd": 500.0, "daily_cap_usd": 4_000.0}


class PaperDemo:
    """A demo user's session against the report service's HTTP API."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/simulator/ws"
        self.settings = settings
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30)
        self.run_ids: list[str] = []
        self.live_trades: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"demo: {method} {path} answered {r.status_code}: {r.text}")
        return r.json()

    async def open(self) -> None:
        admin = {"Authorization": f"Bearer {admin_token(self.settings)}"}
        user = await self._call("POST", "/admin/users", json={"name": "demo-trader"}, headers=admin)
        token = await self._call("POST", "/auth/token", json={"api_key": user["api_key"]})
        self.token = token["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        await self._call("PUT", "/profile", json=PROFILE)
        self._listener = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 10)
        for body in RUNS:
            self.run_ids.append((await self._call("POST", "/simulator/start", json=body))["run"]["run_id"])

    async def _listen(self) -> None:
        async with websockets.connect(f"{self.ws_url}?token={self.token}") as ws:
            async for text in ws:
                event = json.loads(text)
                if event["event"] == "simulator:hello":
                    self._ready.set()
                elif event["event"] == "simulator:trade":
                    self.live_trades.add(event["data"]["trade_id"])

    async def close(self) -> str:
        """Read everything back, stop the runs, and say what happened."""
        try:
            return await self._summary()
        finally:
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._listener
            await self.http.aclose()

    async def _settled(self, timeout_s: float = 15.0) -> dict[str, dict[str, Any]]:
        """The demo's runs once every trade has settled and been stored (a stopped run still settles)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            runs = {r["run_id"]: r for r in (await self._call("GET", "/simulator/runs", params={"limit": 100}))["runs"]}
            mine = [runs.get(run_id) for run_id in self.run_ids]
            done = all(r is not None and r["status"] != "running" and r["unsettled_usd"] == 0 for r in mine)
            if done or asyncio.get_running_loop().time() > deadline:
                return runs
            await asyncio.sleep(0.25)

    async def _summary(self) -> str:
        out = [f"paper trading over the HTTP API (user demo-trader, {len(self.run_ids)} runs, {self.base}/simulator)"]
        out.append(
            f"  {'run':<8} {'start $':>9} {'balance $':>11} {'P&L $':>8} {'trades':>6} {'broken':>6}"
            "  not taken, by reason"
        )
        all_trades: set[str] = set()
        for run_id in self.run_ids:
            await self._call("POST", "/simulator/stop", json={"run_id": run_id})
        runs = await self._settled()
        for run_id in self.run_ids:
            stopped = runs[run_id]
            trades = await self._call("GET", f"/simulator/runs/{run_id}/trades", params={"limit": 1000})
            all_trades |= {t["trade_id"] for t in trades["trades"]}
            skipped = await self._call(
                "GET", f"/simulator/runs/{run_id}/decisions", params={"taken": "false", "limit": 1000}
            )
            reasons = Counter(d["reason"] for d in skipped["decisions"])
            why = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3)) or "-"
            out.append(
                f"  {stopped['label']:<8} {stopped['starting_usd']:>9,.2f} {stopped['balance_usd']:>11,.2f} "
                f"{stopped['pnl_usd']:>8,.2f} {stopped['trade_count']:>6} {stopped['broken_count']:>6}  {why}"
            )
        for _ in range(50):  # the live event follows the stored step by a moment
            if all_trades <= self.live_trades:
                break
            await asyncio.sleep(0.1)
        out.append(
            f"  live simulator:trade events on /simulator/ws: {len(self.live_trades)} "
            f"(trades the API lists: {len(all_trades)}, all seen live: {all_trades <= self.live_trades})"
        )
        report = await self._call(
            "GET", "/simulator/report", params={"hours": 24, "max_gap_s": 120, "min_edge_cents": 0.5}
        )
        missed = ", ".join(f"{r} {n}" for r, n in sorted(report["missed_by_reason"].items())) or "-"
        out.append(
            f"  success spans ≥ 0.5c, last 24 h of market time: {report['spans_total']}, caught {report['caught']}, "
            f"missed {report['missed']} ({missed}); edge captured ${report['edge_captured_usd']:,.2f} "
            f"of ${report['edge_available_usd']:,.2f} available"
        )
        return "\n".join(out)
