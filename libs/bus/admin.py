"""Looking at consumers from outside: how much they still have to do."""

from __future__ import annotations

import asyncio
import time

from nats.js.errors import NotFoundError

from libs.bus.client import Bus


async def backlog(bus: Bus, stream: str, durable: str) -> int:
    """Messages the durable consumer has not yet acked (pending + in flight); 0 if it does not exist."""
    try:
        info = await bus.js.consumer_info(stream, durable)
    except NotFoundError:
        return 0
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def wait_idle(bus: Bus, consumers: list[tuple[str, str]], timeout_s: float = 120.0, quiet_s: float = 0.3) -> bool:
    """Wait until every (stream, durable) has acked everything, twice `quiet_s` apart."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < deadline:
        total = sum([await backlog(bus, s, d) for s, d in consumers])
        calm = calm + 1 if total == 0 else 0
        if calm >= 2:
            return True
        await asyncio.sleep(quiet_s)
    return False
