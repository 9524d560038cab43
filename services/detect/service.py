"""detect: cross-venue binary arbitrage, with the opportunity lifecycle and execution intents.

The same instrument id on two venues is the same event (a mapping file arrives with the
market-data issue). For every ordered venue pair (A, B) it prices buying YES on A and NO
on B, equal contracts, walking both books after each venue's taker fees.

Rows stamped with the same market time are evaluated together: a recording that samples
both venues at one instant (the Fed replay) must not be judged half-updated. After the
last row of a pulled group, evaluation waits MT_DETECT_SETTLE_MS for more rows of that
time; a later time, or the quiet period, triggers it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from libs.arb import ArbQuote, find_arb
from libs.bookstate import BookState, apply_row
from libs.bus import PullConsumer
from libs.fees import fee_models
from libs.ids import new_id, now_ns
from proto import streams, subjects
from proto.events import BookBatch, Intent, Opportunity
from services.runtime import Service

STRATEGY = "xarb"


@dataclass
class OpenOpportunity:
    """An opportunity between opened and closed, and whether its intent has gone out."""

    opportunity_id: str
    opened_at: int
    quote: ArbQuote
    intent_sent: bool = False


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
        self.min_edge_micros = round(s.min_edge_cents * 10_000)
        self.open: dict[str, OpenOpportunity] = {}
        self.dirty: set[str] = set()
        self.pending_ts: int | None = None
        self.lock = asyncio.Lock()
        self._flush: asyncio.Task[None] | None = None
        self.consumer = await PullConsumer(
            self.ctx.bus,
            stream=streams.MD.name,
            durable="detect",
            filter_subjects=[subjects.BOOK_ALL],
            kind=BookBatch,
            handler=self.on_books,
            batch=256,
        ).start()

    async def stop(self) -> None:
        await self.consumer.stop()
        if self._flush is not None:
            self._flush.cancel()

    async def on_books(self, batches: list[BookBatch]) -> None:
        """Apply rows in market-time order, evaluating each time once all its rows are in."""
        async with self.lock:
            if self._flush is not None:
                self._flush.cancel()
            rows = sorted(
                ((b.book_ts[r], i, r) for i, b in enumerate(batches) for r in range(b.rows)),
                key=lambda t: t[0],
            )
            for ts, i, r in rows:
                if self.pending_ts is not None and ts != self.pending_ts and self.dirty:
                    await self.evaluate(self.pending_ts)
                self.dirty.add(apply_row(self.books, batches[i], r))
                self.pending_ts = ts
            self._flush = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.ctx.settings.detect_settle_ms / 1000)
        async with self.lock:
            if self.dirty and self.pending_ts is not None:
                await self.evaluate(self.pending_ts)

    async def evaluate(self, book_ts: int) -> None:
        """Price every direction of every pair whose books changed; move their lifecycles."""
        for instrument in sorted(self.dirty):
            venues = sorted(v for v, i in self.books if i == instrument)
            for yes_venue in venues:
                for no_venue in venues:
                    if yes_venue != no_venue:
                        await self._step(instrument, yes_venue, no_venue, book_ts)
        self.dirty.clear()

    async def _step(self, instrument: str, yes_venue: str, no_venue: str, book_ts: int) -> None:
        key = opportunity_key(instrument, yes_venue, no_venue)
        a, b = self.books[(yes_venue, instrument)], self.books[(no_venue, instrument)]
        quote = find_arb(
            a,
            b,
            yes_venue=yes_venue,
            no_venue=no_venue,
            instrument=instrument,
            fee_yes=self.fees[yes_venue],
            fee_no=self.fees[no_venue],
            max_size=self.ctx.settings.max_pair_size,
        )
        current = self.open.get(key)
        if quote is None:
            if current is not None:
                del self.open[key]
                await self._publish_opp(key, current, "closed", current.quote, book_ts, closed_at=book_ts)
            return
        if current is None:
            current = self.open[key] = OpenOpportunity(opportunity_id=new_id(), opened_at=book_ts, quote=quote)
            await self._publish_opp(key, current, "opened", quote, book_ts)
        elif (quote.size, quote.net_edge_micros) != (current.quote.size, current.quote.net_edge_micros):
            current.quote = quote
            await self._publish_opp(key, current, "updated", quote, book_ts)
        above = quote.net_edge_per_contract_micros >= self.min_edge_micros
        if above and not current.intent_sent:
            current.intent_sent = True
            await self.ctx.bus.publish(subjects.intent(STRATEGY), Intent(**_common(key, current, quote, book_ts)))
        elif not above:
            current.intent_sent = False  # re-arm: a new crossing of the threshold sends a new intent

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
