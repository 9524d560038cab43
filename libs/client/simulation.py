"""`MarketTwin(...).simulation`: submit Monte Carlo jobs, follow them, fetch their results.

Call names, parameters and reply keys follow the hosted simulation API (`run`, `get_job_status`,
`get_jobs`, `get_job_results`, `get_sim_data`, `list_cached`, `get_available_symbols`); replies
are plain dicts, data Polars DataFrames. The server's refusals raise SimulationError with its
message. A metric that is NaN travels as JSON null and comes back as float("nan").
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from libs.client.connection import Connection
from libs.client.errors import SimulationError
from libs.client.serialise import algo_config, plain
from proto import subjects

SERVICE = "sim"
SUBMIT_TIMEOUT_S = 120.0
"""Submitting queues every run before the reply: a 50,000-run job takes a while."""


class Simulation:
    """The simulation verbs over NATS request/reply (`svc.sim.<verb>`)."""

    def __init__(self, conn: Connection, timeout_s: float = 30.0) -> None:
        self._conn = conn
        self.timeout_s = timeout_s

    def _call(
        self, verb: str, body: Mapping[str, Any] | bytes, timeout_s: float | None = None, msgpack: bool = False
    ) -> tuple[dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        headers = {"Content-Type": "application/msgpack" if msgpack else "application/json"}
        got_headers, reply = self._conn.request(
            subjects.svc(SERVICE, verb), data, headers=headers, timeout_s=timeout_s or self.timeout_s
        )
        if got_headers.get("MT-Error"):
            try:
                message = msgspec.json.decode(reply)["error"]
            except Exception:
                message = reply.decode(errors="replace")
            raise SimulationError(message)
        return got_headers, reply

    def _json(self, verb: str, body: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        _, reply = self._call(verb, body, timeout_s)
        return msgspec.json.decode(reply)

    def run(
        self,
        symbol: str,
        cal_date: str,
        n_runs: int = 100,
        seed: int = 42,
        scenario: str = "normal",
        scenario_params: Mapping[str, Any] | None = None,
        exec_algos: Sequence[Mapping[str, Any]] | None = None,
        cached: bool = False,
    ) -> dict[str, Any]:
        """Submit a job; returns {job_id, queued_sim_ids, total_simulations} once every run is queued.

        sim ids are ordered baseline[0:n_runs], then each algo's n_runs. A css algo's `orders`
        may be a pandas Series indexed by datetimes, a polars DataFrame, a dict or pairs.
        """
        body: dict[str, Any] = {
            "symbol": symbol,
            "cal_date": plain(cal_date),
            "n_runs": plain(n_runs),
            "seed": plain(seed),
            "scenario": scenario,
        }
        if scenario_params:
            body["scenario_params"] = plain(dict(scenario_params))
        if exec_algos:
            if isinstance(exec_algos, Mapping):
                raise SimulationError("exec_algos must be a list of algo configs (dicts), not one dict")
            body["exec_algos"] = [algo_config(a) for a in exec_algos]
        if cached:
            body["cached"] = True
        return self._json("submit", body, SUBMIT_TIMEOUT_S)

    def get_job_status(self, job_id: str) -> dict[str, Any]:
        """{job_id, total_simulations, status_summary, is_complete, progress, errors}."""
        return self._json("job_status", {"job_id": job_id})

    def get_jobs(self, limit: int = 100) -> dict[str, Any]:
        """{total, jobs: [{job_id, sim_ids, created_at, symbol, cal_date, scenario, ...}]}, newest first."""
        return self._json("jobs", {"limit": limit})

    def get_job_results(self, job_id: str) -> dict[str, Any]:
        """{job_id, total_simulations, completed, simulations: [{sim_id, status, available_files, metrics, error}]}."""
        out = self._json("job_results", {"job_id": job_id}, timeout_s=max(self.timeout_s, 60.0))
        for sim in out.get("simulations", []):
            sim["metrics"] = {k: math.nan if v is None else v for k, v in sim.get("metrics", {}).items()}
        return out

    def get_sim_data(self, sim_id: str, file: str = "trades") -> pl.DataFrame:
        """One output file of one sim ("trades", "mid_price_by_min", "l1", "algo_fills", "metrics";
        the ".parquet" suffix is optional) as a Polars DataFrame."""
        _, data = self._call("sim_data", {"sim_id": sim_id, "file": file}, timeout_s=max(self.timeout_s, 60.0))
        return pl.read_parquet(io.BytesIO(data))

    def list_cached(self, symbol: str | None = None, scenario: str | None = None) -> dict[str, Any]:
        """{total, simulations: [{symbol, date, scenario, n_runs, example_sim_id, sim_ids}]}."""
        body = {k: v for k, v in (("symbol", symbol), ("scenario", scenario)) if v is not None}
        return self._json("cached", body)

    def get_available_symbols(self) -> dict[str, Any]:
        """{total, symbols: [{symbol, date, market, cal_hash, status, stage, ...}]}: complete calibrations."""
        return self._json("symbols", {})

    def wait(
        self,
        job_id: str,
        progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until every run finished; `progress(status)` gets each status. Returns the last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.get_job_status(job_id)
            if progress is not None:
                progress(status)
            if status["is_complete"]:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise SimulationError(f"job {job_id} not complete after {timeout_s:.0f} s: {status['status_summary']}")
            time.sleep(poll_s)

    def calibrate(
        self, path: str | Path, symbol: str | None = None, market: str | None = None, tick: int = 100
    ) -> dict[str, Any]:
        """Calibrate the model on a LOBSTER day here, then publish it for jobs (and ClickHouse).

        `symbol` stores the calibration under another name (the file's symbol by default);
        `market` must fit the data (the file's trading hours). Returns the calibration's
        {symbol, date, market, cal_hash, status, stage, source, created_at}.
        """
        from libs.data.lobster import load_lobster
        from libs.sim.calibration import calibrate, calibration_hash

        cal = calibrate(load_lobster(path), market=market, tick=tick)  # type: ignore[arg-type]
        if symbol is not None and symbol != cal.symbol:
            if not isinstance(symbol, str) or not symbol.strip() or ":" in symbol:
                raise SimulationError(f"symbol must be a non-empty string without ':', got {symbol!r}")
            cal = msgspec.structs.replace(cal, symbol=symbol.strip())
            cal = msgspec.structs.replace(cal, cal_hash=calibration_hash(cal))
        body = msgspec.msgpack.encode({"calibration": cal})
        _, reply = self._call("calibrate", body, msgpack=True)
        return msgspec.json.decode(reply)
