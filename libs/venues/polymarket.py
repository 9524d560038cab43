"""Polymarket CLOB, read-only: markets, books, tick size, neg-risk flag and fee rate.

Calls go through the maintained client (`py_clob_client.client.ClobClient`, level 0: no key),
so paths, headers and HTTP/2 are the venue's own. That client returns parsed JSON (and its book
model raises on a missing field), so every response body is also captured as received, by an
httpx response hook on the client's HTTP connection, and books are parsed from those bytes here:
a recording replays through exactly this parser.

Books: each outcome token is an instrument (`md.book.polymarket.<token_id>`), quoted in its own
outcome's terms — the YES token's book is the YES book; the NO token's book is published too, as
its own instrument in NO terms (not folded into YES: on the CLOB the two books mirror each other,
and the market mapping names which token is the pair's YES). The REST book lists bids ascending
and asks descending, so levels are sorted here (best first), never taken by position. The book's
`timestamp` (ms) is the book time; without one, the receive time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from py_clob_client.clob_types import BookParams
from py_clob_client.http_helpers import helpers as clob_http

from libs.ids import now_ns
from libs.retry import RateLimiter, RetryPolicy, with_retries
from libs.venues import POLYMARKET
from libs.venues.books import MarketInfo, Parsed, ParsedBook, Response, make_book, parse_price, parse_size
from libs.venues.errors import PayloadError, VenueHTTPError, is_retryable
from proto.subjects import SubjectError, token

END_CURSOR = "LTE="
"""The `next_cursor` Polymarket returns on the last page."""
MAX_BOOKS_PER_REQUEST = 100
"""Tokens asked for in one POST /books."""

_local = threading.local()
_hook_lock = threading.Lock()


def _capture_hook(response: httpx.Response) -> None:
    """Keep the body of every response made on this thread while a capture is open."""
    sink = getattr(_local, "sink", None)
    if sink is None:
        return
    response.read()
    retry_after = response.headers.get("retry-after")
    sink.append(
        (
            now_ns(),
            response.request.method,
            str(response.request.url),
            response.status_code,
            response.content,
            retry_after,
        )
    )


def _install_hook() -> None:
    """Add the capture hook to py_clob_client's shared HTTP client, once per process."""
    with _hook_lock:
        hooks = clob_http._http_client.event_hooks
        if _capture_hook not in hooks["response"]:
            hooks["response"] = [*hooks["response"], _capture_hook]
            clob_http._http_client.event_hooks = hooks


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------- parsing (live and replay)


def _instrument(value: object, field: str, market: str) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadError(POLYMARKET, market, field, value, "must be a non-empty token id string")
    try:
        return token(value, "token id")
    except SubjectError as e:
        raise PayloadError(POLYMARKET, market, field, value, str(e)) from None


def _levels(obj: dict[str, Any], side: str, market: str) -> list[tuple[int, int]]:
    raw = obj.get(side)
    if raw is None:
        return []  # an absent side is an empty side
    if not isinstance(raw, list):
        raise PayloadError(POLYMARKET, market, side, raw, "must be a list of {price, size} levels")
    out = []
    for i, level in enumerate(raw):
        if not isinstance(level, dict) or "price" not in level or "size" not in level:
            raise PayloadError(POLYMARKET, market, f"{side}[{i}]", level, "must be an object with price and size")
        px = parse_price(level["price"], POLYMARKET, market, f"{side}[{i}].price")
        sz = parse_size(level["size"], POLYMARKET, market, f"{side}[{i}].size")
        out.append((px, sz))
    return out


def parse_book(obj: object, recv_ts: int, market: str = "?") -> ParsedBook:
    """One book object of GET /book or POST /books, in the token's own terms, best level first."""
    if not isinstance(obj, dict):
        raise PayloadError(POLYMARKET, market, "book", obj, "must be a JSON object")
    market = obj.get("asset_id") if isinstance(obj.get("asset_id"), str) else market
    instrument = _instrument(obj.get("asset_id"), "asset_id", market)
    book_ts = recv_ts
    stamp = obj.get("timestamp")
    if stamp not in (None, ""):
        try:
            ms = int(stamp) if not isinstance(stamp, bool) else None
        except (TypeError, ValueError):
            ms = None
        if ms is None or ms <= 0:
            raise PayloadError(POLYMARKET, market, "timestamp", stamp, "must be Unix milliseconds")
        book_ts = ms * 1_000_000
    bids = _levels(obj, "bids", market)
    asks = _levels(obj, "asks", market)
    return make_book(instrument, book_ts, bids, asks, POLYMARKET, market)


