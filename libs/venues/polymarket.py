"""Polymarket CLOB, read-only: markets, books, tick size, neg-risk flag and fee schedule.

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

Market facts (`MarketInfo`, one per outcome token): title, status, tick size, minimum order,
neg-risk, end date and fees, from GET /markets/{condition_id} (the market object), GET
/clob-markets/{condition_id} (CLOB parameters with fee details `fd: {r: rate, e: exponent}`,
read when the CLOB has it), and the client's per-token GET /tick-size, /neg-risk and /fee-rate.
The taker fee is `C × rate × (p(1 − p))^exponent` (`libs.fees`); `rate` is taken only from a
reported fee schedule (`fee_schedule.rate` or `fd.r`). `base_fee` (GET /fee-rate, what
py_clob_client's `get_fee_rate_bps` returns and signs into orders) is kept as `base_fee_bps` but
never read as the rate: third-party reports (e.g. the 2026 Polysimulator docs) say it is 1000 on
every fee-charging market whatever the charged rate.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import httpx
from py_clob_client.clob_types import BookParams
from py_clob_client.http_helpers import helpers as clob_http

from libs.ids import new_id, now_ns
from libs.retry import RateLimiter, RetryPolicy, parse_retry_after, with_retries
from libs.venues import POLYMARKET, warn_cut_short
from libs.venues.books import (
    Parsed,
    ParsedBook,
    Response,
    decimal_units,
    iso_ns,
    make_book,
    parse_price,
    parse_size,
)
from libs.venues.errors import PayloadError, VenueHTTPError, is_retryable
from proto.events import MarketInfo
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


def market_status(m: dict[str, Any]) -> str:
    """open, closed, archived or inactive, from a market object's flags."""
    if m.get("archived"):
        return "archived"
    if m.get("closed"):
        return "closed"
    return "open" if m.get("active") else "inactive"


