"""Asset classes of bar symbols: the documented rule, overrides, and clear errors."""

from __future__ import annotations

import re

import pytest

from libs import config
from libs.bars.assets import (
    TIMEFRAME_NS,
    TIMEFRAMES,
    asset_class,
    check_override,
    check_timeframe,
    parse_overrides,
    resolve_assets,
)
from libs.replay import bars as replay_bars
from proto.events import TIMEFRAMES as EVENT_TIMEFRAMES


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("BTC-USD", "crypto"),
        ("ETH-USDT", "crypto"),
        ("BTC-PERP", "crypto"),
        ("X:BTCUSD", "crypto"),
        ("btcusdt", "crypto"),
        ("SOL/BTC", "crypto"),
        ("EURUSD", "forex"),
        ("GBP/USD", "forex"),
        ("C:EURUSD", "forex"),
        ("eur-jpy", "forex"),
        ("AAPL", "us_equity"),
        ("GOOG", "us_equity"),
        ("BRK-B", "us_equity"),
        ("SPY", "us_equity"),
        # crypto pairs written without a separator: a known base and a fiat, stablecoin or crypto quote
        ("BTCUSD", "crypto"),
        ("ETHUSD", "crypto"),
        ("SOLUSD", "crypto"),
        ("BTCEUR", "crypto"),
        ("ETHBTC", "crypto"),
        ("dogeusd", "crypto"),
        ("BTC-CAD", "crypto"),
        ("PEPEUSDT", "crypto"),
        # spot metals against a currency trade like forex
        ("XAUUSD", "forex"),
        ("XAG/USD", "forex"),
        # names that only look like it stay equities
        ("ETH", "us_equity"),
        ("GOOGL", "us_equity"),
        ("SOLV", "us_equity"),
    ],
)
def test_asset_class_rule(symbol: str, expected: str) -> None:
    assert asset_class(symbol) == expected


def test_override_wins_and_is_checked() -> None:
    assert asset_class("AAPL", "crypto") == "crypto"
    with pytest.raises(ValueError, match="unknown asset class 'bonds'"):
        asset_class("AAPL", "bonds")


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_symbol_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="symbol must be a non-empty string"):
        asset_class(bad)


def test_timeframes_match_the_event_contract() -> None:
    assert TIMEFRAMES == EVENT_TIMEFRAMES
    with pytest.raises(ValueError, match="unknown timeframe '3min'"):
        check_timeframe("3min")


def test_overrides_setting_parses_and_names_bad_items() -> None:
    assert parse_overrides(" btcusd=crypto, XAUUSD = forex ,,") == {"BTCUSD": "crypto", "XAUUSD": "forex"}
    assert parse_overrides("") == {}
    for text, words in [
        ("BTCUSD", "'BTCUSD' is not SYMBOL=CLASS"),
        ("BTCUSD=", "'BTCUSD=' is not SYMBOL=CLASS"),
        ("=crypto", "'=crypto' is not SYMBOL=CLASS"),
        ("BTCUSD=coin", "'BTCUSD=coin': unknown asset class 'coin'"),
        ("BTCUSD=crypto,btcusd=forex", "'btcusd' is given twice (crypto and forex)"),
    ]:
        with pytest.raises(ValueError, match="MT_BARS_ASSET_OVERRIDES: " + re.escape(words)):
            parse_overrides(text)
    settings = config.load({"MT_BARS_ASSET_OVERRIDES": "BTCUSD=crypto,XAUUSD=forex"})
    assert parse_overrides(settings.bars_asset_overrides) == {"BTCUSD": "crypto", "XAUUSD": "forex"}


def test_request_override_beats_the_setting_which_beats_the_rule() -> None:
    symbols = ["MYCOIN", "Gold1", "AAPL"]
    configured = parse_overrides("GOLD1=forex,AAPL=crypto")
    assert resolve_assets(symbols, None, configured) == {"MYCOIN": "us_equity", "Gold1": "forex", "AAPL": "crypto"}
    per_symbol = check_override({"mycoin": "crypto", "AAPL": "us_equity"}, symbols)
    assert resolve_assets(symbols, per_symbol, configured) == {
        "MYCOIN": "crypto",
        "Gold1": "forex",
        "AAPL": "us_equity",
    }
    assert resolve_assets(symbols, check_override("crypto", symbols), configured) == dict.fromkeys(symbols, "crypto")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("coins", "asset_class: unknown asset class 'coins'"),
        ({"MSFT": "crypto"}, "asset_class: 'MSFT' is not one of the requested symbols"),
        ({"AAPL": "bond"}, "asset_class: AAPL: unknown asset class 'bond'"),
        (["crypto"], "asset_class must be an asset class or an object {symbol: class}, got ['crypto']"),
    ],
)
def test_bad_request_overrides_name_the_field_and_value(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        check_override(value, ["AAPL"])


def test_one_timeframe_length_table() -> None:
    minute = 60 * 10**9
    expected = {
        "1min": minute, "5min": 5 * minute, "15min": 15 * minute, "30min": 30 * minute, "1h": 60 * minute,
        "2h": 120 * minute, "4h": 240 * minute, "daily": 1440 * minute,
    }  # fmt: skip
    assert expected == TIMEFRAME_NS
    assert replay_bars.TIMEFRAME_NS is TIMEFRAME_NS
