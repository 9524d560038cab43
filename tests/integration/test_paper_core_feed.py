"""The hot path's own NATS connection against a real nats-server: it gets what nats-py publishes
(with and without headers), and a dropped connection is reported and made again."""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

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


async def test_poll_hands_on_what_waits_on_the_socket_without_a_turn_of_the_event_loop(
    nats_server: LocalNatsServer,
) -> None:
    """`poll` is what a long step elsewhere calls so an intent arriving meanwhile need not wait for
    it: it must read the socket itself, in order with what the transport reads, and never block."""
    got: list[bytes] = []
    feed = await CoreFeed(nats_server.url, "intent.>", got.extend, lambda: None, structlog.get_logger()).start()
    bus = await Bus.connect(nats_server.url, name="test")
    host, port = urlsplit(nats_server.url).hostname or "127.0.0.1", urlsplit(nats_server.url).port or 4222
    try:
        feed.poll()  # nothing waiting: returns at once, hands on nothing
        assert got == []
        await bus.nc.publish("intent.xarb", b"first")
        await until(lambda: got == [b"first"])  # the transport's own read
        with socket.create_connection((host, port), timeout=5) as raw:  # a publisher the loop does not run
            pubs = b"".join(b"PUB intent.xarb 2\r\np%d\r\n" % i for i in range(3))
            raw.sendall(b'CONNECT {"verbose":false}\r\n' + pubs)
            raw.sendall(b"PING\r\n")
            while b"PONG" not in raw.recv(4096):  # the server has routed them (to the feed's socket)
                pass
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:  # the event loop never turns in here
            feed.poll()
            time.sleep(0.01)
        assert got == [b"first", b"p0", b"p1", b"p2"]
        await bus.nc.publish("intent.xarb", b"after")
        await until(lambda: got[-1:] == [b"after"])  # the transport reads on where poll stopped
        assert len(got) == 5
        assert feed._transport is not None
        feed._transport.abort()
        feed.poll()  # a closing connection is left to the transport
        assert len(got) == 5
    finally:
        await feed.close()
        await bus.close()
