"""bars: runs nightly bar updates; request/reply on `svc.bars.<verb>` (queue group `bars`).

Verbs (JSON bodies and replies): `nightly_start` (the reference's start body → `{request_id,
status: "started", message}`), `nightly_status` (`{request_id}` → the status with per-symbol
results), `nightly_active` (→ the statuses of updates still running). A bad request gets
`{"error", "verb", "code"}` with header `MT-Error: 1` (`code` 422 for a bad field, 404 for an
unknown request id, 503 for a nightly update while no bar provider has an API key: refused up
front rather than accepted and failed symbol by symbol), which the HTTP API turns into its
status code.

Every step of an update is published on `ohlcv.nightly.<request_id>` (core NATS, the status
JSON). Statuses of running updates live in memory and are saved to ClickHouse (`nightly_updates`,
newest version wins) at the start, whenever a symbol finishes and at the end; once its final
status is saved a finished update is dropped from memory and `nightly_status` reads it back from
ClickHouse (so memory does not grow with every night, and the answer survives a restart). An
update saved as running but not running here was interrupted by a restart and is reported
`failed`. One replica is assumed (updates are not shared).

Two updates never work on the same symbol at once (`SymbolClaims`): the later one skips it with
`running in <request_id>` in that symbol's result, so a provider is not asked twice for the same
bars. An unexpected error in a verb is logged with a reference and answered with a generic
message naming it (no internals in the reply). A bad MT_BARS_ASSET_OVERRIDES stops start().
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg

from libs.bars.assets import parse_overrides
from libs.bars.nightly import (
    NightlyStatus,
    NightlyUpdate,
    RequestError,
    SymbolClaims,
    load_status,
    plan_request,
    status_table,
)
from libs.bars.providers import build_chain
from libs.ids import new_id
from proto import subjects
from services.runtime import Service

QUEUE = "bars"
STOP_WAIT_S = 10.0


class NotFound(LookupError):
    """An unknown request id."""


class Unavailable(RuntimeError):
    """The service cannot do what is asked as configured (HTTP 503): e.g. no bar provider has a key."""


NO_PROVIDER = (
    "no bar provider is configured: set MT_POLYGON_API_KEY, MT_FMP_API_KEY or MT_TIINGO_API_KEY "
    "(and list it in MT_BARS_PROVIDERS={configured!r}), then restart the bars service"
)


class BarsService(Service):
    """Starts nightly updates, reports their progress, keeps their statuses."""

    name = "bars"
    uses_store = True

    async def start(self) -> None:
        parse_overrides(self.ctx.settings.bars_asset_overrides)  # a bad setting fails here, not at 2 a.m.
        self.chain = build_chain(self.ctx.settings, log=self.log)
        self.updates: dict[str, NightlyUpdate] = {}
        """Running updates (and finished ones whose final status could not be saved yet)."""
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.claims = SymbolClaims()
        self._serving: set[asyncio.Task[None]] = set()
        self._saved: dict[str, tuple[str, int]] = {}
        self._version = 0
        self.verbs: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "nightly_start": self.nightly_start,
            "nightly_status": self.nightly_status,
            "nightly_active": self.nightly_active,
        }
        self.sub = await self.ctx.bus.nc.subscribe(subjects.SVC_BARS_ALL, queue=QUEUE, cb=self._on_request)
        if not self.chain.providers:
            self.log.warning("no bar provider has an API key; nightly updates are refused until one is set")

    async def stop(self) -> None:
        await self.sub.unsubscribe()
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=STOP_WAIT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=STOP_WAIT_S)
        if self._serving:
            await asyncio.wait(self._serving, timeout=STOP_WAIT_S)
        await self.chain.aclose()

    # -- request/reply ------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._serve(msg))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        headers = {"Content-Type": "application/json"}
        try:
            handler = self.verbs.get(verb)
            if handler is None:
                raise NotFound(f"unknown verb {verb!r}; verbs: {', '.join(self.verbs)}")
            body = msgspec.json.decode(msg.data) if msg.data else {}
            if not isinstance(body, dict):
                raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
            data = msgspec.json.encode(await handler(body))
        except NotFound as e:
            data, headers = msgspec.json.encode({"error": str(e), "verb": verb, "code": 404}), {"MT-Error": "1"}
        except Unavailable as e:
            data, headers = msgspec.json.encode({"error": str(e), "verb": verb, "code": 503}), {"MT-Error": "1"}
        except (ValueError, msgspec.DecodeError) as e:
            data, headers = msgspec.json.encode({"error": str(e), "verb": verb, "code": 422}), {"MT-Error": "1"}
        except Exception as e:
            ref = new_id()
            self.log.exception("bars request failed", verb=verb, ref=ref, error=f"{type(e).__name__}: {e}")
            reply = {"error": f"internal error, see the bars service log (ref {ref})", "verb": verb, "code": 500}
            data, headers = msgspec.json.encode(reply), {"MT-Error": "1"}
        if msg.reply:
            await self.ctx.bus.nc.publish(msg.reply, data, headers=headers)

    # -- verbs --------------------------------------------------------------------------------

    async def nightly_start(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check the request, start the update in the background, answer at once.

        Refused (Unavailable, 503) when no provider has an API key: every symbol would fail.
        """
        plan = plan_request(body, self.ctx.settings)
        if not self.chain.providers:
            raise Unavailable(NO_PROVIDER.format(configured=self.ctx.settings.bars_providers))
        request_id = new_id()
        update = NightlyUpdate(
            request_id, plan, self.store, self.chain, on_progress=self._on_progress, log=self.log, claims=self.claims
        )
        self.updates[request_id] = update
        await self._save(update.status(), force=True)
        self.tasks[request_id] = asyncio.create_task(self._run(update))
        self.log.info("nightly update started", request_id=request_id, symbols=len(plan.symbols))
        return {"request_id": request_id, "status": "started", "message": update.message}

    async def nightly_status(self, body: dict[str, Any]) -> NightlyStatus:
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise RequestError(f"request_id must be a non-empty string, got {request_id!r}")
        update = self.updates.get(request_id)
        if update is not None:
            return update.status()
        saved = await asyncio.to_thread(load_status, self.store, request_id)
        if saved is None:
            raise NotFound(f"unknown request_id {request_id!r}")
        if not saved.is_complete:  # saved as running, but not running here: a restart cut it short
            saved.status, saved.is_complete = "failed", True
            saved.message = "interrupted: the bars service stopped before the update finished"
        return saved

    async def nightly_active(self, body: dict[str, Any]) -> list[NightlyStatus]:
        return [u.status() for rid, u in self.updates.items() if rid in self.tasks and u.finished is None]

    # -- running and saving -------------------------------------------------------------------

    async def _run(self, update: NightlyUpdate) -> None:
        try:
            final = await update.run()
            self.log.info("nightly update finished", request_id=update.request_id, status=final.status)
        except asyncio.CancelledError:
            update.state, update.message = "failed", "stopped: the bars service shut down"
            update.finished = dt.datetime.now(dt.UTC)
            await self._on_progress(update.status())
            raise
        except Exception as e:
            self.log.exception("nightly update crashed", request_id=update.request_id, error=str(e))
        finally:
            self.tasks.pop(update.request_id, None)
            self._forget_if_saved(update)

    def _forget_if_saved(self, update: NightlyUpdate) -> None:
        """Drop a finished update from memory once its final status is in ClickHouse (read back from there)."""
        status = update.status()
        if status.is_complete and self._saved.get(update.request_id) == (
            status.status,
            status.progress.completed_symbols,
        ):
            self.updates.pop(update.request_id, None)
            self._saved.pop(update.request_id, None)

    async def _on_progress(self, status: NightlyStatus) -> None:
        data = msgspec.json.encode(status)
        await self.ctx.bus.nc.publish(subjects.nightly_progress(status.request_id), data)
        await self._save(status)

    async def _save(self, status: NightlyStatus, force: bool = False) -> None:
        """Save to ClickHouse when the state or the number of finished symbols changed."""
        key = (status.status, status.progress.completed_symbols)
        if not force and self._saved.get(status.request_id) == key:
            return
        self._version = max(self._version + 1, time.time_ns())
        table = status_table(status, self._version)
        try:
            await asyncio.to_thread(self.store.insert_arrow, "nightly_updates", table)
        except Exception as e:
            self.log.warning("nightly status not saved", request_id=status.request_id, error=str(e))
            return
        self._saved[status.request_id] = key


SERVICE = BarsService
