"""Kalshi trade API, read-only market data plus the signed balance call.

Calls go through kalshi_python_sync (its ApiClient, MarketApi and PortfolioApi), always through the
`*_without_preload_content` variants: the SDK's generated models mis-parse today's order book
(they expect `orderbook.yes_dollars`, the API sends `orderbook_fp`), so the raw JSON body is read
and parsed here, and the same bytes are what a recording keeps.

Order books carry only bids: YES bids and NO bids. In YES terms a NO bid at q is a YES ask at 1 − q
with the same size, so YES asks = reflected NO bids (best YES ask = 1 − best NO bid). Both shapes
are read: `orderbook_fp` with `yes_dollars`/`no_dollars` as `[["0.4500", "120.00"], ...]` (dollar
strings, fixed-point contract counts), and the older `orderbook` with integer-cents `yes`/`no`
`[[45, 120], ...]` (or its `yes_dollars`/`no_dollars`). Ladders come ascending (best bid last); they
are sorted here. A null or missing side is an empty side. Kalshi books carry no time: the book time
is the receive time.

Instruments are tickers with '.' replaced by '_' (NATS subject tokens cannot hold '.'):
`APRPOTUS-24JUL19-T40.8` → `md.book.kalshi.APRPOTUS-24JUL19-T40_8`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import msgspec

from libs.ids import new_id, now_ns
from libs.retry import RateLimiter, RetryPolicy, parse_retry_after, with_retries
from libs.venues import KALSHI, warn_cut_short
from libs.venues.books import (
    Parsed,
    ParsedBook,
    Response,
    decimal_units,
    iso_ns,
    make_book,
    parse_cents,
    parse_price,
    parse_size,
    tick_ranges,
)
from libs.venues.errors import PayloadError, VenueHTTPError, is_retryable
from libs.venues.kalshi_auth import KalshiSigner
from proto.events import MarketInfo
from proto.subjects import SubjectError, token
from proto.units import PRICE_SCALE

if TYPE_CHECKING:
    from libs.config import Settings

PRODUCTION_HOST = "https://api.elections.kalshi.com/trade-api/v2"
DEMO_HOST = "https://demo-api.kalshi.co/trade-api/v2"
CLOSED_STATUSES = frozenset({"closed", "settled", "finalized", "determined", "inactive"})
"""Market statuses whose book is no longer polled."""
CENT = PRICE_SCALE // 100
PRICE_LEVEL_STRUCTURES: dict[str, list[tuple[int, int, int]]] = {
    "linear_cent": [(0, PRICE_SCALE, CENT)],
    "deci_cent": [(0, PRICE_SCALE, CENT // 10)],
    "tapered_deci_cent": [(0, 1_000, CENT // 10), (1_000, 9_000, CENT), (9_000, PRICE_SCALE, CENT // 10)],
}
"""Kalshi's `price_level_structure` tiers as (start, end, step) in price units (docs.kalshi.com,
fixed-point migration); a market's own `price_ranges` win when present."""
FEE_NOTE = (
    "Kalshi fee schedule: taker ceil(0.07 x C x P x (1-P)) to the cent, maker 0.0175 x C x P x (1-P) on series "
    "listed with maker fees; per-fill centicent rounding settled per order (libs.fees.KalshiFeeModel)"
)


def host_for(host: str = "", use_demo: bool = False) -> str:
    """The API base URL: `host` when given, else demo or production."""
    return (host or (DEMO_HOST if use_demo else PRODUCTION_HOST)).rstrip("/")


def auth_settings(settings: Settings) -> tuple[str, Path | None]:
    """(API key id, private key path) for signed calls; ("", None) when neither is set.

    Half a configuration (one without the other) is a ValueError naming both settings, never ignored.
    """
    key_id, key_path = settings.kalshi_api_key_id, settings.kalshi_private_key_path
    if bool(key_id) != bool(key_path):
        have, missing = (
            ("MT_KALSHI_API_KEY_ID", "MT_KALSHI_PRIVATE_KEY_PATH")
            if key_id
            else ("MT_KALSHI_PRIVATE_KEY_PATH", "MT_KALSHI_API_KEY_ID")
        )
        raise ValueError(f"Kalshi auth is half configured: {have} is set but {missing} is not (set both, or neither)")
    return key_id, key_path or None


