"""Price paths from GBM, Heston and Merton jump diffusion: seeded, reproducible, numba hot loops.

Time: parameters are annualised (`mu`, `sigma` per year, `lam` jumps per year) and a step is
`dt` years; callers turn a step in seconds into years with their asset class's seconds per
year (`libs.synth.assets`: 252 x 6.5 h for equities, 365 x 24 h for crypto and binaries).

Randomness: every random number is drawn in numpy from `Generator(PCG64)` streams spawned
from one `SeedSequence(seed)` (one stream per kind of draw: diffusion, variance shocks, jump
counts, jump sizes), time-major `(steps, paths)`; the numba loops only consume them. So a path
is bit-identical for a seed whatever the thread count (no numba RNG state is involved), and
the same whether it is generated in one call or in many smaller ones.

Paths are in log price: `x = log S`. With `latent=True` the log path carries no Ito term and
no jump compensation (dx = mu dt + sigma dW + jumps), which is what the binary preset needs for
a logit that does not drift when mu = 0.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np
from numba import njit, prange

ModelName = Literal["gbm", "heston", "merton"]
MODELS: tuple[str, ...] = ("gbm", "heston", "merton")


def check_number(
    name: str, value: object, lo: float | None = None, hi: float | None = None, *, open_lo: bool = False
) -> float:
    """`value` as a finite float within [lo, hi] (lo excluded when `open_lo`), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name}={value!r} must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} must be finite")
    if lo is not None and (v <= lo if open_lo else v < lo):
        raise ValueError(f"{name}={value!r} must be {'>' if open_lo else '>='} {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{name}={value!r} must be <= {hi}")
    return v


class GBM(msgspec.Struct, frozen=True, kw_only=True, tag="gbm"):
    """Geometric Brownian motion dS/S = mu dt + sigma dW, stepped exactly (log-normal step)."""

    mu: float = 0.0
    sigma: float = 0.2

    def __post_init__(self) -> None:
        check_number("mu", self.mu)
        check_number("sigma", self.sigma, 0.0)


class Heston(msgspec.Struct, frozen=True, kw_only=True, tag="heston"):
    """Heston stochastic volatility: dS/S = mu dt + sqrt(v) dW1, dv = kappa (theta - v) dt + xi sqrt(v) dW2,
    corr(dW1, dW2) = rho. Stepped by full-truncation Euler (Lord et al. 2010): v+ = max(v, 0) in
    every coefficient, so the variance used (and reported) is never negative."""

    mu: float = 0.0
    kappa: float = 2.0
    theta: float = 0.04
    xi: float = 0.5
    rho: float = -0.7
    v0: float = 0.04

    def __post_init__(self) -> None:
        check_number("mu", self.mu)
        check_number("kappa", self.kappa, 0.0, open_lo=True)
        check_number("theta", self.theta, 0.0)
        check_number("xi", self.xi, 0.0)
        check_number("rho", self.rho, -1.0, 1.0)
        check_number("v0", self.v0, 0.0)


class Merton(msgspec.Struct, frozen=True, kw_only=True, tag="merton"):
    """Merton jump diffusion: GBM plus compound Poisson jumps (rate `lam` per year) with normal
    log sizes N(jump_mu, jump_sigma^2). The drift is compensated by lam * (E[e^J] - 1), so
    E[S_T] = S_0 e^{mu T}."""

    mu: float = 0.0
    sigma: float = 0.2
    lam: float = 1.0
    jump_mu: float = 0.0
    jump_sigma: float = 0.05

    def __post_init__(self) -> None:
        check_number("mu", self.mu)
        check_number("sigma", self.sigma, 0.0)
        check_number("lam", self.lam, 0.0)
        check_number("jump_mu", self.jump_mu)
        check_number("jump_sigma", self.jump_sigma, 0.0)

    @property
    def compensator(self) -> float:
        """lam * (E[e^J] - 1): the jumps' expected relative growth per year."""
        return self.lam * math.expm1(self.jump_mu + 0.5 * self.jump_sigma**2)


