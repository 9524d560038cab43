"""Simulation benchmarks: a full calibrated day on one core, Monte Carlo throughput on every
core, and the stylised facts of simulated days beside the real LOBSTER day's.

Peer figures (ABIDES RMSC04 full day on a 2-core machine, from the issue): 19-25 s wall,
about 0.5-0.64 million kernel messages, 26-40 k messages/s.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from libs.data.lobster import load_lobster
from libs.sim import abm
from libs.sim.algos import parse_algo
from libs.sim.calibration import calibrate
from libs.sim.engine import run_task, simulate_day
from libs.sim.scenarios import parse_scenario
from libs.sim.stats import STYLISED_FACTS
from proto.sim import Calibration, SimTask

ABIDES_DAY_S = (19.0, 25.0)
ABIDES_MSGS_PER_S = (26_000.0, 40_000.0)
AMZN = "lobster/AMZN_2012-06-21_L1_fullday"


def calibration(data_dir: Path) -> Calibration:
    return calibrate(load_lobster(data_dir / AMZN))


def twap_tasks(cal: Calibration, n_runs: int) -> list[SimTask]:
    """A 100-run style job: n baseline runs and n runs of one TWAP (each re-simulates its baseline)."""
    normal = parse_scenario("normal", None, cal.market)
    algo = parse_algo(
        {
            "type": "twap",
            "order_size": -50000,
            "horizon": "02:00:00",
            "start_time": "10:00:00",
            "frequency": "00:00:30",
        },
        cal.cal_date,
        cal.market,
    )
    tasks = [
        SimTask(job_id="bench", sim_id=f"b{i}", run=i, seed=i, calibration=cal, scenario=normal) for i in range(n_runs)
    ]
    tasks += [
        SimTask(job_id="bench", sim_id=f"a{i}", run=i, seed=i, calibration=cal, scenario=normal, algo=algo)
        for i in range(n_runs)
    ]
    return tasks


TWAP = {"type": "twap", "order_size": -50000, "horizon": "02:00:00", "start_time": "10:00:00", "frequency": "00:00:30"}


async def stack_job(home: Path, day: Path, n_runs: int = 100) -> tuple[float, float]:
    """A job of n_runs with one TWAP submitted through NATS to the job API, run by one sim
    worker process-worth of slots (one per core) on the work queue, every result stored by
    the recorder: seconds from submit until complete, and until every result is in ClickHouse."""
    from libs import config
    from libs.bus.admin import wait_idle
    from libs.client import MarketTwin
    from services.recorder.service import CONSUMERS
    from services.runtime import Stack

    settings = config.load({}, home=home, http_port=0)
    stack = await Stack.open(settings)
    try:
        for name in ("recorder", "simjobs", "sim"):
            await stack.start(name)
        mt = await asyncio.to_thread(MarketTwin, stack.nats_url)
        try:
            sim = mt.simulation
            cal = await asyncio.to_thread(sim.calibrate, day)
            t0 = time.perf_counter()
            job = await asyncio.to_thread(sim.run, cal["symbol"], cal["date"], n_runs, 42, "normal", None, [TWAP])
            status = await asyncio.to_thread(sim.wait, job["job_id"], None, 0.2, 600.0)
            done = time.perf_counter() - t0
            if status["status_summary"].get("completed", 0) != 2 * n_runs:
                raise RuntimeError(f"benchmark job did not complete: {status['status_summary']}")
            recorders = [(stream, durable) for durable, stream, _, _ in CONSUMERS]
            await wait_idle(stack.buses[0], recorders, timeout_s=600, quiet_s=0.1)
            return done, time.perf_counter() - t0
        finally:
            await asyncio.to_thread(mt.close)
    finally:
        await stack.close()


def run(data_dir: Path) -> list[tuple[str, float, str]]:
    """Every figure as (name, value, unit)."""
    out: list[tuple[str, float, str]] = []
    cal = calibration(data_dir)
    simulate_day(cal, 0)  # compile
    walls, events = [], []
    for seed in range(5):
        t0 = time.perf_counter()
        day = simulate_day(cal, seed)
        walls.append(time.perf_counter() - t0)
        events.append(
            int(day.counters[abm.C_EVENTS]) + int(day.counters[abm.C_LIMIT]) + int(day.counters[abm.C_CANCEL])
        )
    wall = float(np.median(walls))
    out.append(("sim.day_wall_s (RMSC04-sized population, 09:30-16:00, one core)", wall, "s"))
    out.append(("sim.day_kernel_messages", float(np.median(events)), "messages"))
    out.append(("sim.day_kernel_messages_per_s", float(np.median(events)) / wall, "messages/s"))
    out.append(("sim.peer.abides_rmsc04_day_s (low)", ABIDES_DAY_S[0], "s"))
    out.append(("sim.peer.abides_rmsc04_day_s (high)", ABIDES_DAY_S[1], "s"))
    out.append(("sim.speedup_vs_abides (low)", ABIDES_DAY_S[0] / wall, "x"))

    cores = os.cpu_count() or 1
    tasks = twap_tasks(cal, 100)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=cores) as pool:
        list(pool.map(run_task, tasks))
    elapsed = time.perf_counter() - t0
    out.append((f"sim.mc_job_100_runs_twap_s (in-process, {cores} threads)", elapsed, "s"))
    out.append((f"sim.mc_runs_per_min ({cores} cores)", len(tasks) / elapsed * 60.0, "runs/min"))
    with tempfile.TemporaryDirectory() as tmp:
        done, stored = asyncio.run(stack_job(Path(tmp), data_dir / AMZN))
    out.append(("sim.mc_job_100_runs_twap_via_nats_s (submit to complete)", done, "s"))
    out.append(("sim.mc_job_100_runs_twap_via_nats_stored_s (every result in ClickHouse)", stored, "s"))
    out.append(("sim.mc_job_runs_per_min_via_nats", 200 / done * 60.0, "runs/min"))

    facts = np.array(
        [[getattr(simulate_day(cal, 1000 + s).stats(), f) for f in STYLISED_FACTS] for s in range(20)], np.float64
    )
    mean = np.nanmean(facts, axis=0)
    for name, value in zip(STYLISED_FACTS, mean, strict=True):
        out.append((f"sim.stylised.{name} (simulated, mean of 20 seeds)", float(value), ""))
        out.append((f"sim.stylised.{name} (real AMZN 2012-06-21)", float(getattr(cal.stats, name)), ""))
    return out
