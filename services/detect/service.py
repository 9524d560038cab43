"""detect: cross-venue binary arbitrage, with the opportunity lifecycle and execution intents.

The same instrument id on two venues is the same event, unless the market mapping file
(MT_MARKETS_FILE, `libs/venues/mapping.py`) says otherwise: a confirmed pair's Kalshi ticker and
the Polymarket token quoting the pair's YES are both read as the pair's `opportunity_key`, while
the intent's legs keep each venue's own id (ticker, token id) so paper and a live executor can act
on them. For every ordered venue pair (A, B) it prices buying YES on A and NO on B, equal
contracts, walking both books after each venue's taker fees.

Books are judged whole, never half-updated: rows of one market time are applied together,
and batches that share a `sync_id` (a recording or simulation that quotes both venues at
the same instants) wait for each other, up to MT_DETECT_SYNC_TIMEOUT_MS, before they are
applied in time order. A batch that would corrupt a book (bad ladder, unknown venue) is
rejected before any state changes, and so dead-lettered by the consumer.

Fees: each venue's default model (`libs.fees.fee_models`: Kalshi's schedule, Polymarket's
MT_POLYMARKET_FEE_RATE / MT_POLYMARKET_FEE_EXPONENT), except for a Polymarket instrument whose
`MarketInfo` (`md.info.polymarket.<token>`, read by the same consumer, so in stream order with the
books) reports a taker fee rate: that instrument is priced with its own rate and exponent.

Intents: an open opportunity sends an execution intent (`intent.xarb`) when its net edge per
contract reaches MT_DETECT_MIN_EDGE_CENTS, and again each time the edge *improves* on the last
intent sent for it, so that every user sees the first edge that meets their own minimum:
- the first evaluation at or above the threshold sends one, whatever its edge;
- while it stays at or above, a new intent goes out when the per-contract net edge reaches a
  hundredth of a cent (INTENT_STEP_MICROS = 100 micro-dollars) that the last intent's edge had not
  reached: `edge // 100 > last // 100`. So 0.6853c -> 0.6900c sends, 0.6853c -> 0.6874c does not,
  and 0.5299c -> 0.5300c does. The same edge with a different size, or a smaller edge still above
  the threshold, sends nothing;
- falling below the threshold re-arms it: the next crossing sends again, whatever its edge;
- every intent of one opening carries the opening's `opportunity_id`; a closed and re-opened
  opportunity is a new opening, with a new id, and sends at its first crossing like any other.
A run whose minimum an earlier intent already met sees the later, better ones too; paper decides
each intent on its own.
Why: users and runs ask for their own, often stricter, minimum (`filters.min_net_edge_cents`, a
profile's `min_net_edge_cents`), and intents must fire at *their* threshold. One intent per
crossing of detect's (lowest) threshold showed them only the crossing's first, smallest edge.
Why a grid and not "strictly greater": the per-contract edge (net // size) moves by a few
micro-dollars whenever the size changes, from the venues' cent rounding of fees (the demo's
synthetic market went 0.6853c -> 0.6873c -> 0.6874c as its book deepened), and each of those
would be one more intent, decided and traded again by every loose run. Why a grid and not a
minimum step over the last edge: a step leaves a band of user minimums (last edge, last + step]
that a real edge can meet without an intent; with the grid, any minimum that is a whole number
of hundredths of a cent always gets the first edge at or above it (an edge reaches such a
minimum m > last only by crossing the grid line m); any other minimum is served from the next
hundredth of a cent above it (edges less than 0.01c over it may pass without an intent).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec

from libs.arb import ArbQuote, find_arb
from libs.bookstate import BookState, apply_row, check_batch
from libs.bus import PullConsumer
from libs.fees import POLYMARKET, FeeModel, fee_models, polymarket_fee_model
from libs.ids import new_id, now_ns
from libs.venues.mapping import load_markets
from proto import streams, subjects
from proto.events import BookBatch, Intent, MarketInfo, Opportunity
from services.runtime import Service

STRATEGY = "xarb"
INTENT_STEP_MICROS = 100
"""An open opportunity re-sends when its per-contract net edge reaches a new multiple of this (0.01c)."""


@dataclass
class OpenOpportunity:
    """An opportunity between opened and closed, and the edge of the last intent sent for it."""

    opportunity_id: str
    opened_at: int
    quote: ArbQuote
    intent_edge: int | None = None
    """Net edge per contract (micro-dollars) of the last intent sent for this opening; None when none
    has gone out since it opened or since its edge last fell below the threshold (re-armed)."""

    def wants_intent(self, edge: int, min_edge: int) -> bool:
        """Whether a quote with this per-contract net edge (micros) sends an intent; re-arms when below.

        At or above `min_edge`: yes when none was sent since the last re-arm, or the edge reaches a
        multiple of INTENT_STEP_MICROS the last intent's edge had not. Below: no, and the next
        crossing sends again.
        """
        if edge < min_edge:
            self.intent_edge = None
            return False
        return self.intent_edge is None or edge // INTENT_STEP_MICROS > self.intent_edge // INTENT_STEP_MICROS


def opportunity_key(instrument: str, yes_venue: str, no_venue: str) -> str:
    """The stable name of one direction of one cross-venue pair."""
    return f"{STRATEGY}:{instrument}:yes@{yes_venue}+no@{no_venue}"


class DetectService(Service):
    """Keeps the latest book per (venue, instrument) and the open opportunities."""

    name = "detect"

    async def start(self) -> None:
        s = self.ctx.settings
        self.books: dict[tuple[str, str], BookState] = {}
        self.fees = fee_models(s)
        self.instrument_fees: dict[tuple[str, str], FeeModel] = {}
        """(venue, the venue's own instrument id) → its fee model, from a MarketInfo with a fee schedule."""
        self.min_edge_micros = round(s.min_edge_cents * 10_000)
        self.open: dict[str, OpenOpportunity] = {}
        self.waiting: dict[str, list[BookBatch]] = {}
        self.lock = asyncio.Lock()
        market_map = load_markets(s.markets_file) if s.markets_file else None
        self.aliases: dict[tuple[str, str], str] = market_map.aliases() if market_map else {}
        """(venue, venue's instrument id) → the pair's instrument name detect uses."""
        self.native: dict[tuple[str, str], str] = {(v, key): inst for (v, inst), key in self.aliases.items()}
        """(venue, pair name) → the venue's own instrument id, for the legs."""
        self._timers: set[asyncio.Task[None]] = set()
        self.ignored: set[str] = set()
        self.consumer = await PullConsumer(
            self.ctx.bus,
            stream=streams.MD.name,
            durable="detect",
            filter_subjects=[subjects.BOOK_ALL, subjects.INFO_ALL],
            kind=BookBatch | MarketInfo,
            ack_wait_s=self.ctx.settings.ack_wait_s,
            handler=self.on_books,
            batch=256,
        ).start()

    async def stop(self) -> None:
        await self.consumer.stop()
        for t in self._timers:
            t.cancel()

    def check(self, batch: BookBatch) -> None:
        """Raise ValueError for a batch detect cannot use, naming what is wrong."""
        check_batch(batch)

    def trades(self, venue: str) -> bool:
        """Whether detect prices this venue's books: the prediction venues it has fees for.

        Other venues' books (a LOBSTER or Bitstamp replay, a generated equity) share `md.book.>`
        but are not binary markets; they are acked and left alone, logged once per venue.
        """
        if venue in self.fees:
            return True
        if venue not in self.ignored:
            self.ignored.add(venue)
            self.log.info("ignoring books of a venue without a fee model", venue=venue, priced=sorted(self.fees))
        return False

    def fee_model_of(self, info: MarketInfo) -> FeeModel | None:
        """The per-instrument fee model a MarketInfo implies (Polymarket with a reported taker rate, or fees
        switched off), else None; ValueError naming the field for a rate that is not a number."""
        if info.venue != POLYMARKET:
            return None  # Kalshi's fees are one schedule for every market (libs.fees)
        if info.taker_fee_rate:
            try:
                return polymarket_fee_model(info.taker_fee_rate, info.fee_exponent or 1)
            except ValueError as e:
                raise ValueError(f"MarketInfo {info.id!r} ({info.venue} {info.instrument}): {e}") from None
        if info.fees_enabled is False:
            return polymarket_fee_model(0)
        return None

    def on_info(self, info: MarketInfo) -> None:
        """Keep the instrument's own fee model (or forget it when the venue no longer reports one)."""
        model = self.fee_model_of(info)
        key = (info.venue, info.instrument)
        if model is None:
            self.instrument_fees.pop(key, None)
            return
        if self.instrument_fees.get(key) != model:
            self.log.info("instrument fee model", venue=info.venue, instrument=info.instrument, model=str(model))
        self.instrument_fees[key] = model

    def fee(self, venue: str, native_instrument: str) -> FeeModel:
        """The fee model for one venue's instrument: its own when a MarketInfo gave one, else the venue's."""
        own = self.instrument_fees.get((venue, native_instrument))
        return own if own is not None else self.fees[venue]

    async def on_books(self, events: list[BookBatch | MarketInfo]) -> None:
        """Apply market facts, then each batch or completed sync group, in market-time order."""
        events = [ev for ev in events if self.trades(ev.venue)]
        for ev in events:
            if isinstance(ev, MarketInfo):
                self.fee_model_of(ev)  # a bad fee fails the group before any state changes
            else:
                self.check(ev)  # before any state changes: a bad batch fails alone
        batches: list[BookBatch] = []
        for ev in events:
            if isinstance(ev, MarketInfo):
                self.on_info(ev)
            else:
                batches.append(ev)
        if self.aliases:
            batches = [self.renamed(b) for b in batches]
        async with self.lock:
            for b in batches:
                if b.sync_count <= 1:
                    await self.apply([b])
                    continue
                group = self.waiting.setdefault(b.sync_id, [])
                group.append(b)
                if len(group) >= b.sync_count:
                    await self.apply(self.waiting.pop(b.sync_id))
                elif len(group) == 1:
                    timer = asyncio.create_task(self._sync_timeout(b.sync_id))
                    self._timers.add(timer)
                    timer.add_done_callback(self._timers.discard)

    def renamed(self, batch: BookBatch) -> BookBatch:
        """The batch with mapped instruments named after their pair (others unchanged)."""
        names = [self.aliases.get((batch.venue, i), i) for i in batch.instruments]
        if names == batch.instruments:
            return batch
        if len(set(names)) < len(names):  # two ids of one venue quoting one pair: a mapping-file error
            raise ValueError(f"BookBatch {batch.id!r}: instruments {batch.instruments} map onto one pair twice")
        return msgspec.structs.replace(batch, instruments=names)

    async def _sync_timeout(self, sync_id: str) -> None:
        """Apply a sync group whose other batches never came (lost, or a venue stopped)."""
        await asyncio.sleep(self.ctx.settings.detect_sync_timeout_ms / 1000)
        async with self.lock:
            group = self.waiting.pop(sync_id, None)
            if group:
                self.log.warning("sync group incomplete", sync_id=sync_id, got=len(group), of=group[0].sync_count)
                try:
                    await self.apply(group)
                except Exception as e:  # the messages are acked: say what was lost
                    self.log.exception("evaluation failed", sync_id=sync_id, error=str(e))

    async def apply(self, group: list[BookBatch]) -> None:
        """Apply rows in market-time order, evaluating once after all rows of each time."""
        rows = sorted(((b.book_ts[r], i, r) for i, b in enumerate(group) for r in range(b.rows)), key=lambda t: t[0])
        dirty: set[str] = set()
        for k, (ts, i, r) in enumerate(rows):
            dirty.add(apply_row(self.books, group[i], r))
            if k + 1 == len(rows) or rows[k + 1][0] != ts:
                await self.evaluate(dirty, ts)
                dirty = set()

    async def evaluate(self, instruments: set[str], book_ts: int) -> None:
        """Price every direction of every pair whose books changed; move their lifecycles."""
        for instrument in sorted(instruments):
            venues = sorted(v for v, i in self.books if i == instrument)
            for yes_venue in venues:
                for no_venue in venues:
                    if yes_venue != no_venue:
                        await self._step(instrument, yes_venue, no_venue, book_ts)

    async def _step(self, instrument: str, yes_venue: str, no_venue: str, book_ts: int) -> None:
        key = opportunity_key(instrument, yes_venue, no_venue)
        a, b = self.books[(yes_venue, instrument)], self.books[(no_venue, instrument)]
        yes_native = self.native.get((yes_venue, instrument), instrument)
        no_native = self.native.get((no_venue, instrument), instrument)
        quote = find_arb(
            a,
            b,
            yes_venue=yes_venue,
            no_venue=no_venue,
            instrument=yes_native,
            no_instrument=no_native,
            fee_yes=self.fee(yes_venue, yes_native),
            fee_no=self.fee(no_venue, no_native),
            max_size=self.ctx.settings.max_pair_size,
        )
        current = self.open.get(key)
        if quote is None:
            if current is not None:
                await self._publish_opp(key, current, "closed", current.quote, book_ts, closed_at=book_ts)
                del self.open[key]
            return
        if current is None:
            current = OpenOpportunity(opportunity_id=new_id(), opened_at=book_ts, quote=quote)
            await self._publish_opp(key, current, "opened", quote, book_ts)
            self.open[key] = current  # only once the world has heard of it
        elif (quote.size, quote.net_edge_micros) != (current.quote.size, current.quote.net_edge_micros):
            await self._publish_opp(key, current, "updated", quote, book_ts)
            current.quote = quote
        edge = quote.net_edge_per_contract_micros
        if current.wants_intent(edge, self.min_edge_micros):
            await self.ctx.bus.publish(subjects.intent(STRATEGY), Intent(**_common(key, current, quote, book_ts)))
            current.intent_edge = edge  # only once it is out

    async def _publish_opp(
        self,
        key: str,
        opp: OpenOpportunity,
        status: str,
        quote: ArbQuote,
        book_ts: int,
        closed_at: int | None = None,
    ) -> None:
        await self.ctx.bus.publish(
            subjects.opp(STRATEGY),
            Opportunity(
                **_common(key, opp, quote, book_ts),
                status=status,  # type: ignore[arg-type]
                gross_cost_micros=quote.gross_cost_micros,
                fees_micros=quote.fees_micros,
                opened_at=opp.opened_at,
                closed_at=closed_at,
            ),
        )


def _common(key: str, opp: OpenOpportunity, quote: ArbQuote, book_ts: int) -> dict[str, Any]:
    """The fields an Opportunity and its Intent share."""
    return {
        "id": new_id(),
        "ts": now_ns(),
        "opportunity_id": opp.opportunity_id,
        "opportunity_key": key,
        "strategy": STRATEGY,
        "legs": quote.legs(),
        "size": quote.size,
        "net_edge_micros": quote.net_edge_micros,
        "net_edge_per_contract_micros": quote.net_edge_per_contract_micros,
        "book_ts": book_ts,
    }


SERVICE = DetectService