def instrument_of(ticker: str) -> str:
    """The instrument (subject token) for a ticker: '.' becomes '_'."""
    try:
        return token(ticker.replace(".", "_"), "Kalshi ticker")
    except SubjectError as e:
        raise PayloadError(KALSHI, ticker, "ticker", ticker, str(e)) from None


# ---------------------------------------------------------------- parsing (live and replay)


def _side(book: dict[str, Any], name: str, ticker: str, cents: bool) -> list[tuple[int, int]]:
    raw = book.get(name)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PayloadError(KALSHI, ticker, name, raw, "must be a list of [price, size] levels")
    out = []
    for i, level in enumerate(raw):
        if not isinstance(level, (list, tuple)) or len(level) != 2:
            raise PayloadError(KALSHI, ticker, f"{name}[{i}]", level, "must be a [price, size] pair")
        parse = parse_cents if cents else parse_price
        px = parse(level[0], KALSHI, ticker, f"{name}[{i}].price")
        out.append((px, parse_size(level[1], KALSHI, ticker, f"{name}[{i}].size")))
    return out


def parse_orderbook(data: object, ticker: str, recv_ts: int) -> ParsedBook:
    """A GET /markets/{ticker}/orderbook body as the YES book (YES asks = reflected NO bids)."""
    if not isinstance(data, dict):
        raise PayloadError(KALSHI, ticker, "body", data, "must be a JSON object")
    if isinstance(data.get("orderbook_fp"), dict):
        book = data["orderbook_fp"]
        yes, no = _side(book, "yes_dollars", ticker, False), _side(book, "no_dollars", ticker, False)
    elif isinstance(data.get("orderbook"), dict):
        book = data["orderbook"]
        if "yes_dollars" in book or "no_dollars" in book:
            yes, no = _side(book, "yes_dollars", ticker, False), _side(book, "no_dollars", ticker, False)
        else:
            yes, no = _side(book, "yes", ticker, True), _side(book, "no", ticker, True)
    else:
        got = data.get("orderbook_fp", data.get("orderbook", sorted(data)))
        raise PayloadError(
            KALSHI, ticker, "orderbook_fp", got, "missing: expected an orderbook_fp (or orderbook) object"
        )
    asks = [(PRICE_SCALE - q, s) for q, s in no]
    return make_book(instrument_of(ticker), recv_ts, yes, asks, KALSHI, ticker)


def tick_grid(m: dict[str, Any], ticker: str) -> tuple[int, list[tuple[int, int, int]]]:
    """(smallest tick, (start, end, step) ranges) of a market object, in price units.

    From `price_ranges` when given, else the `price_level_structure` tier, else the older integer-cents
    `tick_size`, else one cent (Kalshi's whole-cent markets). An unknown tier leaves the grid unknown (0).
    """
    ranges = m.get("price_ranges")
    if isinstance(ranges, list) and ranges:
        out = []
        for i, r in enumerate(ranges):
            if not isinstance(r, dict):
                raise PayloadError(KALSHI, ticker, f"price_ranges[{i}]", r, "must be an object with start, end, step")
            out.append(
                tuple(
                    decimal_units(r.get(k), KALSHI, ticker, f"price_ranges[{i}].{k}") for k in ("start", "end", "step")
                )
            )
        return min(step for _, _, step in out), out  # type: ignore[return-value]
    structure = m.get("price_level_structure")
    if isinstance(structure, str) and structure:
        tiers = PRICE_LEVEL_STRUCTURES.get(structure)
        return (min(t[2] for t in tiers), tiers if len(tiers) > 1 else []) if tiers else (0, [])
    legacy = m.get("tick_size")
    if isinstance(legacy, int) and not isinstance(legacy, bool) and legacy > 0:
        return legacy * CENT, []
    return CENT, []


def market_info(m: dict[str, Any], recv_ts: int) -> MarketInfo:
    """The MarketInfo of one market object: status, title, tick grid, close and expiration, fee note."""
    ticker = str(m.get("ticker", ""))
    title = m.get("title") or " ".join(x for x in (m.get("subtitle"), m.get("yes_sub_title")) if x)
    tick, ranges = tick_grid(m, ticker or "?")
    return MarketInfo(
        id=new_id(),
        ts=recv_ts,
        venue=KALSHI,
        instrument=instrument_of(ticker) if ticker else "?",
        market_id=ticker,
        title=str(title or ""),
        status=str(m.get("status", "")),
        tick_size=tick,
        tick_ranges=tick_ranges(ranges),
        min_order_size=1.0,
        close_ts=iso_ns(m.get("close_time")),
        expiration_ts=iso_ns(m.get("expiration_time") or m.get("latest_expiration_time")),
        fee_note=FEE_NOTE,
    )


