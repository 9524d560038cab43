"""The demo: the embedded stack on the Fed replay and the synthetic market, then the report;
then a Monte Carlo job on the simulator calibrated to the real AMZN day (a flash crash, with
a TWAP and a VWAP sell measured against the baseline), through the job API and the workers.

Also the end-to-end tests' driver: it returns the Report it printed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import streams
from services.recorder.service import CONSUMERS as RECORDER_CONSUMERS
from services.report.summary import Report, build
from services.runtime import Stack

UP_ORDER = ["recorder", "report", "paper", "detect", "ingest"]
SIM_ORDER = ["simjobs", "sim"]
SIM_DEMO_ALGOS = [
    {"type": "twap", "order_size": -20000, "horizon": "01:00:00", "start_time": "10:30:00", "frequency": "00:00:30"},
    {"type": "vwap", "order_size": -20000, "horizon": "01:00:00", "start_time": "10:30:00", "frequency": "00:00:30"},
]
"""Sell 20,000 AMZN (about 2.5% of the day's volume) over an hour, evenly and by volume."""
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
    settings: Settings,
    synthetic_s: float = 15.0,
    replay_speed: float | None = None,
    synthetic_rate: float = 100.0,
    sim_runs: int = 0,
    on_report: Callable[[Report], None] | None = None,
) -> Report:
    """Replay the Fed market, run the synthetic market for `synthetic_s`, stop the run, report;
    then, with `sim_runs` > 0, print the simulation job's summary."""
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
        report = await asyncio.to_thread(build, stack.store)
        if on_report is not None:
            on_report(report)
        if sim_runs > 0:
            for name in SIM_ORDER:
                await stack.start(name)
            print(await asyncio.to_thread(simulation_demo, stack.nats_url, sim_runs), flush=True)
        return report
    finally:
        await stack.close()


def simulation_demo(nats_url: str, n_runs: int) -> str:
    """Calibrate on the AMZN day, run a flash-crash job with two algos, summarise it."""
    from libs.client import MarketTwin
    from libs.data.lobster import load_lobster
    from libs.data.paths import AMZN_DAY, data_dir
    from libs.sim.calibration import calibrate
    from libs.sim.summary import render_job

    path = data_dir() / AMZN_DAY
    if not path.exists():
        return f"simulation: skipped, no LOBSTER day at {path} (set MT_DATA_DIR)"
    real = calibrate(load_lobster(path)).stats
    with MarketTwin(nats_url) as mt:
        sim = mt.simulation
        cal = sim.calibrate(path)
        job = sim.run(cal["symbol"], cal["date"], n_runs=n_runs, scenario="flash_crash", exec_algos=SIM_DEMO_ALGOS)
        sim.wait(job["job_id"], timeout_s=600)
        title = f"simulation: {cal['symbol']} {cal['date']} (calibration {cal['cal_hash']}), flash_crash at 11:00"
        return title + "\n" + render_job(sim.get_job_results(job["job_id"]), real)
