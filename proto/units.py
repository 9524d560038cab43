"""Units of money on the wire: every price, size, cash amount and fee is an integer.

Binary-outcome contracts pay $1. Prices are in 1/10,000 of a dollar (Kalshi publishes
4-decimal dollar strings, Polymarket ticks are 0.01 or 0.001), so 0.47 USD is 4_700.
Cash, costs, fees and P&L are in micro-dollars (1e-6 USD), fine enough for Polymarket's
4-decimal fee rounding. Sizes are whole contracts.
"""

PRICE_SCALE = 10_000
"""Price units per dollar: `px = round(dollars * PRICE_SCALE)`."""

CASH_SCALE = 1_000_000
"""Cash units (micro-dollars) per dollar."""

PAYOUT_PX = PRICE_SCALE
"""A winning binary contract pays $1, i.e. PRICE_SCALE price units."""

CASH_PER_PRICE_UNIT = CASH_SCALE // PRICE_SCALE
"""Micro-dollars in one price unit for one contract (100)."""


def dollars_to_px(dollars: float) -> int:
    """Round a dollar price to integer price units."""
    return round(dollars * PRICE_SCALE)


def px_to_dollars(px: int) -> float:
    """Integer price units to dollars, for display and analytics only."""
    return px / PRICE_SCALE


def cash_to_dollars(micros: int) -> float:
    """Micro-dollars to dollars, for display and analytics only."""
    return micros / CASH_SCALE
