"""The hot path's own NATS connection, its protocol side: frames split anywhere are delivered once,
in order; PING is answered; what cannot be parsed drops the connection; TLS is refused by name."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import structlog

from services.paper.core_feed import CoreFeed, CoreFeedUnsupported, connect_options


class Wire:
    """The socket side of a transport: what the feed wrote, and whether it closed it."""

    def __init__(self) -> None:
        self.sent = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True


def feed_on_wire() -> tuple[CoreFeed, Wire, list[bytes], list[str]]:
    got: list[bytes] = []
    downs: list[str] = []
    feed = CoreFeed(
        "nats://127.0.0.1:4222", "intent.>", got.extend, lambda: downs.append("down"), structlog.get_logger()
    )
    wire = Wire()
    feed.connection_made(wire)  # type: ignore[arg-type]
    return feed, wire, got, downs


def frames() -> tuple[bytes, list[bytes]]:
    """A server's byte stream: MSG and HMSG (with and without a reply subject), a PING and an +OK
    between them, and payloads holding the protocol's own separators."""
    payloads = [b"first", b"with\r\nCRLF and MSG inside", b"", b"\x93binary\x00\r\n", b"last"]
    hdr = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"
    stream = (
        b"MSG intent.xarb 1 %d\r\n%s\r\n" % (len(payloads[0]), payloads[0])
        + b"HMSG intent.xarb 1 %d %d\r\n%s%s\r\n" % (len(hdr), len(hdr) + len(payloads[1]), hdr, payloads[1])
        + b"PING\r\n"
        + b"MSG intent.xarb 1 _INBOX.x %d\r\n%s\r\n" % (len(payloads[2]), payloads[2])
        + b"+OK\r\n"
        + b"HMSG intent.xarb 1 _INBOX.y %d %d\r\n%s%s\r\n" % (len(hdr), len(hdr) + len(payloads[3]), hdr, payloads[3])
        + b"MSG intent.xarb 1 %d\r\n%s\r\n" % (len(payloads[4]), payloads[4])
    )
    return stream, payloads


def test_messages_split_at_any_byte_arrive_once_each_in_order_and_ping_is_answered() -> None:
    stream, payloads = frames()
    for cut in range(1, len(stream)):
        feed, wire, got, _ = feed_on_wire()
        feed.data_received(stream[:cut])
        feed.data_received(stream[cut:])
        assert got == payloads, cut
        assert wire.sent == b"PONG\r\n" and not wire.closed
        assert feed.received == len(payloads)
    feed, wire, got, _ = feed_on_wire()
    for i in range(len(stream)):  # a byte at a time
        feed.data_received(stream[i : i + 1])
    assert got == payloads and not feed._buf


async def test_info_gets_connect_and_the_subscription_and_pong_makes_it_live() -> None:
    feed, wire, _, _ = feed_on_wire()
    feed._live = asyncio.get_running_loop().create_future()
    feed.data_received(b'INFO {"server_id":"x","headers":true,"max_payload":1048576}\r\n')
    lines = wire.sent.split(b"\r\n")
    assert lines[0].startswith(b"CONNECT ")
    opts = json.loads(lines[0][len(b"CONNECT ") :])
    assert (opts["headers"], opts["verbose"], opts["name"]) == (True, False, "markettwin-paper-hot")
    assert lines[1:4] == [b"SUB intent.> 1", b"PING", b""]
    assert not feed._live.done()  # the subscription is the server's only after the PONG
    feed.data_received(b"PONG\r\n")
    assert feed._live.done() and feed.connected


async def test_a_server_asking_for_tls_or_a_tls_url_is_refused_by_name() -> None:
    feed, wire, _, _ = feed_on_wire()
    feed._live = asyncio.get_running_loop().create_future()
    feed.data_received(b'INFO {"server_id":"x","tls_required":true}\r\n')
    with pytest.raises(CoreFeedUnsupported, match="requires TLS"):
        await feed._live
    assert wire.closed and b"CONNECT" not in wire.sent
    tls = CoreFeed("tls://127.0.0.1:4222", "intent.>", print, print, structlog.get_logger())
    with pytest.raises(CoreFeedUnsupported, match="tls://"):
        await tls.start()


def test_unparsable_data_drops_the_connection_and_the_buffer() -> None:
    feed, wire, got, _ = feed_on_wire()
    feed.data_received(b"MSG intent.xarb 1 notanumber\r\nxx\r\n")
    assert wire.closed and got == [] and not feed._buf
    feed, wire, got, _ = feed_on_wire()
    feed.data_received(b"WHAT is this\r\n")
    assert wire.closed and got == []


def test_a_handler_that_raises_leaves_the_connection_up() -> None:
    def boom(payloads: list[bytes]) -> None:
        raise RuntimeError("handler bug")

    feed = CoreFeed("nats://127.0.0.1:4222", "intent.>", boom, print, structlog.get_logger())
    wire = Wire()
    feed.connection_made(wire)  # type: ignore[arg-type]
    feed.data_received(b"MSG intent.xarb 1 2\r\nok\r\n")
    assert not wire.closed and feed.received == 1 and not feed._buf


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://127.0.0.1:4222", {}),
        ("nats://alice:s%40cret@127.0.0.1:4222", {"user": "alice", "pass": "s@cret"}),
        ("nats://tok3n@127.0.0.1:4222", {"auth_token": "tok3n"}),
    ],
)
def test_credentials_come_from_the_url(url: str, expected: dict[str, Any]) -> None:
    opts = connect_options(url, "n")
    assert {k: opts[k] for k in ("user", "pass", "auth_token") if k in opts} == expected
