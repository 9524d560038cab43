"""Market facts (MarketInfo) from venue payloads, the tick-grid check, and the live feed's supervision."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from libs import config
from libs.venues.books import ParsedBook, Response, iso_ns, off_grid
from libs.venues.errors import PayloadError
from libs.venues.kalshi import auth_settings, tick_grid
from libs.venues.kalshi import parse_response as kalshi_parse
from libs.venues.mapping import parse_map
from libs.venues.polymarket import token_info
from proto.events import BookBatch, MarketInfo
from proto.units import PRICE_SCALE
from services.ingest import live
from tests.factories import market_info
from tests.fixtures.venues.venue_server import FIXTURES, fixture

RECV = 1_765_000_000_000_000_000


def units(dollars: str) -> int:
    """An independent dollar → price-unit reading."""
    return int(Decimal(dollars) * PRICE_SCALE)


def test_kalshi_markets_give_market_info_with_the_tick_grid_and_times() -> None:
    body = (FIXTURES / "kalshi_markets.json").read_bytes()
    parsed = kalshi_parse(Response(venue="kalshi", endpoint="GET /markets", recv_ts=RECV, status=200, body=body))
    fed, potus = parsed.markets
    raw = fixture("kalshi_markets.json")["markets"][0]
    assert (fed.venue, fed.instrument, fed.market_id, fed.status) == ("kalshi", raw["ticker"], raw["ticker"], "active")
    assert fed.tick_size == units(raw["price_ranges"][0]["step"]) == 10 and fed.ts == RECV
    assert fed.close_ts == 1_765_393_140_000_000_000  # 2025-12-10T18:59:00Z
    assert fed.expiration_ts == 1_765_983_600_000_000_000  # 2025-12-17T15:00:00Z
    assert "0.07" in fed.fee_note
    assert potus.instrument == "APRPOTUS-24JUL19-T40_8" and potus.status == "finalized"
    assert potus.tick_size == 100  # no structure given: Kalshi's whole cent


@pytest.mark.parametrize(
    ("market", "tick", "ranges"),
    [
        ({"price_level_structure": "linear_cent"}, 100, []),
        ({"price_level_structure": "deci_cent"}, 10, []),
        (
            {"price_level_structure": "tapered_deci_cent"},
            10,
            [(0, 1_000, 10), (1_000, 9_000, 100), (9_000, 10_000, 10)],
        ),
        ({"price_level_structure": "something_new"}, 0, []),  # unknown: no grid, no check
        ({"tick_size": 1}, 100, []),  # the older integer-cents field
        (
            {
                "price_ranges": [
                    {"start": "0.00", "end": "0.05", "step": "0.001"},
                    {"start": "0.05", "end": "1", "step": "0.01"},
                ]
            },
            10,
            [(0, 500, 10), (500, 10_000, 100)],
        ),
    ],
)
def test_kalshi_tick_grid_shapes(market: dict, tick: int, ranges: list) -> None:
    assert tick_grid(market, "T") == (tick, ranges)


def test_kalshi_bad_price_ranges_name_the_field() -> None:
    with pytest.raises(PayloadError, match=r"price_ranges\[0\]\.step"):
        tick_grid({"price_ranges": [{"start": "0", "end": "1", "step": "abc"}]}, "T")


def test_polymarket_token_info_from_market_clob_and_per_token_answers() -> None:
    market, clob = fixture("polymarket_market_fed.json"), fixture("polymarket_clob_market_fed.json")
    yes = market["tokens"][0]["token_id"]
    info = token_info(yes, RECV, market, clob, tick_size="0.001", neg_risk=False, base_fee_bps=0)
    assert info.instrument == info.market_id == yes and info.title == f"{market['question']} [Yes]"
    assert (info.status, info.tick_size, info.min_order_size) == ("open", units("0.001"), 5.0)
    assert (info.taker_fee_rate, info.fee_exponent) == ("0.04", "1")  # the CLOB's fee details `fd`
    assert info.base_fee_bps == 0 and info.maker_base_fee_bps == 0 and info.neg_risk is False
    assert info.close_ts == iso_ns("2025-12-10T00:00:00Z") == 1_765_324_800_000_000_000
    # without the CLOB parameters: a Gamma-style fee_schedule on the market object is read
    gamma = market | {"fee_schedule": {"rate": "0.07", "exponent": "2", "taker_only": True}, "fees_enabled": True}
    g = token_info(yes, RECV, gamma)
    assert (g.taker_fee_rate, g.fee_exponent, g.fees_enabled) == ("0.07", "2", True)
    assert g.base_fee_bps == 1000 and g.tick_size == 10  # market's taker_base_fee and minimum_tick_size
    # nothing known but the token: an info with unknowns, no invented fee
    bare = token_info(yes, RECV)
    assert (bare.status, bare.tick_size, bare.taker_fee_rate, bare.base_fee_bps) == ("", 0, "", None)
    closed = token_info(yes, RECV, market | {"closed": True})
    assert closed.status == "closed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"minimum_tick_size": "a cent"}, "minimum_tick_size"),
        ({"taker_base_fee": 12.5}, "taker_base_fee"),
        ({"fee_schedule": {"rate": "-0.01", "exponent": "1"}}, "fee_schedule.rate"),
    ],
)
def test_polymarket_bad_market_facts_name_the_field(change: dict, field: str) -> None:
    market = fixture("polymarket_market_fed.json") | change
    with pytest.raises(PayloadError, match=field):
        token_info(market["tokens"][0]["token_id"], RECV, market)


def test_prices_off_the_tick_grid_are_named() -> None:
    book = ParsedBook(instrument="X", book_ts=1, bid_px=[4_500, 4_450], bid_sz=[1, 1], ask_px=[4_650], ask_sz=[1])
    cent = market_info("i", venue="kalshi", instrument="X", market_id="X", tick_size=100, tick_ranges=[])
    errors = off_grid(book, cent)
    assert [e.field for e in errors] == ["bids[1].price", "asks[0].price"]
    assert "0.4650" in str(errors[1]) and "tick grid of 0.01" in str(errors[1])
    deci = msgspec.structs.replace(cent, tick_size=10)
    assert off_grid(book, deci) == []
    unknown = msgspec.structs.replace(cent, tick_size=0)
    assert off_grid(book, unknown) == []
    # a tapered grid: 0.001 below $0.10, 0.01 in the middle
    tapered = market_info("t", venue="kalshi", instrument="X", tick_size=10)
    low = ParsedBook(instrument="X", book_ts=1, bid_px=[50], bid_sz=[1], ask_px=[4_505], ask_sz=[1])
    assert [e.field for e in off_grid(low, tapered)] == ["asks[0].price"]


def test_a_half_configured_kalshi_key_is_an_error_naming_both_settings(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert auth_settings(config.load({})) == ("", None)
    for env, missing in (
        ({"MT_KALSHI_API_KEY_ID": "abc"}, "MT_KALSHI_PRIVATE_KEY_PATH is not"),
        ({"MT_KALSHI_PRIVATE_KEY_PATH": str(key)}, "MT_KALSHI_API_KEY_ID is not"),
    ):
        settings = config.load(env)
        with pytest.raises(ValueError, match=f"half configured: .* is set but {missing}"):
            auth_settings(settings)
        mm = parse_map(
            {"pair": [{"opportunity_key": "A", "resolution_date": "2025-12-10", "confirmed": True,
                       "kalshi": {"ticker": "KX-A"}, "polymarket": {"yes_token": "1", "no_token": "2"}}]},
            "m.toml",
        )  # fmt: skip
        with pytest.raises(ValueError, match="half configured"):
            live.make_feeds(settings, mm, ["kalshi"], structlog.get_logger())
        assert live.make_feeds(settings, mm, ["polymarket"], structlog.get_logger())  # Polymarket needs no key


class Dying(live.FeedBase):
    """A feed whose poll raises (a bug outside any venue call) on its first `deaths` polls."""

    venue = "kalshi"

    def __init__(self, deaths: int) -> None:
        super().__init__(structlog.get_logger())
        self.deaths = deaths
        self.setups = 0
        self.polled = 0

    async def setup(self, record: list[Response]) -> list[BaseException]:
        self.setups += 1
        return []

    async def poll(self, n: int, record: list[Response]) -> list[BaseException]:
        self.polled += 1
        if self.deaths:
            self.deaths -= 1
            raise KeyError("a bug")
        record.append(
            Response(venue="kalshi", endpoint="GET /markets/KX-A/orderbook", recv_ts=RECV + n, status=200,
                     body=json.dumps({"orderbook_fp": {"yes_dollars": [["0.45", "10"]], "no_dollars": []}}).encode())
        )  # fmt: skip
        return []


async def test_a_dying_feed_is_logged_at_once_and_restarted_with_backoff(capsys) -> None:  # type: ignore[no-untyped-def]
    feed = Dying(deaths=2)
    stats = live.VenueStats(venue="kalshi")
    published: list[BookBatch] = []

    async def publish(batches: list[BookBatch]) -> None:
        published.extend(batches)

    stop = asyncio.Event()
    task = asyncio.create_task(
        live.supervise(
            feed, stats, stop, structlog.get_logger(), (0.05, 0.2), publish=publish, publish_raw=None, poll_s=0.01,
            polls=3, levels=2, source="live",
        )
    )  # fmt: skip
    await asyncio.sleep(0.02)
    early = capsys.readouterr()
    assert "venue feed died" in early.out + early.err and "KeyError" in early.out + early.err  # said at once
    assert not task.done()  # waiting to restart, not gone
    got = await asyncio.wait_for(task, 10)
    assert got is stats and stats.restarts == 2 and feed.setups == 3
    assert stats.polls == 3 and len(published) == 3 and "feed died: KeyError" in stats.last_error


async def test_a_stop_during_the_restart_pause_ends_the_feed() -> None:
    feed = Dying(deaths=100)
    stats = live.VenueStats(venue="kalshi")
    stop = asyncio.Event()

    async def publish(batches: Any) -> None:
        pass

    task = asyncio.create_task(
        live.supervise(
            feed, stats, stop, structlog.get_logger(), (30.0, 60.0), publish=publish, publish_raw=None, poll_s=0.01,
            polls=None, levels=2, source="live",
        )
    )  # fmt: skip
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 5) is stats and stats.restarts == 1


def test_feed_state_keeps_market_info_and_queues_only_changes() -> None:
    feed = live.FeedBase(structlog.get_logger())
    a = market_info("1", status="active")
    feed.update(a)
    feed.update(msgspec.structs.replace(a, id="2", ts=a.ts + 5))  # the same facts again: nothing new
    closed = msgspec.structs.replace(a, id="3", status="closed")
    feed.update(closed)
    assert [i.id for i in feed.pending] == ["1", "3"] and feed.info[a.instrument] is closed
    assert isinstance(feed.pending[0], MarketInfo)
