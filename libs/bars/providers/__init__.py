"""Bar providers behind one interface, built from settings, tried in priority order.

`build_chain(settings)` makes a `ProviderChain` of the providers named in `MT_BARS_PROVIDERS`
that have an API key (a provider without a key is skipped), each with its own rate limiter
(`MT_POLYGON_REQUESTS_PER_MINUTE`, `MT_FMP_REQUESTS_PER_MINUTE`, `MT_TIINGO_REQUESTS_PER_MINUTE`).
The chain asks, in turn, only the providers that cover the symbol's asset class (Tiingo IEX:
US equities only), so a provider that cannot have the bars is skipped, not counted as a failure.
A provider that fails (or has nothing) is logged and the next one is asked. When every provider
asked had no bars, the answer is an empty frame ("no data"); when some failed, one
`ProviderError` lists every provider's reason. With no provider configured, or none covering
the asset class, the error says which settings to set — at fetch time, so a stack without keys
still starts.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from libs.bars.assets import ASSET_CLASSES
from libs.bars.providers.base import BarProvider, Bound, HttpProvider, ProviderError, empty_frame
from libs.bars.providers.fmp import FmpProvider
from libs.bars.providers.polygon import PolygonProvider
from libs.bars.providers.tiingo import TiingoProvider
from libs.config import Settings
from libs.retry import RateLimiter, RetryPolicy

__all__ = [
    "BarProvider",
    "FmpProvider",
    "PolygonProvider",
    "ProviderChain",
    "ProviderError",
    "TiingoProvider",
    "build_chain",
    "provider_names",
]

ALIASES = {"financial_modeling_prep": "fmp", "polygon.io": "polygon", "polygonio": "polygon"}
KNOWN = ("polygon", "fmp", "tiingo")


def provider_names(setting: str) -> list[str]:
    """Provider names from a comma list (aliases resolved); a ValueError names an unknown one."""
    names: list[str] = []
    for raw in setting.split(","):
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in KNOWN:
            raise ValueError(f"MT_BARS_PROVIDERS: unknown provider {raw.strip()!r}; known: {', '.join(KNOWN)}")
        if name not in names:
            names.append(name)
    return names


def build_providers(settings: Settings, *, policy: RetryPolicy | None = None, log: Any = None) -> list[HttpProvider]:
    """The configured providers with a key, in priority order, each with its own rate limiter."""
    out: list[HttpProvider] = []
    for name in provider_names(settings.bars_providers):
        if name == "polygon" and settings.polygon_api_key:
            limiter = _limiter("MT_POLYGON_REQUESTS_PER_MINUTE", settings.polygon_requests_per_minute)
            out.append(
                PolygonProvider(
                    settings.polygon_host, settings.polygon_api_key, limiter=limiter, policy=policy, log=log
                )
            )
        elif name == "fmp" and settings.fmp_api_key:
            limiter = _limiter("MT_FMP_REQUESTS_PER_MINUTE", settings.fmp_requests_per_minute)
            out.append(FmpProvider(settings.fmp_host, settings.fmp_api_key, limiter=limiter, policy=policy, log=log))
        elif name == "tiingo" and settings.tiingo_api_key:
            limiter = _limiter("MT_TIINGO_REQUESTS_PER_MINUTE", settings.tiingo_requests_per_minute)
            out.append(
                TiingoProvider(settings.tiingo_host, settings.tiingo_api_key, limiter=limiter, policy=policy, log=log)
            )
    return out


def _limiter(setting: str, per_minute: float) -> RateLimiter:
    """A token bucket of `per_minute` requests a minute; a ValueError names the setting when it is not positive."""
    if not per_minute > 0:
        raise ValueError(f"{setting} must be greater than 0, got {per_minute!r}")
    return RateLimiter(per_minute / 60.0)


def covers(provider: BarProvider, asset: str | None) -> bool:
    """True when `provider` has bars for `asset` (None: unknown, asked anyway)."""
    return asset is None or asset in getattr(provider, "assets", ASSET_CLASSES)


class ProviderChain:
    """Providers in priority order: the first that returns bars for a symbol wins."""

    def __init__(self, providers: list[BarProvider], *, log: Any = None, configured: str = "") -> None:
        self.providers = providers
        self.log = log
        self.configured = configured

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    async def fetch_minutes(
        self, symbol: str, start: Bound, end: Bound, *, asset: str | None = None
    ) -> tuple[pl.DataFrame, str]:
        """1-minute bars between the bounds and the provider that gave them ('' when none had any)."""
        if not self.providers:
            raise ProviderError(
                "bars",
                symbol,
                "no bar provider configured: set MT_POLYGON_API_KEY, MT_FMP_API_KEY or MT_TIINGO_API_KEY "
                f"(providers tried in the order of MT_BARS_PROVIDERS={self.configured!r})",
            )
        usable = [p for p in self.providers if covers(p, asset)]
        failures: list[str] = []
        empty: list[str] = []
        last: ProviderError | None = None
        for i, provider in enumerate(usable):
            try:
                frame = await provider.fetch_minutes(symbol, start, end, asset=asset)
            except ProviderError as e:
                if e.unsupported:  # it found out itself that it cannot have these bars: not a failure
                    continue
                last = e
                failures.append(str(e))
                if self.log is not None:
                    nxt = usable[i + 1].name if i + 1 < len(usable) else None
                    self.log.warning(
                        "bar provider failed", provider=provider.name, symbol=symbol, error=str(e), next=nxt
                    )
                continue
            if frame.height:
                return frame, provider.name
            empty.append(provider.name)
        if not failures and not empty:
            have = "; ".join(f"{p.name} covers {', '.join(sorted(getattr(p, 'assets', ASSET_CLASSES)))}"
                             for p in self.providers)  # fmt: skip
            raise ProviderError(
                "bars", symbol, f"no configured provider has {asset} bars ({have}); set the key of one that does"
            )
        if not failures:
            return empty_frame(), ""
        if len(failures) == 1 and not empty and last is not None:
            raise last
        nothing = [f"{name} {symbol}: no bars in the range" for name in empty]
        raise ProviderError("bars", symbol, "every provider failed: " + "; ".join(failures + nothing))

    async def aclose(self) -> None:
        for p in self.providers:
            await p.aclose()


def build_chain(settings: Settings, *, policy: RetryPolicy | None = None, log: Any = None) -> ProviderChain:
    """The fallback chain the settings describe."""
    return ProviderChain(build_providers(settings, policy=policy, log=log), log=log, configured=settings.bars_providers)
