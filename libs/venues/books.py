"""Venue numbers to integer books: exact decimal parsing, ladders best first, BookBatch rows.

Prices become integer units of 1/10,000 USD (`proto.units.PRICE_SCALE`) through `Decimal`,
never a float, and a price that is not a whole number of units is an error.

Sizes become whole contracts (`proto.units`: "Sizes are whole contracts"). Decision: fractional
Polymarket shares and fractional Kalshi contracts are FLOORED ("95.5" → 95, "0.4" → 0), and a
level left with fewer than one contract is DROPPED from the book (it cannot be traded as a whole
contract). So a book's published depth can be slightly less than the venue shows, and a level
made only of dust does not appear at all; the recording (`md_raw`) keeps the venue's exact body.

A price off the market's tick grid (`MarketInfo.tick_size` / `tick_ranges`) is reported by
`off_grid` as a PayloadError naming the level; the live source logs and counts it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import msgspec

from libs.ids import new_id, now_ns
from libs.venues.errors import PayloadError
from proto.events import BookBatch, MarketInfo, TickRange
from proto.units import PRICE_SCALE

DEFAULT_LEVELS = 10
"""Levels per side carried on each BookBatch row (deeper levels are dropped)."""


def _decimal(value: object, venue: str, market: str, field: str) -> Decimal:
    """A JSON string or number as an exact Decimal; PayloadError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError(venue, market, field, value, "is not a number")
    try:
        d = Decimal(value if isinstance(value, (str, int)) else repr(value))
    except InvalidOperation:
        raise PayloadError(venue, market, field, value, "is not a number") from None
    if not d.is_finite():
        raise PayloadError(venue, market, field, value, "is not a finite number")
    return d


def parse_price(value: object, venue: str, market: str, field: str) -> int:
    """A dollar price ("0.48", "0.4500") as integer units, exactly; must lie strictly inside (0, 1)."""
    d = _decimal(value, venue, market, field)
    units = d * PRICE_SCALE
    if units != units.to_integral_value():
        raise PayloadError(venue, market, field, value, f"is finer than 1/{PRICE_SCALE} of a dollar")
    px = int(units)
    if not 0 < px < PRICE_SCALE:
        raise PayloadError(venue, market, field, value, "must be a price inside (0, 1) dollars")
    return px


