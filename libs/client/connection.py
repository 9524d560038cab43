"""A synchronous NATS connection for the client: nats-py on a private event loop in a thread.

Callers (scripts, notebooks, the CLI) stay synchronous; each call is a coroutine run on the
client's own loop, so it works the same whether or not the caller has an event loop running.
A reply that did not fit one NATS message arrives as several (`MT-Part` i of `MT-Parts` n),
which `request` joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from libs.client.errors import SimulationError

T = TypeVar("T")
log = logging.getLogger("markettwin.client")


async def _quiet(error: Exception) -> None:
    """nats-py's default error callback logs a traceback per failed attempt; the caller gets the error."""
    log.debug("nats: %s: %s", type(error).__name__, error)


class Connection:
    """One NATS connection owned by a background thread's event loop."""

    def __init__(self, url: str, name: str = "markettwin-client", connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="markettwin-client", daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        try:
            # nats-py retries a failed first connect like a reconnect: 3 short waits, then gives up
            connecting = nats.connect(
                url,
                name=name,
                connect_timeout=connect_timeout_s,
                max_reconnect_attempts=3,
                reconnect_time_wait=min(2.0, connect_timeout_s / 4),
                error_cb=_quiet,
            )
            self._nc = self.run(connecting, timeout_s=connect_timeout_s * 2)
        except SimulationError:
            self._stop_loop()
            raise
        except Exception as e:
            self._stop_loop()
            raise SimulationError(f"cannot connect to NATS at {url}: {type(e).__name__}: {e}") from e

    @property
    def nc(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            raise SimulationError("the client is closed")
        return self._nc

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run a coroutine on the client's loop and wait for its result."""
        if not self._thread.is_alive():
            coro.close()
            raise SimulationError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise SimulationError(f"no answer within {timeout_s:.0f} s") from None

    def request(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> tuple[dict[str, str], bytes]:
        """Request/reply; returns the reply's headers and its (joined) body."""
        return self.run(self._request(subject, data, headers, timeout_s), timeout_s + 5.0)

    async def _request(
        self, subject: str, data: bytes, headers: dict[str, str] | None, timeout_s: float
    ) -> tuple[dict[str, str], bytes]:
        nc = self.nc
        inbox = nc.new_inbox()
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg)

        sub = await nc.subscribe(inbox, cb=on_reply, pending_msgs_limit=100_000, pending_bytes_limit=-1)
        try:
            await nc.publish(subject, data, reply=inbox, headers=headers)
            parts: dict[int, bytes] = {}
            first_headers: dict[str, str] = {}
            n = 1
            while len(parts) < n:
                try:
                    msg = await asyncio.wait_for(replies.get(), timeout_s)
                except TimeoutError:
                    if not parts:
                        raise SimulationError(f"no reply on {subject} within {timeout_s:.0f} s") from None
                    raise SimulationError(f"reply on {subject} incomplete: {len(parts)} of {n} parts") from None
                h = {str(getattr(k, "value", k)): str(v) for k, v in (msg.headers or {}).items()}
                if h.get("Status") == "503":
                    raise SimulationError(
                        f"nothing answers on {subject}: is the simulation API running "
                        "(`markettwin up`, or `markettwin run simjobs` and `markettwin run sim`)?"
                    )
                if not parts:
                    first_headers = h
                n = int(h.get("MT-Parts", "1"))
                parts[int(h.get("MT-Part", "0"))] = msg.data
            return first_headers, b"".join(parts[i] for i in range(n))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def close(self) -> None:
        """Flush and close the connection, stop the loop thread. Idempotent."""
        if self._nc is not None and not self._nc.is_closed and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.run(self._nc.drain(), timeout_s=10)
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
