"""`WebSocket /simulator/ws?token=<jwt>`: a user's live simulator events, bridged from NATS.

The paper service publishes every recorded trade and every run change on core NATS as JSON,
`ui.simulator.<user_id>.trade` → `{"event": "simulator:trade", "data": TradeView}` and
`ui.simulator.<user_id>.run` → `{"event": "simulator:run", "data": RunView}`. A dashboard can
subscribe to those subjects directly over NATS WebSocket, or use this endpoint, which does the
same for one signed-in user:

1. The connection is accepted, then the token is checked (a browser cannot set an Authorization
   header on a WebSocket, hence `?token=`; a non-browser client may send the header instead). A
   missing, bad or expired token closes the socket with code 4401 and the reason (accepting
   first is what lets the client read the code and reason: a refused handshake is a bare 403).
2. It subscribes to `ui.simulator.<user_id>.>` on the report service's NATS connection — the
   user id comes from the verified token, never from the client, so a client only ever gets
   its own user's events — and sends one `{"event": "simulator:hello", "data": {"user_id",
   "subject"}}` once the subscription is in place (events published after it arrive).
3. Each NATS message's JSON text is forwarded unchanged, in order. What the client sends is
   read and ignored (only its disconnect matters).
4. The token keeps being checked while the socket is open, not only at connect: every
   RECHECK_S (USER_CACHE_S, 5 s) all of `auth.verify_token`'s checks run again, so a user
   disabled, or whose API key was rotated, is closed with 4401 and the reason within about that
   long (at once on this replica: the admin endpoints drop the user's cached row). At the token's
   `exp` the socket is closed with 4401 `token expired at ...; get a new one from POST
   /auth/token` (reconnect with a fresh token). A store that cannot be read for a re-check is
   logged and retried, not held against the user.
5. On disconnect (or a server shutdown) the subscription is removed. A client that falls more
   than MAX_QUEUED events behind is closed with 4408 rather than buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from starlette.websockets import WebSocket, WebSocketDisconnect

from libs.bus import subscriptions_live
from libs.users.tokens import Claims
from proto import subjects
from services.report.auth import USER_CACHE_S, verify_token
from services.report.routes_bars import ApiError

MAX_QUEUED = 10_000
"""Events a slow client may have waiting before it is disconnected."""
CLOSE_UNAUTHORIZED = 4401
RECHECK_S = USER_CACHE_S
"""How often an open socket's token and user are checked again."""
CLOSE_TOO_SLOW = 4408
MAX_REASON_BYTES = 123
"""A close frame's reason is at most 123 bytes (RFC 6455: 125-byte payload, 2 for the code)."""

log = structlog.get_logger()


def user_subject(user_id: str) -> str:
    """Every live event of one user: `ui.simulator.<user_id>.>`."""
    return f"ui.simulator.{subjects.token(user_id, 'user_id')}.>"


def _reason(text: str) -> str:
    """A close reason cut to what a close frame can carry (whole UTF-8 characters)."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def _token(ws: WebSocket) -> str:
    token = ws.query_params.get("token") or ""
    if not token:
        auth = ws.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
    return token


async def _authenticate(ws: WebSocket) -> tuple[str, Claims]:
    """(the token, its verified claims); ApiError(401) otherwise."""
    token = _token(ws)
    if not token:
        raise ApiError(401, "missing token: connect to /simulator/ws?token=<access token>")
    return token, await verify_token(ws.app.state, token)


async def simulator_ws(ws: WebSocket) -> None:
    """The endpoint (see the module docstring)."""
    await ws.accept()
    try:
        token, claims = await _authenticate(ws)
        user = claims.sub
        subject = user_subject(user)
    except (ApiError, ValueError) as e:
        detail = e.detail if isinstance(e, ApiError) else str(e)
        await ws.close(code=CLOSE_UNAUTHORIZED, reason=_reason(detail))
        return
    nc = ws.app.state.nc
    queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
    overflow = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        try:
            queue.put_nowait(msg.data)
        except asyncio.QueueFull:
            overflow.set()

    sub = await nc.subscribe(subject, cb=on_message)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await subscriptions_live(nc)
        hello = {"event": "simulator:hello", "data": {"user_id": user, "subject": subject}}
        await ws.send_text(msgspec.json.encode(hello).decode())
        tasks = [
            asyncio.create_task(_forward(ws, queue, user)),
            asyncio.create_task(_until_disconnect(ws)),
            asyncio.create_task(overflow.wait()),
            asyncio.create_task(_until_token_invalid(ws.app.state, token, claims)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[3] in done:
            reason = tasks[3].result()
            log.info("websocket closed: token no longer valid", user_id=user, reason=reason)
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_UNAUTHORIZED, reason=_reason(reason))
        elif tasks[2] in done:
            log.warning("websocket client too slow", user_id=user, queued=queue.qsize())
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_TOO_SLOW, reason=f"client too slow: {MAX_QUEUED} events waiting")
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away while we were setting up
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _until_token_invalid(app_state: Any, token: str, claims: Claims) -> str:
    """Check the token again every RECHECK_S and at its `exp`; return why it stopped being valid."""
    while True:
        await asyncio.sleep(max(0.01, min(RECHECK_S, claims.exp - time.time())))
        try:
            await verify_token(app_state, token)  # at or after exp this is the "token expired at ..." 401
        except ApiError as e:
            return e.detail
        except Exception as e:  # the store unreadable for a moment: not the user's fault
            log.warning("websocket token re-check failed; retrying", user_id=claims.sub, error=type(e).__name__)
            await asyncio.sleep(RECHECK_S)


async def _forward(ws: WebSocket, queue: asyncio.Queue[bytes], user: str) -> None:
    """Send each queued NATS message's text as it is, until the client goes away."""
    while True:
        data = await queue.get()
        try:
            text = data.decode()
        except UnicodeDecodeError:
            log.warning("live event is not UTF-8 text; not forwarded", user_id=user, size=len(data))
            continue
        try:
            await ws.send_text(text)
        except (WebSocketDisconnect, OSError, RuntimeError):
            return


async def _until_disconnect(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends; return when it disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