def parse_cents(value: object, venue: str, market: str, field: str) -> int:
    """An integer-cents price (Kalshi's older `yes`/`no` arrays) as units; must lie inside (0, 100)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(venue, market, field, value, "is not a whole number of cents")
    if not 0 < value < 100:
        raise PayloadError(venue, market, field, value, "must be a price inside (0, 100) cents")
    return value * (PRICE_SCALE // 100)


def parse_size(value: object, venue: str, market: str, field: str) -> int:
    """A size ("120.00", "15.5", 100) as whole contracts, floored ("0.4" → 0); must not be negative.

    A level whose size floors to 0 is dropped by `ladder`.
    """
    d = _decimal(value, venue, market, field)
    if d < 0:
        raise PayloadError(venue, market, field, value, "must not be negative")
    return int(d)  # int() of a Decimal truncates toward zero: a floor for d >= 0


class ParsedBook(msgspec.Struct, frozen=True, kw_only=True):
    """One instrument's whole book in YES terms (its own outcome's terms), best level first."""

    instrument: str
    book_ts: int
    bid_px: list[int]
    bid_sz: list[int]
    ask_px: list[int]
    ask_sz: list[int]


def ladder(levels: Sequence[tuple[int, int]], side: str) -> tuple[list[int], list[int]]:
    """(px, sz) levels in any order to a ladder best first: bids descending, asks ascending.

    Levels with 0 (whole) contracts are dropped; two levels at one price are added together.
    """
    merged: dict[int, int] = {}
    for px, sz in levels:
        if sz > 0:
            merged[px] = merged.get(px, 0) + sz
    prices = sorted(merged, reverse=side == "bid")
    return prices, [merged[p] for p in prices]


def make_book(
    instrument: str,
    book_ts: int,
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    venue: str,
    market: str,
) -> ParsedBook:
    """A ParsedBook from unordered levels; a crossed or locked book is a PayloadError."""
    bid_px, bid_sz = ladder(bids, "bid")
    ask_px, ask_sz = ladder(asks, "ask")
    if bid_px and ask_px and bid_px[0] >= ask_px[0]:
        raise PayloadError(
            venue,
            market,
            "bids/asks",
            f"best bid {bid_px[0] / PRICE_SCALE:.4f} >= best ask {ask_px[0] / PRICE_SCALE:.4f}",
            "the book is crossed",
        )
    return ParsedBook(
        instrument=instrument, book_ts=book_ts, bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz
    )


def _pad(values: list[int], levels: int) -> list[int]:
    return values[:levels] + [0] * max(0, levels - len(values))


def to_batch(book: ParsedBook, venue: str, source: str, levels: int = DEFAULT_LEVELS) -> BookBatch:
    """One BookBatch row for one book: the top `levels` per side, padded with empty levels (size 0)."""
    return BookBatch(
        id=new_id(),
        ts=now_ns(),
        venue=venue,
        source=source,
        levels=levels,
        instruments=[book.instrument],
        inst_idx=[0],
        book_ts=[book.book_ts],
        bid_px=_pad(book.bid_px, levels),
        bid_sz=_pad(book.bid_sz, levels),
        ask_px=_pad(book.ask_px, levels),
        ask_sz=_pad(book.ask_sz, levels),
    )


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """One venue response as received: what was asked, when the answer came, status and body bytes."""

    venue: str
    endpoint: str
    recv_ts: int
    status: int
    body: bytes


class Parsed(msgspec.Struct, kw_only=True):
    """What one response gave: books, market facts (MarketInfo events), and the errors of parts that did not parse."""

    books: list[ParsedBook] = msgspec.field(default_factory=list)
    markets: list[MarketInfo] = msgspec.field(default_factory=list)
    errors: list[PayloadError] = msgspec.field(default_factory=list)


def decimal_units(value: object, venue: str, market: str, field: str) -> int:
    """A dollar amount ("0.01", 0.001) as integer price units, exactly; PayloadError otherwise."""
    d = _decimal(value, venue, market, field)
    units = d * PRICE_SCALE
    if units != units.to_integral_value() or units < 0:
        raise PayloadError(venue, market, field, value, f"must be a non-negative multiple of 1/{PRICE_SCALE} dollar")
    return int(units)


def iso_ns(text: object) -> int | None:
    """An ISO 8601 time ("2025-12-10T18:59:00Z"; naive = UTC) as exact UTC nanoseconds; None if unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def tick_at(info: MarketInfo, px: int) -> int:
    """The tick that applies at `px` under `info` (its range's step, else `tick_size`); 0 when unknown."""
    for r in info.tick_ranges:
        if r.start <= px <= r.end:
            return r.step
    return info.tick_size


def off_grid(book: ParsedBook, info: MarketInfo) -> list[PayloadError]:
    """One PayloadError per price of `book` that is not on `info`'s tick grid (none when the grid is unknown)."""
    out = []
    for side, prices in (("bids", book.bid_px), ("asks", book.ask_px)):
        for i, px in enumerate(prices):
            tick = tick_at(info, px)
            if tick > 0 and px % tick:
                out.append(
                    PayloadError(
                        info.venue,
                        info.market_id or book.instrument,
                        f"{side}[{i}].price",
                        f"{px / PRICE_SCALE:.4f}",
                        f"is off the market's tick grid of {tick / PRICE_SCALE:g} dollars",
                    )
                )
    return out


def tick_ranges(ranges: Sequence[tuple[int, int, int]]) -> list[TickRange]:
    """(start, end, step) unit triples as TickRange structs."""
    return [TickRange(start=a, end=b, step=c) for a, b, c in ranges]
