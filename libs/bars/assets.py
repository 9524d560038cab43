"""Asset classes of bar symbols and the bar timeframes: which trading calendar and bins a symbol uses.

The rule `asset_class` applies, first match wins (case-insensitive; an explicit override beats it):

1. Polygon prefixes: `X:BTCUSD` is crypto, `C:EURUSD` is forex.
2. A perpetual (`BTC-PERP`, `ETHPERP`) is crypto.
3. `BASE-QUOTE` or `BASE/QUOTE`: both sides fiat currencies (`GBP/USD`, `EUR-JPY`) or a metal
   against a fiat (`XAU/USD`) is forex; a known crypto base against any fiat or crypto quote
   (`BTC-CAD`, `SOL/BTC`), or a non-fiat base against a crypto quote (USD, USDT, USDC, BUSD,
   DAI, BTC, ETH, EUR, ...: `PEPE-USDT`) is crypto. Other dashed names (`BRK-B`) fall through.
4. Without a separator: two fiat codes (`EURUSD`) or a metal and a fiat (`XAUUSD`) is forex; a
   known crypto base (`BTC`, `ETH`, `SOL`, ... see CRYPTO_BASES) followed by a fiat, stablecoin
   or crypto quote (`BTCUSD`, `ETHBTC`, `SOLEUR`, `BTCUSDT`) is crypto; any name ending in a
   stablecoin (`PEPEUSDT`) is crypto.
5. Anything else is a US equity (`AAPL`, `BRK-B`, `SPY`).

Spot metals (XAU, XAG, XPT, XPD against a currency) are classed forex: they trade Sunday to
Friday and roll at 17:00 New York like currency pairs. The daily one-hour break most metal
venues take (17:00-18:00 New York) is not modelled, so a full metal day shows at most 60
missing minutes. A symbol the rule gets wrong takes an explicit class: the `asset_class` field
of a request, or the setting `MT_BARS_ASSET_OVERRIDES` (`parse_overrides`); `resolve_assets`
applies them in that order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

AssetClass = Literal["us_equity", "crypto", "forex"]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)

TIMEFRAMES: tuple[str, ...] = ("1min", "5min", "15min", "30min", "1h", "2h", "4h", "daily")
"""Every bar timeframe, finest first (the same tuple as `proto.events.TIMEFRAMES`)."""

TIMEFRAME_MINUTES: dict[str, int] = {
    "1min": 1, "5min": 5, "15min": 15, "30min": 30, "1h": 60, "2h": 120, "4h": 240, "daily": 1_440,
}  # fmt: skip
"""Nominal length of each timeframe in minutes (a daily bar: 24 h; its real span is the asset's session)."""

INTRADAY_MINUTES: dict[str, int] = {k: v for k, v in TIMEFRAME_MINUTES.items() if k != "daily"}
"""Length of each intraday timeframe in minutes (daily bars follow the asset's session instead)."""

TIMEFRAME_NS: dict[str, int] = {k: v * 60_000_000_000 for k, v in TIMEFRAME_MINUTES.items()}
"""Nominal length of a bar of each timeframe in ns (a daily bar: 24 h, used to place its close)."""

_FIAT_CODES = "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK HKD SGD CNH CNY MXN ZAR TRY PLN HUF CZK ILS INR KRW BRL THB"
FIAT: frozenset[str] = frozenset(_FIAT_CODES.split(" "))
"""ISO codes treated as fiat currencies (a pair of two of them is forex)."""

METALS: frozenset[str] = frozenset(("XAU", "XAG", "XPT", "XPD"))
"""ISO codes of spot metals (gold, silver, platinum, palladium): against a fiat they are forex."""

CRYPTO_QUOTES: frozenset[str] = frozenset(
    ("USD", "USDT", "USDC", "BUSD", "DAI", "TUSD", "FDUSD", "BTC", "ETH", "EUR", "GBP", "JPY")
)
"""Quote currencies of crypto pairs (a non-fiat base against one of these is crypto)."""

_CRYPTO_BASES = (
    "BTC XBT ETH SOL XRP ADA DOGE DOT LTC BCH LINK AVAX MATIC POL UNI ATOM XLM TRX ETC SHIB TON NEAR APT "
    "ARB FIL AAVE ALGO XTZ EOS XMR ZEC DASH SUI PEPE BNB ICP HBAR VET GRT MKR SAND MANA AXS CRV COMP SNX "
    "YFI SUSHI BAT ZRX ENJ CHZ FTM KSM EGLD FLOW RUNE INJ SEI TIA WIF BONK JUP STX IMX LDO RNDR RENDER"
)
CRYPTO_BASES: frozenset[str] = frozenset(_CRYPTO_BASES.split())
"""Well-known crypto bases; `BASE` + a quote with no separator (`BTCUSD`) is crypto only for these."""

_STABLE_SUFFIX = ("USDT", "USDC", "BUSD", "FDUSD")
_PAIR = re.compile(r"^([A-Z0-9]+)[-/]([A-Z0-9]+)$")
_ANY_QUOTE = FIAT | CRYPTO_QUOTES


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
        if quote in FIAT and (base in FIAT or base in METALS):
            return "forex"
        if (base in CRYPTO_BASES and quote in _ANY_QUOTE) or (quote in CRYPTO_QUOTES and base not in FIAT):
            return "crypto"
        return "us_equity"
    if len(s) == 6 and s[3:] in FIAT and (s[:3] in FIAT or s[:3] in METALS):
        return "forex"
    if any(s.startswith(b) and s[len(b) :] in _ANY_QUOTE for b in CRYPTO_BASES):
        return "crypto"
    if s.endswith(_STABLE_SUFFIX) and len(s) > 4:
        return "crypto"
    return "us_equity"


def parse_overrides(text: str, source: str = "MT_BARS_ASSET_OVERRIDES") -> dict[str, AssetClass]:
    """`SYMBOL=class,SYMBOL=class` as {SYMBOL (upper case): class}; a ValueError names `source` and the bad item."""
    out: dict[str, AssetClass] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        symbol, sep, cls = (part.strip() for part in item.partition("="))
        if not sep or not symbol or not cls:
            raise ValueError(f"{source}: {item!r} is not SYMBOL=CLASS (e.g. BTCUSD=crypto,XAUUSD=forex)")
        if cls not in ASSET_CLASSES:
            raise ValueError(
                f"{source}: {item!r}: unknown asset class {cls!r}; choose one of {', '.join(ASSET_CLASSES)}"
            )
        key = symbol.upper()
        if key in out and out[key] != cls:
            raise ValueError(f"{source}: {symbol!r} is given twice ({out[key]} and {cls})")
        out[key] = cls  # type: ignore[assignment]
    return out


AssetOverride = str | Mapping[str, str] | None
"""A request's `asset_class`: one class for every symbol, {symbol: class}, or nothing."""


def check_override(value: object, symbols: Iterable[str], field: str = "asset_class") -> AssetOverride:
    """A request's `asset_class` checked against its symbols; a ValueError names the field and the value."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ASSET_CLASSES:
            raise ValueError(f"{field}: unknown asset class {value!r}; choose one of {', '.join(ASSET_CLASSES)}")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be an asset class or an object {{symbol: class}}, got {value!r}")
    known = {s.strip().upper() for s in symbols}
    out: dict[str, str] = {}
    for symbol, cls in value.items():
        if not isinstance(symbol, str) or symbol.strip().upper() not in known:
            raise ValueError(f"{field}: {symbol!r} is not one of the requested symbols")
        if cls not in ASSET_CLASSES:
            raise ValueError(
                f"{field}: {symbol}: unknown asset class {cls!r}; choose one of {', '.join(ASSET_CLASSES)}"
            )
        out[symbol.strip().upper()] = cls
    return out


def resolve_assets(
    symbols: Iterable[str], override: AssetOverride = None, configured: Mapping[str, str] | None = None
) -> dict[str, AssetClass]:
    """Each symbol's class: the request's `override` (one for all, or per symbol), else `configured`
    (the setting, keys upper case), else the rule."""
    out: dict[str, AssetClass] = {}
    for symbol in symbols:
        key = symbol.strip().upper()
        if isinstance(override, str):
            chosen: str | None = override
        elif override is not None and key in override:
            chosen = override[key]
        else:
            chosen = (configured or {}).get(key)
        out[symbol] = asset_class(symbol, chosen)
    return out


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
