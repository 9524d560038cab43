"""The market-data commands through `markettwin` itself (`services.cli.main`), in embedded mode: MT_HOME in a
temp dir, no NATS_URL, so each command starts its own nats-server and chDB with the recorder, and what it
printed is checked against what landed in ClickHouse. Venue commands run against the local venue servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from libs import config
from libs.store import open_store
from services.cli import main
from tests.conftest import needs_data
from tests.fixtures.venues.venue_server import FIXTURES, VenueServer, fixture, kalshi_route, polymarket_route

TICKER = "KXFEDDECISION-25DEC-H0"
YES = fixture("polymarket_book_yes.json")["asset_id"]
NO = fixture("polymarket_book_no.json")["asset_id"]
MARKETS = f"""
[[pair]]
opportunity_key = "FED"
resolution_date = 2025-12-10
confirmed = true
[pair.kalshi]
ticker = "{TICKER}"
[pair.polymarket]
yes_token = "{YES}"
no_token = "{NO}"
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded mode: MT_HOME in the temp dir, no NATS_URL or CLICKHOUSE_URL, no Kalshi key."""
    home = tmp_path / "home"
    for var in ("NATS_URL", "CLICKHOUSE_URL", "MT_KALSHI_API_KEY_ID", "MT_KALSHI_PRIVATE_KEY_PATH", "MT_MARKETS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MT_HOME", str(home))
    return home


@pytest.fixture
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def venues(key: rsa.RSAPrivateKey) -> Iterator[tuple[VenueServer, VenueServer]]:
    books = {
        YES: (FIXTURES / "polymarket_book_yes.json").read_bytes(),
        NO: (FIXTURES / "polymarket_book_no.json").read_bytes(),
    }
    pages = [fixture("polymarket_markets_page1.json"), fixture("polymarket_markets_page2.json")]
    poly = VenueServer(polymarket_route(books, pages)).start()
    kal = VenueServer(
        kalshi_route(
            {TICKER: (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()},
            fixture("kalshi_markets.json")["markets"],
            key.public_key(),
            (FIXTURES / "kalshi_balance.json").read_bytes(),
        )
    ).start()
    yield poly, kal
    poly.stop()
    kal.stop()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def stats_line(out: str) -> dict:
    """The JSON stats a command prints last."""
    return json.loads(out.strip().splitlines()[-1])


def counts(home: Path) -> dict[str, int]:
    store = open_store(config.load({}, home=home))
    try:
        return store.table_counts()
    finally:
        store.close()


def test_replay_lobster_bitstamp_and_bars_store_what_they_print(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aapl = needs_data("lobster", "AAPL_2012-06-21_L10_first998")
    bitstamp = needs_data("orders", "bitstamp_btcusd_l3_2026-05-02")
    goog = needs_data("bars", "GOOG_daily_2004_2013.csv")
    message = next(aapl.glob("*_message_10.csv"))
    msgs = pd.read_csv(message, header=None)

    code, out, err = run(["replay", "lobster", str(message)], capsys)
    assert code == 0, err
    lob = stats_line(out)
    assert lob["book_rows"] == len(msgs) and lob["trade_rows"] == int(msgs[1].isin([4, 5]).sum())
    assert f"{len(msgs)} book_tops" in out and "stored in chDB" in out

    code, out, err = run(["replay", "bitstamp", str(bitstamp), "--levels", "5"], capsys)
    assert code == 0, err
    bs = stats_line(out)
    assert bs["trade_rows"] == len(pd.read_csv(bitstamp / "trades.csv")) == 284 and bs["book_rows"] > 0

    code, out, err = run(["replay", "bars", str(goog), "--symbol", "GOOG"], capsys)
    assert code == 0, err
    bars = stats_line(out)
    assert bars["bar_rows"] == len(pd.read_csv(goog)) == 2148 and "2148 ohlcv" in out

    got = counts(env)
    assert got["book_tops"] == lob["book_rows"] + bs["book_rows"]
    assert got["md_trades"] == lob["trade_rows"] + bs["trade_rows"]
    assert got["ohlcv"] == bars["bar_rows"]


def test_record_then_replay_the_recording(
    env: Path, tmp_path: Path, venues: tuple[VenueServer, VenueServer], monkeypatch, capsys
) -> None:
    poly, kal = venues
    markets = tmp_path / "markets.toml"
    markets.write_text(MARKETS)
    monkeypatch.setenv("MT_MARKETS_FILE", str(markets))
    monkeypatch.setenv("MT_POLYMARKET_HOST", poly.url)
    monkeypatch.setenv("MT_KALSHI_HOST", kal.url + "/trade-api/v2")
    monkeypatch.setenv("MT_VENUES_POLL_S", "0.2")
    monkeypatch.setenv("MT_VENUES_RATE_PER_S", "200")

    code, out, err = run(["record", "--seconds", "2"], capsys)
    assert code == 0, err
    rec = stats_line(out)["venues"]
    assert rec["kalshi"]["books"] >= 2 and rec["polymarket"]["books"] >= 4
    assert rec["kalshi"]["failed_calls"] == rec["polymarket"]["failed_calls"] == 0
    stored = counts(env)
    assert stored["md_raw"] == rec["kalshi"]["responses"] + rec["polymarket"]["responses"]
    assert stored["book_tops"] == rec["kalshi"]["books"] + rec["polymarket"]["books"]
    assert stored["market_info"] == 3  # the Kalshi ticker and both Polymarket tokens, latest facts each

    code, out, err = run(["replay-recording", "--venue", "kalshi"], capsys)
    assert code == 0, err
    replayed = stats_line(out)
    assert replayed["books"] == rec["kalshi"]["books"] and replayed["payload_errors"] == 0
    store = open_store(config.load({}, home=env))
    try:
        by_source = store.query_df(
            "SELECT source, count() AS n FROM {db}.book_tops WHERE venue = 'kalshi' GROUP BY source ORDER BY source"
        ).rows()
    finally:
        store.close()
    assert by_source == [("live", rec["kalshi"]["books"]), ("recording", rec["kalshi"]["books"])]


def test_markets_fetch_and_signed_balance(
    env: Path,
    tmp_path: Path,
    venues: tuple[VenueServer, VenueServer],
    key: rsa.RSAPrivateKey,
    monkeypatch,
    capsys,
) -> None:
    poly, kal = venues
    code, out, err = run(["markets", "fetch", "--venue", "kalshi", "--host", kal.url + "/trade-api/v2"], capsys)
    assert code == 0, err
    assert [m["ticker"] for m in json.loads(out)] == [m["ticker"] for m in fixture("kalshi_markets.json")["markets"]]
    dest = tmp_path / "poly.json"
    code, out, err = run(["markets", "fetch", "--venue", "polymarket", "--host", poly.url, "--out", str(dest)], capsys)
    assert code == 0, err
    pages = [fixture("polymarket_markets_page1.json"), fixture("polymarket_markets_page2.json")]
    assert json.loads(dest.read_text()) == [m for p in pages for m in p["data"]]
    assert f"{sum(len(p['data']) for p in pages)} polymarket markets written to {dest}" in out

    pem = tmp_path / "kalshi.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("MT_KALSHI_HOST", kal.url + "/trade-api/v2")
    monkeypatch.setenv("MT_KALSHI_API_KEY_ID", "key-123")
    monkeypatch.setenv("MT_KALSHI_PRIVATE_KEY_PATH", str(pem))
    code, out, err = run(["markets", "balance"], capsys)
    assert code == 0, err
    want = fixture("kalshi_balance.json")
    assert msgspec.json.decode(out.strip()) == {
        "balance_cents": want["balance"],
        "portfolio_value_cents": want["portfolio_value"],
    }
    (signed,) = [r for r in kal.requests if r.path == "/trade-api/v2/portfolio/balance"]
    assert signed.headers["KALSHI-ACCESS-KEY"] == "key-123"  # verified by the server with the public key
    # another key: the server refuses the signature, the command says the venue failed (exit 1)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem.write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    code, out, err = run(["markets", "balance"], capsys)
    assert code == 1 and "401" in err


@pytest.mark.parametrize(
    ("argv", "env_vars", "words"),
    [
        (["replay", "lobster", "/nope/AAPL_2012-06-21_34200000_57600000_message_10.csv"], {}, "no such file"),
        (["replay", "bars", "{goog}", "--speed", "-1"], {}, "speed=-1.0 must be a positive"),
        (["replay", "bitstamp", "/nope"], {}, "/nope: no such file or folder"),
        (["replay-recording", "--venue", "kalshi", "--speed", "-2"], {}, "speed=-2.0"),
        (["replay-recording", "--venue", "kalshi", "--start", "yesterday"], {}, "--start='yesterday' is not an ISO"),
        (["record", "--seconds", "1", "--venues", "kalshi,betfair"], {}, "unknown venue(s) ['betfair']"),
        (["record", "--seconds", "0"], {}, "--seconds 0.0 must be a positive"),
        (["record", "--seconds", "1"], {}, "needs a market mapping file: set MT_MARKETS_FILE"),
        (["record", "--seconds", "1"], {"MT_MARKETS_FILE": "/nope.toml"}, "'/nope.toml' does not exist"),
        (
            ["record", "--seconds", "1"],
            {"MT_MARKETS_FILE": "{markets}", "MT_KALSHI_PRIVATE_KEY_PATH": "/k.pem"},
            "MT_KALSHI_API_KEY_ID is not",
        ),
        (["markets", "balance"], {"MT_KALSHI_API_KEY_ID": "k"}, "MT_KALSHI_PRIVATE_KEY_PATH is not"),
        (["markets", "check", "/nope.toml"], {}, "'/nope.toml' does not exist"),
        (["markets", "fetch", "--venue", "kalshi", "--max-pages", "0"], {}, "--max-pages 0 must be at least 1"),
    ],
)
def test_bad_inputs_exit_2_naming_the_problem(
    env: Path, tmp_path: Path, argv: list[str], env_vars: dict, words: str, monkeypatch, capsys
) -> None:
    if "{goog}" in argv:
        argv = [a.replace("{goog}", str(needs_data("bars", "GOOG_daily_2004_2013.csv"))) for a in argv]
    markets = tmp_path / "markets.toml"
    markets.write_text(MARKETS)
    for k, v in env_vars.items():
        monkeypatch.setenv(k, v.replace("{markets}", str(markets)))
    code, _, err = run(argv, capsys)
    assert code == 2 and words in err, (code, err)
    assert not (env / "clickhouse").exists()  # refused before anything started


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["markets", "fetch", "--venue", "betfair"], "invalid choice: 'betfair'"),
        (["replay-recording", "--venue", "nyse"], "invalid choice: 'nyse'"),
        (["replay", "lobster"], "the following arguments are required: path"),
        (["replay", "bars", "x.csv", "--speed", "fast"], "invalid float value: 'fast'"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser_with_exit_2(argv: list[str], words: str, env: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err
