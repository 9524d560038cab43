"""Venue parsers: order books per second from raw response bodies to BookBatch rows (one core).

- venues.polymarket_books_per_s: POST /books bodies (100 books of ~8 levels each) to BookBatch.
- venues.kalshi_books_per_s: orderbook_fp bodies (10 levels a side) to BookBatch.
"""

from __future__ import annotations

import json
import time

from libs.venues.books import Response, to_batch
from libs.venues.kalshi import parse_response as kalshi_parse
from libs.venues.polymarket import parse_response as poly_parse
from tests.benchmarks import line


def _poly_body(n: int) -> bytes:
    books = []
    for i in range(n):
        bids = [{"price": f"0.{40 + k:02d}", "size": f"{100 + k}.5"} for k in range(8)]
        asks = [{"price": f"0.{60 - k:02d}", "size": f"{200 + k}"} for k in range(8)]
        books.append(
            {"asset_id": str(10**70 + i), "timestamp": "1764950400123", "bids": bids, "asks": asks, "hash": "0x0"}
        )
    return json.dumps(books).encode()


def _kalshi_body() -> bytes:
    yes = [[f"0.{30 + k:02d}00", f"{50 + k}.00"] for k in range(10)]
    no = [[f"0.{40 + k:02d}00", f"{70 + k}.00"] for k in range(10)]
    return json.dumps({"orderbook_fp": {"yes_dollars": yes, "no_dollars": no}}).encode()


def _rate(parse, resp: Response, venue: str, seconds: float = 1.5) -> float:
    books = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in parse(resp).books:
            to_batch(b, venue, "bench")
            books += 1
    return books / (time.perf_counter() - t0)


def main() -> None:
    poly = Response(venue="polymarket", endpoint="POST /books", recv_ts=1, status=200, body=_poly_body(100))
    line("venues.polymarket_books_per_s", _rate(poly_parse, poly, "polymarket"), "books/s")
    kal = Response(venue="kalshi", endpoint="GET /markets/KX-1/orderbook", recv_ts=1, status=200, body=_kalshi_body())
    line("venues.kalshi_books_per_s", _rate(kalshi_parse, kal, "kalshi"), "books/s")


if __name__ == "__main__":
    main()
