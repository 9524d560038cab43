"""The paper service's durable consumers (intents, opportunities): in order, one ack per batch.

Like `libs.bus.PullConsumer` it speaks the JetStream pull protocol directly (pull requests kept
topped up, a message handled as soon as it arrives, whatever else is queued riding in the same
batch), and hands the handler (event, stream sequence) pairs. It differs where the paper service
needs it to:

- AckPolicy.ALL: one ack of a batch's last message acks the batch. Per-message acks were a third of
  the service's per-intent cost.
- The handler may return an awaitable that resolves once its work is stored (the paper service's
  group commit, `services.paper.commit`): the batch is acked when it resolves, by an acker task that
  acks batches in order, while the next batches are being handled (at most `max_inflight` batches
  decided and not yet stored).
- Strict order: a batch whose handler fails is retried in process (0.2 s doubling to 5 s) and
  nothing after it is handled or acked until it succeeds, so a run's "last sequence decided"
  (`RunSnapshot.intent_seq`) can never jump over an intent that still has to be decided. After
  `max_attempts` failures the batch is retried one message at a time and a message that still
  fails is dead-lettered (`dlq.<durable>`, with the reason) and passed, so one poison message cannot
  stop the service.
- A message that does not decode is dead-lettered at once.

When the service stops, what was fetched but not acked is simply left. The next instance must not
rely on JetStream's redelivery of it: a reused durable hands out *new* messages first and the
unacked ones only after `ack_wait`, by when runs have moved past them and AckPolicy.ALL has acked
them. So `start(resume_from=...)` deletes the durable and creates it again delivering from
min(its ack floor + 1, `resume_from`) — the service passes the first sequence some running run has
not decided — in order; what the runs already decided comes again and is skipped by them. If the
server loses the consumer while running, it is created again from the sequence after the last ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.bus import Bus
from libs.ids import now_ns
from proto import codec, subjects
from proto.events import DeadLetter

Handler = Callable[[list[tuple[Any, int]]], Awaitable[Awaitable[Any] | None]]


def ack_seq(reply: str) -> int:
    """`ack_info`'s stream sequence alone (what every message of a batch needs)."""
    t = reply.split(".")
    return int(t[5] if len(t) == 9 else t[7])


def ack_info(reply: str) -> tuple[int, int, int]:
    """(stream sequence, deliveries, pending) from a JetStream ack subject (both token layouts);
    pending: messages the consumer had still to deliver when this one was sent."""
    t = reply.split(".")
    if len(t) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(t[5]), int(t[4]), int(t[8])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
    return int(t[7]), int(t[6]), int(t[10])