def _bps(value: object, market: str, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PayloadError(POLYMARKET, market, field, value, "must be a whole number of basis points")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(POLYMARKET, market, field, value, "must be a whole number of basis points") from None
    if not d.is_finite() or d < 0 or d != d.to_integral_value():
        raise PayloadError(POLYMARKET, market, field, value, "must be a whole number of basis points")
    return int(d)


def _decimal_text(value: object, market: str, field: str) -> str:
    """A non-negative decimal (string or number) as its exact text ("0.07"); "" when absent."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PayloadError(POLYMARKET, market, field, value, "must be a non-negative decimal number")
    try:
        d = Decimal(value if isinstance(value, (str, int)) else repr(value))
    except InvalidOperation:
        raise PayloadError(POLYMARKET, market, field, value, "must be a non-negative decimal number") from None
    if not d.is_finite() or d < 0:
        raise PayloadError(POLYMARKET, market, field, value, "must be a non-negative decimal number")
    return format(d.normalize(), "f")


def fee_schedule(obj: dict[str, Any], market: str) -> tuple[str, str, bool | None]:
    """(taker rate, exponent, fees enabled) from a market's `fee_schedule` / `feeSchedule`, or the
    CLOB parameters' `fd` ({r, e}); ("", "", None) when none is reported."""
    sched = obj.get("fee_schedule") or obj.get("feeSchedule")
    if isinstance(sched, dict):
        rate, exp = sched.get("rate"), sched.get("exponent")
    elif isinstance(obj.get("fd"), dict):
        rate, exp = obj["fd"].get("r"), obj["fd"].get("e")
    else:
        rate = exp = None
    enabled = obj.get("fees_enabled", obj.get("feesEnabled"))
    return (
        _decimal_text(rate, market, "fee_schedule.rate"),
        _decimal_text(exp, market, "fee_schedule.exponent"),
        enabled if isinstance(enabled, bool) else None,
    )


def token_info(
    token_id: str,
    recv_ts: int,
    market: dict[str, Any] | None = None,
    clob: dict[str, Any] | None = None,
    *,
    tick_size: object = None,
    neg_risk: bool | None = None,
    base_fee_bps: object = None,
    source: str = "live",
) -> MarketInfo:
    """The MarketInfo of one outcome token from what is known: the market object (GET /markets/{id}),
    the CLOB parameters (GET /clob-markets/{id}) and the per-token tick size, neg-risk and base fee.

    The per-token answers win over the market object's (they are the CLOB's current values).
    """
    m = market or {}
    c = clob or {}
    outcome = next(
        (
            str(t.get("outcome", ""))
            for t in m.get("tokens") or []
            if isinstance(t, dict) and t.get("token_id") == token_id
        ),
        "",
    )
    title = str(m.get("question") or "")
    tick_raw = tick_size if tick_size not in (None, "") else c.get("mts", m.get("minimum_tick_size"))
    tick = decimal_units(tick_raw, POLYMARKET, token_id, "minimum_tick_size") if tick_raw not in (None, "") else 0
    min_order = c.get("mos", m.get("minimum_order_size"))
    try:
        min_size = float(min_order) if min_order not in (None, "") and not isinstance(min_order, bool) else 0.0
    except (TypeError, ValueError):
        raise PayloadError(POLYMARKET, token_id, "minimum_order_size", min_order, "is not a number") from None
    rate, exponent, enabled = fee_schedule(c, token_id) if c else ("", "", None)
    if not rate:
        rate, exponent, enabled2 = fee_schedule(m, token_id)
        enabled = enabled if enabled is not None else enabled2
    base = _bps(base_fee_bps, token_id, "base_fee") if base_fee_bps is not None else None
    if base is None:
        base = _bps(c.get("tbf", m.get("taker_base_fee")), token_id, "taker_base_fee")
    neg = neg_risk if isinstance(neg_risk, bool) else m.get("neg_risk") if isinstance(m.get("neg_risk"), bool) else None
    return MarketInfo(
        id=new_id(),
        ts=recv_ts,
        venue=POLYMARKET,
        instrument=_instrument(token_id, "token_id", token_id),
        market_id=token_id,
        source=source,
        title=f"{title} [{outcome}]" if title and outcome else title,
        status=market_status(m) if m else "",
        tick_size=tick,
        min_order_size=min_size,
        close_ts=iso_ns(m.get("end_date_iso") or m.get("end_date")),
        neg_risk=neg,
        base_fee_bps=base,
        maker_base_fee_bps=_bps(c.get("mbf", m.get("maker_base_fee")), token_id, "maker_base_fee"),
        taker_fee_rate=rate,
        fee_exponent=exponent,
        fees_enabled=enabled,
        fee_note="taker C x rate x (p(1-p))^exponent, makers free (docs.polymarket.com/trading/fees)",
    )


def market_infos(markets: list[dict[str, Any]], recv_ts: int) -> tuple[list[MarketInfo], list[PayloadError]]:
    """MarketInfo of each outcome token of each market object; a malformed market is an error, not a loss."""
    out, errors = [], []
    for m in markets:
        for t in m.get("tokens") or []:
            if isinstance(t, dict) and t.get("token_id"):
                try:
                    out.append(token_info(str(t["token_id"]), recv_ts, m))
                except PayloadError as e:
                    errors.append(e)
    return out, errors


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
            infos, errors = market_infos(markets, resp.recv_ts)
            out.markets.extend(infos)
            out.errors.extend(errors)
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
            exc = VenueHTTPError(POLYMARKET, self._endpoint(m, u), status, reason, parse_retry_after(retry_after))
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

    async def market(self, condition_id: str, record: list[Response] | None = None) -> dict[str, Any]:
        """GET /markets/{condition_id}: the market object (question, status, tick, fees, tokens)."""
        _, resp = await self.call(f"GET /markets/{condition_id}", lambda: self.client.get_market(condition_id), record)
        assert resp is not None
        data = _json(resp, condition_id)
        if not isinstance(data, dict):
            raise PayloadError(POLYMARKET, condition_id, "body", data, "must be a market object")
        return data

    async def clob_market(self, condition_id: str, record: list[Response] | None = None) -> dict[str, Any]:
        """GET /clob-markets/{condition_id}: the CLOB parameters (tick `mts`, minimum `mos`, base fees,
        fee details `fd`). py_clob_client has no method for it: the call goes through its HTTP helper."""
        url = f"{self.host}/clob-markets/{condition_id}"
        _, resp = await self.call(f"GET /clob-markets/{condition_id}", lambda: clob_http.get(url), record)
        assert resp is not None
        data = _json(resp, condition_id)
        if not isinstance(data, dict):
            raise PayloadError(POLYMARKET, condition_id, "body", data, "must be a CLOB market object")
        return data

    async def markets(self, max_pages: int = 1_000, record: list[Response] | None = None) -> list[dict[str, Any]]:
        """Every market of GET /markets, following `next_cursor` until the last page (at most `max_pages`;
        stopping there with pages left logs a warning)."""
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
        else:
            warn_cut_short(self.log, POLYMARKET, max_pages, len(out), cursor)
        return out
