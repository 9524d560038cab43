"""The bar-provider interface, its error, and the HTTP plumbing every provider shares.

A provider turns (symbol, first day, last day) into 1-minute bars in UTC. `HttpProvider` does
the requests: one `httpx.AsyncClient` per provider, an optional rate limiter, retries with
backoff (`libs.retry.with_retries`) for 429 (honouring Retry-After), 5xx and connection errors,
and an immediate `ProviderError` for 401/403/404 and for a body that is not the documented shape.
API keys never appear in errors or logs.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx
import numpy as np
import polars as pl

from libs.retry import RateLimiter, RetriesExhausted, RetryPolicy, with_retries

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
SCHEMA = {"ts": pl.Datetime("ns", "UTC"), **{c: pl.Float64 for c in COLUMNS[1:]}}
TIMEOUT_S = 30.0


class ProviderError(RuntimeError):
    """A provider could not deliver bars; names the provider, the symbol and (for HTTP) the status.

    `retryable` marks failures worth another attempt (429, 5xx, connection); `retry_after_s`
    carries a 429's Retry-After for `with_retries`.
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
    ) -> None:
        where = f"{provider} {symbol}" if symbol else provider
        super().__init__(f"{where}: {message}")
        self.provider = provider
        self.symbol = symbol
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = retryable


class BarProvider(Protocol):
    """Anything that fetches 1-minute bars for a symbol over whole UTC days [start, end]."""

    name: str

    async def fetch_minutes(
        self, symbol: str, start: dt.date, end: dt.date, *, asset: str | None = None
    ) -> pl.DataFrame:
        """Bars with columns ts (bar open, UTC ns), open, high, low, close, volume, ascending."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...


def empty_frame() -> pl.DataFrame:
    """A bar frame with no rows (the provider had nothing for the range)."""
    return pl.DataFrame(schema=SCHEMA)


def frame_from(ts_ns: Sequence[int] | np.ndarray, rows: Mapping[str, Sequence[float]]) -> pl.DataFrame:
    """A checked bar frame: sorted by ts, duplicate timestamps collapsed to the last one seen."""
    frame = pl.DataFrame(
        {
            "ts": pl.Series("ts", np.asarray(ts_ns, dtype=np.int64)).cast(pl.Datetime("ns", "UTC")),
            **{c: pl.Series(c, np.asarray(rows[c], dtype=np.float64)) for c in COLUMNS[1:]},
        }
    )
    return frame.unique("ts", keep="last", maintain_order=True).sort("ts")


def within_days(frame: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Rows whose bar opens on a UTC day in [start, end]."""
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return frame.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class HttpProvider:
    """Shared GET-with-retries for the HTTP providers; subclasses implement `fetch_minutes`."""

    name = "?"

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
                wait = retry_after(resp.headers.get("Retry-After"))
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
