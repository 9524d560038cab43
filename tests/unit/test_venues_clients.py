"""The venue clients against real local HTTP servers: the real client libraries make real HTTP calls."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kalshi_python_sync.auth import KalshiAuth

from libs.retry import RetriesExhausted, RetryPolicy
from libs.venues import kalshi_auth
from libs.venues.errors import PayloadError, VenueHTTPError
from libs.venues.kalshi import DEMO_HOST, PRODUCTION_HOST, KalshiClient, host_for
from libs.venues.kalshi import parse_response as kalshi_parse
from libs.venues.polymarket import PolymarketClient
from libs.venues.polymarket import parse_response as poly_parse
from tests.fixtures.venues.venue_server import FIXTURES, VenueServer, fixture, kalshi_route, polymarket_route

FAST = RetryPolicy(attempts=2, base_s=0.01, max_s=0.05)
TICKER = "KXFEDDECISION-25DEC-H0"


def pem_of(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def kalshi(key: rsa.RSAPrivateKey) -> Iterator[VenueServer]:
    books = {TICKER: (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()}
    route = kalshi_route(
        books,
        fixture("kalshi_markets.json")["markets"],
        key.public_key(),
        (FIXTURES / "kalshi_balance.json").read_bytes(),
    )
    server = VenueServer(route).start()
    yield server
    server.stop()


@pytest.fixture
def poly() -> Iterator[VenueServer]:
    yes = (FIXTURES / "polymarket_book_yes.json").read_bytes()
    books = {json.loads(yes)["asset_id"]: yes}
    pages = [fixture("polymarket_markets_page1.json"), fixture("polymarket_markets_page2.json")]
    server = VenueServer(polymarket_route(books, pages)).start()
    yield server
    server.stop()


async def test_kalshi_balance_is_signed_and_verified_by_the_server(
    kalshi: VenueServer, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "kalshi.pem"
    key_file.write_text(pem_of(key))
    client = KalshiClient(kalshi.url + "/trade-api/v2", key_id="key-1", private_key=key_file, policy=FAST)
    bal = await client.balance()
    assert bal.balance_cents == 1_234_567 and bal.portfolio_value_cents == 250_000
    req = kalshi.requests[-1]
    assert req.path == "/trade-api/v2/portfolio/balance" and req.headers["KALSHI-ACCESS-KEY"] == "key-1"
    # the server checked ts + METHOD + full path with the public key: the same headers fail for another path
    assert kalshi_auth.verify(key.public_key(), req.headers, "GET", "/trade-api/v2/portfolio/balance")
    assert not kalshi_auth.verify(key.public_key(), req.headers, "GET", "/trade-api/v2/portfolio/positions")


async def test_kalshi_bad_signature_gets_401_and_is_not_retried(kalshi: VenueServer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = KalshiClient(kalshi.url + "/trade-api/v2", key_id="key-1", private_key=pem_of(other), policy=FAST)
    with pytest.raises(VenueHTTPError) as e:
        await client.balance()
    assert (
        e.value.status == 401 and e.value.endpoint == "GET /portfolio/balance" and "invalid signature" in e.value.reason
    )
    assert kalshi.count("/trade-api/v2/portfolio/balance") == 1
    unsigned = KalshiClient(kalshi.url + "/trade-api/v2", policy=FAST)
    with pytest.raises(ValueError, match="API key id and private key"):
        await unsigned.balance()


def test_signature_scheme_matches_the_sdk_and_rejects_tampering(key: rsa.RSAPrivateKey) -> None:
    url = "https://api.elections.kalshi.com/trade-api/v2/portfolio/balance?limit=5"
    ours = kalshi_auth.KalshiSigner("k", pem_of(key), clock_ms=lambda: 1_700_000_000_123).headers("get", url)
    assert ours["KALSHI-ACCESS-TIMESTAMP"] == "1700000000123"
    sdk = KalshiAuth("k", pem_of(key)).create_auth_headers("GET", url)
    pub = key.public_key()
    for headers in (ours, sdk):  # PSS is randomised: both verify, neither equals the other
        assert kalshi_auth.verify(pub, headers, "GET", "/trade-api/v2/portfolio/balance")
    tampered = {**ours, "KALSHI-ACCESS-TIMESTAMP": "1700000000124"}
    assert not kalshi_auth.verify(pub, tampered, "GET", "/trade-api/v2/portfolio/balance")
    assert not kalshi_auth.verify(pub, ours, "POST", "/trade-api/v2/portfolio/balance")


def test_key_loading_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(kalshi_auth.KalshiKeyError, match="does not exist"):
        kalshi_auth.load_private_key(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(kalshi_auth.KalshiKeyError, match=r"bad\.pem"):
        kalshi_auth.load_private_key(bad)
    with pytest.raises(kalshi_auth.KalshiKeyError, match="key id is empty"):
        kalshi_auth.KalshiSigner("", bad)


def test_hosts() -> None:
    assert host_for() == PRODUCTION_HOST == "https://api.elections.kalshi.com/trade-api/v2"
    assert host_for(use_demo=True) == DEMO_HOST == "https://demo-api.kalshi.co/trade-api/v2"
    assert host_for("http://127.0.0.1:9/trade-api/v2/", use_demo=True) == "http://127.0.0.1:9/trade-api/v2"


async def test_kalshi_orderbook_markets_and_404(kalshi: VenueServer) -> None:
    client = KalshiClient(kalshi.url + "/trade-api/v2", policy=FAST)
    record: list = []
    resp = await client.orderbook(TICKER, record)
    assert resp.endpoint == f"GET /markets/{TICKER}/orderbook" and record == [resp]
    assert resp.body == (FIXTURES / "kalshi_orderbook_fp.json").read_bytes()  # the body as received
    (book,) = kalshi_parse(resp).books
    assert book.ask_px[0] == 4_650
    markets = await client.markets(tickers=[TICKER])
    assert [m["status"] for m in markets] == ["active"]
    with pytest.raises(VenueHTTPError) as e:
        await client.orderbook("NOPE-1", record)
    assert e.value.status == 404 and record[-1].status == 404  # error answers are recorded too


async def test_polymarket_books_markets_pages_and_metadata(poly: VenueServer) -> None:
    client = PolymarketClient(poly.url, policy=FAST)
    token = fixture("polymarket_book_yes.json")["asset_id"]
    (resp,) = await client.books([token])
    assert resp.endpoint == "POST /books" and json.loads(resp.body)[0]["asset_id"] == token
    assert poly_parse(resp).books[0].bid_px[0] == 4_800
    markets = await client.markets()
    assert len(markets) == 9 and poly.count("/markets") == 2  # followed next_cursor to the last page
    assert await client.neg_risk(token) is False
    assert await client.fee_rate_bps(token) == 0
    single = await client.book(token)
    assert single.endpoint == f"GET /book?token_id={token}"


async def test_polymarket_server_error_is_retried_then_reported(poly: VenueServer) -> None:
    client = PolymarketClient(poly.url, policy=FAST)
    poly.mode = "500"
    with pytest.raises(RetriesExhausted) as e:
        await client.books(["1"])
    assert isinstance(e.value.last, VenueHTTPError) and e.value.last.status == 500
    assert poly.count("/books") == 2
    poly.mode = "close"
    with pytest.raises(RetriesExhausted) as e:
        await client.books(["1"])
    assert e.value.last.status == 0


class Log:
    """Collects structured warning lines."""

    def __init__(self) -> None:
        self.lines: list[dict] = []

    def warning(self, event: str, **kw: object) -> None:
        self.lines.append({"event": event, **kw})


def _http_date(seconds_ahead: int) -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_ahead), usegmt=True)


@pytest.mark.parametrize("venue", ["kalshi", "polymarket"])
async def test_a_429_retry_after_http_date_is_read_by_both_clients(venue: str) -> None:
    when = _http_date(30)
    server = VenueServer(lambda req: (429, b'{"error": "slow down"}', {"Retry-After": when})).start()
    try:
        no_retry = RetryPolicy(attempts=1)
        with pytest.raises(RetriesExhausted) as e:
            if venue == "kalshi":
                await KalshiClient(server.url + "/trade-api/v2", policy=no_retry).orderbook(TICKER)
            else:
                await PolymarketClient(server.url, policy=no_retry).books(["1"])
    finally:
        server.stop()
    last = e.value.last
    assert isinstance(last, VenueHTTPError) and last.status == 429
    assert last.retry_after_s is not None and 25.0 <= last.retry_after_s <= 30.0  # the date, as seconds


async def test_markets_bodies_that_are_not_json_are_payload_errors_and_still_recorded() -> None:
    server = VenueServer(lambda req: (200, b"<html>bad gateway</html>")).start()
    try:
        record: list = []
        with pytest.raises(PayloadError, match=r"field body = .*is not JSON"):
            await KalshiClient(server.url + "/trade-api/v2", policy=FAST).markets(record=record)
        assert [r.body for r in record] == [b"<html>bad gateway</html>"]
        record = []
        with pytest.raises(PayloadError, match="is not JSON"):
            await PolymarketClient(server.url, policy=FAST).markets(record=record)
        assert [r.body for r in record] == [b"<html>bad gateway</html>"]
    finally:
        server.stop()


async def test_stopping_at_max_pages_logs_a_warning(poly: VenueServer) -> None:
    log = Log()
    markets = await PolymarketClient(poly.url, policy=FAST, log=log).markets(max_pages=1)
    assert len(markets) == 4  # the first page only
    (line,) = [x for x in log.lines if x["event"] == "markets list cut short"]
    assert line["max_pages"] == 1 and line["next_cursor"] == "NA==" and line["venue"] == "polymarket"

    pages = {"": {"markets": [{"ticker": "A"}], "cursor": "c2"}, "c2": {"markets": [{"ticker": "B"}], "cursor": ""}}

    def kroute(req):  # type: ignore[no-untyped-def]
        return 200, json.dumps(pages[(req.query.get("cursor") or [""])[0]]).encode()

    server = VenueServer(kroute).start()
    try:
        klog = Log()
        got = await KalshiClient(server.url + "/trade-api/v2", policy=FAST, log=klog).markets(max_pages=1)
        assert [m["ticker"] for m in got] == ["A"]
        assert [x["next_cursor"] for x in klog.lines if x["event"] == "markets list cut short"] == ["c2"]
        klog.lines.clear()
        both = await KalshiClient(server.url + "/trade-api/v2", policy=FAST, log=klog).markets(max_pages=5)
        assert [m["ticker"] for m in both] == ["A", "B"] and klog.lines == []  # all read: no warning
    finally:
        server.stop()


async def test_polymarket_market_object_and_clob_parameters(poly: VenueServer) -> None:
    client = PolymarketClient(poly.url, policy=FAST)
    fed = fixture("polymarket_market_fed.json")
    market = await client.market(fed["condition_id"])
    clob = await client.clob_market(fed["condition_id"])
    assert market["question"] == fed["question"] and clob["fd"] == {"r": 0.04, "e": 1, "to": True}
    with pytest.raises(VenueHTTPError) as e:
        await client.market("0xnope")
    assert e.value.status == 404
