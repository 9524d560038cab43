"""paper: dry-run execution. Every intent gets a decision from every running paper run.

Books arrive on core NATS (`md.book.>`). A leg fills against the latest book paper holds
as of the intent's market time plus the execution latency (MT_PAPER_LATENCY_MS): live,
that is simply the newest book; in a replay running faster than real time it stops the
paper trader from filling against books from the intent's future.

Intents come from a durable pull consumer and are acked only once the decisions (and
trades) are stored in JetStream. A run's state changes only after its decision is
published, and an intent a run has decided is not decided again when redelivered.
"""

from __future__ import annotations

import copy

from libs.bookstate import BookHistory, Books, check_batch
from libs.bus import PullConsumer
from libs.fees import fee_models
from libs.ids import new_id, now_ns
from proto import streams, subjects
from proto.events import BookBatch, Intent
from proto.units import CASH_SCALE
from services.paper.engine import Run, decide
from services.runtime import Service


class PaperService(Service):
    """Hosts the paper runs; starts one default run from the MT_PAPER_* settings."""

    name = "paper"

    async def start(self) -> None:
        s = self.ctx.settings
        self.history = BookHistory()
        self.latency_ns = round(s.paper_latency_ms * 1e6)
        self.decided: dict[str, set[str]] = {}
        self.fees = fee_models(s)
        now = now_ns()
        self.runs: dict[str, Run] = {}
        self.add_run(
            Run(
                run_id=new_id(),
                label="default",
                starting_micros=round(s.paper_starting_usd * CASH_SCALE),
                min_net_edge_micros=round(s.paper_min_edge_cents * CASH_SCALE / 100),
                max_leg_micros=round(s.paper_max_leg_usd * CASH_SCALE),
                daily_cap_micros=round(s.paper_daily_cap_usd * CASH_SCALE),
                settlement_delay_ns=round(s.paper_settlement_delay_s * 1e9),
                started_at=now,
            )
        )
        for run in self.runs.values():
            await self.ctx.bus.publish(subjects.paper("run", run.run_id), run.status(now))
        self._book_sub = await self.ctx.bus.subscribe(subjects.BOOK_ALL, BookBatch, self._on_book)
        self.consumer = await PullConsumer(
            self.ctx.bus,
            stream=streams.INTENT.name,
            durable="paper",
            filter_subjects=[subjects.INTENT_ALL],
            kind=Intent,
            ack_wait_s=self.ctx.settings.ack_wait_s,
            handler=self.on_intents,
            batch=64,
        ).start()

    def add_run(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self.decided[run.run_id] = set()

    async def _on_book(self, batch: BookBatch, _msg: object) -> None:
        if batch.venue not in self.fees:  # not a venue paper trades (a LOBSTER replay, a generated equity)
            return
        try:
            check_batch(batch)
        except ValueError as e:
            self.log.warning("book rejected", error=str(e))
            return
        self.history.add(batch)

    def books_for(self, intent: Intent) -> Books:
        """Each leg's book as of the intent's market time plus the execution latency."""
        at = intent.book_ts + self.latency_ns
        books: Books = {}
        for leg in intent.legs:
            book = self.history.at(leg.venue, leg.instrument, at)
            if book is not None:
                books[(leg.venue, leg.instrument)] = book
        return books

    async def on_intents(self, intents: list[Intent]) -> None:
        """Decide every intent for every running run; publish decisions and trades."""
        for intent in intents:
            books = self.books_for(intent)
            for run in list(self.runs.values()):
                if run.state != "running" or intent.id in self.decided[run.run_id]:
                    continue
                before = copy.deepcopy(run)
                decision, trade = decide(run, intent, books, self.fees, now_ns())
                try:
                    await self.ctx.bus.publish(subjects.paper("decision", run.run_id), decision)
                    if trade is not None:
                        await self.ctx.bus.publish(subjects.paper("trade", run.run_id), trade)
                except Exception:
                    self.runs[run.run_id] = before  # not published: the retry decides afresh
                    raise
                self.decided[run.run_id].add(intent.id)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self._book_sub.unsubscribe()
        now = now_ns()
        for run in self.runs.values():
            if run.state == "running":
                run.state, run.stopped_at = "stopped", now
            await self.ctx.bus.publish(subjects.paper("run", run.run_id), run.status(now))


SERVICE = PaperService
