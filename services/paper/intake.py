"""What the paper service reads besides intents: books and market facts, and its runs' last steps.

`BookIntake` is an ephemeral pull consumer on the MD stream (`md.book.>`, `md.info.>`), no acks,
delivering from `now − MT_PAPER_BOOK_LOOKBACK_S`: a restarted service rebuilds the books the intents
waiting for it need. Messages are applied in stream order as they arrive (one subscription callback,
no per-message task). Pull requests are kept topped up, as `libs.bus.PullConsumer` does. If the
server loses the consumer (a reconnect after its inactivity threshold, a restart), it is created
again from the sequence after the last one applied, so nothing is skipped or applied twice.

`caught_up()` waits until every message the stream held when it was called has been applied: the
service calls it before starting the intent consumer (so the backlog of intents is decided on the
books of its time), and again when an intent names a book the intake has not seen yet.

`last_updates()` reads the newest `RunUpdate` of every run (`paper.update.<run_id>` in PAPER and the
snapshot on `paperstate.<run_id>` in PAPERSTATE, one per subject, DeliverPolicy.LAST_PER_SUBJECT),
keeping per run the higher snapshot version: what a restarted service resumes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.bus import Bus
from libs.ids import new_id
from proto import codec, streams, subjects
from proto.events import BookBatch, MarketInfo
from proto.paper import RunUpdate

MdEvent = BookBatch | MarketInfo


def _header(msg: Msg, name: str) -> str:
    """A header of a status message ('' when absent); nats-py keys some by an Enum."""
    for key, value in (msg.headers or {}).items():
        if getattr(key, "value", key) == name:
            return str(value)
    return ""


class BookIntake:
    """Books and market facts from the MD stream into `on_event`, in stream order."""

    def __init__(
        self,
        bus: Bus,
        on_event: Callable[[MdEvent], None],
        *,
        lookback_s: float,
        log: Any,
        batch: int = 512,
        expires_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.on_event = on_event
        self.lookback_s = lookback_s
        self.log = log
        self.batch = batch
        self.expires_s = expires_s
        self.name = f"paper-books-{new_id()}"
        self.last_seq = 0
        """Stream sequence of the last message applied."""
        self.applied = 0
        self.rejected = 0
        self._decoder = codec.decoder(MdEvent)
        self._sub: Subscription | None = None
        self._inbox = ""
        self._pending = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._lost = False

    def _config(self) -> ConsumerConfig:
        common: dict[str, Any] = {
            "name": self.name,
            "ack_policy": AckPolicy.NONE,
            "filter_subjects": [subjects.BOOK_ALL, subjects.INFO_ALL],
            "inactive_threshold": 120.0,
            "mem_storage": True,
        }
        if self.last_seq:
            policy = DeliverPolicy.BY_START_SEQUENCE
            return ConsumerConfig(deliver_policy=policy, opt_start_seq=self.last_seq + 1, **common)
        start = dt.datetime.fromtimestamp(time.time() - self.lookback_s, tz=dt.UTC)
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, **common)

    async def start(self) -> BookIntake:
        """Create the consumer and start pulling."""
        await self.bus.js.add_consumer(streams.MD.name, self._config())
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
        )
        self._task = asyncio.create_task(self._run(), name="paper:book-intake")
        return self

    async def _pull(self, n: int) -> None:
        req = {"batch": n, "expires": int(self.expires_s * 1e9)}
        await self.bus.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{streams.MD.name}.{self.name}", json.dumps(req).encode(), reply=self._inbox
        )
        self._pending += n

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status:
            if status == "100":  # idle heartbeat
                return
            desc = _header(msg, "Description")
            if status == "503" or (status in ("404", "409") and "Deleted" in desc):
                self._lost = True  # the consumer is gone: re-create it from the next sequence
            self._pending = 0  # expired, completed or refused pulls: top up again
            self._wake.set()
            return
        self._pending -= 1
        seq = msg.metadata.sequence.stream
        if seq <= self.last_seq:  # a re-created consumer overlapping what was applied
            return
        try:
            event = self._decoder.decode(msg.data)
            self.on_event(event)
            self.applied += 1
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            self.rejected += 1
            self.log.warning("market data rejected", subject=msg.subject, error=str(e))
        self.last_seq = seq
        if self._pending <= self.batch // 2:
            self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self._lost:
                    await self._recreate()
                if self._pending <= self.batch // 2:
                    await self._pull(self.batch * 2 - self._pending)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.expires_s + 1.0)
                    continue
                self._pending = 0  # our requests were lost (a reconnect): ask again, and check the consumer
                self._lost = not await self._exists()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the intake must outlive any bus trouble
                self.log.warning("book intake error", error=str(e))
                await asyncio.sleep(0.5)
                self._lost = True

    async def _exists(self) -> bool:
        try:
            await self.bus.js.consumer_info(streams.MD.name, self.name)
            return True
        except NotFoundError:
            return False

    async def _recreate(self) -> None:
        self._lost = False
        self._pending = 0
        with contextlib.suppress(Exception):
            await self.bus.js.delete_consumer(streams.MD.name, self.name)
        await self.bus.js.add_consumer(streams.MD.name, self._config())
        self.log.info("book intake consumer re-created", from_seq=self.last_seq + 1)

    async def caught_up(self, timeout_s: float = 30.0) -> bool:
        """True once every book and fact in the stream when called has been applied."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                info = await self.bus.js.consumer_info(streams.MD.name, self.name)
            except NotFoundError:
                self._lost = True
                self._wake.set()
                await asyncio.sleep(0.05)
                continue
            delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
            if not info.num_pending and self.last_seq >= delivered:
                return True
            self._wake.set()
            await asyncio.sleep(0.002)
        return False

    async def stop(self) -> None:
        """Stop pulling and delete the consumer."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.bus.js.delete_consumer(streams.MD.name, self.name)


async def _last_per_subject(bus: Bus, stream: str, subject: str, log: Any, timeout_s: float) -> list[RunUpdate]:
    """The newest RunUpdate on every subject matching `subject` in `stream`. One that does not decode
    is logged (with its subject and the error) and counted in `LAST_UPDATES_REJECTED`, not resumed."""
    cfg = ConsumerConfig(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(subject, stream=stream, config=cfg)
    out: list[RunUpdate] = []
    dec = codec.decoder(RunUpdate)
    name = ""
    try:
        info = await sub.consumer_info()
        name = info.name
        left = int(info.num_pending or 0)
        deadline = time.monotonic() + timeout_s
        while left > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read {len(out)} run updates of {len(out) + left} from {stream} in {timeout_s:.0f}s"
                )
            try:
                msgs = await sub.fetch(min(left, 256), timeout=5)
            except TimeoutError:
                continue
            for m in msgs:
                left -= 1
                try:
                    out.append(dec.decode(m.data))
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    LAST_UPDATES_REJECTED[stream] = LAST_UPDATES_REJECTED.get(stream, 0) + 1
                    log.error("run update not decodable: that run is not resumed", subject=m.subject, error=str(e))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name:
            with contextlib.suppress(Exception):
                await bus.js.delete_consumer(stream, name)
    return out


LAST_UPDATES_REJECTED: dict[str, int] = {}
"""Undecodable run updates met by `last_updates`, per stream (since the process started)."""


async def last_updates(bus: Bus, log: Any, timeout_s: float = 30.0) -> tuple[list[RunUpdate], set[str]]:
    """What a restarted service resumes from: per run, the newer (higher snapshot version) of its last
    `paper.update.<run_id>` in PAPER and its `paperstate.<run_id>` snapshot in PAPERSTATE. PAPER may
    have discarded a quiet run's last update (byte limit); PAPERSTATE keeps one per run. Undecodable
    ones are logged and counted (`LAST_UPDATES_REJECTED`). Also the runs whose PAPERSTATE copy is
    older than what they resume from (the service stopped before writing it): to be written again."""
    best: dict[str, RunUpdate] = {}
    saved: dict[str, int] = {}
    for stream, subject in ((streams.PAPER.name, subjects.PAPER_UPDATE_ALL), (streams.PAPERSTATE.name, "paperstate.>")):
        for u in await _last_per_subject(bus, stream, subject, log, timeout_s):
            if stream == streams.PAPERSTATE.name:
                saved[u.run.run_id] = u.snapshot.version
            have = best.get(u.run.run_id)
            if have is None or u.snapshot.version > have.snapshot.version:
                best[u.run.run_id] = u
    stale = {rid for rid, u in best.items() if saved.get(rid, -1) < u.snapshot.version}
    return list(best.values()), stale