def _json(resp: Response, market: str) -> object:
    try:
        return json.loads(resp.body)
    except ValueError as e:
        raise PayloadError(POLYMARKET, market, "body", resp.body[:80], f"is not JSON ({e})") from None


def _query_token(endpoint: str) -> str:
    query = urlsplit(endpoint.split(" ", 1)[-1]).query
    for part in query.split("&"):
        if part.startswith("token_id="):
            return part[len("token_id=") :]
    return "?"


def parse_markets_page(data: object) -> tuple[list[dict[str, Any]], str]:
    """(markets, next cursor) of one GET /markets page; ValueError naming the field when malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise PayloadError(
            POLYMARKET,
            "markets",
            "data",
            data if not isinstance(data, dict) else data.get("data"),
            "must be a list of markets",
        )
    cursor = data.get("next_cursor") or END_CURSOR
    return [m for m in data["data"] if isinstance(m, dict)], str(cursor)


def market_infos(markets: list[dict[str, Any]]) -> list[MarketInfo]:
    """Status of each outcome token of each market: open, closed, or archived."""
    out = []
    for m in markets:
        status = (
            "archived"
            if m.get("archived")
            else "closed"
            if m.get("closed")
            else "open"
            if m.get("active")
            else "inactive"
        )
        for t in m.get("tokens") or []:
            if isinstance(t, dict) and t.get("token_id"):
                out.append(
                    MarketInfo(
                        venue=POLYMARKET,
                        market_id=str(t["token_id"]),
                        status=status,
                        title=f"{m.get('question', '')} [{t.get('outcome', '')}]",
                        close_time=str(m.get("end_date_iso") or ""),
                    )
                )
    return out


def parse_response(resp: Response) -> Parsed:
    """Books (or market facts) in one recorded Polymarket response; bad parts become errors.

    Only 200 answers carry data. In POST /books one malformed book is an error; the others count.
    """
    out = Parsed()
    if resp.status != 200:
        return out
    target = resp.endpoint.partition(" ")[2]
    path = urlsplit(target).path
    try:
        if path == "/book":
            out.books.append(
                parse_book(_json(resp, _query_token(resp.endpoint)), resp.recv_ts, _query_token(resp.endpoint))
            )
        elif path == "/books":
            data = _json(resp, "books")
            if not isinstance(data, list):
                raise PayloadError(POLYMARKET, "books", "body", data, "must be a list of books")
            for i, obj in enumerate(data):
                try:
                    out.books.append(parse_book(obj, resp.recv_ts, f"books[{i}]"))
                except PayloadError as e:
                    out.errors.append(e)
        elif path == "/markets":
            markets, _ = parse_markets_page(_json(resp, "markets"))
            out.markets.extend(market_infos(markets))
    except PayloadError as e:
        out.errors.append(e)
    return out


# ---------------------------------------------------------------- the client


class PolymarketClient:
    """Read-only Polymarket CLOB calls, each returning the parsed result and the raw Response.

    Every call takes a token from `limiter`, is retried by `libs.retry.with_retries` on transport
    errors, 429 and 5xx, and raises VenueHTTPError (venue, endpoint, status, reason) when it gives up.
    """

    def __init__(
        self,
        host: str,
        *,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        log: Any = None,
    ) -> None:
        from py_clob_client.client import ClobClient

        _install_hook()
        self.host = host.rstrip("/")
        self.base_path = urlsplit(self.host).path
        self.client = ClobClient(self.host)
        self.limiter = limiter
        self.policy = policy or RetryPolicy(attempts=3, base_s=0.5, max_s=10.0)
        self.log = log

    def _endpoint(self, method: str, url: str) -> str:
        parts = urlsplit(url)
        path = parts.path[len(self.base_path) :] if parts.path.startswith(self.base_path) else parts.path
        return f"{method} {path}" + (f"?{parts.query}" if parts.query else "")

    def _call_sync(self, what: str, call: Callable[[], Any]) -> tuple[Any, list[Response]]:
        """Run one client call on this thread, capturing every response it got."""
        _local.sink = sink = []
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except Exception as e:  # judged below from what actually came back
            error = e
        finally:
            _local.sink = None
        responses = [
            Response(venue=POLYMARKET, endpoint=self._endpoint(m, u), recv_ts=ts, status=s, body=b)
            for ts, m, u, s, b, _ in sink
        ]
        if not sink:
            if error is None:
                return result, []  # answered from the client's cache (tick size, neg risk, fee rate)
            raise VenueHTTPError(POLYMARKET, what, 0, f"{type(error).__name__}: {error}")
        _, m, u, status, body, retry_after = sink[-1]
        if status != 200:
            reason = body[:200].decode("utf-8", "replace") or "(empty body)"
            exc = VenueHTTPError(POLYMARKET, self._endpoint(m, u), status, reason, _retry_after(retry_after))
            exc.responses = responses
            raise exc
        # A 200 whose body the client could not digest is still a response: our parser judges it.
        return (None if error else result), responses

    async def call(
        self, what: str, call: Callable[[], Any], record: list[Response] | None = None
    ) -> tuple[Any, Response | None]:
        """One client call with rate limit and retries; every response received goes to `record`.

        The Response is None when the client answered from its cache without a request.
        """

        async def attempt_recorded() -> tuple[Any, list[Response]]:
            try:
                return await asyncio.to_thread(self._call_sync, what, call)
            except VenueHTTPError as e:
                if record is not None:
                    record.extend(e.responses)  # error answers are part of the recording too
                raise

        result, responses = await with_retries(
            attempt_recorded,
            what=f"{POLYMARKET} {what}",
            policy=self.policy,
            retry_on=is_retryable,
            limiter=self.limiter,
            log=self.log,
        )
        if record is not None:
            record.extend(responses)
        return result, responses[-1] if responses else None

    async def books(self, token_ids: list[str], record: list[Response] | None = None) -> list[Response]:
        """POST /books for the tokens, MAX_BOOKS_PER_REQUEST at a time; the raw responses."""
        out = []
        for i in range(0, len(token_ids), MAX_BOOKS_PER_REQUEST):
            chunk = [BookParams(token_id=t) for t in token_ids[i : i + MAX_BOOKS_PER_REQUEST]]
            _, resp = await self.call("POST /books", lambda c=chunk: self.client.get_order_books(c), record)
            assert resp is not None  # books are never cached by the client
            out.append(resp)
        return out

    async def book(self, token_id: str, record: list[Response] | None = None) -> Response:
        """GET /book for one token; the raw response."""
        _, resp = await self.call(
            f"GET /book?token_id={token_id}", lambda: self.client.get_order_book(token_id), record
        )
        assert resp is not None
        return resp

    async def tick_size(self, token_id: str, record: list[Response] | None = None) -> str | None:
        """The token's minimum tick size ("0.01", "0.001")."""
        result, _ = await self.call(
            f"GET /tick-size?token_id={token_id}", lambda: self.client.get_tick_size(token_id), record
        )
        return result

    async def neg_risk(self, token_id: str, record: list[Response] | None = None) -> bool | None:
        """Whether the token's market is a neg-risk (multi-outcome) market."""
        result, _ = await self.call(
            f"GET /neg-risk?token_id={token_id}", lambda: self.client.get_neg_risk(token_id), record
        )
        return result

    async def fee_rate_bps(self, token_id: str, record: list[Response] | None = None) -> int | None:
        """The token's base fee rate in basis points (GET /fee-rate)."""
        result, _ = await self.call(
            f"GET /fee-rate?token_id={token_id}", lambda: self.client.get_fee_rate_bps(token_id), record
        )
        return result

    async def markets(self, max_pages: int = 1_000, record: list[Response] | None = None) -> list[dict[str, Any]]:
        """Every market of GET /markets, following `next_cursor` until the last page."""
        out: list[dict[str, Any]] = []
        cursor = "MA=="
        for _ in range(max_pages):
            _, resp = await self.call(
                f"GET /markets?next_cursor={cursor}", lambda c=cursor: self.client.get_markets(next_cursor=c), record
            )
            assert resp is not None
            markets, cursor = parse_markets_page(_json(resp, "markets"))
            out.extend(markets)
            if cursor in (END_CURSOR, ""):
                break
        return out
