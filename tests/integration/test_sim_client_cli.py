"""The Python client and `markettwin sim ...` against a real stack (nats-server, chDB, sim services)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import polars as pl
import pytest

from libs.bus import LocalNatsServer, free_port
from libs.client import MarketTwin, SimulationError
from libs.config import Settings
from services.runtime import Stack
from tests.conftest import needs_data

EXE = [sys.executable, "-m", "services.cli", "sim"]
TWAP = {"type": "twap", "order_size": 3000, "horizon": "01:00:00", "start_time": "10:00:00", "frequency": "00:01:00"}


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    s = await Stack.open(msgspec.structs.replace(settings, sim_concurrency=2))
    try:
        for name in ("recorder", "simjobs", "sim"):
            await s.start(name)
        yield s
    finally:
        await s.close()


async def cli(nats_url: str | None, *args: str) -> tuple[int, str, str]:
    """Run `markettwin sim ARGS` in a subprocess (the services keep running on this loop)."""
    env = dict(os.environ)
    env.pop("NATS_URL", None)
    if nats_url:
        env["NATS_URL"] = nats_url
    proc = await asyncio.create_subprocess_exec(
        *EXE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_the_client_needs_a_reachable_nats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    with pytest.raises(ValueError, match="set NATS_URL"):
        MarketTwin()
    with pytest.raises(SimulationError, match=r"cannot connect to NATS at nats://127\.0\.0\.1:"):
        MarketTwin(f"nats://127.0.0.1:{free_port()}", timeout_s=2)


def test_without_the_job_api_a_call_says_what_to_start(tmp_path: Path) -> None:
    with (
        LocalNatsServer(tmp_path / "nats") as nats,
        MarketTwin(nats.url) as mt,
        pytest.raises(SimulationError, match=r"nothing answers on svc\.sim\.symbols.*markettwin run simjobs"),
    ):
        mt.simulation.get_available_symbols()
    with pytest.raises(SimulationError, match="closed"):
        mt.simulation.get_available_symbols()


async def test_cli_calibrates_runs_waits_and_downloads(stack: Stack, tmp_path: Path) -> None:
    amzn = needs_data("lobster", "AMZN_2012-06-21_L1_fullday")
    url = stack.nats_url
    rc, out, err = await cli(url, "calibrate", str(amzn))
    assert rc == 0, err
    cal = json.loads(out)
    assert (cal["symbol"], cal["date"], cal["market"], cal["status"]) == ("AMZN", "2012-06-21", "XNYS", "complete")
    rc, out, err = await cli(url, "symbols")
    assert rc == 0, err
    assert [(s["symbol"], s["date"], s["cal_hash"]) for s in json.loads(out)["symbols"]] == [
        ("AMZN", "2012-06-21", cal["cal_hash"])
    ]

    algo_file = tmp_path / "twap.json"
    algo_file.write_text(json.dumps([TWAP]))
    rc, out, err = await cli(
        url, "run", "--symbol", "AMZN", "--cal-date", "2012-06-21", "--n-runs", "1", "--seed", "3",
        "--scenario", "flash_crash", "--param", "impact_multiplier=2", "--param", "start_time=11:30:00",
        "--algo", str(algo_file), "--wait",
    )  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    job_id = lines[0].split()[1].rstrip(":")
    assert lines[0] == f"job {job_id}: 2 simulations queued"
    assert lines[1] == f"job {job_id}: 2/2 completed"
    sims = [line.split() for line in lines[2:]]
    assert [s[0] for s in sims] == ["completed", "completed"]
    baseline_id, algo_id = sims[0][1], sims[1][1]
    assert ":flash_crash_" in baseline_id and ":baseline:0000" in baseline_id and ":twap_" in algo_id
    assert "100.0%  2/2 done" in err  # the progress bar ended full

    with MarketTwin(url) as mt:
        results = await asyncio.to_thread(mt.simulation.get_job_results, job_id)
        assert [s["sim_id"] for s in results["simulations"]] == [baseline_id, algo_id]
        metrics = results["simulations"][1]["metrics"]
        assert f"algo.fill_ratio={metrics['algo.fill_ratio']:.6g}" in out
        assert f"market.n_trades={metrics['market.n_trades']:.6g}" in out
        served = await asyncio.to_thread(mt.simulation.get_sim_data, algo_id, "l1")

    rc, out, err = await cli(url, "data", algo_id, "--file", "l1.parquet", "--out", str(tmp_path / "l1.parquet"))
    assert rc == 0, err
    assert out.startswith("23400 rows x 5 columns (ts, bid_px, bid_sz, ask_px, ask_sz)")
    assert pl.read_parquet(tmp_path / "l1.parquet").equals(served)

    rc, out, err = await cli(url, "status", job_id)
    assert rc == 0, err
    assert json.loads(out)["is_complete"] is True
    rc, out, err = await cli(url, "jobs")
    assert rc == 0 and job_id in out and "flash_crash" in out
    rc, out, err = await cli(url, "results", job_id)
    assert rc == 0 and f"job {job_id}: 2/2 completed" in out

    rc, out, err = await cli(url, "warm-cache", "--n-runs", "1", "--wait")
    assert rc == 0, err
    assert out.count("(cached)") == 0 and "2 cached jobs complete" in out
    rc, out, err = await cli(url, "cached", "--scenario", "flash_crash")
    assert rc == 0, err
    cached = json.loads(out)
    assert cached["total"] == 1
    [group] = cached["simulations"]
    assert (group["symbol"], group["date"], group["scenario"], group["n_runs"]) == (
        "AMZN",
        "2012-06-21",
        "flash_crash",
        1,
    )
    assert group["example_sim_id"].endswith(":baseline:0000") and ":flash_crash_" in group["example_sim_id"]
    assert group["example_sim_id"] != baseline_id  # the job above used other parameters: not part of the cache
    with MarketTwin(url) as mt:
        listing = await asyncio.to_thread(mt.simulation.list_cached, symbol="AMZN")
        assert sorted(g["scenario"] for g in listing["simulations"]) == ["flash_crash", "normal"]
        assert (await asyncio.to_thread(mt.simulation.list_cached, symbol="700.HK"))["total"] == 0
        frame = await asyncio.to_thread(mt.simulation.get_sim_data, group["example_sim_id"], "mid_price_by_min.parquet")
        assert frame.columns == ["ts", "mid", "volume", "n_trades"] and frame.height == 390


async def test_cli_errors_are_named(stack: Stack) -> None:
    url = stack.nats_url
    rc, _, err = await cli(url, "run", "--symbol", "NOPE", "--cal-date", "2012-06-21")
    assert rc == 2 and "markettwin: error: unknown symbol 'NOPE'" in err and "Traceback" not in err
    rc, _, err = await cli(url, "run", "--symbol", "AMZN", "--cal-date", "2012-06-21", "--param", "oops")
    assert rc == 2 and "--param 'oops' must be KEY=VALUE" in err
    rc, _, err = await cli(url, "run", "--symbol", "AMZN", "--cal-date", "2012-06-21", "--algo", "{twap")
    assert rc == 2 and "--algo '{twap' is neither a JSON object nor a file" in err
    rc, _, err = await cli(url, "data", "AMZN:bad", "--out", "/tmp/x.parquet")
    assert rc == 2 and "malformed sim id 'AMZN:bad'" in err
    rc, _, err = await cli(None, "status", "JOB")
    assert rc == 2 and "markettwin sim needs NATS_URL" in err
