"""The hot path's own NATS connection against a real nats-server: it gets what nats-py publishes
(with and without headers), and a dropped connection is reported and made again."""

from __future__ import annotations

import asyncio

import structlog

from libs.bus import Bus, LocalNatsServer
from services.paper.core_feed import CoreFeed
from tests.integration.test_paper import until


async def test_the_feed_gets_every_payload_and_comes_back_after_a_drop(nats_server: LocalNatsServer) -> None:
    got: list[bytes] = []
    downs: list[float] = []
    feed = await CoreFeed(
        nats_server.url, "intent.>", got.extend, lambda: downs.append(1.0), structlog.get_logger()
    ).start()
    bus = await Bus.connect(nats_server.url, name="test")
    try:
        sent = [b"plain", b"big" * 50_000, b""]
        await bus.nc.publish("intent.xarb", sent[0])
        await bus.nc.publish("intent.xarb", sent[1], headers={"Nats-Msg-Id": "h1"})
        await bus.nc.publish("intent.other", sent[2], reply="_INBOX.r")
        await bus.nc.publish("md.book.x", b"not subscribed")
        await until(lambda: len(got) == 3)
        assert got == sent
        assert feed._transport is not None
        feed._transport.abort()  # the connection drops under it
        await until(lambda: feed.connects == 2, timeout_s=10)
        assert downs == [1.0]  # reported once
        await bus.nc.publish("intent.xarb", b"after")
        await until(lambda: got[-1:] == [b"after"])
        assert len(got) == 4
    finally:
        await feed.close()
        await bus.close()
    await asyncio.sleep(0.3)
    assert feed.connects == 2 and not feed.connected  # closed for good: no reconnect