Model = GBM | Heston | Merton
_MODEL_TYPES: dict[str, type[GBM] | type[Heston] | type[Merton]] = {"gbm": GBM, "heston": Heston, "merton": Merton}


def make_model(name: str, params: dict[str, float] | None = None) -> Model:
    """The model `name` with `params` overriding its defaults; unknown names raise ValueError naming them."""
    if name not in _MODEL_TYPES:
        raise ValueError(f"model={name!r} is not one of {', '.join(MODELS)}")
    cls = _MODEL_TYPES[name]
    params = dict(params or {})
    unknown = sorted(set(params) - set(cls.__struct_fields__))
    if unknown:
        raise ValueError(f"{name} has no parameter {unknown[0]!r} (known: {', '.join(cls.__struct_fields__)})")
    for key, value in params.items():
        check_number(key, value)
    return cls(**{k: float(v) for k, v in params.items()})


def model_name(model: Model) -> str:
    """The literature name of a model instance ("gbm", "heston", "merton")."""
    return type(model).__struct_config__.tag  # type: ignore[return-value]


def long_run_vol(model: Model) -> float:
    """The model's typical annualised volatility (sigma, or sqrt(theta) for Heston)."""
    return math.sqrt(model.theta) if isinstance(model, Heston) else model.sigma


# -- numba kernels: (steps, paths) arrays, state carried in place --------------------------------


@njit(cache=True, parallel=True)
def _gbm_kernel(x: np.ndarray, z: np.ndarray, drift: float, vol: float, out: np.ndarray) -> None:  # pragma: no cover
    n, p = z.shape
    for j in prange(p):
        xj = x[j]
        for t in range(n):
            xj += drift + vol * z[t, j]
            out[t, j] = xj
        x[j] = xj


@njit(cache=True, parallel=True)
def _heston_kernel(
    x: np.ndarray,
    v: np.ndarray,
    z1: np.ndarray,
    z2: np.ndarray,
    mu: float,
    kappa: float,
    theta: float,
    xi: float,
    rho: float,
    dt: float,
    ito: float,
    x_out: np.ndarray,
    v_out: np.ndarray,
) -> None:  # pragma: no cover
    n, p = z1.shape
    rho_c = math.sqrt(max(0.0, 1.0 - rho * rho))
    for j in prange(p):
        xj = x[j]
        vj = v[j]  # the scheme's raw state: may dip below 0, only max(v, 0) is ever used
        for t in range(n):
            vp = max(vj, 0.0)
            sv = math.sqrt(vp * dt)
            w1 = z1[t, j]
            w2 = rho * w1 + rho_c * z2[t, j]
            xj += (mu - ito * vp) * dt + sv * w1
            vj += kappa * (theta - vp) * dt + xi * sv * w2
            x_out[t, j] = xj
            v_out[t, j] = max(vj, 0.0)
        x[j] = xj
        v[j] = vj


@njit(cache=True, parallel=True)
def _merton_kernel(
    x: np.ndarray,
    z: np.ndarray,
    counts: np.ndarray,
    zj: np.ndarray,
    drift: float,
    vol: float,
    jump_mu: float,
    jump_sigma: float,
    out: np.ndarray,
) -> None:  # pragma: no cover
    n, p = z.shape
    for j in prange(p):
        xj = x[j]
        for t in range(n):
            xj += drift + vol * z[t, j]
            k = counts[t, j]
            if k > 0:  # the sum of k N(jump_mu, jump_sigma^2) log jumps, drawn as one normal
                xj += jump_mu * k + jump_sigma * math.sqrt(k) * zj[t, j]
            out[t, j] = xj
        x[j] = xj


