"""Exchange validation against the live venues (MT_PAPER_VALIDATION=live), read-only.

What a live executor would check before sending a pair's orders, through the real connectors
(`libs.venues`): for each leg, the market's status and its current order book, and — when the
run's user stored keys for the venue — the account balance.

- Polymarket (py-clob-client): GET /book for the leg's token (404: no book → refused), its depth at
  or below the leg's limit (buying NO on a YES token's book takes its bids reflected, as everywhere
  in paper), and the market's status from GET /markets/{condition id} (the book names the
  market): closed/archived/inactive is refused. With the user's `private_key` (and `funder`): the
  CLOB API credentials are derived (GET /auth/derive-api-key; created with POST /auth/api-key
  only when none exist yet) and GET /balance-allowance (collateral, USDC in 6 decimals =
  micro-dollars) must cover the leg's worst case. Signature type: 0 (the key's own wallet) without a
  funder, 2 (a browser-wallet proxy, the common case) with one.
- Kalshi (kalshi-python-sync): GET /markets/{ticker} (status closed/settled/finalized/determined/
  inactive is refused) and GET /markets/{ticker}/orderbook (depth as above; the ticker is the
  MarketInfo's `market_id` when one came by, else the leg's instrument). With the user's
  `api_key` and `private_key` (or `private_key_path`): the RSA-PSS signed GET /portfolio/balance must
  cover the leg's worst case.

The leg's worst case is its size (cut to the run's max leg) × its limit price + the taker fee at
that price, as the balance check computes it. Live checks see the venue as it is *now*, not as of
the intent's book time (that is the point of them). Each call is tried twice at most (a slow venue
holds the batch being decided); public answers are cached per batch, market statuses for 10 s,
derived Polymarket credentials and the user's secrets for 60 s.

Secrets: read with `libs.users.secrets.load_secrets` (decrypted), kept in memory only for the cache
period, and never put in a log line, a detail or an exception message: failures of authenticated
calls are reported by venue, endpoint and HTTP status only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libs.fees import KALSHI, POLYMARKET
from libs.paper.books import CLOSED_STATUSES, MarketFacts
from libs.paper.engine import Prepared, RunLimits, price, usd
from libs.retry import RetryPolicy
from libs.venues.errors import PayloadError, VenueHTTPError
from proto.units import CASH_PER_PRICE_UNIT, PRICE_SCALE

STATUS_TTL_S = 10.0
SECRETS_TTL_S = 60.0
CREDS_TTL_S = 60.0
CALL_POLICY = RetryPolicy(attempts=2, base_s=0.2, max_s=1.0)
MAX_CONCURRENT = 8

SecretsLoader = Callable[[str], Awaitable[dict[str, dict[str, Any]]]]


class LegResult:
    """A leg's live market check: '' when it passed, else why not."""

    __slots__ = ("problem",)

    def __init__(self, problem: str = "") -> None:
        self.problem = problem


def _depth(bid_px: Sequence[int], bid_sz: Sequence[int], ask_px: Sequence[int], ask_sz: Sequence[int], outcome: str,
           limit: int) -> int:  # fmt: skip
    """Contracts of `outcome` for sale at or below `limit` on a YES-terms book."""
    if outcome == "yes":
        return sum(s for p, s in zip(ask_px, ask_sz, strict=True) if s > 0 and p <= limit)
    return sum(s for p, s in zip(bid_px, bid_sz, strict=True) if s > 0 and PRICE_SCALE - p <= limit)


def _http_problem(venue: str, e: Exception) -> str:
    if isinstance(e, VenueHTTPError):
        shown = f"HTTP {e.status}" if e.status else "no response"
        return f"{venue} {e.endpoint}: {shown}"
    return f"{venue}: {type(e).__name__}"


