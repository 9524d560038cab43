"""The demo: the embedded stack on the Fed replay and the synthetic market, then the report;
then market data (LOBSTER and Bitstamp replays, a Heston generator, the OHLCV bar manager on
real bars and its HTTP API); then Monte Carlo jobs on the simulator calibrated to the real AMZN day (a normal day with a
TWAP and a VWAP sell measured against the baseline, and a flash crash), through the job API
and the workers.

Also the end-to-end tests' driver: it returns the Report it printed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import msgspec

from libs.bus import free_port
from libs.bus.admin import wait_idle
from libs.config import Settings
from proto import codec, streams, subjects
from proto.paper import PaperReply, StopRun
from services.demo_md import market_data_demo
from services.demo_paper import PaperDemo
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
    stages = [
        [(streams.MD.name, "detect")],
        [(streams.INTENT.name, "paper-intents"), (streams.OPP.name, "paper-opps")],
        RECORDERS,
    ]
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
    market_data: bool = False,
) -> Report:
    """Start a user's paper runs over the HTTP API, replay the Fed market, run the synthetic market
    for `synthetic_s`, stop the runs, report (and print the paper-trading part, `demo_paper`);
    with `market_data`, print the market-data part (`demo_md`); with `sim_runs` > 0, print the
    simulation job's summary."""
    port = free_port()
    settings = msgspec.structs.replace(settings, ingest_sources="", http_port=port, http_host="127.0.0.1")
    stack = await Stack.open(settings)
    try:
        for name in UP_ORDER:
            await stack.start(name)
        ingest = stack.running["ingest"]
        paper = PaperDemo(settings, port)
        await paper.open()
        try:
            await ingest.run_replay(speed=replay_speed)  # type: ignore[attr-defined]
        except FileNotFoundError as e:  # a user's clone has no ../shared: show the synthetic market
            print(f"markettwin demo: skipping the Fed replay: {e}", file=sys.stderr, flush=True)
        if synthetic_s > 0:
            await ingest.run_synthetic(duration_s=synthetic_s, rate=synthetic_rate)  # type: ignore[attr-defined]
        await drain(stack)
        paper_lines = await paper.close()  # reads the runs back over HTTP and stops them
        await stop_default_run(stack)
        await drain(stack, RECORDERS)
        report = await asyncio.to_thread(build, stack.store)
        if on_report is not None:
            on_report(report)
        print(paper_lines, flush=True)
        if market_data:
            await stack.stop_service("detect")  # the prediction-market pipeline is done; these are other venues
            print(await market_data_demo(stack, port), flush=True)
        if sim_runs > 0:
            for name in SIM_ORDER:
                await stack.start(name)
            print(await asyncio.to_thread(simulation_demo, stack.nats_url, sim_runs), flush=True)
        return report
    finally:
        await stack.close()


async def stop_default_run(stack: Stack) -> None:
    """Stop the built-in `default` user's run (MT_PAPER_DEFAULT_RUN), as a user would stop theirs."""
    bus = stack.buses[0]
    msg = await bus.nc.request(subjects.svc("paper", "stop"), codec.encode(StopRun(user_id="default")), timeout=30)
    reply = codec.decode(msg.data, PaperReply)
    if reply.status >= 400 and reply.status != 404:  # 404: MT_PAPER_DEFAULT_RUN is off
        raise RuntimeError(f"demo: stopping the default run: {reply.status} {reply.detail}")


def simulation_demo(nats_url: str, n_runs: int) -> str:
    """Calibrate on the AMZN day; run a normal-day job with two algos (and the calibration's
    verdict on the simulated days) and a flash-crash job; summarise both."""
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
        normal = sim.run(cal["symbol"], cal["date"], n_runs=n_runs, scenario="normal", exec_algos=SIM_DEMO_ALGOS)
        crash = sim.run(cal["symbol"], cal["date"], n_runs=n_runs, scenario="flash_crash")
        for job in (normal, crash):
            sim.wait(job["job_id"], timeout_s=600)
        title = f"simulation: {cal['symbol']} {cal['date']} (calibration {cal['cal_hash']})"
        return "\n".join(
            [
                f"{title}, a normal day; TWAP and VWAP sell 20,000 shares 10:30-11:30",
                render_job(sim.get_job_results(normal["job_id"]), real),
                f"{title}, flash_crash at 11:00 (15x the resting bid liquidity in 30 s)",
                render_job(sim.get_job_results(crash["job_id"])),
            ]
        )
