"""Record a live feed into ClickHouse (md_raw) and replay it: the replayed books equal the live ones.

Real nats-server, real chDB, the recorder service, local venue servers answered through the real
client libraries.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import msgspec
import structlog

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import subjects
from proto.events import BookBatch, MarketInfo, RawBatch
from services.demo import RECORDERS
from services.ingest.live import run_live
from services.ingest.replay_raw import load_recording, recording_pages, replay_recording
from services.runtime import Stack
from tests.fixtures.venues.venue_server import FIXTURES, VenueServer, fixture, kalshi_route, polymarket_route

TICKER = "KXFEDDECISION-25DEC-H0"
YES = fixture("polymarket_book_yes.json")["asset_id"]
NO = fixture("polymarket_book_no.json")["asset_id"]


class Cycling(dict):
    """Order books that change on every request: fp shape, legacy cents, empty, a malformed one."""

    def __init__(self, bodies: list[bytes]) -> None:
        super().__init__()
        self.bodies = itertools.cycle(bodies)

    def get(self, key, default=None):  # type: ignore[override]
        return next(self.bodies) if key == TICKER else default


def rows(batches: Sequence[BookBatch]) -> list[tuple]:
    """Every row with every level, as comparable tuples (source and ids left out)."""
    out = []
    for b in batches:
        for r in range(b.rows):
            lv = slice(r * b.levels, (r + 1) * b.levels)
            out.append(
                (
                    b.venue,
                    b.instruments[b.inst_idx[r]],
                    b.book_ts[r],
                    b.levels,
                    tuple(b.bid_px[lv]),
                    tuple(b.bid_sz[lv]),
                    tuple(b.ask_px[lv]),
                    tuple(b.ask_sz[lv]),
                )
            )
    return sorted(out)


async def test_recorded_live_feed_replays_to_the_same_books(settings: Settings, tmp_path: Path) -> None:
    bad = json.dumps({"orderbook_fp": {"yes_dollars": [["0.45", "x"]], "no_dollars": []}}).encode()
    kalshi_bodies = [
        (FIXTURES / n).read_bytes()
        for n in ("kalshi_orderbook_fp.json", "kalshi_orderbook_legacy.json", "kalshi_orderbook_empty.json")
    ] + [bad]
    poly = VenueServer(
        polymarket_route(
            {
                YES: (FIXTURES / "polymarket_book_yes.json").read_bytes(),
                NO: (FIXTURES / "polymarket_book_no.json").read_bytes(),
            }
        )
    ).start()
    kal = VenueServer(kalshi_route(Cycling(kalshi_bodies), fixture("kalshi_markets.json")["markets"])).start()
    markets = tmp_path / "markets.toml"
    markets.write_text(
        f'[[pair]]\nopportunity_key = "FED"\nresolution_date = 2025-12-10\nconfirmed = true\n'
        f'[pair.kalshi]\nticker = "{TICKER}"\n[pair.polymarket]\nyes_token = "{YES}"\nno_token = "{NO}"\n'
    )
    s = msgspec.structs.replace(
        settings,
        polymarket_host=poly.url,
        kalshi_host=kal.url + "/trade-api/v2",
        markets_file=markets,
        venues_poll_s=0.02,
        venues_rate_per_s=500.0,
        venues_record=True,
    )
    stack = await Stack.open(s)
    live: list[BookBatch] = []
    replayed: list[BookBatch] = []
    raws: list[RawBatch] = []
    infos: list[MarketInfo] = []
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")

        async def publish_live(batches: Sequence[BookBatch | MarketInfo]) -> None:
            for b in batches:
                if isinstance(b, BookBatch):
                    live.append(b)
                else:
                    infos.append(b)
                await bus.publish(subjects.of_batch(b), b)

        async def publish_raw(batch: RawBatch) -> None:
            raws.append(batch)
            await bus.publish(subjects.raw(batch.venue), batch)

        stats = await run_live(publish_live, publish_raw, s, structlog.get_logger(), polls=8)
        assert stats.venues["kalshi"].payload_errors == 2  # the malformed book, twice in 8 polls
        assert await wait_idle(bus, RECORDERS, timeout_s=60)

        # md_raw holds every response byte for byte, in receive order
        recorded = {v: load_recording(stack.store, v) for v in ("polymarket", "kalshi")}
        sent = sorted(
            (b.venue, t, e, st, body)
            for b in raws
            for t, e, st, body in zip(b.recv_ts, b.endpoint, b.status, b.body, strict=True)
        )
        got = sorted((r.venue, r.recv_ts, r.endpoint, r.status, r.body) for v in recorded.values() for r in v)
        assert got == sent and len(got) >= 8 * 2 + 6  # books, status and token metadata calls
        assert [r.recv_ts for r in recorded["kalshi"]] == sorted(r.recv_ts for r in recorded["kalshi"])

        async def publish_replay(batches: Sequence[BookBatch]) -> None:
            for b in batches:
                replayed.append(b)
                await bus.publish(subjects.book(b.venue, b.instruments[0]), b)

        # read a page at a time (keyset pages of 3 here): the same responses, in the same order
        pages = list(recording_pages(stack.store, "kalshi", page_rows=3))
        assert all(len(p) <= 3 for p in pages) and len(pages) >= 3
        assert [r for p in pages for r in p] == recorded["kalshi"]

        for venue in ("polymarket", "kalshi"):
            rs = await replay_recording(
                stack.store, publish_replay, venue=venue, speed=None, log=structlog.get_logger(), page_rows=4
            )
            assert rs.books == stats.venues[venue].books
            assert rs.responses == len(recorded[venue])
        assert await wait_idle(bus, RECORDERS, timeout_s=60)

        assert rows(replayed) == rows(live) and len(live) == 8 * 2 + 6  # 2 Polymarket + 3 of 4 Kalshi books
        assert {b.source for b in live} == {"live"} and {b.source for b in replayed} == {"recording"}
        tops = stack.store.query_df(
            "SELECT source, venue, instrument, toUnixTimestamp64Nano(ts) AS ts, bid_px, bid_sz, ask_px, ask_sz "
            "FROM {db}.book_tops ORDER BY venue, instrument, ts, bid_px, ask_px"
        )
        by_source = {src: tops.filter(tops["source"] == src).drop("source").rows() for src in ("live", "recording")}
        assert by_source["live"] == by_source["recording"] and len(by_source["live"]) == len(live)

        # a time window replays only what was received inside it
        kal_ts = [r.recv_ts for r in recorded["kalshi"] if "/orderbook" in r.endpoint]
        window = load_recording(stack.store, "kalshi", start_ns=kal_ts[2], end_ns=kal_ts[4])
        assert [r.recv_ts for r in window if "/orderbook" in r.endpoint] == kal_ts[2:4]

        # market facts went to market_info: the latest per instrument, every field kept
        latest = {(i.venue, i.instrument): i for i in infos}
        assert {v for v, _ in latest} == {"polymarket", "kalshi"}
        stored = stack.store.query_arrow("SELECT * FROM {db}.market_info FINAL ORDER BY venue, instrument")
        assert stored.num_rows == len(latest)
        for row in stored.to_pylist():
            info = latest[(row["venue"], row["instrument"])]
            assert row["id"] == info.id and row["title"] == info.title and row["status"] == info.status
            assert row["tick_size"] == info.tick_size and row["taker_fee_rate"] == info.taker_fee_rate
            assert row["base_fee_bps"] == info.base_fee_bps and row["neg_risk"] == info.neg_risk
            assert row["close_ts"] is None or row["close_ts"].value == info.close_ts
        poly_yes = latest[("polymarket", YES)]
        assert (poly_yes.taker_fee_rate, poly_yes.fee_exponent, poly_yes.tick_size) == ("0.04", "1", 10)

        # bodies are bytes, not text: a body that is not UTF-8 comes back byte for byte
        odd = RawBatch(
            id="odd", ts=1, venue="oddvenue", source="test", recv_ts=[5], endpoint=["GET /x"], status=[200],
            body=[b"\xff\xfe\x00 not utf-8"],
        )  # fmt: skip
        await bus.publish(subjects.raw("oddvenue"), odd)
        assert await wait_idle(bus, RECORDERS, timeout_s=60)
        assert [r.body for r in load_recording(stack.store, "oddvenue")] == [b"\xff\xfe\x00 not utf-8"]
    finally:
        await stack.close()
        poly.stop()
        kal.stop()
