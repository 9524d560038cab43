"""Asset-class presets for synthetic markets: equity, crypto and binary outcome contracts.

Each preset fixes the start price, tick, size unit, the seconds in a model year, a default
model with per-model default parameters, and the microstructure. `resolve()` applies a
caller's overrides and checks everything, raising ValueError naming the parameter and value.

- equity: $100, tick $0.01, sizes in shares; a year is 252 sessions of 6.5 h (market time
  runs continuously: session hours are not imposed).
- crypto: $40,000, tick $0.01, sizes in lots of 0.0001 coin (size 5,000 = 0.5 BTC; bar volume is
  reported in coins); 24/7, a year is 365 x 24 h.
- binary: a YES contract paying $1, priced in (0, 1) dollars: the chosen model drives a latent
  logit x (dx = mu dt + sigma dW [+ jumps], no Ito term) and YES = 1 / (1 + e^-x), then
  ticked onto [tick, 1 - tick] (tick $0.01 = 100 price units); sizes in contracts; 365 x 24 h.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.synth.micro import MicroParams, make_micro, tick_units
from libs.synth.paths import Model, check_number, make_model, model_name
from proto.units import PRICE_SCALE

AssetKind = Literal["equity", "crypto", "binary"]
ASSETS: tuple[str, ...] = ("equity", "crypto", "binary")

EQUITY_YEAR_S = 252 * 6.5 * 3600
"""Seconds in a trading year of US equities (252 sessions of 6.5 hours)."""
CALENDAR_YEAR_S = 365 * 24 * 3600
"""Seconds in a calendar year (crypto and binary markets trade around the clock)."""


class AssetPreset(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults for one asset class (see the module docstring)."""

    kind: AssetKind
    s0: float
    tick: float
    size_unit: float
    """What one size unit is worth in the asset (a share, 0.0001 coin, a contract)."""
    seconds_per_year: float
    model: str
    models: dict[str, dict[str, float]]
    micro: MicroParams
    instrument: str


PRESETS: dict[str, AssetPreset] = {
    "equity": AssetPreset(
        kind="equity",
        s0=100.0,
        tick=0.01,
        size_unit=1.0,
        seconds_per_year=EQUITY_YEAR_S,
        model="gbm",
        models={
            "gbm": {"mu": 0.07, "sigma": 0.25},
            "heston": {"mu": 0.07, "kappa": 3.0, "theta": 0.0625, "xi": 0.6, "rho": -0.7, "v0": 0.0625},
            "merton": {"mu": 0.07, "sigma": 0.2, "lam": 4.0, "jump_mu": -0.02, "jump_sigma": 0.04},
        },
        micro=MicroParams(
            min_spread_ticks=1,
            spread_bps=1.5,
            extra_spread_ticks=0.3,
            size_median=300,
            trade_rate=2.0,
            trade_size_median=100,
        ),
        instrument="SYN-EQ",
    ),
    "crypto": AssetPreset(
        kind="crypto",
        s0=40_000.0,
        tick=0.01,
        size_unit=1e-4,
        seconds_per_year=CALENDAR_YEAR_S,
        model="heston",
        models={
            "gbm": {"mu": 0.0, "sigma": 0.6},
            "heston": {"mu": 0.0, "kappa": 4.0, "theta": 0.36, "xi": 1.2, "rho": -0.3, "v0": 0.36},
            "merton": {"mu": 0.0, "sigma": 0.5, "lam": 20.0, "jump_mu": 0.0, "jump_sigma": 0.03},
        },
        micro=MicroParams(
            min_spread_ticks=1,
            spread_bps=0.1,
            extra_spread_ticks=2.0,
            size_median=5_000,
            trade_rate=5.0,
            trade_size_median=1_000,
            size_sigma=1.2,
        ),
        instrument="SYN-BTC",
    ),
    "binary": AssetPreset(
        kind="binary",
        s0=0.5,
        tick=0.01,
        size_unit=1.0,
        seconds_per_year=CALENDAR_YEAR_S,
        model="gbm",
        models={
            "gbm": {"mu": 0.0, "sigma": 3.0},
            "heston": {"mu": 0.0, "kappa": 6.0, "theta": 9.0, "xi": 6.0, "rho": 0.0, "v0": 9.0},
            "merton": {"mu": 0.0, "sigma": 2.0, "lam": 12.0, "jump_mu": 0.0, "jump_sigma": 0.5},
        },
        micro=MicroParams(
            min_spread_ticks=1,
            spread_bps=0.0,
            extra_spread_ticks=1.0,
            size_median=500,
            trade_rate=0.5,
            trade_size_median=50,
        ),
        instrument="SYN-BIN",
    ),
}


class MarketConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A fully checked synthetic market: asset class, model, start, tick and microstructure."""

    asset: str
    kind: AssetKind
    model: Model
    s0: float
    tick: float
    tick_px: int
    """The tick in price units (1/PRICE_SCALE dollar)."""
    max_px: int | None
    """The highest quotable price in price units (binary: 1 dollar - 1 tick), None if unbounded."""
    size_unit: float
    seconds_per_year: float
    micro: MicroParams

    @property
    def model_name(self) -> str:
        return model_name(self.model)


def resolve(
    asset: str,
    model: str | None = None,
    params: dict[str, float] | None = None,
    micro: dict[str, float] | None = None,
    *,
    s0: float | None = None,
    tick: float | None = None,
    size_unit: float | None = None,
    seconds_per_year: float | None = None,
) -> MarketConfig:
    """The preset `asset` with the model `model` (default: the preset's) and overrides applied."""
    if asset not in PRESETS:
        raise ValueError(f"asset={asset!r} is not one of {', '.join(ASSETS)}")
    preset = PRESETS[asset]
    name = model or preset.model
    if name not in preset.models:
        raise ValueError(f"model={name!r} is not one of {', '.join(preset.models)}")
    chosen = make_model(name, {**preset.models[name], **(params or {})})
    start = preset.s0 if s0 is None else check_number("s0", s0)
    if preset.kind == "binary":
        if not 0.0 < start < 1.0:
            raise ValueError(f"s0={start!r} must be a YES price strictly inside (0, 1) for a binary contract")
    elif start <= 0:
        raise ValueError(f"s0={start!r} must be a positive price")
    tick_d = preset.tick if tick is None else tick
    tick_px = tick_units("tick", tick_d, PRICE_SCALE)
    max_px = None
    if preset.kind == "binary":
        if PRICE_SCALE % tick_px or tick_px * 2 >= PRICE_SCALE:
            raise ValueError(f"tick={tick_d!r} must divide $1 into at least 3 ticks for a binary contract")
        max_px = PRICE_SCALE - tick_px
        if not tick_d <= start <= 1 - tick_d:
            raise ValueError(f"s0={start!r} must be within [tick, 1 - tick] = [{tick_d}, {1 - tick_d}]")
    unit = preset.size_unit if size_unit is None else check_number("size_unit", size_unit, 0.0, open_lo=True)
    year = preset.seconds_per_year if seconds_per_year is None else seconds_per_year
    year = check_number("seconds_per_year", year, 0.0, open_lo=True)
    return MarketConfig(
        asset=asset,
        kind=preset.kind,
        model=chosen,
        s0=start,
        tick=float(tick_d),
        tick_px=tick_px,
        max_px=max_px,
        size_unit=unit,
        seconds_per_year=year,
        micro=make_micro(preset.micro, micro),
    )
