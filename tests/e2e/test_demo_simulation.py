"""The demo's simulation part end to end: calibrate, submit, workers, recorder, summary."""

from __future__ import annotations

import asyncio

import msgspec

from libs.bus.admin import wait_idle
from libs.config import Settings
from libs.sim.ids import parse_sim_id
from services.demo import RECORDERS, SIM_ORDER, simulation_demo
from services.runtime import Stack
from tests.conftest import needs_data


async def test_the_demo_job_runs_and_summarises_every_group(settings: Settings) -> None:
    needs_data("lobster", "AMZN_2012-06-21_L1_fullday")
    stack = await Stack.open(msgspec.structs.replace(settings, sim_concurrency=2))
    try:
        for name in ["recorder", *SIM_ORDER]:
            await stack.start(name)
        text = await asyncio.to_thread(simulation_demo, stack.nats_url, 2)
        assert await wait_idle(stack.buses[0], RECORDERS, timeout_s=60)
        stored = stack.store.query_df(
            "SELECT sim_id, state FROM {db}.sim_status FINAL WHERE sim_id != '' ORDER BY sim_id"
        )
    finally:
        await stack.close()
    lines = text.splitlines()
    titles = [i for i, ln in enumerate(lines) if ln.startswith("simulation: AMZN 2012-06-21 (calibration ")]
    assert len(titles) == 2 and "a normal day" in lines[titles[0]] and "flash_crash" in lines[titles[1]]
    normal, crash = lines[titles[0] : titles[1]], lines[titles[1] :]
    assert "6/6 runs completed" in normal[1] and "2/2 runs completed" in crash[1]
    by_scenario: dict[str, set[str]] = {}
    for sim_id in stored["sim_id"].to_list():
        parts = parse_sim_id(sim_id)
        by_scenario.setdefault(parts.scenario, set()).add(parts.algo)
    assert by_scenario["flash_crash"] == {"baseline"}
    algos = by_scenario["normal"]
    assert len(algos) == 3 and "baseline" in algos
    assert set(stored["state"].to_list()) == {"completed"}
    for algo in algos:  # a market row for each group, an execution row for each algo
        rows = [ln for ln in normal if ln.strip().startswith(algo)]
        assert len(rows) == (1 if algo == "baseline" else 2), (algo, rows)
    # the calibration's verdict is shown for the normal days only
    assert any(ln.strip().startswith("corr_volume_abs_return") for ln in normal)
    assert not any(ln.strip().startswith("spread_ticks_mean") for ln in crash)
