"""Stress scenarios: names, defaults and overrides as in the hosted API, validation, child orders."""

from __future__ import annotations

import hashlib
import math

import msgspec
import numpy as np
import pytest

from libs.sim.scenarios import (
    DEFAULTS,
    SCENARIOS,
    parse_scenario,
    scenario_children,
    scenario_hash,
    scenario_token,
)

H = 3600.0


def test_known_scenarios_are_the_api_table() -> None:
    assert set(SCENARIOS) == {"normal", "flash_crash", "buy_panic", "gradual_selloff", "trending_up", "trending_down"}
    assert set(DEFAULTS) == set(SCENARIOS) - {"normal"}


@pytest.mark.parametrize(
    ("name", "side"),
    [
        ("flash_crash", -1),
        ("buy_panic", 1),
        ("gradual_selloff", -1),
        ("trending_up", 1),
        ("trending_down", -1),
    ],
)
def test_sides(name: str, side: int) -> None:
    assert parse_scenario(name, None, "XNYS").side == side


def test_flash_crash_defaults() -> None:
    spec = parse_scenario("flash_crash", None, "XHKG")
    assert (spec.impact_multiplier, spec.order_size_ratio, spec.order_freq_s, spec.start_s) == (15.0, 0.25, 0.5, 11 * H)
    times, fractions = scenario_children(spec, "XHKG")
    assert times.size == 60
    np.testing.assert_allclose(times, 11 * H + 0.5 * np.arange(60))
    assert math.fsum(fractions) == pytest.approx(15.0, rel=1e-12)


def test_float_error_does_not_add_a_child() -> None:
    # 3.0 / 0.1 is 30.000000000000004 in floats: still 30 children, not 31
    params = {"impact_multiplier": 3.0, "order_size_ratio": 0.1}
    times, fractions = scenario_children(parse_scenario("flash_crash", params, "XNYS"), "XNYS")
    assert times.size == 30
    assert math.fsum(fractions) == pytest.approx(3.0, rel=1e-12)


def test_normal_injects_nothing() -> None:
    spec = parse_scenario("normal", None, "XNYS")
    assert spec.side == 0 and spec.impact_multiplier == 0
    assert parse_scenario("normal", {}, "XNYS") == spec
    times, fractions = scenario_children(spec, "XNYS")
    assert times.size == 0 and fractions.size == 0


def test_reference_flash_crash_override() -> None:
    """The API's example: start_time 11:00:00, impact_multiplier 15, here in children of 0.1."""
    params = {"start_time": "11:00:00", "impact_multiplier": 15.0, "order_size_ratio": 0.1}
    spec = parse_scenario("flash_crash", params, "XHKG")
    times, fractions = scenario_children(spec, "XHKG")
    assert times.size == 150
    assert times[-1] == pytest.approx(11 * H + 149 * 0.5)
    assert math.fsum(fractions) == pytest.approx(15.0, rel=1e-12)


def test_children_by_hand() -> None:
    """impact 1.0 in children of 0.3 every 5 s from 10:30: 0.3, 0.3, 0.3 and the remainder 0.1."""
    params = {"impact_multiplier": 1.0, "order_size_ratio": 0.3, "order_freq": "5s", "start_time": "10:30:00"}
    times, fractions = scenario_children(parse_scenario("buy_panic", params, "XNYS"), "XNYS")
    np.testing.assert_allclose(times, [37800.0, 37805.0, 37810.0, 37815.0])
    np.testing.assert_allclose(fractions, [0.3, 0.3, 0.3, 0.1], atol=1e-12)


def test_ratio_equal_to_impact_is_one_child() -> None:
    params = {"impact_multiplier": 2.0, "order_size_ratio": 2.0}
    times, fractions = scenario_children(parse_scenario("flash_crash", params, "XNYS"), "XNYS")
    assert times.tolist() == [11 * H] and fractions.tolist() == [2.0]


def test_hkex_lunch_children_are_dropped() -> None:
    """20 children a minute apart from 11:50: 11:50-11:59 trade on HKEX, 12:00-12:09 fall in lunch."""
    params = {"impact_multiplier": 0.5, "order_size_ratio": 0.025, "order_freq": "60s", "start_time": "11:50:00"}
    hk_t, hk_f = scenario_children(parse_scenario("gradual_selloff", params, "XHKG"), "XHKG")
    ny_t, ny_f = scenario_children(parse_scenario("gradual_selloff", params, "XNYS"), "XNYS")
    assert ny_t.size == 20 and math.fsum(ny_f) == pytest.approx(0.5)
    np.testing.assert_allclose(hk_t, 11 * H + 50 * 60 + 60 * np.arange(10))
    assert math.fsum(hk_f) == pytest.approx(0.25)


def test_a_scenario_still_sending_at_the_close_is_refused() -> None:
    params = {"impact_multiplier": 0.4, "order_size_ratio": 0.1, "order_freq": "5s", "start_time": "15:59:50"}
    with pytest.raises(ValueError, match="would send 2 of its 4 child orders at or after the close 16:00:00"):
        parse_scenario("flash_crash", params, "XNYS")
    params["start_time"] = "15:59:40"  # the last child at 15:59:55 is fine
    times, _ = scenario_children(parse_scenario("flash_crash", params, "XNYS"), "XNYS")
    np.testing.assert_allclose(times, [16 * H - 20, 16 * H - 15, 16 * H - 10, 16 * H - 5])


