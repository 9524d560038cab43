"""Bar providers behind one interface, built from settings, tried in priority order.

`build_chain(settings)` makes a `ProviderChain` of the providers named in `MT_BARS_PROVIDERS`
that have an API key (a provider without a key is skipped). The chain asks each in turn: a
provider that fails for a symbol (or has nothing) is logged and the next one is asked; when
all fail, one `ProviderError` lists every provider's reason. With no provider configured, the
error says which settings to set — at fetch time, so a stack without keys still starts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from libs.bars.providers.base import BarProvider, HttpProvider, ProviderError, empty_frame
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
    """The configured providers with a key, in priority order."""
    out: list[HttpProvider] = []
    for name in provider_names(settings.bars_providers):
        if name == "polygon" and settings.polygon_api_key:
            limiter = RateLimiter(settings.polygon_requests_per_minute / 60.0)
            out.append(
                PolygonProvider(
                    settings.polygon_host, settings.polygon_api_key, limiter=limiter, policy=policy, log=log
                )
            )
        elif name == "fmp" and settings.fmp_api_key:
            out.append(FmpProvider(settings.fmp_host, settings.fmp_api_key, policy=policy, log=log))
        elif name == "tiingo" and settings.tiingo_api_key:
            out.append(TiingoProvider(settings.tiingo_host, settings.tiingo_api_key, policy=policy, log=log))
    return out


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
        self, symbol: str, start: dt.date, end: dt.date, *, asset: str | None = None
    ) -> tuple[pl.DataFrame, str]:
        """1-minute bars for [start, end] and the provider that gave them ('' when none had any)."""
        if not self.providers:
            raise ProviderError(
                "bars",
                symbol,
                "no bar provider configured: set MT_POLYGON_API_KEY, MT_FMP_API_KEY or MT_TIINGO_API_KEY "
                f"(providers tried in the order of MT_BARS_PROVIDERS={self.configured!r})",
            )
        failures: list[str] = []
        last: ProviderError | None = None
        for i, provider in enumerate(self.providers):
            try:
                frame = await provider.fetch_minutes(symbol, start, end, asset=asset)
            except ProviderError as e:
                last = e
                failures.append(str(e))
                if self.log is not None:
                    nxt = self.providers[i + 1].name if i + 1 < len(self.providers) else None
                    self.log.warning(
                        "bar provider failed", provider=provider.name, symbol=symbol, error=str(e), next=nxt
                    )
                continue
            if frame.height:
                return frame, provider.name
            failures.append(f"{provider.name} {symbol}: no bars for {start}..{end}")
        if len(failures) == len(self.providers) and all(": no bars for" in f for f in failures):
            return empty_frame(), ""
        if len(self.providers) == 1 and last is not None:
            raise last
        raise ProviderError("bars", symbol, "every provider failed: " + "; ".join(failures))

    async def aclose(self) -> None:
        for p in self.providers:
            await p.aclose()


def build_chain(settings: Settings, *, policy: RetryPolicy | None = None, log: Any = None) -> ProviderChain:
    """The fallback chain the settings describe."""
    return ProviderChain(build_providers(settings, policy=policy, log=log), log=log, configured=settings.bars_providers)