class LiveValidator:
    """Validates legs against the venues; one per paper service."""

    def __init__(
        self,
        settings: Any,
        store: Any,
        log: Any,
        facts: MarketFacts | None = None,
        secrets_loader: SecretsLoader | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.facts = facts or MarketFacts()
        self._loader = secrets_loader or self._load_from_store
        self._secrets: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._status: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._creds: dict[tuple[str, str], tuple[float, Any]] = {}
        self._public: dict[tuple[str, str], Any] = {}
        self._sem = asyncio.Semaphore(MAX_CONCURRENT)

    async def close(self) -> None:
        self._secrets.clear()
        self._creds.clear()

    # -- secrets -----------------------------------------------------------------------------

    async def _load_from_store(self, user_id: str) -> dict[str, dict[str, Any]]:
        if self.store is None:
            raise RuntimeError("live validation needs the store for users' exchange secrets (CLICKHOUSE_URL)")
        from libs.users.secrets import load_secrets

        return await asyncio.to_thread(load_secrets, self.store, self.settings, user_id)

    async def secrets(self, user_id: str) -> dict[str, dict[str, Any]]:
        """The user's decrypted secrets (cached briefly). Never log the result."""
        hit = self._secrets.get(user_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = await self._loader(user_id)
        self._secrets[user_id] = (time.monotonic() + SECRETS_TTL_S, found)
        return found

    # -- hosts and clients -------------------------------------------------------------------

    def _poly_host(self, secrets: dict[str, Any] | None) -> str:
        return ((secrets or {}).get("host") or self.settings.polymarket_host).rstrip("/")

    def _kalshi_host(self, secrets: dict[str, Any] | None) -> str:
        from libs.venues.kalshi import host_for

        s = secrets or {}
        if s.get("host") or s.get("use_demo"):
            return host_for(s.get("host", ""), bool(s.get("use_demo")))
        return self.settings.kalshi_host.rstrip("/")

    def _client(self, venue: str, host: str) -> Any:
        key = (venue, host)
        client = self._public.get(key)
        if client is None:
            if venue == POLYMARKET:
                from libs.venues.polymarket import PolymarketClient

                client = PolymarketClient(host, policy=CALL_POLICY)
            else:
                from libs.venues.kalshi import KalshiClient

                client = KalshiClient(host, policy=CALL_POLICY, timeout_s=5.0)
            self._public[key] = client
        return client

    # -- market checks (public) --------------------------------------------------------------

    async def _status_of(self, venue: str, host: str, market: str, fetch: Callable[[], Awaitable[str]]) -> str:
        key = (venue, host, market)
        hit = self._status.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        status = (await fetch()).strip().lower()
        self._status[key] = (time.monotonic() + STATUS_TTL_S, status)
        return status

    async def leg(self, venue: str, instrument: str, outcome: str, limit: int, host: str) -> LegResult:
        """Market status and live depth of one leg."""
        async with self._sem:
            try:
                if venue == POLYMARKET:
                    return await self._polymarket_leg(instrument, outcome, limit, host)
                if venue == KALSHI:
                    return await self._kalshi_leg(instrument, outcome, limit, host)
            except (VenueHTTPError, PayloadError, OSError, ValueError) as e:
                if isinstance(e, VenueHTTPError) and e.status == 404:
                    return LegResult(f"{venue} has no market or book for {instrument} ({e.endpoint}: HTTP 404)")
                return LegResult(
                    f"{venue} {instrument}: {_http_problem(venue, e) if not isinstance(e, PayloadError) else e}"
                )
        return LegResult(f"no live validation for venue {venue!r}")

    async def _polymarket_leg(self, token: str, outcome: str, limit: int, host: str) -> LegResult:
        from libs.venues.polymarket import market_status, parse_book

        client = self._client(POLYMARKET, host)
        resp = await client.book(token)
        body = json.loads(resp.body)
        book = parse_book(body, resp.recv_ts, token)
        condition = body.get("market") if isinstance(body, dict) else None
        if isinstance(condition, str) and condition:

            async def fetch() -> str:
                return market_status(await client.market(condition))

            status = await self._status_of(POLYMARKET, host, condition, fetch)
            if status in CLOSED_STATUSES:
                return LegResult(f"polymarket market {condition[:18]}… of token {token[:18]}… is {status}")
        depth = _depth(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, outcome, limit)
        if depth <= 0:
            return LegResult(
                f"polymarket token {token[:18]}…: no {outcome.upper()} depth at or below {price(limit)} "
                "on the live book"
            )
        return LegResult()

    async def _kalshi_leg(self, instrument: str, outcome: str, limit: int, host: str) -> LegResult:
        from libs.venues.kalshi import parse_orderbook

        ticker = self.facts.market_id.get((KALSHI, instrument), instrument)
        client = self._client(KALSHI, host)

        async def fetch() -> str:
            data = json.loads((await client.market(ticker)).body)
            market = data.get("market") if isinstance(data, dict) else None
            return str(market.get("status", "")) if isinstance(market, dict) else ""

        status = await self._status_of(KALSHI, host, ticker, fetch)
        if status in CLOSED_STATUSES:
            return LegResult(f"kalshi market {ticker} is {status}")
        resp = await client.orderbook(ticker)
        book = parse_orderbook(json.loads(resp.body), ticker, resp.recv_ts)
        depth = _depth(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, outcome, limit)
        if depth <= 0:
            return LegResult(f"kalshi {ticker}: no {outcome.upper()} depth at or below {price(limit)} on the live book")
        return LegResult()

    # -- balances (authenticated) ------------------------------------------------------------

    async def balance(self, user_id: str, venue: str, secrets: dict[str, Any]) -> int:
        """The user's available balance on `venue` in micro-dollars (raises with no secret in it)."""
        async with self._sem:
            if venue == KALSHI:
                return await self._kalshi_balance(secrets)
            if venue == POLYMARKET:
                return await self._polymarket_balance(user_id, secrets)
        raise ValueError(f"no balance check for venue {venue!r}")

    async def _kalshi_balance(self, s: dict[str, Any]) -> int:
        from libs.venues.kalshi import KalshiClient

        key: str | Path | None = s.get("private_key") or (
            Path(s["private_key_path"]) if s.get("private_key_path") else None
        )
        client = KalshiClient(self._kalshi_host(s), key_id=s.get("api_key", ""), private_key=key, policy=CALL_POLICY)
        bal = await client.balance()
        return bal.balance_cents * 10_000

    async def _polymarket_balance(self, user_id: str, s: dict[str, Any]) -> int:
        from py_clob_client.client import ClobClient
        from py_clob_client.clob_types import AssetType, BalanceAllowanceParams

        host = self._poly_host(s)
        funder = s.get("funder") or None
        sig_type = 2 if funder else 0

        def call() -> int:
            client = ClobClient(host, chain_id=137, key=s["private_key"], signature_type=sig_type, funder=funder)
            hit = self._creds.get((user_id, host))
            if hit is not None and hit[0] > time.monotonic():
                creds = hit[1]
            else:
                try:
                    creds = client.derive_api_key()
                except Exception:
                    creds = client.create_api_key()
                self._creds[(user_id, host)] = (time.monotonic() + CREDS_TTL_S, creds)
            client.set_api_creds(creds)
            got = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL))
            return int(str(got.get("balance", "0")).split(".")[0])  # USDC base units: 6 decimals = micros

        try:
            return await asyncio.to_thread(call)
        except Exception as e:  # py-clob-client errors may echo request headers: say only what failed
            status = getattr(e, "status_code", None)
            raise VenueHTTPError(POLYMARKET, "GET /balance-allowance", int(status or 0), type(e).__name__) from None

    # -- the batch ---------------------------------------------------------------------------

    async def validate(
        self, prep: Prepared, runs: Sequence[RunLimits], pairs: np.ndarray
    ) -> tuple[np.ndarray, dict[tuple[int, int], str]]:
        """exchange_validation for every (order, run) pair in `pairs`: (ok, detail per failed pair).

        Pairs not asked about are marked ok (the kernel never reaches their exchange validation).
        """
        n, nr = pairs.shape
        ok = np.ones((n, nr), np.bool_)
        details: dict[tuple[int, int], str] = {}
        if not pairs.any():
            return ok, details
        users = sorted({runs[r].user_id for r in range(nr) if pairs[:, r].any()})
        secrets: dict[str, dict[str, dict[str, Any]] | Exception] = {}
        for user in users:
            try:
                secrets[user] = await self.secrets(user)
            except Exception as e:  # never the values: libs.users.secrets errors name the user and venue only
                secrets[user] = e
        legs: dict[tuple[str, str, str, int, str], asyncio.Task[LegResult]] = {}
        balances: dict[tuple[str, str], asyncio.Task[int]] = {}
        plan: list[tuple[int, int, list[tuple[int, Any]], list[tuple[int, str, int]]]] = []
        for i, r in zip(*np.nonzero(pairs), strict=True):
            i, r = int(i), int(r)
            run = runs[r]
            found = secrets[run.user_id]
            if isinstance(found, Exception):
                ok[i, r] = False
                details[(i, r)] = f"exchange keys could not be read: {found}"
                continue
            order = prep.orders[i]
            size = min(
                int(prep.size[i]), *(run.max_leg_micros // (leg.limit_px * CASH_PER_PRICE_UNIT) for leg in order.legs)
            )
            leg_tasks: list[tuple[int, Any]] = []
            bal_needs: list[tuple[int, str, int]] = []
            for k, leg in enumerate(order.legs):
                user_keys = found.get(leg.venue)
                host = self._poly_host(user_keys) if leg.venue == POLYMARKET else self._kalshi_host(user_keys)
                key = (leg.venue, leg.instrument, leg.outcome, leg.limit_px, host)
                if key not in legs:
                    legs[key] = asyncio.create_task(self.leg(*key))
                leg_tasks.append((k, legs[key]))
                if user_keys and size > 0:
                    fee = self._worst_fee(prep, i, k, size)
                    need = size * leg.limit_px * CASH_PER_PRICE_UNIT + fee
                    bkey = (run.user_id, leg.venue)
                    if bkey not in balances:
                        balances[bkey] = asyncio.create_task(self.balance(run.user_id, leg.venue, user_keys))
                    bal_needs.append((k, leg.venue, need))
            plan.append((i, r, leg_tasks, bal_needs))
        await asyncio.gather(*legs.values(), *balances.values(), return_exceptions=True)
        for i, r, leg_tasks, bal_needs in plan:
            problem = ""
            for k, task in leg_tasks:
                res = task.result() if not task.exception() else LegResult(_http_problem("venue", task.exception()))  # type: ignore[arg-type]
                if res.problem:
                    problem = f"leg {k}: {res.problem}"
                    break
            if not problem:
                for k, venue, need in bal_needs:
                    task = balances[(runs[r].user_id, venue)]
                    exc = task.exception()
                    if exc is not None:
                        problem = f"leg {k}: {venue} balance check failed: {_http_problem(venue, exc)}"  # type: ignore[arg-type]
                        break
                    have = task.result()
                    if have < need:
                        problem = f"leg {k}: {venue} balance {usd(have)} < {usd(need)} needed (worst case with fees)"
                        break
            if problem:
                ok[i, r] = False
                details[(i, r)] = problem
        return ok, details

    @staticmethod
    def _worst_fee(prep: Prepared, i: int, k: int, size: int) -> int:
        from libs.paper.engine import _leg_fee, _settle

        kind = int(prep.fkind[i, k])
        a, b, c, d = (int(x) for x in prep.fpar[i, k])
        t, r = _leg_fee(kind, a, b, c, d, int(prep.limit[i, k]), size)
        return int(_settle(kind, t, r))
