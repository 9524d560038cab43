"""The hot path's intents read straight off their own socket: one core-NATS subscription, parsed in
the socket's read callback, and handed on in that same callback.

Through nats-py an intent took three turns of the event loop before it was decided (the socket's
read callback feeds a stream, the client's read task parses it into the subscription's queue, the
subscription's task runs the callback), each turn behind whatever else was ready then: at 500
intents a second that queueing was most of paper's p99. Here the read callback parses the
protocol's MSG/HMSG frames itself and calls `on_payloads` with every complete message of the chunk
it read, so a lone intent is decided in the turn its bytes arrive. The protocol is the core one
(INFO, CONNECT, SUB, PING/PONG, MSG, HMSG, -ERR): https://docs.nats.io/reference/reference-protocols/nats-protocol

A step elsewhere in the service that may hold the event loop for a while (storing a run's update,
sending a live event) calls `poll()` first: it reads whatever already waits on this socket and
hands it on then, so an intent arriving during that step is not left waiting for it and for
everything else the loop has ready after it (at 1,000 intents a second, most of paper's slowest
decisions were such waits). The intent consumer's batches do not poll: polling at their start
made the integration tests' hot path miss, now and then, an intent it should have decided.

It is an optimisation only: JetStream delivers every intent too. When the connection drops,
`on_down` is called (the service turns its hot path off: JetStream decides in order meanwhile) and
the feed connects again (0.1 s doubling to 2 s); messages published meanwhile simply never arrive
here. A server asking for TLS is refused (`CoreFeedUnsupported`): the service then subscribes
through nats-py instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

CONNECT_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 2.0
POLL_BYTES = 1 << 18
"""Most bytes one `CoreFeed.poll` reads (the rest waits for the next read)."""
SID = b"1"


class CoreFeedUnsupported(RuntimeError):
    """The server needs something this feed does not speak (TLS)."""


class CoreFeedProtocolError(RuntimeError):
    """The server sent a line this feed cannot parse (the connection is dropped and made again)."""


def connection_url(nc: Any) -> str:
    """The URL a nats-py client is connected to, credentials included (for a connection of our own)."""
    u = nc.connected_url
    if u is None:
        raise ConnectionError("the service's NATS connection is not connected")
    return f"{u.scheme}://{u.netloc}"


def connect_options(url: str, name: str) -> dict[str, Any]:
    """CONNECT's options for `url` (credentials from its user info: user:password, or a token)."""
    parts = urlsplit(url)
    opts: dict[str, Any] = {
        "verbose": False, "pedantic": False, "headers": True, "no_responders": True, "protocol": 1,
        "lang": "python-markettwin", "version": "1", "name": name,
    }  # fmt: skip
    if parts.username and parts.password is not None:
        opts["user"], opts["pass"] = unquote(parts.username), unquote(parts.password)
    elif parts.username:
        opts["auth_token"] = unquote(parts.username)
    return opts


async def _open_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to host:port (each resolved address tried in turn)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}:{port}")
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
            return sock
        except OSError as e:
            sock.close()
            error = e
        except BaseException:
            sock.close()
            raise
    raise error