class OrderedConsumer:
    """A durable pull consumer handling batches strictly in stream order (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        kind: Any,
        handler: Handler,
        log: Any,
        batch: int = 512,
        ack_wait_s: float = 30.0,
        max_attempts: int = 5,
        expires_s: float = 5.0,
        max_inflight: int = 64,
        linger: Callable[[], float] | None = None,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = subjects.token(durable, "durable")
        self.filter_subject = filter_subject
        self.decoder = codec.decoder(kind)
        self.handler = handler
        self.log = log
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.max_attempts = max_attempts
        self.expires_s = expires_s
        self.processed = 0
        self.dead_lettered = 0
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending = 0
        self._stopping = False
        self._busy = False
        self._lost = False
        self._inbox = ""
        self.max_inflight = max_inflight
        self.linger = linger
        """Seconds to let a batch gather after its first message (0: none), asked per batch: the
        paper service lingers while its hot path decides intents first, when JetStream's copies only
        confirm them."""
        self._acks: asyncio.Queue[tuple[Msg, Awaitable[Any] | None, int]] = asyncio.Queue()
        self._acker: asyncio.Task[None] | None = None
        self._inflight = 0
        self._room = asyncio.Event()
        self._room.set()
        self.start_seq: int | None = None
        """Stream sequence the durable was (re)created to deliver from (None: from the first)."""
        self.acked_seq = 0
        """Stream sequence of the last message acked (AckPolicy.ALL: everything up to it)."""
        self._last_pending = 0
        self.in_sync = False
        """The stream has nothing this consumer has not handed to the handler: the last batch handled
        had no message after it waiting, and none is queued (or a pull request expired unanswered
        after such a batch — the server also lets a pull expire when `max_ack_pending` holds its
        deliveries back — or the durable had nothing pending when created). The paper service's hot path decides
        intents as they arrive over core NATS only while this holds, so a backlog is decided in
        stream order first."""

    def config(self, start_seq: int | None = None) -> ConsumerConfig:
        """The durable's config, delivering from `start_seq` (None: from the stream's first message)."""
        if start_seq is None:
            policy: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
        else:
            policy = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": max(1, start_seq)}
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=max(self.batch * 16, 8_192),
            filter_subject=self.filter_subject,
            **policy,
        )

    async def _create(self, start_seq: int | None) -> None:
        """Delete the durable (if it exists) and create it delivering from `start_seq`, in order."""
        self.in_sync = False
        with contextlib.suppress(NotFoundError):
            await self.bus.js.delete_consumer(self.stream, self.durable)
        await self.bus.js.add_consumer(self.stream, self.config(start_seq))
        self.start_seq = start_seq

    async def start(self, resume_from: int | None = None) -> OrderedConsumer:
        """(Re)create the durable delivering from its ack floor + 1, or from `resume_from` when there
        is no durable yet, and start.

        The ack floor alone is enough when the durable exists: a batch is acked only once every step
        of every run is stored, so each run has decided and stored everything at or below it (a run
        that watches nothing would otherwise drag the start back to its snapshot's 0). `resume_from`
        is the first stream sequence the caller may not have decided (None: the stream's first
        message). Everything fetched and not acked by an earlier instance comes again first, in
        order, instead of after `ack_wait` behind newer messages (see the module docstring)."""
        start_seq = resume_from
        try:
            info = await self.bus.js.consumer_info(self.stream, self.durable)
            start_seq = (int(info.ack_floor.stream_seq or 0) if info.ack_floor is not None else 0) + 1
        except NotFoundError:
            pass
        await self._create(start_seq)
        info = await self.bus.js.consumer_info(self.stream, self.durable)
        self.in_sync = not info.num_pending
        self._last_pending = int(info.num_pending or 0)
        self.log.info("consumer created", durable=self.durable, start_seq=start_seq, pending=info.num_pending)
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
        )
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.durable}")
        self._acker = asyncio.create_task(self._ack_loop(), name=f"acker:{self.durable}")
        return self

    async def _on_msg(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def _pull(self, n: int) -> None:
        req = {"batch": n, "expires": int(self.expires_s * 1e9)}
        await self.bus.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}", json.dumps(req).encode(), reply=self._inbox
        )
        self._pending += n

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self._lost:
                    self._lost = False
                    await asyncio.sleep(0.25)
                    # from the sequence after the last ack: what was handled and not acked comes again
                    # (the runs skip it); nothing after the last ack is skipped
                    await self._create(self.acked_seq + 1 if self.acked_seq else self.start_seq)
                    while not self._queue.empty():  # the old durable's deliveries: the new one repeats them
                        self._queue.get_nowait()
                    self._pending = 0
                if self._pending <= self.batch:
                    await self._pull(self.batch * 2 - self._pending)
                try:
                    first = await asyncio.wait_for(self._queue.get(), timeout=self.expires_s + 1.0)
                except TimeoutError:
                    self._pending = 0  # our pull requests were lost (a reconnect): ask again
                    continue
                wait = self.linger() if self.linger is not None else 0.0
                if wait > 0:
                    await asyncio.sleep(wait)
                msgs = [first]
                while len(msgs) < self.batch and not self._queue.empty():
                    msgs.append(self._queue.get_nowait())
                self._busy = True
                try:
                    await self._handle(msgs)
                finally:
                    self._busy = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the loop outlives anything the bus throws
                # what it had taken is neither handled nor queued for an ack: a later batch's ack
                # (AckPolicy.ALL) would cover it, so start again after the last ack instead
                self._lost = True
                self.log.warning("consumer loop error", durable=self.durable, error=str(e))
                await asyncio.sleep(0.5)

    async def _handle(self, msgs: list[Msg]) -> None:
        good: list[tuple[Any, int]] = []
        good_msgs: list[Msg] = []
        last: Msg | None = None
        expired = False
        for msg in msgs:
            if msg.headers and msg.headers.get("Status"):
                expired = expired or msg.headers.get("Status") == "408"
                self._on_status(msg)
                continue
            self._pending -= 1
            last = msg
            seq = ack_seq(msg.reply)
            try:
                good.append((self.decoder.decode(msg.data), seq))
                good_msgs.append(msg)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                await self._dead_letter(msg, seq, f"decode: {e}", ack_info(msg.reply)[1])
        if last is None:
            if expired and self._queue.empty() and self._last_pending == 0:
                self.in_sync = True  # a pull expired and nothing was waiting after the last delivery
            return
        self._last_pending = ack_info(last.reply)[2]
        behind = self._last_pending > 0
        if behind:
            self.in_sync = False
        stored = await self._handle_in_order(good, good_msgs) if good else None
        self.in_sync = not behind and self._queue.empty()
        self._inflight += 1
        if self._inflight >= self.max_inflight:
            self._room.clear()
        self._acks.put_nowait((last, stored, len(good)))
        await self._room.wait()

    async def _ack_loop(self) -> None:
        """Ack handled batches in order, each once its work is stored (AckPolicy.ALL: up to its last)."""
        while True:
            last, stored, n = await self._acks.get()
            try:
                if stored is not None:
                    await stored
                await last.ack()
                self.acked_seq = max(self.acked_seq, ack_info(last.reply)[0])
                self.processed += n
            except asyncio.CancelledError:
                raise
            except Exception as e:  # not acked: JetStream redelivers it after ack_wait, and runs skip it
                self.log.warning("batch not acked", durable=self.durable, error=str(e))
            finally:
                self._inflight -= 1
                if self._inflight < self.max_inflight:
                    self._room.set()

    async def _handle_in_order(self, good: list[tuple[Any, int]], msgs: list[Msg]) -> Awaitable[Any] | None:
        """Run the handler until it succeeds; after max_attempts one message at a time, dead-lettering
        any that keeps failing. Returns (what the handler returned) only when every message is handled
        or dead-lettered."""
        wait = 0.2
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await self.handler(good)
            except Exception as e:
                if self._stopping:
                    raise
                self.log.warning("batch failed, retrying in order", durable=self.durable, attempt=attempt, error=str(e))
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)
        waits: list[Awaitable[Any]] = []
        for pair, msg in zip(good, msgs, strict=True):
            for attempt in range(1, self.max_attempts + 1):
                try:
                    stored = await self.handler([pair])
                    if stored is not None:
                        waits.append(stored)
                    break
                except Exception as e:
                    if self._stopping:
                        raise
                    if attempt == self.max_attempts:
                        await self._dead_letter(msg, pair[1], f"process: {type(e).__name__}: {e}", attempt)
                    else:
                        await asyncio.sleep(0.2)
        return asyncio.gather(*waits) if waits else None

    def _on_status(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else ""
        if status == "100":
            return
        desc = ""
        for key, value in (msg.headers or {}).items():
            if getattr(key, "value", key) == "Description":
                desc = str(value)
        if status in ("404", "409", "503") and ("Deleted" in desc or status == "503"):
            self._lost = True
        self._pending = 0

    async def _dead_letter(self, msg: Msg, seq: int, reason: str, deliveries: int) -> None:
        letter = DeadLetter(
            consumer=self.durable, subject=msg.subject, reason=reason, data=msg.data, ts=now_ns(), deliveries=deliveries
        )
        await self.bus.js.publish(
            subjects.dlq(self.durable),
            codec.encode(letter),
            headers={"MT-Reason": reason[:1000], "MT-Subject": msg.subject, "Nats-Msg-Id": f"dlq:{self.durable}:{seq}"},
        )
        self.dead_lettered += 1
        self.log.warning("dead-lettered", durable=self.durable, subject=msg.subject, reason=reason)

    async def stop(self) -> None:
        """Stop taking batches after the one in hand (what is fetched and not handled is redelivered
        later). Acking goes on until `finish` (batches are acked as their work is stored)."""
        self._stopping = True
        self._room.set()
        if self._task is not None:
            if not self._busy:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._task, timeout=60)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def finish(self, timeout_s: float = 10.0) -> None:
        """Ack what gets stored within `timeout_s`, then stop acking."""
        deadline = time.monotonic() + timeout_s
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._acker is not None:
            self._acker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._acker
