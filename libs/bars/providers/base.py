"""The bar-provider interface, its error, and the HTTP plumbing every provider shares.

A provider turns (symbol, start, end) into 1-minute bars in UTC. `start`/`end` are either dates
(whole UTC days, end included) or UTC datetimes (exact bounds, end excluded): the nightly update
passes its sessions' UTC bounds. Each provider asks its API for a range in the API's own date
convention that covers those bounds, then keeps only bars opening inside them (`within`), so a
crypto day whose UTC hours fall on two New York dates is fetched whole. A provider lists the
asset classes it covers (`assets`); the chain does not ask it for others. `HttpProvider` does
the requests: one `httpx.AsyncClient` per provider, an optional rate limiter, retries with
backoff (`libs.retry.with_retries`) for 429 (honouring Retry-After), 5xx and connection errors,
and an immediate `ProviderError` for 401/403/404 and for a body that is not the documented shape.
API keys never appear in errors or logs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx
import numpy as np
import polars as pl

from libs.bars.assets import ASSET_CLASSES
from libs.bars.schema import TS_TYPE, VALUE_COLUMNS, empty_frame
from libs.bars.timeutil import utc_midnight
from libs.retry import RateLimiter, RetriesExhausted, RetryPolicy, parse_retry_after, with_retries

__all__ = ["BarProvider", "HttpProvider", "ProviderError", "empty_frame", "frame_from", "utc_bounds", "within"]

TIMEOUT_S = 30.0
Bound = dt.date | dt.datetime
"""A fetch bound: a date (whole UTC day) or a UTC datetime (exact)."""


class ProviderError(RuntimeError):
    """A provider could not deliver bars; names the provider, the symbol and (for HTTP) the status.

    `retryable` marks failures worth another attempt (429, 5xx, connection); `retry_after_s`
    carries a 429's Retry-After for `with_retries`; `unsupported` marks a provider refusing an
    asset class it does not cover (the chain skips it rather than counting a failure).
    """

    def __init__(
        self,
        provider: str,
        symbol: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        retryable: bool = False,
        unsupported: bool = False,
    ) -> None:
        where = f"{provider} {symbol}" if symbol else provider
        super().__init__(f"{where}: {message}")
        self.provider = provider
        self.symbol = symbol
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = retryable
        self.unsupported = unsupported


class BarProvider(Protocol):
    """Anything that fetches 1-minute bars for a symbol between two bounds (see the module docstring)."""

    name: str
    assets: frozenset[str]
    """The asset classes it has bars for."""

    async def fetch_minutes(self, symbol: str, start: Bound, end: Bound, *, asset: str | None = None) -> pl.DataFrame:
        """Bars with columns ts (bar open, UTC ns), open, high, low, close, volume, ascending, inside the bounds."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...


def frame_from(ts_ns: Sequence[int] | np.ndarray, rows: Mapping[str, Sequence[float]]) -> pl.DataFrame:
    """A checked bar frame: sorted by ts, duplicate timestamps collapsed to the last one seen."""
    frame = pl.DataFrame(
        {
            "ts": pl.Series("ts", np.asarray(ts_ns, dtype=np.int64)).cast(TS_TYPE),
            **{c: pl.Series(c, np.asarray(rows[c], dtype=np.float64)) for c in VALUE_COLUMNS},
        }
    )
    return frame.unique("ts", keep="last", maintain_order=True).sort("ts")


def utc_bounds(start: Bound, end: Bound) -> tuple[dt.datetime, dt.datetime]:
    """[lo, hi) in UTC: dates are whole UTC days (end included), datetimes exact (naive = UTC); checked."""
    lo = _bound(start, "start", end=False)
    hi = _bound(end, "end", end=True)
    if lo >= hi:
        raise ValueError(f"start {start} is not before end {end}")
    return lo, hi


