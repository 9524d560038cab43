"""A job's results in a few lines: execution cost per algorithm (mean over runs), the
market each scenario produced, and how close the simulated days are to the real one."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from libs.sim.ids import BASELINE, parse_sim_id
from libs.sim.stats import compare_stats, render_comparison
from proto.sim import DayStats

ALGO_COLUMNS = (
    ("algo.fill_ratio", "fill", "{:.1%}"),
    ("algo.avg_fill_price", "avg px $", "{:.4f}"),
    ("algo.slippage_bps", "slip bps", "{:+.2f}"),
    ("algo.implementation_shortfall_bps", "IS bps", "{:+.2f}"),
    ("algo.market_impact_bps", "impact bps", "{:+.2f}"),
    ("algo.market_impact_close_bps", "at close bps", "{:+.2f}"),
)
MARKET_COLUMNS = (
    ("market.close_mid", "close $", "{:.2f}"),
    ("market.min_mid", "low $", "{:.2f}"),
    ("market.daily_volume", "volume", "{:,.0f}"),
    ("market.n_trades", "trades", "{:,.0f}"),
)
SCENARIO_COLUMNS = (
    ("scenario.move_bps", "move bps", "{:+.1f}"),
    ("scenario.injected_qty", "injected", "{:,.0f}"),
    ("scenario.filled_qty", "filled", "{:,.0f}"),
)


def _mean(values: Sequence[float]) -> float:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    return sum(ok) / len(ok) if ok else math.nan


def _fmt(fmt: str, value: float) -> str:
    return "-" if not math.isfinite(value) else fmt.format(value)


def group_metrics(simulations: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every metric over the completed runs of each algo token (`baseline` first)."""
    groups: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for sim in simulations:
        if sim.get("status") == "completed":
            groups[parse_sim_id(sim["sim_id"]).algo].append(sim.get("metrics") or {})
    out: dict[str, dict[str, float]] = {}
    for algo in sorted(groups, key=lambda a: (a != BASELINE, a)):
        runs = groups[algo]
        keys = sorted({k for m in runs for k in m})
        out[algo] = {k: _mean([m.get(k, math.nan) for m in runs]) for k in keys} | {"runs": float(len(runs))}
    return out


def render_job(results: Mapping[str, Any], real: DayStats | None = None) -> str:
    """Text summary of `get_job_results(...)`: market per group, algo costs, and (for a job of
    normal days, the only ones a calibration should be judged on) closeness to `real`."""
    groups = group_metrics(results["simulations"])
    lines = [f"job {results['job_id']}: {results['completed']}/{results['total_simulations']} runs completed"]
    scenario_run = any("scenario.move_bps" in m for m in groups.values())
    columns = MARKET_COLUMNS + (SCENARIO_COLUMNS if scenario_run else ())
    header = f"  {'runs':<28}{'n':>4}" + "".join(f"{title:>12}" for _, title, _ in columns)
    lines.append(header)
    for algo, m in groups.items():
        cells = "".join(f"{_fmt(fmt, m.get(key, math.nan)):>12}" for key, _, fmt in columns)
        lines.append(f"  {algo:<28}{int(m['runs']):>4}{cells}")
    algos = {a: m for a, m in groups.items() if a != BASELINE}
    if algos:
        lines.append(f"  {'execution (mean over runs)':<32}" + "".join(f"{t:>13}" for _, t, _ in ALGO_COLUMNS))
        for algo, m in algos.items():
            cells = "".join(f"{_fmt(fmt, m.get(key, math.nan)):>13}" for key, _, fmt in ALGO_COLUMNS)
            lines.append(f"  {algo:<32}{cells}")
    base = groups.get(BASELINE)
    scenarios = {parse_sim_id(sim["sim_id"]).scenario for sim in results["simulations"]}
    if real is not None and base is not None and scenarios == {"normal"}:
        sim = DayStats(**{f: base.get(f"market.{f}", math.nan) for f in DayStats.__struct_fields__})
        lines.append("  simulated baseline days vs the real day:")
        lines += ["    " + row for row in render_comparison(compare_stats(real, sim)).splitlines()]
    return "\n".join(lines)
