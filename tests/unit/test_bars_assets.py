"""Asset classes of bar symbols: the documented rule, overrides, and clear errors."""

from __future__ import annotations

import pytest

from libs.bars.assets import TIMEFRAMES, asset_class, check_timeframe
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
