"""The demo: the embedded stack on the Fed replay and the synthetic market, then the report.

Also the end-to-end test's driver: it returns the Report it printed.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import streams
from services.recorder.service import CONSUMERS as RECORDER_CONSUMERS
from services.report.summary import Report, build
from services.runtime import Stack

UP_ORDER = ["recorder", "report", "paper", "detect", "ingest"]
RECORDERS = [(stream, durable) for durable, stream, _, _ in RECORDER_CONSUMERS]


class DrainTimeout(RuntimeError):
    """A consumer still had work after the drain's time limit: the report would be partial."""


async def drain(stack: Stack, consumers: list[tuple[str, str]] | None = None, timeout_s: float = 300.0) -> None:
    """Wait until detect, paper and the recorder have handled everything published so far.

    Detect evaluates inside its handler (before the ack), so once it is idle every intent
    it will make is in the INTENT stream; likewise paper for decisions and trades.
    """
    bus = stack.buses[0]
    stages = [[(streams.MD.name, "detect")], [(streams.INTENT.name, "paper")], RECORDERS]
    for stage in [consumers] if consumers else stages:
        if not await wait_idle(bus, stage, timeout_s=timeout_s):
            raise DrainTimeout(f"consumers {[d for _, d in stage]} still busy after {timeout_s:.0f}s")


async def run_demo(
    settings: Settings, synthetic_s: float = 15.0, replay_speed: float | None = None, synthetic_rate: float = 100.0
) -> Report:
    """Replay the Fed market, run the synthetic market for `synthetic_s`, stop the run, report."""
    settings = msgspec.structs.replace(settings, ingest_sources="", http_port=0)
    stack = await Stack.open(settings)
    try:
        for name in UP_ORDER:
            await stack.start(name)
        ingest = stack.running["ingest"]
        try:
            await ingest.run_replay(speed=replay_speed)  # type: ignore[attr-defined]
        except FileNotFoundError as e:  # a user's clone has no ../shared: show the synthetic market
            print(f"markettwin demo: skipping the Fed replay: {e}", file=sys.stderr, flush=True)
        if synthetic_s > 0:
            await ingest.run_synthetic(duration_s=synthetic_s, rate=synthetic_rate)  # type: ignore[attr-defined]
        await drain(stack)
        await stack.stop_service("paper")  # publishes the runs' final status
        await drain(stack, RECORDERS)
        return await asyncio.to_thread(build, stack.store)
    finally:
        await stack.close()
