"""paper: dry-run execution. Every intent gets a decision from every running paper run.

Books arrive on core NATS (`md.book.>`): the paper trader fills against the latest book it
holds, as a live trader would. Intents come from a durable pull consumer and are acked
only once the decisions (and trades) are stored in JetStream.
"""

from __future__ import annotations

from libs.bookstate import Books, apply_batch
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
        self.books: Books = {}
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
            handler=self.on_intents,
            batch=64,
        ).start()

    def add_run(self, run: Run) -> None:
        self.runs[run.run_id] = run

    async def _on_book(self, batch: BookBatch, _msg: object) -> None:
        apply_batch(self.books, batch)

    async def on_intents(self, intents: list[Intent]) -> None:
        """Decide every intent for every running run; publish decisions and trades."""
        for intent in intents:
            for run in self.runs.values():
                if run.state != "running":
                    continue
                decision, trade = decide(run, intent, self.books, self.fees, now_ns())
                await self.ctx.bus.publish(subjects.paper("decision", run.run_id), decision)
                if trade is not None:
                    await self.ctx.bus.publish(subjects.paper("trade", run.run_id), trade)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self._book_sub.unsubscribe()
        now = now_ns()
        for run in self.runs.values():
            if run.state == "running":
                run.state, run.stopped_at = "stopped", now
            await self.ctx.bus.publish(subjects.paper("run", run.run_id), run.status(now))


SERVICE = PaperService
