"""Profile thresholds to micro-dollars: units, bounds and the errors naming the field and the value."""

from __future__ import annotations

import math

import pytest

from libs.users.store import MAX_EDGE_CENTS, MAX_USD, MICROS_PER_CENT, UsersError, _micros, profile_number
from proto.units import CASH_SCALE


def test_units() -> None:
    assert MICROS_PER_CENT == 10_000
    assert _micros("min_net_edge_cents", 2.25, MICROS_PER_CENT, positive=False, most=MAX_EDGE_CENTS) == 22_500
    assert _micros("min_net_edge_cents", 0, MICROS_PER_CENT, positive=False, most=MAX_EDGE_CENTS) == 0
    assert _micros("max_leg_usd", 1234.56, CASH_SCALE, positive=True, most=MAX_USD) == 1_234_560_000
    assert _micros("max_leg_usd", None, CASH_SCALE, positive=True, most=MAX_USD) is None


@pytest.mark.parametrize(
    ("value", "positive", "message"),
    [
        (math.inf, True, "max_leg_usd must be a finite number, got inf"),
        (math.nan, True, "max_leg_usd must be a finite number, got nan"),
        (-0.5, False, "max_leg_usd must be >= 0, got -0.5"),
        (0.0, True, "max_leg_usd must be > 0, got 0.0"),
        (2e9, True, "max_leg_usd must be at most 1e+09, got 2000000000.0"),
        (4e-7, True, "max_leg_usd must be at least 1e-06, got 4e-07"),
        ("5", True, "max_leg_usd must be a number, got '5'"),
        (True, True, "max_leg_usd must be a number, got True"),
    ],
)
def test_bad_values(value: object, positive: bool, message: str) -> None:
    with pytest.raises(UsersError) as err:
        _micros("max_leg_usd", value, CASH_SCALE, positive=positive, most=MAX_USD)  # type: ignore[arg-type]
    assert str(err.value) == message and err.value.status == 422


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_leg_usd", 10**400, "max_leg_usd must be a number from 0 to 1e+09, got an integer beyond 1e308"),
        ("daily_cap_usd", -(10**309), "daily_cap_usd must be a number from 0 to 1e+09, got an integer below -1e308"),
        (
            "min_net_edge_cents",
            10**309,
            "min_net_edge_cents must be a number from 0 to 100, got an integer beyond 1e308",
        ),
        ("max_leg_usd", "5", 'max_leg_usd must be a number, got "5"'),
        ("max_leg_usd", False, "max_leg_usd must be a number, got false"),
        ("max_leg_usd", [1], "max_leg_usd must be a number, got [1]"),
    ],
)
def test_profile_numbers_too_big_for_a_float_are_422_naming_the_field(name: str, value: object, message: str) -> None:
    # float(10**400) raises OverflowError, which used to escape as a 500
    with pytest.raises(UsersError) as err:
        profile_number(name, value)
    assert str(err.value) == message and err.value.status == 422


def test_profile_numbers_that_fit() -> None:
    assert profile_number("max_leg_usd", None) is None
    assert profile_number("max_leg_usd", 10**300) == 1e300  # a float: the range check comes after
    assert profile_number("min_net_edge_cents", 2) == 2.0 and isinstance(profile_number("max_leg_usd", 2), float)
