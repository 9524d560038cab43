"""GBM, Heston and Merton paths against their theory: moments, mean reversion, jumps; seeds; bad params.

Tolerances are a few standard errors of the estimator (computed from the theory's variance),
plus, where the scheme is an Euler discretisation, a stated O(dt) allowance.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from libs.synth.paths import GBM, Heston, Merton, PathGenerator, make_model, simulate

Z = 4.0
"""Standard errors allowed: a correct model fails one such check about 1 time in 16,000."""


def _excess_kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    return float((d**4).mean() / (d**2).mean() ** 2 - 3.0)


def test_gbm_log_returns_have_the_theoretical_mean_and_variance() -> None:
    mu, sigma, dt = 0.08, 0.3, 1 / 252
    steps, paths = 252, 4_000
    path = simulate(GBM(mu=mu, sigma=sigma), 100.0, dt, steps, paths, seed=1)
    x = np.vstack([np.full((1, paths), math.log(100.0)), path.log_s])
    r = np.diff(x, axis=0).ravel()
    n = r.size
    mean, var = (mu - 0.5 * sigma**2) * dt, sigma**2 * dt
    assert abs(r.mean() - mean) < Z * math.sqrt(var / n)
    assert abs(r.var() - var) < Z * var * math.sqrt(2 / (n - 1))
    # E[S_T] = S_0 e^{mu T}: S_T is log-normal with variance S0^2 e^{2 mu T}(e^{sigma^2 T} - 1)
    s_t = np.exp(path.log_s[-1])
    t = steps * dt
    sd = 100.0 * math.exp(mu * t) * math.sqrt(math.expm1(sigma**2 * t))
    assert abs(s_t.mean() - 100.0 * math.exp(mu * t)) < Z * sd / math.sqrt(paths)
    assert abs(_excess_kurtosis(r)) < Z * math.sqrt(24 / n), "GBM steps are normal: no excess kurtosis"


def test_heston_variance_never_negative_and_mean_reverts_to_theta() -> None:
    m = Heston(mu=0.0, kappa=3.0, theta=0.04, xi=0.6, rho=-0.7, v0=0.16)  # 2 kappa theta < xi^2: v hits 0
    dt, steps, paths = 1 / 2520, 5_040, 3_000
    path = simulate(m, 100.0, dt, steps, paths, seed=2)
    assert path.var is not None
    assert (path.var >= 0).all()
    assert (path.var == 0).any(), "the Feller condition fails here: the truncation must have been exercised"
    for years in (0.1, 0.5, 2.0):
        t = round(years / dt) - 1
        expected = m.theta + (m.v0 - m.theta) * math.exp(-m.kappa * years)
        v = path.var[t]
        # Euler bias is O(dt): allow kappa * dt * |v0 - theta| on top of the sampling error
        tol = Z * v.std() / math.sqrt(paths) + m.kappa * dt * abs(m.v0 - m.theta)
        assert abs(v.mean() - expected) < tol, (years, v.mean(), expected)


def test_heston_recovered_brownian_increments_have_correlation_rho() -> None:
    m = Heston(mu=0.05, kappa=2.0, theta=0.04, xi=0.3, rho=-0.6, v0=0.04)
    dt, steps, paths = 1 / 2520, 2_000, 200
    path = simulate(m, 50.0, dt, steps, paths, seed=3)
    assert path.var is not None
    x = np.vstack([np.full((1, paths), math.log(50.0)), path.log_s])
    v = np.vstack([np.full((1, paths), m.v0), path.var])
    v_now, v_next = v[:-1], v[1:]
    ok = (v_now > 0) & (v_next > 0)  # truncation untouched: the scheme's equations invert exactly
    sv = np.sqrt(np.where(ok, v_now, 1.0) * dt)
    dw1 = (np.diff(x, axis=0) - (m.mu - 0.5 * v_now) * dt) / sv
    dw2 = (v_next - v_now - m.kappa * (m.theta - v_now) * dt) / (m.xi * sv)
    a, b = dw1[ok], dw2[ok]
    assert abs(a.std() - 1) < 0.01 and abs(b.std() - 1) < 0.01
    r = float(np.corrcoef(a, b)[0, 1])
    assert abs(r - m.rho) < Z * (1 - m.rho**2) / math.sqrt(a.size)


def test_heston_returns_have_fatter_tails_than_gbm() -> None:
    dt, steps, paths = 1 / 252, 2_520, 200  # ten years of daily returns
    heston = simulate(Heston(kappa=1.0, theta=0.04, xi=0.5, rho=-0.5, v0=0.04), 100.0, dt, steps, paths, seed=4)
    gbm = simulate(GBM(sigma=0.2), 100.0, dt, steps, paths, seed=4)
    k_h = _excess_kurtosis(np.diff(heston.log_s, axis=0).ravel())
    k_g = _excess_kurtosis(np.diff(gbm.log_s, axis=0).ravel())
    se = math.sqrt(24 / (steps * paths))
    assert k_h > 10 * se, k_h
    assert abs(k_g) < Z * se


def test_merton_jump_count_and_compensated_mean() -> None:
    m = Merton(mu=0.05, sigma=0.2, lam=5.0, jump_mu=-0.1, jump_sigma=0.15)
    dt, steps, paths = 1 / 252, 252, 20_000
    path = simulate(m, 100.0, dt, steps, paths, seed=5)
    assert path.jumps is not None
    t = steps * dt
    expected_jumps = m.lam * t * paths
    assert abs(path.jumps.sum() - expected_jumps) < Z * math.sqrt(expected_jumps)  # Poisson: variance = mean
    s_t = np.exp(path.log_s[-1])
    target = 100.0 * math.exp(m.mu * t)
    se = s_t.std() / math.sqrt(paths)
    assert abs(s_t.mean() - target) < Z * se
    uncompensated = 100.0 * math.exp((m.mu + m.compensator) * t)
    assert abs(uncompensated - target) > 10 * se, "the check must be able to see a missing compensation"
    # log return variance: sigma^2 T + lam T (jump_mu^2 + jump_sigma^2)
    lr = path.log_s[-1] - math.log(100.0)
    var = m.sigma**2 * t + m.lam * t * (m.jump_mu**2 + m.jump_sigma**2)
    assert abs(lr.var() - var) < Z * lr.var() * math.sqrt((_excess_kurtosis(lr) + 2) / paths)


@pytest.mark.parametrize("model", [GBM(), Heston(), Merton(lam=30.0)])
def test_same_seed_same_path_other_seed_other_path_any_chunking(model: GBM | Heston | Merton) -> None:
    one = simulate(model, 10.0, 1e-4, 3_000, 3, seed=9)
    again = simulate(model, 10.0, 1e-4, 3_000, 3, seed=9)
    other = simulate(model, 10.0, 1e-4, 3_000, 3, seed=10)
    assert np.array_equal(one.log_s, again.log_s)
    assert not np.array_equal(one.log_s, other.log_s)
    gen = PathGenerator(model, 10.0, 1e-4, n_paths=3, seed=9)
    parts = [gen.advance(n) for n in (1, 999, 0, 2_000)]
    assert np.array_equal(np.vstack([p.log_s for p in parts]), one.log_s)
    if one.var is not None:
        assert np.array_equal(np.vstack([p.var for p in parts]), one.var)  # type: ignore[misc]


def test_paths_do_not_depend_on_the_thread_count() -> None:
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = simulate(Heston(), 100.0, 1e-3, 500, 64, seed=11).log_s
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        multi = simulate(Heston(), 100.0, 1e-3, 500, 64, seed=11).log_s
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(single, multi)


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("gbm", {"sigma": -0.1}, "sigma=-0.1"),
        ("gbm", {"mu": float("nan")}, "mu=nan"),
        ("heston", {"rho": 1.5}, "rho=1.5"),
        ("heston", {"rho": -1.01}, "rho=-1.01"),
        ("heston", {"kappa": 0.0}, "kappa=0.0"),
        ("heston", {"theta": -0.04}, "theta=-0.04"),
        ("heston", {"xi": -1.0}, "xi=-1.0"),
        ("heston", {"v0": -0.01}, "v0=-0.01"),
        ("merton", {"lam": -2.0}, "lam=-2.0"),
        ("merton", {"jump_sigma": -0.1}, "jump_sigma=-0.1"),
        ("gbm", {"kappa": 1.0}, "'kappa'"),
        ("bachelier", {}, "model='bachelier'"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter_and_value(name: str, params: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        make_model(name, params)


def test_bad_generator_arguments() -> None:
    with pytest.raises(ValueError, match=r"s0=-1"):
        PathGenerator(GBM(), -1.0, 0.01)
    with pytest.raises(ValueError, match=r"dt=0"):
        PathGenerator(GBM(), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"seed=-3"):
        PathGenerator(GBM(), 1.0, 0.01, seed=-3)
    with pytest.raises(ValueError, match=r"n_paths=0"):
        PathGenerator(GBM(), 1.0, 0.01, n_paths=0)
