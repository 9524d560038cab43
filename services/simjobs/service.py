"""simjobs: the simulation job API, request/reply on `svc.sim.<verb>` (queue group `simjobs`).

Verbs (JSON request bodies, or MessagePack with `Content-Type: application/msgpack`; JSON
replies except `sim_data`, which is Parquet):
`submit`, `job_status`, `jobs`, `job_results`, `sim_data`, `cached`, `symbols`, `calibrate`.
A failed request gets an ErrorReply (`{"error": ...}`) with the header `MT-Error: 1`, never
silence. A reply bigger than one NATS message goes out as several messages to the same
reply inbox, each with `MT-Part` / `MT-Parts` headers, which `libs.client` joins.

Statuses are kept in memory from the SIM subjects (core subscriptions on every replica), so
a job's status is right immediately after submit; jobs not in memory are read from
ClickHouse. Result data is always read from ClickHouse (the recorder stores it); a verb
asking for a run that finished but is not stored yet waits up to `STORE_WAIT_S` for it.

The API also closes what the workers cannot: a task dead-lettered after its deliveries
(`dlq.sim-workers`) or abandoned by crashing workers (JetStream's max-deliveries advisory)
is marked `error` with the reason, so no job waits forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg

from libs.ids import new_id, now_ns
from libs.sim.calibration import calibration_hash, check_calibration
from libs.sim.ids import BASELINE, parse_sim_id
from libs.sim.jobs import parse_request, plan_job
from libs.sim.sessions import session_minutes
from libs.store.tables import SIM_RESULT_FILES
from proto import codec, streams, subjects
from proto.events import DeadLetter
from proto.sim import (
    CachedGroup,
    CachedReply,
    Calibration,
    ErrorReply,
    JobResultsReply,
    JobsReply,
    JobStatusReply,
    JobSummary,
    SimCalibration,
    SimJob,
    SimStatus,
    SimSummary,
    SimTask,
    SubmitReply,
    SymbolInfo,
    SymbolsReply,
)
from services.runtime import Service
from services.simjobs import queries
from services.simjobs.state import JobBook, JobView, SimView

QUEUE = "simjobs"
WORKERS_DURABLE = "sim-workers"
STORE_WAIT_S = 10.0
PUBLISH_WINDOW = 256
REPLY_HEADROOM = 64 * 1024
MAX_ERRORS_LISTED = 100
MSGPACK = "application/msgpack"
"""A request body in MessagePack (the client sends calibrations so: JSON has no NaN)."""


class RequestError(ValueError):
    """A request that cannot be served as asked; its message goes back to the caller."""


def iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).isoformat()


def file_name(value: object) -> str:
    """`trades` from "trades" or "trades.parquet"; RequestError naming the known files."""
    name = value.removesuffix(".parquet") if isinstance(value, str) else ""
    if name not in SIM_RESULT_FILES:
        raise RequestError(f"unknown file {value!r}; files: {', '.join(f + '.parquet' for f in SIM_RESULT_FILES)}")
    return name


class SimJobsService(Service):
    """Validates and queues jobs, tracks their runs, serves their results."""

    name = "simjobs"
    uses_store = True

    async def start(self) -> None:
        self.book = JobBook()
        self.new_calibrations: dict[tuple[str, str, str], Calibration] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.verbs: dict[str, Callable[[Any], Awaitable[tuple[bytes, dict[str, str]]]]] = {
            "submit": self.submit,
            "job_status": self.job_status,
            "jobs": self.jobs,
            "job_results": self.job_results,
            "sim_data": self.sim_data,
            "cached": self.cached,
            "symbols": self.symbols,
            "calibrate": self.calibrate,
        }
        bus = self.ctx.bus
        self.subs = [
            await bus.nc.subscribe(subjects.SVC_SIM_ALL, queue=QUEUE, cb=self._on_request),
            await bus.subscribe(subjects.SIM_JOB_JOBS, SimJob, self._on_job),
            await bus.subscribe(subjects.SIM_JOB_STATUS, SimStatus, self._on_status),
            await bus.subscribe(subjects.SIM_PROGRESS_ALL, SimStatus, self._on_status),
            await bus.subscribe(subjects.SIM_CALIBRATION_ALL, SimCalibration, self._on_calibration),
            await bus.nc.subscribe(subjects.dlq(WORKERS_DURABLE), queue=QUEUE, cb=self._on_dead_letter),
            await bus.nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{streams.SIMWORK.name}.{WORKERS_DURABLE}",
                queue=QUEUE,
                cb=self._on_max_deliveries,
            ),
        ]

    async def stop(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    # -- the SIM subjects ---------------------------------------------------------------------

    async def _on_job(self, job: SimJob, _msg: Msg) -> None:
        self.book.add_job(job)

    async def _on_status(self, status: SimStatus, _msg: Msg) -> None:
        self.book.apply(status)

    async def _on_calibration(self, ev: SimCalibration, _msg: Msg) -> None:
        c = ev.calibration
        self.new_calibrations[(c.symbol, c.cal_date, c.cal_hash)] = c

    async def _on_dead_letter(self, msg: Msg) -> None:
        try:
            letter = codec.decode(msg.data, DeadLetter)  # type: ignore[type-var]
            task = codec.decode(letter.data, SimTask)  # type: ignore[type-var]
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.log.warning("undecodable sim dead letter", error=str(e))
            return
        await self._give_up(task, f"gave up after {letter.deliveries} deliveries: {letter.reason}")

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A task whose every delivery timed out (its workers died or hung): mark it error, drop it."""
        try:
            advisory = json.loads(msg.data)
            seq = int(advisory["stream_seq"])
            raw = await self.ctx.bus.js.get_msg(streams.SIMWORK.name, seq)
            task = codec.decode(raw.data or b"", SimTask)  # type: ignore[type-var]
        except Exception as e:
            self.log.warning("max-deliveries advisory not handled", error=str(e))
            return
        deliveries = advisory.get("deliveries", "?")
        await self._give_up(task, f"no worker finished it in {deliveries} deliveries (a worker died or hung each time)")
        try:
            await self.ctx.bus.js.delete_msg(streams.SIMWORK.name, seq)
        except Exception as e:
            self.log.warning("could not drop the abandoned task", seq=seq, error=str(e))

    async def _give_up(self, task: SimTask, reason: str) -> None:
        self.log.warning("sim task given up", job_id=task.job_id, sim_id=task.sim_id, reason=reason)
        await self._publish_status(task.job_id, task.sim_id, "error", error=reason)

    async def _publish_status(self, job_id: str, sim_id: str, state: Any, error: str = "") -> SimStatus:
        status = SimStatus(id=new_id(), ts=now_ns(), job_id=job_id, sim_id=sim_id, state=state, error=error[:2000])
        self.book.apply(status)
        await self.ctx.bus.publish(subjects.sim_job(job_id, "status"), status)
        return status

    # -- request/reply ------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._serve(msg))  # one slow query must not hold up the others
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        started = time.monotonic()
        try:
            handler = self.verbs.get(verb)
            if handler is None:
                raise RequestError(f"unknown verb {verb!r}; verbs: {', '.join(self.verbs)}")
            msgpack = (msg.headers or {}).get("Content-Type") == MSGPACK
            body = (msgspec.msgpack.decode if msgpack else msgspec.json.decode)(msg.data) if msg.data else {}
            if not isinstance(body, dict):
                raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
            data, headers = await handler(body)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as e:
            data, headers = msgspec.json.encode(ErrorReply(error=str(e), verb=verb)), {"MT-Error": "1"}
        except Exception as e:
            self.log.exception("sim request failed", verb=verb, error=str(e))
            reply = ErrorReply(error=f"internal error: {type(e).__name__}: {e}", verb=verb)
            data, headers = msgspec.json.encode(reply), {"MT-Error": "1"}
        if msg.reply:
            await self._reply(msg.reply, data, headers)
        self.log.debug("sim request", verb=verb, ms=round((time.monotonic() - started) * 1e3, 2), bytes=len(data))

    async def _reply(self, inbox: str, data: bytes, headers: dict[str, str]) -> None:
        """Send a reply, in several messages (MT-Part i of MT-Parts n) when it exceeds max_payload."""
        nc = self.ctx.bus.nc
        size = max(nc.max_payload - REPLY_HEADROOM, 1024)
        n = max(1, -(-len(data) // size))
        for i in range(n):
            part = {**headers, "MT-Part": str(i), "MT-Parts": str(n)}
            await nc.publish(inbox, data[i * size : (i + 1) * size], headers=part)

    @staticmethod
    def _json(value: msgspec.Struct) -> tuple[bytes, dict[str, str]]:
        return msgspec.json.encode(value), {"Content-Type": "application/json"}

    # -- verbs --------------------------------------------------------------------------------

    async def calibrations(self) -> list[Calibration]:
        """Stored calibrations and those published since this replica started."""
        stored = await asyncio.to_thread(queries.calibrations, self.store)
        merged = {(c.symbol, c.cal_date, c.cal_hash): c for c in stored}
        for key, c in self.new_calibrations.items():
            if key not in merged or merged[key].created_at < c.created_at:
                merged[key] = c
        return list(merged.values())

    async def submit(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Validate the whole job, record it and its queued runs, queue one task per run."""
        req = parse_request(body)
        plan = plan_job(req, await self.calibrations(), job_id=new_id())
        job = SimJob(
            id=new_id(),
            ts=now_ns(),
            job_id=plan.job_id,
            symbol=req.symbol,
            cal_date=req.cal_date,
            n_runs=req.n_runs,
            seed=req.seed,
            scenario=plan.scenario.name,
            request=msgspec.json.encode(req).decode(),
            sim_ids=plan.sim_ids,
            cached=req.cached,
        )
        self.book.add_job(job)
        queued = [SimStatus(id=new_id(), ts=job.ts, job_id=job.job_id, sim_id=s, state="queued") for s in plan.sim_ids]
        for status in queued:
            self.book.apply(status)
        bus = self.ctx.bus
        await bus.publish(subjects.sim_job(job.job_id, "job"), job)
        await bus.publish_many((subjects.sim_job(job.job_id, "status"), s) for s in queued)
        sent = 0
        try:
            for i in range(0, len(plan.tasks), PUBLISH_WINDOW):
                window = plan.tasks[i : i + PUBLISH_WINDOW]
                await asyncio.gather(
                    *(
                        bus.js.publish(
                            subjects.SIM_WORK, codec.encode(t), headers={"Nats-Msg-Id": f"{job.job_id}:{i + k}"}
                        )
                        for k, t in enumerate(window)
                    )
                )
                sent = i + len(window)
        except Exception as e:
            reason = f"not queued: {type(e).__name__}: {e}"
            for t in plan.tasks[sent:]:
                await self._publish_status(job.job_id, t.sim_id, "error", error=reason)
            raise RequestError(f"job {job.job_id}: {sent} of {len(plan.tasks)} runs queued, then {reason}") from e
        self.log.info("job queued", job_id=job.job_id, sims=len(plan.sim_ids), symbol=req.symbol)
        return self._json(SubmitReply(job_id=job.job_id, queued_sim_ids=plan.sim_ids, total_simulations=len(queued)))

    async def view(self, job_id: object) -> JobView:
        """A job with its sims' latest states: from memory, completed from ClickHouse when needed."""
        if not isinstance(job_id, str) or not job_id:
            raise RequestError(f"job_id must be a non-empty string, got {job_id!r}")
        view = self.book.view(job_id)
        if view is not None and view.job is not None:
            return view
        job = await asyncio.to_thread(queries.job, self.store, job_id)
        if job is None:
            raise RequestError(f"unknown job id {job_id!r}")
        rows = await asyncio.to_thread(queries.statuses, self.store, job_id)
        view = self.book.add_job(job)
        for r in rows:
            JobBook.apply_to(
                view, r["sim_id"], SimView(state=r["state"], version=int(r["version"]), error=r["error"] or "")
            )
        return view

    async def job_status(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        view = await self.view(body.get("job_id"))
        assert view.job is not None
        errors = {s: view.state_of(s).error for s in view.sim_ids if view.state_of(s).state == "error"}
        return self._json(
            JobStatusReply(
                job_id=view.job.job_id,
                total_simulations=len(view.sim_ids),
                status_summary=view.summary(),
                is_complete=view.is_complete(),
                progress=round(view.progress(), 6),
                errors=dict(list(errors.items())[:MAX_ERRORS_LISTED]),
            )
        )

    async def jobs(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        limit = body.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise RequestError(f"limit must be a positive integer, got {limit!r}")
        total, stored = await asyncio.to_thread(queries.jobs, self.store, limit)
        known = {j.job_id for j in stored}
        recent = [v.job for v in self.book.jobs.values() if v.job is not None and v.job.job_id not in known]
        if recent:  # submitted but not yet stored: count them too
            ids = [j.job_id for j in recent]
            stored_ids = await asyncio.to_thread(self._stored_job_ids, ids)
            total += sum(1 for j in ids if j not in stored_ids)
        every = sorted([*stored, *recent], key=lambda j: j.ts, reverse=True)[:limit]
        summaries = [
            JobSummary(
                job_id=j.job_id,
                created_at=iso(j.ts),
                symbol=j.symbol,
                cal_date=j.cal_date,
                scenario=j.scenario,
                n_runs=j.n_runs,
                seed=j.seed,
                cached=j.cached,
                sim_ids=j.sim_ids,
            )
            for j in every
        ]
        return self._json(JobsReply(total=total, jobs=summaries))

    def _stored_job_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for part in queries.chunks(ids):
            sql = f"SELECT DISTINCT job_id FROM {{db}}.sim_jobs WHERE job_id IN {queries.lits(part)}"
            found.update(self.store.query_arrow(sql)["job_id"].to_pylist())
        return found

    async def _wait_stored(self, job_ids: list[str], sim_ids: set[str]) -> set[str]:
        """Sims among `sim_ids` stored as completed, waiting up to STORE_WAIT_S for the recorder."""
        deadline = time.monotonic() + STORE_WAIT_S
        while True:
            stored = await asyncio.to_thread(queries.completed_sims, self.store, job_ids)
            if sim_ids <= stored or time.monotonic() > deadline:
                return stored & sim_ids
            await asyncio.sleep(0.2)

    async def job_results(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Every sim of a job: status, stored files and metrics (finished runs wait for the recorder)."""
        view = await self.view(body.get("job_id"))
        assert view.job is not None
        ids = view.sim_ids
        done = {s for s in ids if view.state_of(s).state == "completed"}
        stored = await self._wait_stored([view.job.job_id], done)
        files = await asyncio.to_thread(queries.stored_files, self.store, sorted(stored))
        need_metrics = [s for s in done if not view.state_of(s).metrics]
        stored_metrics = await asyncio.to_thread(queries.metrics, self.store, need_metrics)
        sims = []
        for s in ids:
            v = view.state_of(s)
            sims.append(
                SimSummary(
                    sim_id=s,
                    status=v.state,  # type: ignore[arg-type]
                    available_files=[f"{f}.parquet" for f in files.get(s, [])],
                    metrics=v.metrics or stored_metrics.get(s, {}),
                    error=v.error,
                )
            )
        return self._json(
            JobResultsReply(job_id=view.job.job_id, total_simulations=len(ids), completed=len(done), simulations=sims)
        )

    async def sim_data(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """One file of one sim as Parquet (default `trades`)."""
        sim_id = body.get("sim_id")
        try:
            parse_sim_id(sim_id)  # type: ignore[arg-type]
        except ValueError as e:
            raise RequestError(str(e)) from None
        assert isinstance(sim_id, str)
        file = file_name(body.get("file", "trades"))
        rows = await asyncio.to_thread(queries.file_rows, self.store, sim_id, file)
        if rows is None:
            rows = await self._await_file(sim_id, file)
        table = await asyncio.to_thread(queries.file_table, self.store, sim_id, file)
        if file != "metrics" and table.num_rows != rows:
            raise RequestError(f"sim {sim_id} {file}: {table.num_rows} rows stored, {rows} expected; try again")
        data = await asyncio.to_thread(queries.parquet_bytes, table)
        return data, {"Content-Type": "application/vnd.apache.parquet", "MT-Rows": str(table.num_rows)}

    async def _await_file(self, sim_id: str, file: str) -> int:
        """A file not stored (yet): wait for a finished run's results, or say why there are none."""
        states = [v.state_of(sim_id) for v in self.book.jobs_of_sim(sim_id)]
        if not any(s.state == "completed" for s in states):
            stored = await asyncio.to_thread(queries.sim_states, self.store, sim_id)
            states += [SimView(state=r["state"], version=int(r["version"]), error=r["error"] or "") for r in stored]
        if not states:
            raise RequestError(f"unknown sim id {sim_id!r}: no job has run it")
        if not any(s.state == "completed" for s in states):
            best = max(states, key=lambda s: s.version)
            if best.state == "error":
                raise RequestError(f"sim {sim_id} failed, it has no data: {best.error}")
            raise RequestError(f"sim {sim_id} is {best.state}; its data is there once it has completed")
        deadline = time.monotonic() + STORE_WAIT_S
        while time.monotonic() < deadline:
            rows = await asyncio.to_thread(queries.file_rows, self.store, sim_id, file)
            if rows is not None:
                return rows
            await asyncio.sleep(0.2)
        have = (await asyncio.to_thread(queries.stored_files, self.store, [sim_id])).get(sim_id, [])
        if have:
            raise RequestError(
                f"sim {sim_id} has no file {file!r}; available: {', '.join(f + '.parquet' for f in have)}"
            )
        raise RequestError(f"sim {sim_id} completed but its results are not stored yet (is the recorder running?)")

    async def cached(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The pre-run baseline set: completed baseline runs of cached jobs by symbol, date, scenario."""
        symbol, scenario = body.get("symbol"), body.get("scenario")
        _, stored = await asyncio.to_thread(queries.jobs, self.store, 100_000, True)
        jobs = {j.job_id: j for j in stored}
        for v in self.book.jobs.values():
            if v.job is not None and v.job.cached:
                jobs.setdefault(v.job.job_id, v.job)
        jobs = {
            k: j
            for k, j in jobs.items()
            if (symbol is None or j.symbol == symbol) and (scenario is None or j.scenario == scenario)
        }
        done = await asyncio.to_thread(queries.completed_sims, self.store, list(jobs))
        for job_id in jobs:
            view = self.book.view(job_id)
            if view is not None:
                done |= {s for s, v in view.sims.items() if v.state == "completed"}
        groups: dict[tuple[str, str, str], set[str]] = {}
        for j in jobs.values():
            baseline = {s for s in j.sim_ids if s in done and parse_sim_id(s).algo == BASELINE}
            groups.setdefault((j.symbol, j.cal_date, j.scenario), set()).update(baseline)
        out = [
            CachedGroup(
                symbol=sym, date=date, scenario=scen, n_runs=len(ids), example_sim_id=min(ids), sim_ids=sorted(ids)
            )
            for (sym, date, scen), ids in sorted(groups.items())
            if ids
        ]
        return self._json(CachedReply(total=len(out), simulations=out))

    async def symbols(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Complete calibrations (stage model_calibration): the (symbol, date) pairs jobs can use."""
        newest: dict[tuple[str, str], Calibration] = {}
        for c in await self.calibrations():
            if c.status == "complete" and c.stage == "model_calibration":
                key = (c.symbol, c.cal_date)
                if key not in newest or newest[key].created_at < c.created_at:
                    newest[key] = c
        infos = [_symbol_info(c) for _, c in sorted(newest.items())]
        return self._json(SymbolsReply(total=len(infos), symbols=infos))

    async def calibrate(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Accept a Calibration computed by a client: check its hash, publish it for jobs and the recorder."""
        if "calibration" not in body:
            raise RequestError("calibrate needs {'calibration': {...}} (libs.sim.calibration.calibrate's output)")
        try:
            cal = msgspec.convert(body["calibration"], Calibration)
        except msgspec.ValidationError as e:
            raise RequestError(f"calibration: {e}") from None
        expected = calibration_hash(cal)
        if cal.cal_hash != expected:
            raise RequestError(f"calibration cal_hash {cal.cal_hash!r} does not match its contents ({expected!r})")
        try:
            check_calibration(cal)
        except ValueError as e:
            raise RequestError(str(e)) from None
        minutes = len(session_minutes(cal.market))
        for name in ("volume_profile", "activity_profile"):
            n = len(getattr(cal, name))
            if n != minutes:
                raise RequestError(f"calibration {name} has {n} entries; a {cal.market} session has {minutes} minutes")
        self.new_calibrations[(cal.symbol, cal.cal_date, cal.cal_hash)] = cal
        await self.ctx.bus.publish(
            subjects.sim_calibration(cal.cal_hash), SimCalibration(id=new_id(), ts=now_ns(), calibration=cal)
        )
        return self._json(_symbol_info(cal))


def _symbol_info(c: Calibration) -> SymbolInfo:
    return SymbolInfo(
        symbol=c.symbol,
        date=c.cal_date,
        market=c.market,
        cal_hash=c.cal_hash,
        status=c.status,
        stage=c.stage,
        source=c.source,
        created_at=iso(c.created_at),
    )


SERVICE = SimJobsService
