"""Sim ids: the documented format, parsing back, determinism, and seeds shared by run index."""

from __future__ import annotations

import hashlib
import re

import msgspec
import numpy as np
import pytest

from libs.sim import ids
from libs.sim.ids import SimIdParts, format_sim_id, parse_sim_id, run_seed, sim_hash

EXAMPLE = "9999.HK:2025-09-01:d96cf520:0930-1600:c8961b94:flash_crash_6e6d5b3a:baseline:0000"


def parts(**change: object) -> SimIdParts:
    base = SimIdParts(
        symbol="9999.HK",
        cal_date="2025-09-01",
        cal_hash="d96cf520",
        session="0930-1600",
        sim_hash="c8961b94",
        scenario="flash_crash",
        scenario_hash="6e6d5b3a",
        algo="baseline",
        run=0,
    )
    return msgspec.structs.replace(base, **change)


def test_the_reference_example_parses_into_its_fields_and_back() -> None:
    p = parse_sim_id(EXAMPLE)
    assert (p.symbol, p.cal_date, p.cal_hash, p.session) == ("9999.HK", "2025-09-01", "d96cf520", "0930-1600")
    assert (p.sim_hash, p.scenario, p.scenario_hash, p.algo, p.run) == (
        "c8961b94",
        "flash_crash",
        "6e6d5b3a",
        "baseline",
        0,
    )
    assert p.is_baseline
    assert format_sim_id(p) == EXAMPLE


def test_format_writes_the_documented_layout() -> None:
    sim_id = format_sim_id(parts(algo="twap_0123abcd", run=42, scenario="normal", scenario_hash="00ff00ff"))
    assert sim_id == "9999.HK:2025-09-01:d96cf520:0930-1600:c8961b94:normal_00ff00ff:twap_0123abcd:0042"
    assert not parse_sim_id(sim_id).is_baseline


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("9999.HK:2025-09-01:d96cf520", "expected 8"),
        (EXAMPLE.replace("2025-09-01", "2025/09/01"), "cal_date"),
        (EXAMPLE.replace("d96cf520", "D96CF52"), "cal_hash"),
        (EXAMPLE.replace("0930-1600", "morning"), "session"),
        (EXAMPLE.replace("c8961b94", "c8961b9z"), "sim_hash"),
        (EXAMPLE.replace("flash_crash_6e6d5b3a", "flash_crash"), "scenario"),
        (EXAMPLE.replace("baseline", "twap"), "algo"),
        (EXAMPLE.replace(":0000", ":12"), "run"),
        (":" + EXAMPLE.split(":", 1)[1], "symbol"),
    ],
)
def test_malformed_ids_name_the_bad_part(bad: str, named: str) -> None:
    with pytest.raises(ValueError, match="malformed sim id") as info:
        parse_sim_id(bad)
    assert named in str(info.value)


def test_a_non_string_id_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_sim_id(123)  # type: ignore[arg-type]


def test_fields_that_would_not_parse_back_are_refused() -> None:
    with pytest.raises(ValueError, match="bad run"):
        format_sim_id(parts(run=10_000))
    with pytest.raises(ValueError, match="bad scenario"):
        format_sim_id(parts(scenario="Flash Crash"))
    with pytest.raises(ValueError):
        format_sim_id(parts(symbol="A:B"))


def test_sim_hash_is_8_hex_of_seed_runs_and_engine_version() -> None:
    h = sim_hash(42, 100)
    assert re.fullmatch(r"[0-9a-f]{8}", h)
    expected = hashlib.blake2b(f"seed=42|n_runs=100|engine={ids.ENGINE_VERSION}".encode(), digest_size=4)
    assert h == expected.hexdigest()
    assert sim_hash(42, 100) == h  # deterministic
    others = {sim_hash(43, 100), sim_hash(42, 101), sim_hash(42, 100, engine_version="other")}
    assert h not in others and len(others) == 3


def test_run_seeds_are_deterministic_distinct_and_63_bit() -> None:
    seeds = [run_seed(42, r) for r in range(1000)]
    assert seeds == [run_seed(42, r) for r in range(1000)]
    assert len(set(seeds)) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert run_seed(43, 0) != run_seed(42, 0)
    # the documented derivation: numpy's SeedSequence of (seed, spawn_key=(run,)), top 63 bits
    state = np.random.SeedSequence(42, spawn_key=(7,)).generate_state(1, np.uint64)
    assert run_seed(42, 7) == int(state[0]) >> 1


def test_negative_seed_or_run_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        run_seed(-1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        run_seed(1, -1)
