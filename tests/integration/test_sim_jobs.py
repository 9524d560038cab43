"""Simulation jobs on the real stack: nats-server, chDB, the sim workers, the job API, the recorder.

Calibrated on the real AMZN LOBSTER day; jobs are kept small (1-2 runs of a full simulated day,
a fraction of a second each once numba's cache is warm). The client is synchronous, so the
tests call it in a thread while the services run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest

from libs.bus import Bus
from libs.bus.admin import wait_idle
from libs.client import MarketTwin, SimulationError
from libs.config import Settings
from libs.data.lobster import load_lobster
from libs.sim.calibration import calibrate, calibration_hash
from libs.sim.engine import run_task
from libs.sim.jobs import parse_request, plan_job
from libs.sim.sessions import session_seconds
from proto import codec, streams, subjects
from proto.sim import Calibration, SimCalibration, SimResult, SimResultPart, SimStatus
from services.recorder.service import CONSUMERS
from services.runtime import ServiceContext, Stack, service_class
from services.sim.service import SimWorkerService
from services.simjobs.queries import lit  # a literal, not a parameter: see the chDB note there
from tests.conftest import needs_data

AMZN = ("lobster", "AMZN_2012-06-21_L1_fullday")
TWAP = {"type": "twap", "order_size": 3000, "horizon": "01:00:00", "start_time": "10:00:00", "frequency": "00:01:00"}
FILES = ["mid_price_by_min", "trades", "algo_fills", "l1", "metrics"]
RECORDERS = [(stream, durable) for durable, stream, _, _ in CONSUMERS]


@pytest.fixture(scope="module")
def amzn_path() -> Path:
    return needs_data(*AMZN)


@pytest.fixture(scope="module")
def amzn_cal(amzn_path: Path) -> Calibration:
    return calibrate(load_lobster(amzn_path))


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    s = await Stack.open(msgspec.structs.replace(settings, sim_concurrency=2))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[MarketTwin]:
    mt = await asyncio.to_thread(MarketTwin, stack.nats_url)
    try:
        yield mt
    finally:
        await asyncio.to_thread(mt.close)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous client call off the event loop the services run on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def stream_events(bus: Bus, subject: str, kind: Any) -> list[Any]:
    """Every message stored in the SIM stream on `subject`, decoded, in stream order."""
    info = await bus.js.stream_info(streams.SIM.name, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    sub = await bus.js.pull_subscribe(subject, stream=streams.SIM.name)
    out: list[Any] = []
    try:
        while len(out) < count:
            for msg in await sub.fetch(count - len(out), timeout=5):
                out.append(codec.decode(msg.data, kind))
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return out


def files_of(results: list[SimResult | SimResultPart]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """sim id -> file -> column -> array, joined from the result messages (parts in row order)."""
    pieces: dict[str, dict[str, list[tuple[int, dict[str, np.ndarray]]]]] = defaultdict(lambda: defaultdict(list))
    for ev in results:
        if isinstance(ev, SimResult):
            for f, cols in ev.files.items():
                arrays = {c: np.frombuffer(b, ev.dtypes[f][c]) for c, b in cols.items()}
                pieces[ev.sim_id][f].append((0, arrays))
        else:
            pieces[ev.sim_id][ev.file].append(
                (ev.row0, {c: np.frombuffer(b, ev.dtypes[c]) for c, b in ev.columns.items()})
            )
    return {
        sim: {
            f: {c: np.concatenate([p[c] for _, p in sorted(parts, key=lambda x: x[0])]) for c in parts[0][1]}
            for f, parts in files.items()
        }
        for sim, files in pieces.items()
    }


def as_engine_columns(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """A served file's columns as the engine's arrays (ts back to UTC ns)."""
    return {c: frame[c].cast(pl.Int64).to_numpy() if c == "ts" else frame[c].to_numpy() for c in frame.columns}


async def start_api_and_calibrate(stack: Stack, client: MarketTwin, amzn_path: Path) -> dict[str, Any]:
    await stack.start("simjobs")
    return await call(client.simulation.calibrate, amzn_path)


async def test_a_job_is_queued_run_stored_and_served(stack: Stack, client: MarketTwin, amzn_path: Path) -> None:
    sim = client.simulation
    info = await start_api_and_calibrate(stack, client, amzn_path)
    assert (info["symbol"], info["date"], info["status"], info["stage"]) == (
        "AMZN",
        "2012-06-21",
        "complete",
        "model_calibration",
    )
    assert (await call(sim.get_available_symbols))["symbols"] == [info]
    bus = await stack.connect("observer")
    seen: dict[str, list[str]] = defaultdict(list)

    async def on_status(status: SimStatus, _msg: object) -> None:
        seen[status.sim_id].append(status.state)

    await bus.subscribe(subjects.SIM_JOB_STATUS, SimStatus, on_status)
    progress: dict[str, list[float]] = defaultdict(list)

    async def on_progress(status: SimStatus, _msg: object) -> None:
        progress[status.sim_id].append(status.progress)

    await bus.subscribe(subjects.SIM_PROGRESS_ALL, SimStatus, on_progress)

    job = await call(sim.run, "AMZN", "2012-06-21", n_runs=2, exec_algos=[TWAP])
    ids = job["queued_sim_ids"]
    assert job["total_simulations"] == len(ids) == 4
    assert [i.split(":")[6] for i in ids][:2] == ["baseline", "baseline"] and ids[2].split(":")[6].startswith("twap_")
    # no worker and no recorder yet: the status is the API's own memory, right away
    status = await call(sim.get_job_status, job["job_id"])
    assert status["status_summary"] == {"queued": 4, "running": 0, "completed": 0, "error": 0}
    assert status["is_complete"] is False
    assert stack.store.table_counts()["sim_jobs"] == 0
    listed = await call(sim.get_jobs)
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]] and listed["jobs"][0]["sim_ids"] == ids

    await stack.start("recorder")
    await stack.start("sim")
    done = await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=240)
    assert done["status_summary"] == {"queued": 0, "running": 0, "completed": 4, "error": 0}
    assert done["is_complete"] and done["progress"] == 1.0
    for sim_id in ids:
        assert seen[sim_id] == ["queued", "running", "completed"], sim_id
        assert progress[sim_id] and all(0 < p <= 1 for p in progress[sim_id]), sim_id  # live, not stored

    results = await call(sim.get_job_results, job["job_id"])
    assert results["completed"] == results["total_simulations"] == 4
    by_id = {s["sim_id"]: s for s in results["simulations"]}
    assert list(by_id) == ids
    for sim_id, s in by_id.items():
        assert s["status"] == "completed"
        assert sorted(s["available_files"]) == sorted(f"{f}.parquet" for f in FILES)
        assert s["metrics"]["market.n_trades"] > 0
        assert any(k.startswith("algo.") for k in s["metrics"]) == (":twap_" in sim_id)

    # what the API serves is what the worker published, bit for bit, and what the recorder stored
    published = files_of(await stream_events(bus, subjects.sim_job(job["job_id"], "result"), SimResult))
    algo_id = ids[2]
    for file in ("trades", "mid_price_by_min", "l1", "algo_fills"):
        frame = await call(sim.get_sim_data, algo_id, file)
        expected = published[algo_id][file]
        assert frame.columns == list(expected), file
        got = as_engine_columns(frame)
        for col, values in expected.items():
            assert np.array_equal(got[col], values, equal_nan=True), (file, col)
    stored = stack.store.query_df(
        f"SELECT count() AS n, sum(qty) AS q FROM {{db}}.sim_trades FINAL WHERE sim_id = {lit(algo_id)}"
    ).row(0)
    trades = await call(sim.get_sim_data, algo_id)  # the default file is trades
    assert stored == (trades.height, trades["qty"].sum())
    assert trades.schema["ts"] == pl.Datetime("ns", "UTC")
    # independent facts of the output: one L1 row per second of the session, one mid per minute
    assert (await call(sim.get_sim_data, algo_id, "l1.parquet")).height == int(session_seconds("XNYS"))
    assert (await call(sim.get_sim_data, algo_id, "mid_price_by_min.parquet")).height == 390
    fills = await call(sim.get_sim_data, algo_id, "algo_fills")
    assert fills.height == trades["is_algo"].sum() == by_id[algo_id]["metrics"]["algo.n_fills"]
    assert fills["qty"].sum() == by_id[algo_id]["metrics"]["algo.filled_qty"] <= TWAP["order_size"]
    metrics = await call(sim.get_sim_data, algo_id, "metrics")
    assert metrics.height == 1 and metrics.row(0, named=True) == pytest.approx(by_id[algo_id]["metrics"], nan_ok=True)
    assert (await call(sim.get_sim_data, ids[0], "algo_fills")).height == 0  # a baseline sends no algo orders


async def test_the_same_request_twice_gives_bit_identical_results(
    stack: Stack, client: MarketTwin, amzn_path: Path
) -> None:
    sim = client.simulation
    await start_api_and_calibrate(stack, client, amzn_path)
    for name in ("recorder", "sim"):
        await stack.start(name)
    first = await call(sim.run, "AMZN", "2012-06-21", n_runs=1, seed=7, exec_algos=[TWAP])
    second = await call(sim.run, "AMZN", "2012-06-21", n_runs=1, seed=7, exec_algos=[TWAP])
    other = await call(sim.run, "AMZN", "2012-06-21", n_runs=1, seed=8)
    assert first["queued_sim_ids"] == second["queued_sim_ids"] and first["job_id"] != second["job_id"]
    for job in (first, second, other):
        await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=240)
    bus = await stack.connect("observer")
    a, b, c = [
        files_of(await stream_events(bus, subjects.sim_job(j["job_id"], "result"), SimResult))
        for j in (first, second, other)
    ]
    assert a.keys() == b.keys() == set(first["queued_sim_ids"])
    for sim_id in a:
        for file, cols in a[sim_id].items():
            for col, values in cols.items():
                other_values = b[sim_id][file][col]
                assert values.tobytes() == other_values.tobytes(), (sim_id, file, col)
    # another seed is another market
    [baseline] = c.values()
    assert baseline["trades"]["price"].tobytes() != a[first["queued_sim_ids"][0]]["trades"]["price"].tobytes()
    # the baseline's and the twap run's markets share their random numbers: same opening quotes
    base_id, algo_id = first["queued_sim_ids"]
    assert np.array_equal(a[base_id]["l1"]["bid_px"][:100], a[algo_id]["l1"]["bid_px"][:100])


async def test_two_worker_services_share_the_queue(stack: Stack, client: MarketTwin, amzn_path: Path) -> None:
    sim = client.simulation
    await start_api_and_calibrate(stack, client, amzn_path)
    workers: list[SimWorkerService] = []
    for i in range(2):  # two worker processes' worth: each its own connection, one slot each
        ctx = ServiceContext(
            settings=msgspec.structs.replace(stack.settings, sim_concurrency=1),
            bus=await stack.connect(f"sim-{i}"),
            store=None,
            log=stack_log(f"sim-{i}"),
        )
        worker = service_class("sim")(ctx)
        await worker.start()
        workers.append(worker)  # type: ignore[arg-type]
    try:
        job = await call(sim.run, "AMZN", "2012-06-21", n_runs=6)
        await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=240)
        ran = [sim_id for w in workers for sim_id, state in w.finished if state == "completed"]
        assert sorted(ran) == sorted(job["queued_sim_ids"])  # each run once, none twice
        assert all(w.finished for w in workers), [len(w.finished) for w in workers]
        bus = stack.buses[0]
        info = await bus.js.stream_info(streams.SIMWORK.name)
        assert info.state.messages == 0  # work queue: acked tasks are gone
    finally:
        for w in workers:
            await w.stop()


def stack_log(name: str) -> Any:
    import structlog

    return structlog.get_logger().bind(service=name)


async def test_a_bad_submit_is_refused_clearly_and_queues_nothing(
    stack: Stack, client: MarketTwin, amzn_path: Path
) -> None:
    sim = client.simulation
    await start_api_and_calibrate(stack, client, amzn_path)
    cases = [
        (dict(symbol="MSFT", cal_date="2012-06-21"), "unknown symbol 'MSFT'; known: AMZN"),
        (dict(symbol="AMZN", cal_date="2012-06-22"), "calibrated dates for AMZN: 2012-06-21"),
        (dict(symbol="AMZN", cal_date="2012-06-21", n_runs=0), "n_runs must be an integer from 1 to 10,000"),
        (dict(symbol="AMZN", cal_date="2012-06-21", scenario="meltdown"), "unknown scenario 'meltdown'"),
        (
            dict(symbol="AMZN", cal_date="2012-06-21", exec_algos=[TWAP, TWAP | {"frequency": "soon"}]),
            "exec_algos[1]: frequency 'soon' is not a duration",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(SimulationError) as info:
            await call(sim.run, **kwargs)
        assert message in str(info.value), kwargs
    bus = stack.buses[0]
    assert (await bus.js.stream_info(streams.SIMWORK.name)).state.messages == 0
    sim_state = await bus.js.stream_info(streams.SIM.name, subjects_filter=subjects.SIM_JOB_ALL)
    assert sim_state.state.subjects in (None, {})  # no job, no status was recorded
    for fn, args, message in [
        (sim.get_job_status, ("NOPE",), "unknown job id 'NOPE'"),
        (sim.get_job_results, ("NOPE",), "unknown job id 'NOPE'"),
        (sim.get_sim_data, ("not-a-sim-id",), "malformed sim id 'not-a-sim-id'"),
        (
            sim.get_sim_data,
            ("AMZN:2012-06-21:59b83736:0930-1600:27e66528:normal_0219cc5e:baseline:0000",),
            "no job has run it",
        ),
    ]:
        with pytest.raises(SimulationError) as info:
            await call(fn, *args)
        assert message in str(info.value)


async def test_an_engine_failure_ends_as_error_with_the_reason(
    stack: Stack, client: MarketTwin, amzn_cal: Calibration
) -> None:
    sim = client.simulation
    for name in ("simjobs", "recorder", "sim"):
        await stack.start(name)
    # a calibration whose volume profile does not fit the session: the API refuses it...
    bad = msgspec.structs.replace(amzn_cal, volume_profile=[1.0])
    bad = msgspec.structs.replace(bad, cal_hash=calibration_hash(bad))
    with pytest.raises(SimulationError, match="volume_profile has 1 entries; a XNYS session has 390 minutes"):
        await call(sim._call, "calibrate", msgspec.msgpack.encode({"calibration": bad}), msgpack=True)
    # ...but one published straight on the SIM subject reaches jobs, and the vwap runs fail in the engine
    bus = await stack.connect("rogue")
    await bus.publish(subjects.sim_calibration(bad.cal_hash), SimCalibration(id="c1", ts=1, calibration=bad))
    await asyncio.sleep(0.3)
    vwap = {"type": "vwap", "order_size": 3000, "horizon": "01:00:00", "frequency": "00:01:00"}
    job = await call(sim.run, "AMZN", "2012-06-21", n_runs=1, exec_algos=[vwap])
    status = await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=240)
    baseline, algo = job["queued_sim_ids"]
    assert status["status_summary"] == {"queued": 0, "running": 0, "completed": 1, "error": 1}
    assert status["is_complete"]
    assert status["errors"] == {algo: "ValueError: volume_profile has 1 entries; a XNYS session has 390 minutes"}
    results = {s["sim_id"]: s for s in (await call(sim.get_job_results, job["job_id"]))["simulations"]}
    assert results[algo]["status"] == "error" and "volume_profile" in results[algo]["error"]
    assert results[algo]["available_files"] == []
    assert results[baseline]["status"] == "completed"
    with pytest.raises(SimulationError, match="failed, it has no data: ValueError: volume_profile"):
        await call(sim.get_sim_data, algo)
    assert await wait_idle(bus, RECORDERS, timeout_s=30)
    stored = stack.store.query_df(f"SELECT state, error FROM {{db}}.sim_status FINAL WHERE sim_id = {lit(algo)}").rows()
    assert stored == [("error", status["errors"][algo])]


async def test_a_task_every_worker_abandons_ends_as_error(stack: Stack, client: MarketTwin, amzn_path: Path) -> None:
    sim = client.simulation
    await start_api_and_calibrate(stack, client, amzn_path)
    stack.settings = msgspec.structs.replace(stack.settings, sim_ack_wait_s=1.0)
    await stack.start("sim")  # creates the shared durable (ack_wait 1 s, 3 deliveries) ...
    await stack.stop_service("sim")  # ... and goes away: from now on "workers" take tasks and die
    job = await call(sim.run, "AMZN", "2012-06-21", n_runs=1)
    bus = await stack.connect("dying-worker")
    sub = await bus.js.pull_subscribe_bind(durable="sim-workers", stream=streams.SIMWORK.name)

    async def take_and_die() -> None:  # takes the task and never acks: a worker crashing mid-run, every time
        while True:
            with contextlib.suppress(TimeoutError):
                await sub.fetch(1, timeout=2)

    dying = asyncio.create_task(take_and_die())
    try:
        status = await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=60)
    finally:
        dying.cancel()
    [sim_id] = job["queued_sim_ids"]
    assert status["status_summary"]["error"] == 1
    assert "no worker finished it in 3 deliveries" in status["errors"][sim_id]
    assert (await bus.js.stream_info(streams.SIMWORK.name)).state.messages == 0


async def test_results_too_big_for_one_message_travel_in_parts(
    stack: Stack, client: MarketTwin, amzn_path: Path, amzn_cal: Calibration
) -> None:
    sim = client.simulation
    await start_api_and_calibrate(stack, client, amzn_path)
    await stack.start("recorder")
    worker = await stack.start("sim")
    worker.max_result_bytes = 256 * 1024  # type: ignore[attr-defined]  # trades and l1 (~1 MB each) must split
    job = await call(sim.run, "AMZN", "2012-06-21", n_runs=1, exec_algos=[TWAP])
    await call(sim.wait, job["job_id"], poll_s=0.2, timeout_s=240)
    bus = stack.buses[0]
    parts = await stream_events(bus, subjects.sim_job(job["job_id"], "result"), SimResult | SimResultPart)
    assert {p.file for p in parts if isinstance(p, SimResultPart)} >= {"trades", "l1"}
    # the served files equal a fresh engine run of the same task (the ids say it is the same run)
    plan = plan_job(parse_request({"symbol": "AMZN", "cal_date": "2012-06-21", "n_runs": 1, "exec_algos": [TWAP]}),
                    [amzn_cal], "local")  # fmt: skip
    assert plan.sim_ids == job["queued_sim_ids"]
    task = plan.tasks[1]
    fresh = await asyncio.to_thread(run_task, task)
    for file in ("trades", "l1", "algo_fills", "mid_price_by_min"):
        got = as_engine_columns(await call(sim.get_sim_data, task.sim_id, file))
        for col, values in fresh.files[file].items():
            assert np.array_equal(got[col], values, equal_nan=True), (file, col)
    results = await call(sim.get_job_results, job["job_id"])
    assert all(len(s["available_files"]) == 5 for s in results["simulations"])