def test_trends_run_all_day() -> None:
    ny_t, ny_f = scenario_children(parse_scenario("trending_up", None, "XNYS"), "XNYS")
    assert ny_t.size == 390 and ny_t[0] == 9.5 * H and ny_t[-1] == 16 * H - 60
    assert np.all(np.diff(ny_t) == 60.0)
    assert math.fsum(ny_f) == pytest.approx(39.0, rel=1e-12)
    hk_t, _ = scenario_children(parse_scenario("trending_down", None, "XHKG"), "XHKG")
    assert hk_t.size == 330
    assert not ((hk_t >= 12 * H) & (hk_t < 13 * H)).any()


@pytest.mark.parametrize(
    ("name", "params", "market", "fragment"),
    [
        ("crash", None, "XNYS", r"unknown scenario 'crash'; known: normal, flash_crash"),
        (None, None, "XNYS", "unknown scenario None"),
        ("flash_crash", {"speed": 2}, "XNYS", r"unknown scenario parameter\(s\) 'speed'; allowed: impact_multiplier"),
        ("flash_crash", [("start_time", "11:00:00")], "XNYS", "scenario_params must be a dict"),
        ("normal", {"start_time": "11:00:00"}, "XNYS", "'normal' injects nothing and takes no scenario_params"),
        ("flash_crash", {"impact_multiplier": "3"}, "XNYS", "impact_multiplier must be a number, got str"),
        ("flash_crash", {"impact_multiplier": True}, "XNYS", "impact_multiplier must be a number, got bool"),
        ("flash_crash", {"order_size_ratio": None}, "XNYS", "order_size_ratio must be a number"),
        (
            "flash_crash",
            {"impact_multiplier": 0},
            "XNYS",
            "impact_multiplier must be a finite number greater than zero",
        ),
        ("flash_crash", {"impact_multiplier": -2.0}, "XNYS", "impact_multiplier must be a finite number greater"),
        ("flash_crash", {"impact_multiplier": float("inf")}, "XNYS", "impact_multiplier must be a finite number"),
        ("flash_crash", {"order_size_ratio": float("nan")}, "XNYS", "order_size_ratio must be a finite number"),
        (
            "flash_crash",
            {"order_size_ratio": 16.0},
            "XNYS",
            "order_size_ratio 16.0 must not exceed impact_multiplier 15.0",
        ),
        ("flash_crash", {"order_freq": "fast"}, "XNYS", "order_freq 'fast' is not a duration"),
        ("flash_crash", {"order_freq": "0ms"}, "XNYS", "order_freq '0ms' must be greater than zero"),
        ("flash_crash", {"order_freq": [1]}, "XNYS", "order_freq must be a duration"),
        ("flash_crash", {"start_time": 39600}, "XNYS", "start_time must be a string"),
        ("flash_crash", {"start_time": "11h"}, "XNYS", "start_time '11h' is not a time of day"),
        ("flash_crash", {"start_time": "12:30:00"}, "XHKG", r"start_time 12:30:00 is outside XHKG trading hours"),
        ("flash_crash", {"start_time": "12:00:00"}, "XHKG", "outside XHKG trading hours"),
        ("flash_crash", {"start_time": "08:00:00"}, "XNYS", r"outside XNYS trading hours \(09:30:00-16:00:00\)"),
        ("flash_crash", {"start_time": "16:00:00"}, "XNYS", "outside XNYS trading hours"),
        ("flash_crash", {"order_size_ratio": 1e-6}, "XNYS", "makes 15000000 child orders"),
        ("flash_crash", None, "XLON", "unknown market 'XLON'"),
    ],
)
def test_rejects(name: object, params: object, market: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_scenario(name, params, market)  # type: ignore[arg-type]


def test_start_time_in_the_hkex_afternoon_is_fine() -> None:
    assert parse_scenario("flash_crash", {"start_time": "13:00:00"}, "XHKG").start_s == 13 * H


def test_hash() -> None:
    spec = parse_scenario("flash_crash", {"impact_multiplier": 20.0}, "XHKG")
    h = scenario_hash(spec)
    assert len(h) == 8 and int(h, 16) >= 0
    assert h == hashlib.sha256(msgspec.json.encode(spec)).hexdigest()[:8]
    assert scenario_token(spec) == f"flash_crash_{h}"
    # spelling out the defaults is the same scenario; a different value is not
    explicit = {"impact_multiplier": 15.0, "order_size_ratio": 0.25, "order_freq": "500ms", "start_time": "11:00:00"}
    assert scenario_hash(parse_scenario("flash_crash", explicit, "XHKG")) == scenario_hash(
        parse_scenario("flash_crash", None, "XHKG")
    )
    assert h != scenario_hash(parse_scenario("flash_crash", None, "XHKG"))
    assert scenario_hash(parse_scenario("flash_crash", None, "XHKG")) != scenario_hash(
        parse_scenario("buy_panic", None, "XHKG")
    )