def _bound(value: Bound, name: str, *, end: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return utc_midnight(value + dt.timedelta(days=1) if end else value)
    raise ValueError(f"{name} must be a date or a datetime, got {value!r}")


def within(frame: pl.DataFrame, lo: dt.datetime, hi: dt.datetime) -> pl.DataFrame:
    """Rows whose bar opens in [lo, hi)."""
    return frame.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class HttpProvider:
    """Shared GET-with-retries for the HTTP providers; subclasses implement `fetch_minutes`."""

    name = "?"
    assets: frozenset[str] = frozenset(ASSET_CLASSES)

    def supports(self, asset: str | None) -> bool:
        """True when this provider has bars for `asset` (None: unknown, asked anyway)."""
        return asset is None or asset in self.assets

    def unsupported(self, symbol: str, asset: str | None) -> ProviderError:
        """The error for an asset class this provider does not cover."""
        covers = ", ".join(sorted(self.assets))
        return ProviderError(self.name, symbol, f"has no {asset} bars (covers {covers})", unsupported=True)

    def __init__(
        self,
        host: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy | None = None,
        log: Any = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key:
            raise ValueError(f"{self.name}: no API key configured")
        self.host = host.rstrip("/")
        self.api_key = api_key
        self.limiter = limiter
        self.policy = policy or RetryPolicy()
        self.log = log
        self._client = client
        self._own_client = client is None
        self.requests = 0
        """HTTP requests sent (for tests and logs)."""

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=True)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    def redact(self, text: str) -> str:
        """`text` with the API key blanked out (URLs in httpx errors carry it)."""
        return text.replace(self.api_key, "***") if self.api_key else text

    async def get_json(self, url: str, params: Mapping[str, str] | None, symbol: str, what: str) -> Any:
        """GET `url` and decode its JSON body, retrying what is worth retrying; ProviderError otherwise."""

        async def once() -> Any:
            self.requests += 1
            try:
                resp = await self.client.get(url, params=params)
            except httpx.HTTPError as e:
                msg = f"{what}: connection error: {type(e).__name__}: {self.redact(str(e))}"
                raise ProviderError(self.name, symbol, msg, retryable=True) from None
            return self.decode(resp, symbol, what)

        try:
            return await with_retries(
                once,
                what=f"{self.name} {what} {symbol}",
                policy=self.policy,
                retry_on=_retryable,
                limiter=self.limiter,
                log=self.log,
            )
        except RetriesExhausted as e:
            last = e.last
            status = last.status if isinstance(last, ProviderError) else None
            raise ProviderError(
                self.name, symbol, f"{what}: gave up after {e.attempts} attempts: {last}", status=status
            ) from None

    def decode(self, resp: httpx.Response, symbol: str, what: str) -> Any:
        """The JSON body of a 2xx response; a ProviderError naming the status and the provider's reason."""
        status = resp.status_code
        if status >= 400:
            reason = self.redact(resp.text[:300].strip()) or resp.reason_phrase
            if status == 429:
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                raise ProviderError(
                    self.name, symbol, f"{what}: HTTP 429 rate limited: {reason}", status=429,
                    retry_after_s=wait, retryable=True,
                )  # fmt: skip
            hint = {401: " (check the API key)", 403: " (the plan does not cover this, or a bad key)"}.get(status, "")
            raise ProviderError(
                self.name, symbol, f"{what}: HTTP {status}{hint}: {reason}", status=status, retryable=status >= 500
            )
        try:
            return resp.json()
        except ValueError:
            body = self.redact(resp.text[:120])
            raise ProviderError(self.name, symbol, f"{what}: the body is not JSON: {body!r}", status=status) from None

    def malformed(self, symbol: str, what: str, detail: str) -> ProviderError:
        """The error for a body that is JSON but not in the provider's documented shape."""
        return ProviderError(self.name, symbol, f"{what}: unexpected response shape: {detail}")

    def bar_list(self, body: Any, symbol: str, what: str, error_keys: tuple[str, ...]) -> list[Any]:
        """A body that must be a JSON list of bars; an object is the provider's error (its reason
        under one of `error_keys`) or an unexpected shape, and either is raised."""
        if isinstance(body, dict):
            reason = next((body[k] for k in error_keys if body.get(k)), None)
            raise self.malformed(symbol, what, f"error object: {reason!r}" if reason else f"object {list(body)[:5]}")
        if not isinstance(body, list):
            raise self.malformed(symbol, what, f"body is {type(body).__name__}, not a list")
        return body


def numbers(items: list[Any], keys: Mapping[str, str], provider: HttpProvider, symbol: str, what: str) -> dict:
    """Columns `keys` (ours → theirs) pulled from a list of bar objects, every value checked to be a number."""
    out: dict[str, list[float]] = {ours: [] for ours in keys}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise provider.malformed(symbol, what, f"bar {i} is {type(item).__name__}, not an object")
        for ours, theirs in keys.items():
            value = item.get(theirs)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if value is None and ours == "volume":
                    value = 0.0  # some feeds omit volume on quiet minutes
                else:
                    raise provider.malformed(symbol, what, f"bar {i} field {theirs!r} is {value!r}, not a number")
            out[ours].append(float(value))
    return out
