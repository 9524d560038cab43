"""Simulation jobs: a request checked whole, then expanded into one SimTask per Monte Carlo run.

Nothing is queued unless everything is valid: `parse_request` checks the request's shape
and types, `plan_job` the symbol and date (against the complete calibrations), the scenario
and every algo, and names every problem it finds in one ValueError. The tasks come out in the
order of the hosted API's sim ids: baseline runs 0..n-1, then algo 0's runs, algo 1's, ...
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import msgspec

from libs.sim.algos import parse_algo
from libs.sim.ids import BASELINE, MAX_RUN, SimIdParts, format_sim_id, run_seed, sim_hash
from libs.sim.scenarios import parse_scenario, scenario_hash
from libs.sim.sessions import session_label
from proto.sim import AlgoSpec, Calibration, ScenarioSpec, SimJobRequest, SimTask

DEFAULT_RUNS = 100
DEFAULT_SEED = 42
MAX_RUNS = MAX_RUN + 1
"""10,000 runs per (job, algo): run indices are 4 digits in sim ids."""
MAX_SEED = 2**63 - 1
MAX_SIMS_PER_JOB = 50_000
"""n_runs x (1 + algos): a job's SimJob event lists every sim id and must fit one NATS message."""
REQUEST_KEYS = tuple(SimJobRequest.__struct_fields__)


class JobPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A validated job: the calibration it runs on, its scenario and algos, and every task."""

    job_id: str
    request: SimJobRequest
    calibration: Calibration
    scenario: ScenarioSpec
    algos: list[AlgoSpec]
    sim_ids: list[str]
    tasks: list[SimTask]


def parse_request(body: Mapping[str, Any]) -> SimJobRequest:
    """A SimJobRequest from a decoded JSON body; ValueError naming every bad or unknown field."""
    if not isinstance(body, Mapping):
        raise ValueError(f"a job request must be a JSON object, got {type(body).__name__}")
    errors: list[str] = []
    unknown = sorted(str(k) for k in body if k not in REQUEST_KEYS)
    if unknown:
        errors.append(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(REQUEST_KEYS)}")
    for key in ("symbol", "cal_date"):
        if key not in body:
            errors.append(f"{key} is required")
    symbol = body.get("symbol", "")
    if "symbol" in body and (not isinstance(symbol, str) or not symbol.strip() or ":" in symbol):
        errors.append(f"symbol must be a non-empty string without ':', got {symbol!r}")
    cal_date = body.get("cal_date", "")
    if "cal_date" in body and not _is_date(cal_date):
        errors.append(f"cal_date must be a YYYY-MM-DD date, got {cal_date!r}")
    n_runs = body.get("n_runs", DEFAULT_RUNS)
    if not _is_int(n_runs) or not 1 <= n_runs <= MAX_RUNS:
        errors.append(f"n_runs must be an integer from 1 to {MAX_RUNS:,}, got {n_runs!r}")
    seed = body.get("seed", DEFAULT_SEED)
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        errors.append(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    scenario = body.get("scenario", "normal")
    if not isinstance(scenario, str):
        errors.append(f"scenario must be a string, got {type(scenario).__name__} {scenario!r}")
    params = body.get("scenario_params", {})
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        errors.append(f"scenario_params must be an object, got {type(params).__name__}")
    algos = body.get("exec_algos", [])
    algos = [] if algos is None else algos
    if not isinstance(algos, list):
        errors.append(f"exec_algos must be a list of algo configs, got {type(algos).__name__}")
    cached = body.get("cached", False)
    if not isinstance(cached, bool):
        errors.append(f"cached must be true or false, got {cached!r}")
    if errors:
        raise ValueError("; ".join(errors))
    return SimJobRequest(
        symbol=symbol.strip(),
        cal_date=cal_date,
        n_runs=int(n_runs),
        seed=int(seed),
        scenario=scenario,
        scenario_params=dict(params),
        exec_algos=list(algos),
        cached=cached,
    )


def pick_calibration(symbol: str, cal_date: str, calibrations: Iterable[Calibration]) -> Calibration:
    """The newest complete calibration of (symbol, cal_date); ValueError listing what exists instead."""
    usable = [c for c in calibrations if c.status == "complete" and c.stage == "model_calibration"]
    of_symbol = [c for c in usable if c.symbol == symbol]
    if not of_symbol:
        known = sorted({c.symbol for c in usable})
        hint = f"known: {', '.join(known)}" if known else "no calibration exists yet (markettwin sim calibrate PATH)"
        raise ValueError(f"unknown symbol {symbol!r}; {hint}")
    on_date = [c for c in of_symbol if c.cal_date == cal_date]
    if not on_date:
        dates = sorted({c.cal_date for c in of_symbol})
        raise ValueError(
            f"no complete calibration for {symbol} on {cal_date}; calibrated dates for {symbol}: {', '.join(dates)}"
        )
    return max(on_date, key=lambda c: (c.created_at, c.cal_hash))


def plan_job(req: SimJobRequest, calibrations: Iterable[Calibration], job_id: str) -> JobPlan:
    """Validate the request against the calibrations and expand it into tasks.

    Every problem found (symbol or date, scenario, each algo, job size) is named in one
    ValueError; algo errors start with `exec_algos[i]:`.
    """
    errors: list[str] = []
    cal: Calibration | None = None
    try:
        cal = pick_calibration(req.symbol, req.cal_date, calibrations)
    except ValueError as e:
        errors.append(str(e))
    market = cal.market if cal is not None else _market_of(req.symbol)
    scenario: ScenarioSpec | None = None
    try:
        scenario = parse_scenario(req.scenario, dict(req.scenario_params), market)
    except ValueError as e:
        errors.append(f"scenario: {e}")
    algos: list[AlgoSpec] = []
    for i, cfg in enumerate(req.exec_algos):
        try:
            algos.append(parse_algo(cfg, req.cal_date, market, index=i))
        except ValueError as e:
            errors.append(str(e) if str(e).startswith(f"exec_algos[{i}]") else f"exec_algos[{i}]: {e}")
    labels = [a.label for a in algos]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        errors.append(f"exec_algos: identical algo configs given twice ({', '.join(dupes)}): their sim ids would clash")
    total = req.n_runs * (1 + len(req.exec_algos))
    if total > MAX_SIMS_PER_JOB:
        errors.append(
            f"n_runs {req.n_runs:,} x (1 + {len(req.exec_algos)} algos) = {total:,} sims; "
            f"at most {MAX_SIMS_PER_JOB:,} per job"
        )
    if errors:
        raise ValueError("; ".join(errors))
    assert cal is not None and scenario is not None
    base = SimIdParts(
        symbol=req.symbol,
        cal_date=req.cal_date,
        cal_hash=cal.cal_hash,
        session=session_label(cal.market),
        sim_hash=sim_hash(req.seed, req.n_runs),
        scenario=scenario.name,
        scenario_hash=scenario_hash(scenario),
        algo=BASELINE,
        run=0,
    )
    seeds = [run_seed(req.seed, run) for run in range(req.n_runs)]
    sim_ids: list[str] = []
    tasks: list[SimTask] = []
    for algo in [None, *algos]:
        token = BASELINE if algo is None else algo.label
        for run in range(req.n_runs):
            sim_id = format_sim_id(msgspec.structs.replace(base, algo=token, run=run))
            sim_ids.append(sim_id)
            tasks.append(
                SimTask(
                    job_id=job_id,
                    sim_id=sim_id,
                    run=run,
                    seed=seeds[run],
                    calibration=cal,
                    scenario=scenario,
                    algo=algo,
                )
            )
    return JobPlan(
        job_id=job_id, request=req, calibration=cal, scenario=scenario, algos=algos, sim_ids=sim_ids, tasks=tasks
    )


def _market_of(symbol: str) -> Any:
    """The symbol's market, to check a scenario and algos even when the calibration is missing."""
    from libs.sim.sessions import market_for_symbol

    try:
        return market_for_symbol(symbol)
    except ValueError:
        return "XNYS"


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True