class PathChunk(msgspec.Struct, frozen=True, kw_only=True):
    """`steps` steps of `paths` paths, time-major: row t is the state after step t of this chunk."""

    log_s: np.ndarray
    """(steps, paths) log price (or the latent)."""
    var: np.ndarray | None = None
    """Heston only: (steps, paths) variance used from each step on (>= 0)."""
    jumps: np.ndarray | None = None
    """Merton only: (steps, paths) jump counts in each step."""

    def inst_vol(self, model: Model) -> np.ndarray:
        """(steps, paths) instantaneous annualised volatility after each step."""
        if self.var is not None:
            return np.sqrt(self.var)
        return np.full(self.log_s.shape, long_run_vol(model))


class PathGenerator:
    """A seeded stream of paths of one model; each `advance(n)` continues where the last ended."""

    def __init__(
        self,
        model: Model,
        s0: float | np.ndarray,
        dt: float,
        *,
        n_paths: int = 1,
        seed: int | np.random.SeedSequence = 0,
        latent: bool = False,
    ) -> None:
        """`s0` start price(s) (> 0; with `latent`, the start of the latent itself, any real);
        `dt` step in years (> 0); `seed` an int >= 0 or a SeedSequence."""
        self.model = model
        self.dt = check_number("dt", dt, 0.0, open_lo=True)
        if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 1:
            raise ValueError(f"n_paths={n_paths!r} must be an integer >= 1")
        self.n_paths = n_paths
        self.latent = latent
        start = np.broadcast_to(np.asarray(s0, dtype=np.float64), (n_paths,)).copy()
        if not np.isfinite(start).all() or (not latent and (start <= 0).any()):
            raise ValueError(f"s0={s0!r} must be {'finite' if latent else 'a positive price'}")
        self._x = start if latent else np.log(start)
        if isinstance(seed, np.random.SeedSequence):
            seq = seed
        else:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
                raise ValueError(f"seed={seed!r} must be an integer >= 0")
            seq = np.random.SeedSequence(int(seed))
        self._rngs = [np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(3)]
        self._v = np.full(n_paths, model.v0) if isinstance(model, Heston) else None
        self.steps = 0

    def advance(self, n_steps: int) -> PathChunk:
        """The next `n_steps` steps of every path."""
        if n_steps < 0:
            raise ValueError(f"n_steps={n_steps!r} must be >= 0")
        shape = (n_steps, self.n_paths)
        m, dt, ito = self.model, self.dt, 0.0 if self.latent else 0.5
        r0, r1, r2 = self._rngs
        out = np.empty(shape)
        z = r0.standard_normal(shape)
        self.steps += n_steps
        if isinstance(m, GBM):
            _gbm_kernel(self._x, z, (m.mu - ito * m.sigma**2) * dt, m.sigma * math.sqrt(dt), out)
            return PathChunk(log_s=out)
        if isinstance(m, Heston):
            assert self._v is not None
            var = np.empty(shape)
            z2 = r1.standard_normal(shape)
            _heston_kernel(self._x, self._v, z, z2, m.mu, m.kappa, m.theta, m.xi, m.rho, dt, ito, out, var)
            return PathChunk(log_s=out, var=var)
        comp = 0.0 if self.latent else m.compensator
        counts = r1.poisson(m.lam * dt, shape).astype(np.int64)
        zj = r2.standard_normal(shape)
        drift = (m.mu - comp - ito * m.sigma**2) * dt
        _merton_kernel(self._x, z, counts, zj, drift, m.sigma * math.sqrt(dt), m.jump_mu, m.jump_sigma, out)
        return PathChunk(log_s=out, jumps=counts)


def simulate(
    model: Model, s0: float, dt: float, n_steps: int, n_paths: int = 1, seed: int = 0, *, latent: bool = False
) -> PathChunk:
    """`n_steps` steps of `n_paths` paths from `s0` in one go (see PathGenerator)."""
    return PathGenerator(model, s0, dt, n_paths=n_paths, seed=seed, latent=latent).advance(n_steps)
