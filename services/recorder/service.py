"""recorder: the only writer of market data and events to ClickHouse.

One durable pull consumer per stream; each pulled group of messages becomes one Arrow
insert per table, and the messages are acked only after the insert returned. A crash
between insert and ack redelivers the group: the tables are keyed by event id (and
batch id, row), so the retried insert does not double-count.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from libs.bus import PullConsumer
from libs.store.tables import build_tables
from proto import streams, subjects
from proto.events import (
    BarBatch,
    BookBatch,
    DeadLetter,
    Intent,
    MarketInfo,
    Opportunity,
    RawBatch,
    TradeBatch,
)
from proto.paper import RunUpdate
from proto.sim import AnySimEvent, SimCalibration, SimJob, SimResult, SimResultPart, SimStatus
from services.runtime import Service

MAX_PULL_BYTES = 16 * 1024 * 1024
"""A pull asks for at most this many bytes, so a group of big batches stays a few MB of rows
(more than max_payload, 8 MB, so any single message fits)."""

# (durable name, stream, filter subjects, decode type)
CONSUMERS: tuple[tuple[str, str, list[str], Any], ...] = (
    (
        "recorder-md",
        streams.MD.name,
        [subjects.BOOK_ALL, subjects.TRADE_ALL, subjects.BAR_ALL, subjects.RAW_ALL, subjects.INFO_ALL],
        BookBatch | TradeBatch | BarBatch | RawBatch | MarketInfo,
    ),
    ("recorder-opp", streams.OPP.name, [subjects.OPP_ALL], Opportunity),
    ("recorder-intent", streams.INTENT.name, [subjects.INTENT_ALL], Intent),
    (
        "recorder-paper",
        streams.PAPER.name,
        [subjects.PAPER_UPDATE_ALL],
        RunUpdate,
    ),
    ("recorder-dlq", streams.DLQ.name, [subjects.DLQ_ALL], DeadLetter),
    ("recorder-sim", streams.SIM.name, [subjects.SIM_JOB_ALL, subjects.SIM_CALIBRATION_ALL], AnySimEvent),
)

INSERT_ORDER: dict[type, int] = {SimCalibration: 0, SimJob: 1, SimResult: 2, SimResultPart: 2, SimStatus: 9}
"""Within one group, sim results go in before statuses: a stored `completed` implies stored results
(a worker publishes a run's results before its status, and a group is acked only when all is in)."""


class RecorderService(Service):
    """Stores every event of every stream, in batches, acking only what is stored."""

    name = "recorder"
    uses_store = True

    async def start(self) -> None:
        self.rows_written: dict[str, int] = defaultdict(int)
        self.consumers: list[PullConsumer[Any]] = []
        for durable, stream, filters, kind in CONSUMERS:
            consumer = PullConsumer(
                self.ctx.bus,
                stream=stream,
                durable=durable,
                filter_subjects=filters,
                kind=kind,
                handler=self.store_events,
                batch=self.ctx.settings.recorder_batch,
                ack_wait_s=self.ctx.settings.ack_wait_s,
                max_bytes=MAX_PULL_BYTES,
                dead_letter=stream != streams.DLQ.name,  # never dead-letter a dead letter
            )
            self.consumers.append(await consumer.start())

    async def stop(self) -> None:
        for c in self.consumers:
            await c.stop()

    async def store_events(self, events: list[Any]) -> None:
        """Insert a group of events: one Arrow batch per table."""
        by_type: dict[type, list[Any]] = defaultdict(list)
        for ev in events:
            by_type[type(ev)].append(ev)
        if SimResult in by_type and SimResultPart in by_type:  # one builder makes both kinds' tables
            by_type[SimResult] += by_type.pop(SimResultPart)
        for kind in sorted(by_type, key=lambda k: INSERT_ORDER.get(k, 1)):
            group = by_type[kind]
            for table, data in build_tables(kind, group).items():
                token = f"{table}:{_event_key(group[0])}:{_event_key(group[-1])}:{len(group)}"
                n = await asyncio.to_thread(self.store.insert_arrow, table, data, token)
                self.rows_written[table] += n


def _event_key(ev: Any) -> str:
    return str(getattr(ev, "id", None) or f"{ev.subject}:{ev.ts}")


SERVICE = RecorderService
