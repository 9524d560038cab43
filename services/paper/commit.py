"""Storing runs' steps: one RunUpdate in flight per run, steps queued meanwhile go out together.

Deciding never waits for JetStream: a handler applies its steps to the runs in memory and queues
them (`PaperRun.parts`); `Committer.kick` starts the run's sender if it is idle. The sender stores
the oldest queued parts as one RunUpdate (`PaperRun.next_update`), waits for the stream's ack, then
sends whatever queued up meanwhile, at most one update per UPDATE_EVERY_S. So a run's updates are
stored strictly in order, with no gap, and under load each update carries many steps (group commit)
instead of each step paying a round trip; a step of a run quiet for longer goes out at once.

A publish that fails is retried with the same message id (JetStream keeps one copy if an earlier
try was in fact stored), 0.1 s doubling to 2 s, never skipped: a later step is never stored before
an earlier one. `wait_stored(run)` resolves once everything queued so far for the run is stored:
the intent consumer acks a batch of intents only when every run that decided them has stored those
decisions. If the service stops before a step is stored, that step is lost from memory but not from
the world: its intents were not acked, so the next instance (resuming from the last stored update of
each run) decides them again, exactly once per run.

A run's latest stored snapshot (config and snapshot only, same version) also goes to
`paperstate.<run_id>` in the PAPERSTATE stream, which keeps one message per run for a year: PAPER
discards its oldest messages at its byte limit, which may be a quiet running run's last update, and
a restart resumes each run from the higher version of the two (`intake.last_updates`). The snapshot
goes out only once its update is stored, so it never claims a step PAPER does not have; at most
once per STATE_EVERY_S per run (the latest one, by the run's own sender, so never an older after a
newer one), at once for a step that stops or ends the run, and at once when the service stops. A
restart writes again any copy older than the update the run resumed from (`resave`). A busy run
would otherwise pay a second stored publish per update; the update itself is in PAPER, whose oldest
messages are far older than a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from libs.bus import Bus
from libs.ids import now_ns
from proto import subjects
from proto.paper import RunUpdate
from services.paper.runs import PaperRun, Part

UPDATE_EVERY_S = 0.02
"""Most often one run's updates go out: a step queued within this of the run's last send waits (for
the run's next slot, `Committer._next_send`) and goes out with whatever else queued meanwhile
(group commit). A run quiet for longer stores its next step at once."""
STATE_EVERY_S = 1.0
"""Most often a run's snapshot goes to PAPERSTATE."""
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

    def __init__(self, bus: Bus, log: Any, on_stored: OnStored, before_step: Callable[[], None] | None = None) -> None:
        self.bus = bus
        self.log = log
        self.on_stored = on_stored
        self.before_step = before_step or (lambda: None)
        """Called before each costly step of a send (the hot path's `CoreFeed.poll`)."""
        self.updates = 0
        self.retries = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._stopping = False
        self._unsaved: dict[str, tuple[PaperRun, RunUpdate]] = {}
        """Run id → the run and its latest stored update whose snapshot is not in PAPERSTATE yet."""
        self._saved_at: dict[str, float] = {}
        self._sent_at: dict[str, float] = {}
        self._phases: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._flush = False

    def kick(self, run: PaperRun) -> None:
        """Start the run's sender unless it is running (it picks up whatever is queued)."""
        if (run.parts or run.run_id in self._unsaved) and run.run_id not in self._tasks and not self._stopping:
            task = asyncio.create_task(self._send(run), name=f"paper:store:{run.run_id}")
            self._tasks[run.run_id] = task

    def idle(self, run_id: str) -> bool:
        """Nothing of the run's in hand: no sender, no snapshot waiting for PAPERSTATE."""
        return run_id not in self._tasks and run_id not in self._unsaved and run_id not in self._timers

    def forget(self, run_id: str) -> None:
        """Drop what is kept about an idle run (`idle`) that the service retires."""
        for kept in (self._waiters, self._saved_at, self._sent_at, self._phases):
            kept.pop(run_id, None)

    def resave(self, run: PaperRun, update: RunUpdate) -> None:
        """Write the run's snapshot (from `update`, already stored in PAPER) to PAPERSTATE again: a
        restart found its PAPERSTATE copy older (the last instance stopped before writing it)."""
        again = msgspec.structs.replace(update, id=f"{update.id}:again:{now_ns()}")  # not a duplicate of the first
        self._unsaved[run.run_id] = (run, again)
        self.kick(run)

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
        rid = run.run_id
        try:
            while True:
                if run.parts:
                    wait = self._next_send(rid) - time.monotonic()
                    if wait > 0 and not self._flush:
                        await asyncio.sleep(wait)
                    self._sent_at[rid] = time.monotonic()
                    self.before_step()
                    update, n = run.next_update(now_ns())
                    await self._store(run, update, subjects.paper("update", rid))
                    done = run.mark_stored(update, n)
                    self._unsaved[rid] = (run, update)
                    if update.snapshot.state != "running":  # a stop or an end: no later step may follow
                        self._saved_at.pop(rid, None)
                    self.updates += 1
                    self._resolve(run)
                    try:
                        self.on_stored(run, update, done)
                    except Exception as e:  # live events are best effort
                        self.log.warning("after-store hook failed", run_id=rid, error=str(e))
                unsaved = self._unsaved.get(rid)
                if unsaved is not None and (self._flush or self._state_wait(rid) <= 0):
                    await self._store(run, state_of(unsaved[1]), state_subject(rid))
                    self._saved_at[rid] = time.monotonic()
                    if self._unsaved.get(rid) is unsaved:
                        del self._unsaved[rid]
                elif not run.parts:
                    break
        finally:
            self._tasks.pop(rid, None)
            if rid in self._unsaved and rid not in self._timers and not self._stopping:
                loop = asyncio.get_running_loop()
                self._timers[rid] = loop.call_later(self._state_wait(rid), self._state_due, run)

    def _next_send(self, run_id: str) -> float:
        """Monotonic time the run's next update may go: at once when its last went UPDATE_EVERY_S ago
        or more, else in the next slot of the run's own phase of that period. Runs deciding the same
        intents would otherwise store their updates back to back, and an intent arriving then would
        wait for all of them."""
        last = self._sent_at.get(run_id)
        if last is None or time.monotonic() - last >= UPDATE_EVERY_S:
            return 0.0
        phase = self._phases.setdefault(run_id, (len(self._phases) * 0.381966) % 1.0) * UPDATE_EVERY_S
        return math.ceil((last + UPDATE_EVERY_S - phase) / UPDATE_EVERY_S) * UPDATE_EVERY_S + phase

    def _state_wait(self, run_id: str) -> float:
        """Seconds until the run's snapshot may go to PAPERSTATE again."""
        return self._saved_at.get(run_id, -STATE_EVERY_S) + STATE_EVERY_S - time.monotonic()

    def _state_due(self, run: PaperRun) -> None:
        self._timers.pop(run.run_id, None)
        self.kick(run)

    async def _store(self, run: PaperRun, update: RunUpdate, subject: str) -> None:
        wait = 0.1
        data = run.encode(update)
        self.before_step()
        while True:
            try:
                await self.bus.publish_encoded(subject, data, update.id)
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
        self._flush = True  # every run's latest snapshot to PAPERSTATE now
        for timer in self._timers.values():
            timer.cancel()
        for rid, (unsaved_run, _) in list(self._unsaved.items()):
            if rid not in self._tasks:
                self._tasks[rid] = asyncio.create_task(self._send(unsaved_run), name=f"paper:store:{rid}")
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