def _path_parts(endpoint: str) -> list[str]:
    target = endpoint.partition(" ")[2]
    return [unquote(p) for p in urlsplit(target).path.strip("/").split("/")]


def parse_response(resp: Response) -> Parsed:
    """Books (or market facts) in one recorded Kalshi response; bad parts become errors."""
    out = Parsed()
    if resp.status != 200:
        return out
    parts = _path_parts(resp.endpoint)
    ticker = parts[1] if len(parts) >= 2 else "?"
    try:
        try:
            data = json.loads(resp.body)
        except ValueError as e:
            raise PayloadError(KALSHI, ticker, "body", resp.body[:80], f"is not JSON ({e})") from None
        if len(parts) == 3 and parts[0] == "markets" and parts[2] == "orderbook":
            out.books.append(parse_orderbook(data, ticker, resp.recv_ts))
        elif parts == ["markets"]:
            markets = data.get("markets") if isinstance(data, dict) else data
            if not isinstance(markets, list):
                raise PayloadError(KALSHI, "markets", "markets", markets, "must be a list of markets")
            for i, m in enumerate(markets):
                try:
                    if not isinstance(m, dict) or not m.get("ticker"):
                        raise PayloadError(KALSHI, "markets", f"markets[{i}]", m, "must be a market with a ticker")
                    out.markets.append(market_info(m, resp.recv_ts))
                except PayloadError as e:
                    out.errors.append(e)
        elif (
            len(parts) == 2
            and parts[0] == "markets"
            and isinstance(data, dict)
            and isinstance(data.get("market"), dict)
        ):
            out.markets.append(market_info(data["market"], resp.recv_ts))
    except PayloadError as e:
        out.errors.append(e)
    return out


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """GET /portfolio/balance: available balance and portfolio value, in cents."""

    balance_cents: int
    portfolio_value_cents: int | None = None


