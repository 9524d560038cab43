"""Synthetic generator throughput: path steps/s per model, and book rows/s with microstructure and events.

Peer: the same Heston full-truncation scheme written the usual way in plain numpy (a Python loop
over time steps, vectorised over paths), on the same random numbers: `synth.heston.numpy_loop_peer`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from libs.synth.assets import resolve
from libs.synth.market import SyntheticFeed
from libs.synth.paths import GBM, Heston, Merton, simulate
from tests.benchmarks import line

STEPS, PATHS = 2_000, 2_000
"""4 million path steps per model figure (random draws included)."""


def _best(fn: object, repeats: int = 3) -> float:
    """Best wall time of `repeats` calls (the first call compiles/loads numba, so it is run once before)."""
    fn()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def heston_numpy_loop(m: Heston, s0: float, dt: float, z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """The peer: full-truncation Euler with a Python loop over steps, numpy over paths."""
    n, p = z1.shape
    x = np.full(p, math.log(s0))
    v = np.full(p, m.v0)
    out = np.empty((n, p))
    rho_c = math.sqrt(1 - m.rho**2)
    for t in range(n):
        vp = np.maximum(v, 0.0)
        sv = np.sqrt(vp * dt)
        w2 = m.rho * z1[t] + rho_c * z2[t]
        x += (m.mu - 0.5 * vp) * dt + sv * z1[t]
        v += m.kappa * (m.theta - vp) * dt + m.xi * sv * w2
        out[t] = x
    return out


def run() -> list[tuple[str, float, str]]:
    out: list[tuple[str, float, str]] = []
    dt = 1 / (252 * 6.5 * 3600)
    work = STEPS * PATHS
    for name, model in (("gbm", GBM()), ("heston", Heston()), ("merton", Merton(lam=20.0))):
        elapsed = _best(lambda model=model: simulate(model, 100.0, dt, STEPS, PATHS, seed=1))
        out.append((f"synth.{name}", work / elapsed, "steps/s"))
    m = Heston()
    rng = np.random.default_rng(1)
    elapsed = _best(
        lambda: heston_numpy_loop(
            m, 100.0, dt, rng.standard_normal((STEPS, PATHS)), rng.standard_normal((STEPS, PATHS))
        )
    )
    out.append(("synth.heston.numpy_loop_peer", work / elapsed, "steps/s"))

    for asset, model in (("equity", "gbm"), ("crypto", "heston"), ("binary", "merton")):
        feed = SyntheticFeed(
            resolve(asset, model), seed=1, instruments=["A", "B", "C", "D"], start_ns=0, step_ns=100_000_000, levels=5
        )
        feed.next_chunk(100)
        t0 = time.perf_counter()
        rows = 0
        while time.perf_counter() - t0 < 1.5:
            rows += feed.next_chunk(2_500).books.rows
        out.append((f"synth.book_rows.{asset}_{model}", rows / (time.perf_counter() - t0), "rows/s"))
    out.append(("synth.book_rows", min(v for n, v, _ in out if n.startswith("synth.book_rows.")), "rows/s"))
    return out


def main() -> None:
    for name, value, unit in run():
        line(name, value, unit)


if __name__ == "__main__":
    main()
