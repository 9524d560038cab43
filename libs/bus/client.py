"""The NATS connection every service uses: streams, typed publish and subscribe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from proto import codec
from proto.events import Event
from proto.streams import StreamDef

E = TypeVar("E", bound=Event)
log = structlog.get_logger()


def stream_config(d: StreamDef) -> StreamConfig:
    """The nats-py StreamConfig for one of our stream definitions."""
    return StreamConfig(
        name=d.name,
        subjects=list(d.subjects),
        retention=RetentionPolicy.WORK_QUEUE if d.retention == "workqueue" else RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=d.max_age_s,
        max_bytes=d.max_bytes,
        max_msgs_per_subject=d.max_msgs_per_subject,
        discard=DiscardPolicy.OLD,
        duplicate_window=d.duplicate_window_s,
    )


async def subscriptions_live(nc: Client) -> None:
    """Return once the server has every subscription made so far on `nc`.

    One `flush()` is not enough with nats-py 2.16: its PING can reach the socket while a new SUB
    still waits in the pending buffer for the flusher task, so the PONG may come back before the
    server has the SUB (and a message published right after is lost). The second PING goes out
    after the SUB, so its PONG proves the subscription is in place.
    """
    await nc.flush()
    await nc.flush()


class Bus:
    """One NATS connection with JetStream: idempotent streams, typed publish and subscribe."""

    def __init__(self, nc: Client, name: str) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10)
        self.name = name

    @classmethod
    async def connect(cls, url: str, name: str) -> Bus:
        """Connect to `url`, naming the connection after the service (shows in monitoring)."""

        async def on_error(e: Exception) -> None:
            log.warning("nats error", connection=name, error=str(e))

        nc = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            pending_size=256 * 1024 * 1024,
        )
        return cls(nc, name)

    async def ensure_streams(self, defs: Iterable[StreamDef]) -> None:
        """Create each stream, or update it to the definition when it exists (idempotent)."""
        for d in defs:
            cfg = stream_config(d)
            try:
                await self.js.add_stream(cfg)
            except BadRequestError:
                await self.js.update_stream(cfg)

    async def publish(self, subject: str, event: Event, *, dedup: bool = True) -> int:
        """Publish an event to JetStream and wait for it to be stored; returns its sequence.

        The event id goes in `Nats-Msg-Id`, so a retried publish within the stream's
        duplicate window is stored once.
        """
        return await self.publish_encoded(subject, codec.encode(event), event.id if dedup else None)

    async def publish_encoded(self, subject: str, data: bytes, msg_id: str | None) -> int:
        """`publish` for an event its caller has encoded (`msg_id`: its id, for the duplicate check)."""
        ack = await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id is not None else None)
        return ack.seq

    async def publish_many(self, items: Iterable[tuple[str, Event]], window: int = 256) -> int:
        """Publish many events with up to `window` acknowledgements in flight; returns the count."""
        pending: list[Awaitable[Any]] = []
        n = 0
        for subject, event in items:
            pending.append(self.publish(subject, event))
            n += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
        return n

    async def publish_core(self, subject: str, event: msgspec.Struct) -> None:
        """Publish on core NATS (not stored): for live views that only want the latest."""
        await self.nc.publish(subject, codec.encode(event))

    async def subscribe(
        self, subject: str, kind: type[E] | Any, handler: Callable[[E, Msg], Awaitable[None]]
    ) -> Subscription:
        """Core NATS subscription decoding each message as `kind`; undecodable ones are logged."""
        dec = codec.decoder(kind)

        async def cb(msg: Msg) -> None:
            try:
                event = dec.decode(msg.data)
            except msgspec.DecodeError as e:
                log.warning("undecodable message", subject=msg.subject, error=str(e))
                return
            await handler(event, msg)

        return await self.nc.subscribe(subject, cb=cb, pending_msgs_limit=1_000_000, pending_bytes_limit=-1)

    async def close(self) -> None:
        """Flush what is buffered and close."""
        if self.nc.is_connected:
            await self.nc.drain()
        elif not self.nc.is_closed:
            await self.nc.close()