class CoreFeed(asyncio.Protocol):
    """One subscription's payloads, in arrival order, to `on_payloads` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        subject: str,
        on_payloads: Callable[[list[bytes]], None],
        on_down: Callable[[], None],
        log: Any,
        name: str = "markettwin-paper-hot",
    ) -> None:
        self.url = url
        self.subject = subject
        self.on_payloads = on_payloads
        self.on_down = on_down
        self.log = log
        self.name = name
        self.received = 0
        self.connects = 0
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None
        self._parsing = False
        self._live: asyncio.Future[None] | None = None
        self._closed = False
        self._reconnect: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._live is not None and self._live.done()

    async def start(self) -> CoreFeed:
        """Connect and subscribe; returns once the server has the subscription."""
        await self._connect()
        return self

    async def _connect(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("nats", ""):
            raise CoreFeedUnsupported(f"the hot path's own connection speaks plain nats://, not {parts.scheme}://")
        loop = asyncio.get_running_loop()
        self._buf.clear()
        self._live = loop.create_future()
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        sock = await asyncio.wait_for(_open_socket(host, port), CONNECT_TIMEOUT_S)
        try:
            await loop.create_connection(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock  # `poll` reads it directly; the transport owns and closes it
        try:
            await asyncio.wait_for(asyncio.shield(self._live), CONNECT_TIMEOUT_S)
        except BaseException:
            if self._transport is not None:
                self._transport.close()
            raise
        self.connects += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._sock = None
        live = self._live
        if live is not None and not live.done():
            live.set_exception(ConnectionError(f"the hot path's connection closed while connecting: {exc}"))
            live.exception()  # retrieved by `_connect`'s wait, or by nobody if that was cancelled
            return
        if self._closed:
            return
        self.on_down()
        self.log.warning("hot path connection lost; reconnecting", error=str(exc) if exc else "closed by the server")
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop(), name="paper:hot-reconnect")

    async def _reconnect_loop(self) -> None:
        wait = 0.1
        while not self._closed:
            await asyncio.sleep(wait)
            try:
                await self._connect()
                self.log.info("hot path connection restored")
                return
            except CoreFeedUnsupported:
                raise
            except Exception as e:
                self.log.warning("hot path reconnect failed", error=str(e))
                wait = min(wait * 2, RECONNECT_MAX_S)

    def _send(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _on_info(self, info: dict[str, Any]) -> None:
        if info.get("tls_required"):
            self._fail(CoreFeedUnsupported("the server requires TLS; the hot path's own connection does not speak it"))
            return
        connect = json.dumps(connect_options(self.url, self.name), separators=(",", ":")).encode()
        self._send(b"CONNECT " + connect + b"\r\nSUB " + self.subject.encode() + b" " + SID + b"\r\nPING\r\n")

    def _fail(self, exc: Exception) -> None:
        live = self._live
        if live is not None and not live.done():
            live.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def poll(self) -> None:
        """Read and hand on now whatever waits on the socket (see the module docstring). Nothing
        waiting costs one non-blocking recv; errors and end of stream are left for the transport's
        own read to report."""
        sock = self._sock
        if sock is None or self._transport is None or self._parsing or self._transport.is_closing():
            return
        try:
            data = sock.recv(POLL_BYTES)
        except OSError:  # nothing waiting (BlockingIOError), or a failure the transport reports
            return
        if data:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        payloads: list[bytes] = []
        pos = 0
        try:
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                op = bytes(buf[pos : pos + 4])
                if op == b"MSG " or op == b"HMSG":
                    args = bytes(buf[pos:eol]).split()
                    total = int(args[-1])
                    end = eol + 2 + total
                    if len(buf) < end + 2:
                        break  # the rest of the message is still on its way
                    start = eol + 2 + (int(args[-2]) if op == b"HMSG" else 0)
                    payloads.append(bytes(buf[start:end]))
                    pos = end + 2
                    continue
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if line == b"PING":
                    self._send(b"PONG\r\n")
                elif line == b"PONG":
                    if self._live is not None and not self._live.done():
                        self._live.set_result(None)
                elif line.startswith(b"INFO "):
                    self._on_info(json.loads(line[5:]))
                elif line.startswith(b"-ERR"):
                    error = line[5:].decode(errors="replace")
                    self.log.warning("hot path connection error from the server", error=error)
                    if self._live is not None and not self._live.done():
                        self._fail(ConnectionError(line.decode(errors="replace")))
                elif line != b"+OK":
                    raise CoreFeedProtocolError(f"unexpected line from the server: {line[:80]!r}")
        except (ValueError, IndexError, CoreFeedProtocolError) as e:
            self.log.warning("hot path connection: unparsable data; reconnecting", error=str(e))
            del buf[:]
            if self._transport is not None:
                self._transport.close()
            return
        finally:
            if pos:
                del buf[:pos]
        if payloads:
            self.received += len(payloads)
            self._parsing = True  # a poll from inside the handler would hand on later bytes first
            try:
                self.on_payloads(payloads)
            except Exception as e:  # the handler's to handle; the connection stays up
                self.log.exception("hot path handler failed", error=str(e))
            finally:
                self._parsing = False

    async def close(self) -> None:
        """Close the connection (no reconnect)."""
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect
        if self._transport is not None:
            self._transport.close()
