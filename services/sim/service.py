"""sim: the simulation workers. Each Monte Carlo run is one SimTask on the `sim.work` queue.

Every worker process (and every replica, on any machine) pulls from one durable consumer
(`sim-workers`) on the SIMWORK work-queue stream, so each task goes to exactly one worker and
more workers finish a job sooner. A process runs `MT_SIM_CONCURRENCY` runs at once (default:
its CPUs), each in a thread (the numba engine releases the GIL).

For a run it publishes `running`, throttled progress on core NATS (`sim.progress.<job_id>`),
then the results (SimResult, SimResultPart for a file too big for one message) and the
`completed` status with the run's metrics; the task is acked only after all of that is
stored in JetStream. An engine failure is final: `error` with the reason, acked, not retried
(the engine is deterministic, it would fail again). A failure to publish is retried
(`MAX_DELIVER` deliveries, then the task is dead-lettered and the job API marks it `error`).
Each PullConsumer slot pulls one task and holds at most one more, so a waiting task's ack
timer (`MT_SIM_ACK_WAIT_S`, default 15 min) covers at most two runs: long runs are never
redelivered mid-run, and a crashed worker's tasks come back after that wait.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from libs.bus import PullConsumer
from libs.ids import new_id, now_ns
from libs.sim.engine import run_task
from proto import streams, subjects
from proto.sim import SimState, SimStatus, SimTask
from services.runtime import Service
from services.sim.results import MAX_RESULT_BYTES, result_events

DURABLE = "sim-workers"
MAX_DELIVER = 3
PROGRESS_EVERY_S = 0.5
FINISHED_KEPT = 10_000


class SimWorkerService(Service):
    """Runs simulation tasks from the shared work queue, `concurrency` at a time."""

    name = "sim"

    async def start(self) -> None:
        settings = self.ctx.settings
        self.concurrency: int = settings.sim_concurrency or os.cpu_count() or 1
        self.ack_wait_s: float = settings.sim_ack_wait_s
        self.max_result_bytes = MAX_RESULT_BYTES
        self.finished: deque[tuple[str, str]] = deque(maxlen=FINISHED_KEPT)
        """(sim_id, final state) of the runs this worker finished last, oldest first."""
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sim-run")
        self.consumers: list[PullConsumer[SimTask]] = []
        for _ in range(self.concurrency):  # one slot each: a task is taken only when a slot is free
            consumer = PullConsumer(
                self.ctx.bus,
                stream=streams.SIMWORK.name,
                durable=DURABLE,
                filter_subjects=[subjects.SIM_WORK],
                kind=SimTask,
                handler=self.on_tasks,
                batch=1,
                max_deliver=MAX_DELIVER,
                ack_wait_s=self.ack_wait_s,
                nak_delay_s=2.0,
            )
            self.consumers.append(await consumer.start())
        self.log.info("sim workers ready", concurrency=self.concurrency, ack_wait_s=self.ack_wait_s)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.consumers))
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)

    async def on_tasks(self, tasks: list[SimTask]) -> None:
        """The PullConsumer handler: run each task; raises only when results could not be published."""
        for task in tasks:
            await self.run(task)

    async def run(self, task: SimTask) -> None:
        """One run: running, progress, results, completed (or error with the engine's reason)."""
        log = self.log.bind(job_id=task.job_id, sim_id=task.sim_id)
        await self.publish_status(task, "running")
        loop = asyncio.get_running_loop()
        progress = _Throttled(lambda p: self._progress(loop, task, p), PROGRESS_EVERY_S)
        started = time.monotonic()
        try:
            run = await loop.run_in_executor(self.pool, partial(run_task, task, progress))
            events = result_events(task, run.files, self.max_result_bytes)
            metrics = {str(k): float(v) for k, v in run.metrics.items()}
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            log.warning("sim run failed", error=reason)
            await self.publish_status(task, "error", error=reason)
            self.finished.append((task.sim_id, "error"))
            return
        for ev in events:
            await self.ctx.bus.publish(subjects.sim_job(task.job_id, "result"), ev)
        await self.publish_status(task, "completed", metrics=metrics, progress=1.0)
        self.finished.append((task.sim_id, "completed"))
        log.debug("sim run completed", seconds=round(time.monotonic() - started, 3), messages=len(events))

    async def publish_status(
        self,
        task: SimTask,
        state: SimState,
        error: str = "",
        metrics: dict[str, float] | None = None,
        progress: float = 0.0,
    ) -> None:
        status = SimStatus(
            id=new_id(),
            ts=now_ns(),
            job_id=task.job_id,
            sim_id=task.sim_id,
            state=state,
            error=error[:2000],
            metrics=metrics or {},
            progress=progress,
        )
        await self.ctx.bus.publish(subjects.sim_job(task.job_id, "status"), status)

    def _progress(self, loop: asyncio.AbstractEventLoop, task: SimTask, fraction: float) -> None:
        """From the engine's thread: publish the run's progress on core NATS (not stored)."""
        status = SimStatus(
            id=new_id(),
            ts=now_ns(),
            job_id=task.job_id,
            sim_id=task.sim_id,
            state="running",
            progress=min(max(float(fraction), 0.0), 1.0),
        )
        future = asyncio.run_coroutine_threadsafe(
            self.ctx.bus.publish_core(subjects.sim_progress(task.job_id), status), loop
        )
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # progress is best effort


class _Throttled:
    """Calls `publish(fraction)` at most once per `every_s` (thread-safe enough: one run, one thread)."""

    def __init__(self, publish: Callable[[float], None], every_s: float) -> None:
        self.publish = publish
        self.every_s = every_s
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.publish(fraction)


SERVICE = SimWorkerService
