"""Venue payloads to integer books: the published shapes, the real Kalshi payloads, empty and malformed books."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from libs.venues import books
from libs.venues.books import Response, parse_price, parse_size, to_batch
from libs.venues.errors import PayloadError
from libs.venues.kalshi import instrument_of, parse_balance, parse_orderbook
from libs.venues.kalshi import parse_response as kalshi_parse
from libs.venues.polymarket import parse_book
from libs.venues.polymarket import parse_response as poly_parse
from proto.units import PRICE_SCALE
from tests.conftest import needs_data
from tests.fixtures.venues.venue_server import FIXTURES, shared_kalshi_orderbook

RECV = 1_700_000_000_000_000_000


def poly_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def expected_side(levels: list[tuple[str, str]], best_first_desc: bool) -> tuple[list[int], list[int]]:
    """An independent reading: Fraction prices x 10,000, floored sizes, zero sizes dropped, best first."""
    rows = [(int(Fraction(p) * PRICE_SCALE), int(Fraction(s))) for p, s in levels]
    rows = [(p, s) for p, s in rows if s > 0]
    rows.sort(key=lambda r: -r[0] if best_first_desc else r[0])
    return [p for p, _ in rows], [s for _, s in rows]


def test_polymarket_book_sorted_best_first_not_by_position() -> None:
    raw = poly_fixture("polymarket_book_yes.json")
    book = parse_book(raw, RECV)
    # the REST book lists bids ascending and asks descending: the best is last in both lists
    assert raw["bids"][-1]["price"] == "0.48" and raw["asks"][-1]["price"] == "0.52"
    bid_px, bid_sz = expected_side([(lv["price"], lv["size"]) for lv in raw["bids"]], True)
    ask_px, ask_sz = expected_side([(lv["price"], lv["size"]) for lv in raw["asks"]], False)
    assert (book.bid_px, book.bid_sz, book.ask_px, book.ask_sz) == (bid_px, bid_sz, ask_px, ask_sz)
    assert book.bid_px[0] == 4_800
    assert book.ask_px[0] == 5_210  # the 0.4-share level at 0.52 floors to 0 contracts and is dropped
    assert book.book_ts == int(raw["timestamp"]) * 1_000_000
    assert book.instrument == raw["asset_id"]


def test_polymarket_no_token_is_its_own_instrument_in_its_own_terms() -> None:
    no = parse_book(poly_fixture("polymarket_book_no.json"), RECV)
    yes = parse_book(poly_fixture("polymarket_book_yes.json"), RECV)
    assert no.instrument != yes.instrument
    assert no.bid_px[0] == 4_790 and no.ask_px[0] == 5_200  # NO prices, not reflected into YES


def test_polymarket_books_response_and_a_batch_row_padded_with_empty_levels() -> None:
    body = (
        b"["
        + (FIXTURES / "polymarket_book_yes.json").read_bytes()
        + b","
        + (FIXTURES / "polymarket_book_empty.json").read_bytes()
        + b"]"
    )
    parsed = poly_parse(Response(venue="polymarket", endpoint="POST /books", recv_ts=RECV, status=200, body=body))
    assert not parsed.errors and len(parsed.books) == 2
    empty = parsed.books[1]
    assert empty.bid_px == empty.ask_px == []
    b = to_batch(empty, "polymarket", "live", levels=3)
    assert b.bid_sz == b.ask_sz == [0, 0, 0] and b.rows == 1
    full = to_batch(parsed.books[0], "polymarket", "live", levels=2)
    assert full.bid_px == parsed.books[0].bid_px[:2] and full.ask_sz == parsed.books[0].ask_sz[:2]


def test_polymarket_book_without_timestamp_uses_receive_time() -> None:
    raw = poly_fixture("polymarket_book_yes.json")
    del raw["timestamp"]
    assert parse_book(raw, RECV).book_ts == RECV


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda b: b["bids"][0].pop("price"), "bids[0]", "price and size"),
        (lambda b: b["asks"][1].update(price="abc"), "asks[1].price", "not a number"),
        (lambda b: b["asks"][1].update(price="1.20"), "asks[1].price", "inside (0, 1)"),
        (lambda b: b["bids"][2].update(price="0.00"), "bids[2].price", "inside (0, 1)"),
        (lambda b: b["bids"][2].update(price="0.12345"), "bids[2].price", "finer than"),
        (lambda b: b["bids"][2].update(size="-3"), "bids[2].size", "negative"),
        (lambda b: b["bids"][2].update(size=None), "bids[2].size", "not a number"),
        (lambda b: b.update(bids="nope"), "bids", "list"),
        (lambda b: b.update(timestamp="yesterday"), "timestamp", "milliseconds"),
        (lambda b: b.pop("asset_id"), "asset_id", "token id"),
        (lambda b: b["bids"].append({"price": "0.53", "size": "10"}), "bids/asks", "crossed"),
    ],
)
def test_polymarket_malformed_book_names_venue_market_and_field(change, field: str, words: str) -> None:
    raw = poly_fixture("polymarket_book_yes.json")
    change(raw)
    with pytest.raises(PayloadError) as e:
        parse_book(raw, RECV)
    assert e.value.field == field and e.value.venue == "polymarket"
    assert words in str(e.value) and field in str(e.value)


def test_polymarket_one_bad_book_in_books_does_not_lose_the_others() -> None:
    bad = poly_fixture("polymarket_book_no.json")
    bad["asks"][0]["price"] = "x"
    body = json.dumps([bad, poly_fixture("polymarket_book_yes.json")]).encode()
    parsed = poly_parse(Response(venue="polymarket", endpoint="POST /books", recv_ts=RECV, status=200, body=body))
    assert [b.instrument for b in parsed.books] == [poly_fixture("polymarket_book_yes.json")["asset_id"]]
    assert len(parsed.errors) == 1 and parsed.errors[0].market == bad["asset_id"]
    not_json = poly_parse(
        Response(venue="polymarket", endpoint="POST /books", recv_ts=RECV, status=200, body=b"<html>")
    )
    assert not not_json.books and not_json.errors[0].field == "body"
    failed = poly_parse(Response(venue="polymarket", endpoint="POST /books", recv_ts=RECV, status=500, body=b"oops"))
    assert not failed.books and not failed.errors


def test_prices_are_exact_without_float_rounding() -> None:
    for text in ("0.0001", "0.29", "0.57", "0.58", "0.9999", "0.123", "0.4500"):
        assert parse_price(text, "v", "m", "f") == int(Decimal(text) * PRICE_SCALE)
    assert parse_price("0.29", "v", "m", "f") == 2_900  # float(0.29) * 10_000 == 2899.9999999999995
    assert parse_size("120.99", "v", "m", "f") == 120
    assert parse_size(7, "v", "m", "f") == 7
    with pytest.raises(PayloadError, match="not a finite number"):
        parse_price("NaN", "v", "m", "f")


def test_kalshi_orderbook_fp_yes_ask_is_one_minus_no_bid() -> None:
    data = json.loads((FIXTURES / "kalshi_orderbook_fp.json").read_text())
    book = parse_orderbook(data, "KXFEDDECISION-25DEC-H0", RECV)
    fp = data["orderbook_fp"]
    yes = sorted(((int(Fraction(p) * PRICE_SCALE), int(Fraction(s))) for p, s in fp["yes_dollars"]), reverse=True)
    no = sorted(((int(Fraction(p) * PRICE_SCALE), int(Fraction(s))) for p, s in fp["no_dollars"]), reverse=True)
    assert list(zip(book.bid_px, book.bid_sz, strict=True)) == yes
    assert list(zip(book.ask_px, book.ask_sz, strict=True)) == [(PRICE_SCALE - q, s) for q, s in no]
    assert book.ask_px[0] == PRICE_SCALE - 5_350  # best YES ask = 1 - best NO bid (0.5350)
    assert book.book_ts == RECV  # Kalshi books carry no time


def test_kalshi_legacy_cents_and_empty_or_null_sides() -> None:
    legacy = parse_orderbook(json.loads((FIXTURES / "kalshi_orderbook_legacy.json").read_text()), "T", RECV)
    assert legacy.bid_px == [4_500, 4_400, 4_000] and legacy.ask_px == [4_700, 5_000] and legacy.ask_sz == [40, 900]
    empty = parse_orderbook(json.loads((FIXTURES / "kalshi_orderbook_empty.json").read_text()), "T", RECV)
    assert empty.bid_px == empty.ask_px == []
    nulls = parse_orderbook({"orderbook": {"yes": None, "no": [[60, 5]]}}, "T", RECV)
    assert nulls.bid_px == [] and nulls.ask_px == [4_000]
    dollars = parse_orderbook({"orderbook": {"yes_dollars": [["0.4500", 3]], "no_dollars": []}}, "T", RECV)
    assert dollars.bid_px == [4_500] and dollars.bid_sz == [3]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"markets": []}, "orderbook_fp", "missing"),
        ({"orderbook_fp": {"yes_dollars": [["0.45"]], "no_dollars": []}}, "yes_dollars[0]", "[price, size]"),
        ({"orderbook_fp": {"yes_dollars": [["1.4500", "1.00"]], "no_dollars": []}}, "yes_dollars[0].price", "(0, 1)"),
        ({"orderbook_fp": {"yes_dollars": [], "no_dollars": [["0.50", "abc"]]}}, "no_dollars[0].size", "not a number"),
        ({"orderbook": {"yes": [[45.5, 10]], "no": []}}, "yes[0].price", "whole number of cents"),
        ({"orderbook": {"yes": [[100, 10]], "no": []}}, "yes[0].price", "(0, 100)"),
        (
            {"orderbook_fp": {"yes_dollars": [["0.60", "1.00"]], "no_dollars": [["0.45", "1.00"]]}},
            "bids/asks",
            "crossed",
        ),
    ],
)
def test_kalshi_malformed_orderbook_names_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(PayloadError) as e:
        parse_orderbook(data, "KXT-1", RECV)
    assert e.value.field == field and e.value.market == "KXT-1" and words in str(e.value)


def test_kalshi_real_payloads_parse_to_independently_computed_books() -> None:
    path = needs_data("prediction_markets", "kalshi_2024jul", "orderbook_data.json")
    entries = json.loads(path.read_text())
    assert len(entries) == 100
    for entry in entries:
        ((ticker, ob),) = entry.items()
        body = shared_kalshi_orderbook(ob)
        resp = Response(
            venue="kalshi", endpoint=f"GET /markets/{ticker}/orderbook", recv_ts=RECV, status=200, body=body
        )
        parsed = kalshi_parse(resp)
        assert not parsed.errors, parsed.errors
        (book,) = parsed.books
        yes = sorted(((c * 100, n) for c, n in ob["_yes"] or [] if n > 0), reverse=True)
        asks = sorted(((PRICE_SCALE - c * 100, n) for c, n in ob["_no"] or [] if n > 0))
        assert list(zip(book.bid_px, book.bid_sz, strict=True)) == yes, ticker
        assert list(zip(book.ask_px, book.ask_sz, strict=True)) == asks, ticker
        assert book.instrument == instrument_of(ticker) and "." not in book.instrument
        if yes and asks:
            assert yes[0][0] < asks[0][0]


def test_kalshi_markets_response_gives_status_and_balance_parses() -> None:
    body = (FIXTURES / "kalshi_markets.json").read_bytes()
    parsed = kalshi_parse(
        Response(venue="kalshi", endpoint="GET /markets?limit=1000", recv_ts=RECV, status=200, body=body)
    )
    assert [(m.market_id, m.status) for m in parsed.markets] == [
        ("KXFEDDECISION-25DEC-H0", "active"),
        ("APRPOTUS-24JUL19-T40.8", "finalized"),
    ]
    assert parse_balance((FIXTURES / "kalshi_balance.json").read_bytes()).balance_cents == 1_234_567
    with pytest.raises(PayloadError, match="balance"):
        parse_balance(b'{"balance": "12.5"}')


def test_ladder_merges_duplicate_prices_and_drops_empty_levels() -> None:
    px, sz = books.ladder([(4_000, 5), (4_500, 0), (4_000, 7), (4_200, 1)], "bid")
    assert (px, sz) == ([4_200, 4_000], [1, 12])
