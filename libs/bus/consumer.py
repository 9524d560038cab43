"""Durable pull consumers that ack only after the handler succeeds, with a dead-letter subject.

The loop speaks the JetStream pull protocol directly (pull requests to
`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`, kept topped up) rather than nats-py's
`fetch()`, whose lingering request waits for a full batch or its timeout after the first
message: that would put the fetch timeout into every intent's latency. Here a message is
handled as soon as it arrives, and whatever else is already queued rides in the same batch.

A message that does not decode, or that fails `max_deliver` times, is published to
`dlq.<durable>` as a DeadLetter (raw bytes and the reason) and terminated; the consumer
keeps going. Handlers get a list of events; a failing batch is retried one message at a
time so one poison message cannot hold back the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.bus.client import Bus
from libs.ids import now_ns
from proto import codec, subjects
from proto.events import DeadLetter

E = TypeVar("E")
log = structlog.get_logger()

Handler = Callable[[list[E]], Awaitable[None]]


def _header(msg: Msg, name: str) -> str:
    """A header of a status message ('' when absent); nats-py keys some by an Enum."""
    for key, value in (msg.headers or {}).items():
        if getattr(key, "value", key) == name:
            return str(value)
    return ""


class PullConsumer(Generic[E]):
    """A durable pull consumer on one stream, decoding each message as `kind`."""

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        filter_subjects: Sequence[str],
        kind: Any,
        handler: Handler[E],
        batch: int = 256,
        max_deliver: int = 5,
        ack_wait_s: float = 30.0,
        nak_delay_s: float = 0.5,
        deliver: Literal["all", "new"] = "all",
        expires_s: float = 5.0,
        max_bytes: int | None = None,
        dead_letter: bool = True,
        with_seq: bool = False,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = subjects.token(durable, "durable")
        self.filter_subjects = list(filter_subjects)
        self.decoder = codec.decoder(kind)
        self.handler = handler
        self.batch = batch
        self.max_deliver = max_deliver
        self.ack_wait_s = ack_wait_s
        self.nak_delay_s = nak_delay_s
        self.deliver = deliver
        self.expires_s = expires_s
        self.max_bytes = max_bytes
        self.dead_letter = dead_letter
        self.with_seq = with_seq
        """Hand the handler (event, stream sequence) pairs instead of events: for a handler that
        records how far it got (paper's exactly-once resume)."""
        self.processed = 0
        self.pulls = 0
        self.dead_lettered = 0
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._pending = 0
        self._busy = False
        self._trouble = ""
        self._backoff = 0.0
        self._inbox = ""

    def config(self) -> ConsumerConfig:
        """The durable consumer's configuration (explicit acks, bounded redelivery)."""
        filters: dict[str, Any] = (
            {"filter_subject": self.filter_subjects[0]}
            if len(self.filter_subjects) == 1
            else {"filter_subjects": self.filter_subjects}
        )
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            max_ack_pending=max(self.batch * 8, 1024),
            deliver_policy=DeliverPolicy.ALL if self.deliver == "all" else DeliverPolicy.NEW,
            **filters,
        )

    async def start(self) -> PullConsumer[E]:
        """Create (or reuse) the durable consumer and start handling messages."""
        await self.bus.js.add_consumer(self.stream, self.config())
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
        )
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.durable}")
        return self

    async def _on_msg(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def _pull(self, n: int) -> None:
        req = {"batch": n, "expires": int(self.expires_s * 1e9)}
        if self.max_bytes:
            req["max_bytes"] = self.max_bytes
        await self.bus.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}",
            json.dumps(req).encode(),
            reply=self._inbox,
        )
        self._pending += n
        self.pulls += 1

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self._trouble:
                    await self._recover()
                if self._pending <= self.batch // 2:
                    await self._pull(self.batch * 2 - self._pending)
                try:
                    first = await asyncio.wait_for(self._queue.get(), timeout=self.expires_s + 1.0)
                except TimeoutError:
                    self._pending = 0  # requests lost (e.g. a reconnect): ask again
                    continue
                if not (first.headers and first.headers.get("Status")):
                    self._backoff = 0.0
                msgs = [first]
                while len(msgs) < self.batch and not self._queue.empty():
                    msgs.append(self._queue.get_nowait())
                self._busy = True
                try:
                    await self._handle_group(msgs)
                finally:
                    self._busy = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the loop must survive anything a handler or the bus throws
                log.exception("consumer loop error", durable=self.durable, error=str(e))
                await asyncio.sleep(0.5)

    async def _handle_group(self, msgs: list[Msg]) -> None:
        good: list[tuple[Any, Msg]] = []
        for msg in msgs:
            status = msg.headers.get("Status") if msg.headers else None
            if status:
                self._on_status(status, msg)
                continue
            self._pending -= 1
            try:
                event = self.decoder.decode(msg.data)
                good.append(((event, msg.metadata.sequence.stream) if self.with_seq else event, msg))
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                await self._dead_letter(msg, f"decode: {e}")
        if not good:
            return
        try:
            await self.handler([ev for ev, _ in good])
        except Exception as e:
            if len(good) == 1:
                await self._failed(good[0][1], e)
                return
            for ev, msg in good:  # isolate the message that breaks the batch
                try:
                    await self.handler([ev])
                except Exception as e1:
                    await self._failed(msg, e1)
                else:
                    await msg.ack()
                    self.processed += 1
            return
        for _, msg in good:
            await msg.ack()
        self.processed += len(good)

    def _on_status(self, status: str, msg: Msg) -> None:
        if status == "100":  # idle heartbeat
            return
        description = _header(msg, "Description")
        if status == "408" or (status == "409" and ("MaxBytes" in description or "Batch Completed" in description)):
            # a pull request expired, reached max_bytes or completed: what it still wanted is not coming
            left = _header(msg, "Nats-Pending-Messages")
            self._pending = max(0, self._pending - int(left)) if left else 0
            return
        # 409 (consumer deleted, leadership change, too many waiting pulls), 503 (no responders),
        # 404: our pulls are void. Pulling again at once would spin: back off, then re-create.
        self._pending = 0
        self._trouble = f"{status} {description}".strip()

    async def _recover(self) -> None:
        """Wait (0.25 s doubling to 5 s) and make sure the durable consumer exists again."""
        self._backoff = min(max(self._backoff * 2, 0.25), 5.0)
        log.warning("pull failed, backing off", durable=self.durable, status=self._trouble, wait_s=self._backoff)
        self._trouble = ""
        await asyncio.sleep(self._backoff)
        try:
            await self.bus.js.add_consumer(self.stream, self.config())
        except Exception as e:  # the server may still be away: the next pull tells
            log.warning("could not re-create consumer", durable=self.durable, error=str(e))

    async def _failed(self, msg: Msg, error: Exception) -> None:
        deliveries = msg.metadata.num_delivered or 1
        if deliveries >= self.max_deliver:
            await self._dead_letter(msg, f"process: {type(error).__name__}: {error}", deliveries)
        else:
            log.warning("handler failed, will retry", durable=self.durable, deliveries=deliveries, error=str(error))
            await msg.nak(delay=self.nak_delay_s)

    async def _dead_letter(self, msg: Msg, reason: str, deliveries: int = 1) -> None:
        """Keep the message and the reason on `dlq.<durable>`, then stop its redelivery.

        A consumer of the dead-letter stream itself has `dead_letter=False`: its failures are
        logged and the letter stays in the DLQ stream, instead of looping back into it.
        """
        if not self.dead_letter:
            await msg.term()
            self.dead_lettered += 1
            log.error("not handled, left in its stream", durable=self.durable, subject=msg.subject, reason=reason)
            return
        letter = DeadLetter(
            consumer=self.durable,
            subject=msg.subject,
            reason=reason,
            data=msg.data,
            ts=now_ns(),
            deliveries=deliveries,
        )
        await self.bus.js.publish(
            subjects.dlq(self.durable),
            codec.encode(letter),
            headers={
                "MT-Reason": reason[:1000],
                "MT-Subject": msg.subject,
                "Nats-Msg-Id": f"dlq:{self.durable}:{msg.metadata.sequence.stream}",
            },
        )
        await msg.term()
        self.dead_lettered += 1
        log.warning("dead-lettered", durable=self.durable, subject=msg.subject, reason=reason)

    async def stop(self) -> None:
        """Stop after the batch in hand; messages fetched but not handled are nak'ed for redelivery."""
        self._stopping = True
        if self._task is not None:
            if not self._busy:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._task, timeout=60)
        if self._sub is not None:
            await self._sub.unsubscribe()
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            if msg.headers and msg.headers.get("Status"):
                continue
            try:
                await msg.nak()
            except Exception:  # the connection may already be gone: ack_wait redelivers it anyway
                break
