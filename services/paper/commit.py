"""Storing runs' steps: one RunUpdate in flight per run, steps queued meanwhile go out together.

Deciding never waits for JetStream: a handler applies its steps to the runs in memory and queues
them (`PaperRun.parts`); `Committer.kick` starts the run's sender if it is idle. The sender stores
the oldest queued parts as one RunUpdate (`PaperRun.next_update`), waits for the stream's ack, then
sends whatever queued up meanwhile. So a run's updates are stored strictly in order, with no gap,
and under load each update carries many steps (group commit) instead of each step paying a round
trip; at low rates a step goes out at once.

A publish that fails is retried with the same message id (JetStream keeps one copy if an earlier
try was in fact stored), 0.1 s doubling to 2 s, never skipped: a later step is never stored before
an earlier one. `wait_stored(run)` resolves once everything queued so far for the run is stored:
the intent consumer acks a batch of intents only when every run that decided them has stored those
decisions. If the service stops before a step is stored, that step is lost from memory but not from
the world: its intents were not acked, so the next instance (resuming from the last stored update of
each run) decides them again, exactly once per run.

After each update is stored, the same snapshot (config and snapshot only, same version) goes to
`paperstate.<run_id>` in the PAPERSTATE stream, which keeps one message per run for a year: PAPER
discards its oldest messages at its byte limit, which may be a quiet running run's last update, and
a restart resumes each run from the higher version of the two (`intake.last_updates`). The snapshot
goes out only once its update is stored, so it never claims a step PAPER does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from libs.bus import Bus
from libs.ids import now_ns
from proto import subjects
from proto.paper import RunUpdate
from services.paper.runs import PaperRun, Part

STATE_PREFIX = "paperstate"
"""`paperstate.<run_id>`: a run's latest snapshot (the PAPERSTATE stream)."""


def state_subject(run_id: str) -> str:
    """`paperstate.<run_id>` (the id checked to be one subject token)."""
    return f"{STATE_PREFIX}.{subjects.token(run_id, 'run_id')}"


def state_of(update: RunUpdate) -> RunUpdate:
    """The snapshot-only copy of a stored update: its run and snapshot, no decisions, trades or
    balance changes (the id is the update's with `:state`, for JetStream's duplicate check)."""
    return RunUpdate(id=f"{update.id}:state", ts=update.ts, run=update.run, snapshot=update.snapshot)


OnStored = Callable[[PaperRun, RunUpdate, list[Part]], None]


class Committer:
    """Stores every run's queued steps (see the module docstring)."""

    def __init__(self, bus: Bus, log: Any, on_stored: OnStored) -> None:
        self.bus = bus
        self.log = log
        self.on_stored = on_stored
        self.updates = 0
        self.retries = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._stopping = False

    def kick(self, run: PaperRun) -> None:
        """Start the run's sender unless it is running (it picks up whatever is queued)."""
        if run.parts and run.run_id not in self._tasks and not self._stopping:
            task = asyncio.create_task(self._send(run), name=f"paper:store:{run.run_id}")
            self._tasks[run.run_id] = task

    def wait_stored(self, run: PaperRun) -> Awaitable[None]:
        """Resolves once every part queued for `run` so far is stored."""
        target = run.queued
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if run.stored >= target:
            fut.set_result(None)
        else:
            self._waiters.setdefault(run.run_id, []).append((target, fut))
        return fut

    async def _send(self, run: PaperRun) -> None:
        try:
            while run.parts:
                update, n = run.next_update(now_ns())
                await self._store(run, update, subjects.paper("update", run.run_id))
                await self._store(run, state_of(update), state_subject(run.run_id))
                done = run.mark_stored(update, n)
                self.updates += 1
                self._resolve(run)
                try:
                    self.on_stored(run, update, done)
                except Exception as e:  # live events are best effort
                    self.log.warning("after-store hook failed", run_id=run.run_id, error=str(e))
        finally:
            self._tasks.pop(run.run_id, None)

    async def _store(self, run: PaperRun, update: RunUpdate, subject: str) -> None:
        wait = 0.1
        while True:
            try:
                await self.bus.publish(subject, update)
                return
            except Exception as e:
                if self._stopping:
                    raise
                self.retries += 1
                self.log.warning(
                    "run update not stored, retrying", run_id=run.run_id, version=update.snapshot.version, error=str(e)
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)

    def _resolve(self, run: PaperRun) -> None:
        waiters = self._waiters.get(run.run_id)
        if not waiters:
            return
        keep = []
        for target, fut in waiters:
            if run.stored >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters[run.run_id] = keep

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait for every queued step to be stored (True), or give up after `timeout_s` (False: the
        senders are cancelled; what they had not stored is decided again after a restart)."""
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks.values()), timeout=max(0.0, deadline - time.monotonic()))
        self._stopping = True
        left = list(self._tasks.values())
        for task in left:
            task.cancel()
        for task in left:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()
        return not left
