"""Asset classes of bar symbols and the bar timeframes: which trading calendar and bins a symbol uses.

The rule `asset_class` applies, first match wins (case-insensitive; an explicit override beats it):

1. Polygon prefixes: `X:BTCUSD` is crypto, `C:EURUSD` is forex.
2. A perpetual (`BTC-PERP`, `ETHPERP`) is crypto.
3. `BASE-QUOTE` or `BASE/QUOTE`: both sides fiat currencies (`GBP/USD`, `EUR-JPY`) is forex; a
   non-fiat base against a crypto quote (USD, USDT, USDC, BUSD, DAI, BTC, ETH, EUR, ...) is
   crypto (`BTC-USD`, `ETH-USDT`, `SOL/BTC`). Other dashed names (`BRK-B`) fall through.
4. Six letters that are two fiat codes (`EURUSD`) is forex; a name ending in a stablecoin
   (`BTCUSDT`, `ETHUSDC`) is crypto.
5. Anything else is a US equity (`AAPL`, `BRK-B`, `SPY`).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

AssetClass = Literal["us_equity", "crypto", "forex"]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)

TIMEFRAMES: tuple[str, ...] = ("1min", "5min", "15min", "30min", "1h", "2h", "4h", "daily")
"""Every bar timeframe, finest first (the same tuple as `proto.events.TIMEFRAMES`)."""

INTRADAY_MINUTES: dict[str, int] = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "2h": 120, "4h": 240}
"""Length of each intraday timeframe in minutes (daily bars follow the asset's session instead)."""

_FIAT_CODES = "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK HKD SGD CNH CNY MXN ZAR TRY PLN HUF CZK ILS INR KRW BRL THB"
FIAT: frozenset[str] = frozenset(_FIAT_CODES.split(" "))
"""ISO codes treated as fiat currencies (a pair of two of them is forex)."""

CRYPTO_QUOTES: frozenset[str] = frozenset(
    ("USD", "USDT", "USDC", "BUSD", "DAI", "TUSD", "FDUSD", "BTC", "ETH", "EUR", "GBP", "JPY")
)
"""Quote currencies of crypto pairs (a non-fiat base against one of these is crypto)."""

_STABLE_SUFFIX = ("USDT", "USDC", "BUSD", "FDUSD")
_PAIR = re.compile(r"^([A-Z0-9]+)[-/]([A-Z0-9]+)$")


def asset_class(symbol: str, override: str | None = None) -> AssetClass:
    """The asset class of `symbol` by the module's rule, or `override` when given (checked)."""
    if override is not None:
        return check_asset(override)
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    s = symbol.strip().upper()
    if s.startswith("X:"):
        return "crypto"
    if s.startswith("C:"):
        return "forex"
    if s.endswith("PERP"):
        return "crypto"
    m = _PAIR.match(s)
    if m:
        base, quote = m.groups()
        if base in FIAT and quote in FIAT:
            return "forex"
        if quote in CRYPTO_QUOTES and base not in FIAT:
            return "crypto"
        return "us_equity"
    if len(s) == 6 and s[:3] in FIAT and s[3:] in FIAT:
        return "forex"
    if s.endswith(_STABLE_SUFFIX) and len(s) > 4:
        return "crypto"
    return "us_equity"


def check_asset(asset: str) -> AssetClass:
    """`asset` if it is a known asset class, else a ValueError naming it and the choices."""
    if asset not in ASSET_CLASSES:
        raise ValueError(f"unknown asset class {asset!r}; choose one of {', '.join(ASSET_CLASSES)}")
    return asset  # type: ignore[return-value]


def check_timeframe(timeframe: str) -> str:
    """`timeframe` if it is one of TIMEFRAMES, else a ValueError naming it and the choices."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; choose one of {', '.join(TIMEFRAMES)}")
    return timeframe