def parse_balance(body: bytes) -> Balance:
    """The balance response; PayloadError naming the field when it is not a whole number of cents."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise PayloadError(KALSHI, "portfolio", "body", body[:80], f"is not JSON ({e})") from None
    value = data.get("balance") if isinstance(data, dict) else data
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(KALSHI, "portfolio", "balance", value, "must be a whole number of cents")
    pv = data.get("portfolio_value")
    return Balance(
        balance_cents=value, portfolio_value_cents=pv if isinstance(pv, int) and not isinstance(pv, bool) else None
    )


# ---------------------------------------------------------------- the client


class KalshiClient:
    """Read-only Kalshi calls (and the signed balance), each returning the raw Response.

    Every call takes a token from `limiter`, is retried by `libs.retry.with_retries` on transport
    errors, 429 and 5xx, and raises VenueHTTPError (venue, endpoint, status, reason) when it gives up.
    With `key_id` and `private_key` (PEM text or file path) every request is signed.
    """

    def __init__(
        self,
        host: str,
        *,
        key_id: str = "",
        private_key: str | bytes | Path | None = None,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        log: Any = None,
    ) -> None:
        from kalshi_python_sync import ApiClient, Configuration, MarketApi, PortfolioApi

        self.host = host.rstrip("/")
        config = Configuration(host=self.host, retries=0)  # retries are ours, with backoff and a log line
        self.api_client = ApiClient(config)
        self.signer: KalshiSigner | None = None
        if key_id or private_key:
            if not (key_id and private_key):
                raise ValueError(
                    "Kalshi auth needs both an API key id and a private key"
                    " (MT_KALSHI_API_KEY_ID, MT_KALSHI_PRIVATE_KEY_PATH)"
                )
            self.signer = KalshiSigner(key_id, private_key)
            self.api_client.kalshi_auth = self.signer
        self.market_api = MarketApi(self.api_client)
        self.portfolio_api = PortfolioApi(self.api_client)
        self.limiter = limiter
        self.policy = policy or RetryPolicy(attempts=3, base_s=0.5, max_s=10.0)
        self.timeout_s = timeout_s
        self.log = log

    def _call_sync(self, endpoint: str, call: Callable[[], Any]) -> Response:
        try:
            raw = call()
            body = raw.data
            status = int(raw.status)
            retry_after = raw.headers.get("retry-after")
            raw.release_conn()
        except Exception as e:  # transport failure: no answer
            raise VenueHTTPError(KALSHI, endpoint, 0, f"{type(e).__name__}: {e}") from None
        resp = Response(venue=KALSHI, endpoint=endpoint, recv_ts=now_ns(), status=status, body=bytes(body or b""))
        if status != 200:
            exc = VenueHTTPError(
                KALSHI,
                endpoint,
                status,
                resp.body[:200].decode("utf-8", "replace") or "(empty body)",
                parse_retry_after(retry_after),
            )
            exc.responses = [resp]
            raise exc
        return resp

    async def call(self, endpoint: str, call: Callable[[], Any], record: list[Response] | None = None) -> Response:
        """One call with rate limit and retries; every response received goes to `record`."""

        async def attempt() -> Response:
            try:
                resp = await asyncio.to_thread(self._call_sync, endpoint, call)
            except VenueHTTPError as e:
                if record is not None:
                    record.extend(e.responses)
                raise
            if record is not None:
                record.append(resp)
            return resp

        return await with_retries(
            attempt,
            what=f"{KALSHI} {endpoint}",
            policy=self.policy,
            retry_on=is_retryable,
            limiter=self.limiter,
            log=self.log,
        )

    async def orderbook(self, ticker: str, record: list[Response] | None = None) -> Response:
        """GET /markets/{ticker}/orderbook, raw."""
        return await self.call(
            f"GET /markets/{quote(ticker, safe='')}/orderbook",
            lambda: self.market_api.get_market_orderbook_without_preload_content(
                ticker, _request_timeout=self.timeout_s
            ),
            record,
        )

    async def market(self, ticker: str, record: list[Response] | None = None) -> Response:
        """GET /markets/{ticker}, raw."""
        return await self.call(
            f"GET /markets/{quote(ticker, safe='')}",
            lambda: self.market_api.get_market_without_preload_content(ticker, _request_timeout=self.timeout_s),
            record,
        )

    async def markets_page(
        self,
        cursor: str = "",
        tickers: list[str] | None = None,
        status: str | None = None,
        limit: int = 1000,
        record: list[Response] | None = None,
    ) -> Response:
        """One GET /markets page, raw."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if tickers:
            params["tickers"] = ",".join(tickers)
        if status:
            params["status"] = status
        return await self.call(
            f"GET /markets?{urlencode(params)}",
            lambda: self.market_api.get_markets_without_preload_content(**params, _request_timeout=self.timeout_s),
            record,
        )

    async def markets(
        self,
        tickers: list[str] | None = None,
        status: str | None = None,
        max_pages: int = 100,
        record: list[Response] | None = None,
    ) -> list[dict[str, Any]]:
        """Every market matching, following `cursor` until it is empty (at most `max_pages` pages).

        A body that is not JSON, or has no `markets` list, is a PayloadError (the response is in
        `record` all the same). Stopping at `max_pages` with pages left logs a warning.
        """
        out: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(max_pages):
            resp = await self.markets_page(cursor, tickers, status, record=record)
            try:
                data = json.loads(resp.body)
            except ValueError as e:
                raise PayloadError(KALSHI, "markets", "body", resp.body[:80], f"is not JSON ({e})") from None
            if not isinstance(data, dict) or not isinstance(data.get("markets"), list):
                got = data.get("markets") if isinstance(data, dict) else data
                raise PayloadError(KALSHI, "markets", "markets", got, "must be a list of markets")
            out.extend(m for m in data["markets"] if isinstance(m, dict))
            cursor = data.get("cursor") or ""
            if not cursor:
                break
        else:
            if cursor:
                warn_cut_short(self.log, KALSHI, max_pages, len(out), cursor)
        return out

    async def balance(self, record: list[Response] | None = None) -> Balance:
        """GET /portfolio/balance (signed): the account's balance in cents."""
        if self.signer is None:
            raise ValueError(
                "Kalshi balance needs an API key id and private key (MT_KALSHI_API_KEY_ID, MT_KALSHI_PRIVATE_KEY_PATH)"
            )
        resp = await self.call(
            "GET /portfolio/balance",
            lambda: self.portfolio_api.get_balance_without_preload_content(_request_timeout=self.timeout_s),
            record,
        )
        return parse_balance(resp.body)
