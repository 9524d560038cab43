"""Simulation ids: one deterministic name per Monte Carlo run, and the per-run seeds.

A sim id reads `{symbol}:{cal_date}:{cal_hash}:{session}:{sim_hash}:{scenario}_{hash}:{algo}:{run:04d}`,
e.g. `9999.HK:2025-09-01:d96cf520:0930-1600:c8961b94:flash_crash_6e6d5b3a:baseline:0000`.
Everything that changes a run's output is in it (the calibration, the session, the seed and
run count with the engine version, the scenario, the algo), so the same request gives the
same ids and, the engine being deterministic, bit-identical results.

A run's seed depends only on (job seed, run index): the baseline and every algo run with the
same index share it (common random numbers), so an algo's cost is measured against the very
market its own baseline saw.
"""

from __future__ import annotations

import hashlib
import re

import msgspec
import numpy as np

ENGINE_VERSION = "1"
"""Bump when the engine's output for the same inputs changes: it is part of every sim_hash,
so new results never share ids (and ClickHouse rows) with old ones."""

BASELINE = "baseline"
MAX_RUN = 9_999
"""Run indices are written with 4 digits."""

_HEX8 = re.compile(r"^[0-9a-f]{8}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SESSION = re.compile(r"^\d{4}-\d{4}$")
_SCENARIO = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)_(?P<hash>[0-9a-f]{8})$")
_ALGO = re.compile(r"^[a-z][a-z0-9]*_[0-9a-f]{8}$")
_RUN = re.compile(r"^\d{4}$")


class SimIdParts(msgspec.Struct, frozen=True, kw_only=True):
    """The fields a sim id is made of."""

    symbol: str
    cal_date: str
    cal_hash: str
    session: str
    """Trading session label, e.g. `0930-1600`."""
    sim_hash: str
    scenario: str
    scenario_hash: str
    algo: str
    """`baseline` or the algo's label `{type}_{hash8}`."""
    run: int

    @property
    def is_baseline(self) -> bool:
        return self.algo == BASELINE


def hash8(text: str) -> str:
    """8 hex digits of a BLAKE2b digest of `text`."""
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def sim_hash(seed: int, n_runs: int, engine_version: str = ENGINE_VERSION) -> str:
    """8 hex digits naming (seed, n_runs, engine version)."""
    return hash8(f"seed={int(seed)}|n_runs={int(n_runs)}|engine={engine_version}")


def run_seed(seed: int, run: int) -> int:
    """The seed of run `run` of a job seeded `seed` (63 bits, non-negative), the same for the
    baseline and every algo of that run index (common random numbers)."""
    if seed < 0 or run < 0:
        raise ValueError(f"seed and run must be non-negative, got seed={seed}, run={run}")
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(run),)).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def format_sim_id(parts: SimIdParts) -> str:
    """The sim id of `parts`; raises ValueError if a field would not parse back."""
    sim_id = (
        f"{parts.symbol}:{parts.cal_date}:{parts.cal_hash}:{parts.session}:{parts.sim_hash}:"
        f"{parts.scenario}_{parts.scenario_hash}:{parts.algo}:{parts.run:04d}"
    )
    if parse_sim_id(sim_id) != parts:
        raise ValueError(f"sim id fields do not round-trip: {parts!r}")
    return sim_id


def parse_sim_id(sim_id: str) -> SimIdParts:
    """Split a sim id into its fields; a malformed id is a ValueError naming the bad part."""
    if not isinstance(sim_id, str):
        raise ValueError(f"sim id must be a string, got {type(sim_id).__name__}")
    fields = sim_id.split(":")
    if len(fields) != 8:
        raise ValueError(
            f"malformed sim id {sim_id!r}: expected 8 ':'-separated parts "
            "(symbol:cal_date:cal_hash:session:sim_hash:scenario_hash:algo:run), got {len(fields)}"
        )
    symbol, cal_date, cal_hash, session, shash, scenario_token, algo, run = fields
    checks = [
        (bool(symbol) and symbol.strip() == symbol and " " not in symbol, "symbol", symbol),
        (bool(_DATE.match(cal_date)), "cal_date (YYYY-MM-DD)", cal_date),
        (bool(_HEX8.match(cal_hash)), "cal_hash (8 hex digits)", cal_hash),
        (bool(_SESSION.match(session)), "session (HHMM-HHMM)", session),
        (bool(_HEX8.match(shash)), "sim_hash (8 hex digits)", shash),
        (bool(_SCENARIO.match(scenario_token)), "scenario (name_hash8)", scenario_token),
        (algo == BASELINE or bool(_ALGO.match(algo)), "algo (baseline or type_hash8)", algo),
        (bool(_RUN.match(run)), "run (4 digits)", run),
    ]
    for ok, what, value in checks:
        if not ok:
            raise ValueError(f"malformed sim id {sim_id!r}: bad {what}: {value!r}")
    m = _SCENARIO.match(scenario_token)
    assert m is not None
    return SimIdParts(
        symbol=symbol,
        cal_date=cal_date,
        cal_hash=cal_hash,
        session=session,
        sim_hash=shash,
        scenario=m["name"],
        scenario_hash=m["hash"],
        algo=algo,
        run=int(run),
    )
