"""What the job API reads from ClickHouse: calibrations, jobs, statuses, stored result files.

Plain functions over a Store (sync; the service calls them in a thread). Tables are read
with FINAL: every sim table is a ReplacingMergeTree whose key collapses redelivered rows.

Values go into the SQL as escaped literals, not as `{name:Type}` parameters: chDB (4.4) runs a
parameterised query holding the GIL while it waits for its connection, and the recorder's
`INSERT ... FROM Python(...)` in another thread needs the GIL to finish: the process deadlocks.
"""

from __future__ import annotations

import io
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from libs.store import Store
from libs.store.sql import quote_string
from libs.store.tables import SIM_FILE_COLUMNS, SIM_FILE_TABLE
from proto.sim import Calibration, SimJob

_cal_decoder = msgspec.msgpack.Decoder(Calibration)


def lit(value: str) -> str:
    """A string as an escaped SQL literal."""
    return quote_string(str(value))


def lits(values: list[str]) -> str:
    """Strings as an SQL array literal."""
    return "[" + ", ".join(quote_string(str(v)) for v in values) + "]"


IN_CHUNK = 1_000
"""Ids per `IN [...]` literal: ~100 KB of SQL, under ClickHouse's max_query_size (256 KiB)."""


def chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]


def calibrations(store: Store) -> list[Calibration]:
    """Every stored calibration (all stages and statuses); read as hex, the bytes are not UTF-8."""
    rows = store.query_arrow("SELECT hex(calibration) AS hex FROM {db}.sim_calibrations FINAL")
    return [_cal_decoder.decode(bytes.fromhex(h)) for h in rows["hex"].to_pylist()]


def job(store: Store, job_id: str) -> SimJob | None:
    """A stored job, or None."""
    rows = store.query_arrow(
        "SELECT job_id, toUnixTimestamp64Nano(ts) AS ts, symbol, toString(cal_date) AS cal_date, n_runs, seed, "
        f"scenario, cached, request, sim_ids FROM {{db}}.sim_jobs FINAL WHERE job_id = {lit(job_id)}"
    ).to_pylist()
    return _job(rows[0]) if rows else None


def jobs(store: Store, limit: int, cached_only: bool = False) -> tuple[int, list[SimJob]]:
    """(how many jobs are stored, the newest `limit` of them)."""
    where = " WHERE cached = 1" if cached_only else ""
    total = store.query_arrow(f"SELECT count() AS n FROM {{db}}.sim_jobs FINAL{where}")["n"][0].as_py()
    rows = store.query_arrow(
        "SELECT job_id, toUnixTimestamp64Nano(ts) AS ts, symbol, toString(cal_date) AS cal_date, n_runs, seed, "
        f"scenario, cached, request, sim_ids FROM {{db}}.sim_jobs FINAL{where} ORDER BY ts DESC LIMIT {int(limit)}"
    ).to_pylist()
    return int(total), [_job(r) for r in rows]


def _job(r: dict[str, Any]) -> SimJob:
    return SimJob(
        id=f"stored:{r['job_id']}",
        ts=int(r["ts"]),
        job_id=r["job_id"],
        symbol=r["symbol"],
        cal_date=r["cal_date"],
        n_runs=int(r["n_runs"]),
        seed=int(r["seed"]),
        scenario=r["scenario"],
        request=r["request"],
        sim_ids=list(r["sim_ids"]),
        cached=bool(r["cached"]),
    )


def statuses(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The latest stored state of each sim of a job: sim_id, state, version, error."""
    return store.query_arrow(
        f"SELECT sim_id, state, version, error FROM {{db}}.sim_status FINAL WHERE job_id = {lit(job_id)}"
    ).to_pylist()


def completed_sims(store: Store, job_ids: list[str]) -> set[str]:
    """Sims stored as completed in any of these jobs (a stored `completed` implies stored results)."""
    out: set[str] = set()
    for part in chunks(job_ids):
        rows = store.query_arrow(
            f"SELECT DISTINCT sim_id FROM {{db}}.sim_status FINAL WHERE job_id IN {lits(part)} AND state = 'completed'"
        )
        out.update(rows["sim_id"].to_pylist())
    return out


def sim_states(store: Store, sim_id: str) -> list[dict[str, Any]]:
    """The stored state of a sim in every job that ran it."""
    return store.query_arrow(
        f"SELECT job_id, state, version, error FROM {{db}}.sim_status FINAL WHERE sim_id = {lit(sim_id)}"
    ).to_pylist()


def stored_files(store: Store, sim_ids: list[str]) -> dict[str, list[str]]:
    """sim id -> the files stored whole (every part present), in the engine's order."""
    rows = [
        r
        for part in chunks(sim_ids)
        for r in store.query_arrow(
            "SELECT sim_id, file, uniqExact(part) AS parts, max(n_parts) AS n_parts, min(ts) AS t0 "
            f"FROM {{db}}.sim_files FINAL WHERE sim_id IN {lits(part)} "
            "GROUP BY sim_id, file ORDER BY sim_id, t0, file"
        ).to_pylist()
    ]
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["parts"] == r["n_parts"]:
            out.setdefault(r["sim_id"], []).append(r["file"])
    return out


def file_rows(store: Store, sim_id: str, file: str) -> int | None:
    """Rows of a stored file, or None when the file (or one of its parts) is not stored."""
    rows = store.query_arrow(
        "SELECT uniqExact(part) AS parts, max(n_parts) AS n_parts, sum(n_rows) AS n FROM {db}.sim_files FINAL "
        f"WHERE sim_id = {lit(sim_id)} AND file = {lit(file)}"
    ).to_pylist()
    if not rows or rows[0]["parts"] == 0 or rows[0]["parts"] != rows[0]["n_parts"]:
        return None
    return int(rows[0]["n"])


def metrics(store: Store, sim_ids: list[str]) -> dict[str, dict[str, float]]:
    """sim id -> metrics (in the engine's order) for the sims that have them stored."""
    rows = [
        r
        for part in chunks(sim_ids)
        for r in store.query_arrow(
            f"SELECT sim_id, name, value FROM {{db}}.sim_metrics FINAL WHERE sim_id IN {lits(part)} "
            "ORDER BY sim_id, pos"
        ).to_pylist()
    ]
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["sim_id"], {})[r["name"]] = r["value"]
    return out


def file_table(store: Store, sim_id: str, file: str) -> pa.Table:
    """One result file of one sim, columns as the engine named them (`ts` as a UTC time)."""
    if file == "metrics":
        rows = store.query_arrow(
            f"SELECT name, value FROM {{db}}.sim_metrics FINAL WHERE sim_id = {lit(sim_id)} ORDER BY pos"
        ).to_pylist()
        return pa.table({r["name"]: pa.array([r["value"]], pa.float64()) for r in rows})
    cols = ", ".join(SIM_FILE_COLUMNS[file])
    return store.query_arrow(
        f"SELECT {cols} FROM {{db}}.{SIM_FILE_TABLE[file]} FINAL WHERE sim_id = {lit(sim_id)} ORDER BY row"
    )


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as Parquet (zstd)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
