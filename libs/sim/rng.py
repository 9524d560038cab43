"""Counter-based random numbers for the agent kernel: draw k of stream s under seed is a
pure function (splitmix64 of the three), so each agent population has its own stream and an
extra agent (an execution algorithm) never shifts the draws of the others. That is what
makes a baseline and an algo run share their randomness (common random numbers)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@njit(cache=True, nogil=True, inline="always")
def uniform(seed: np.uint64, stream: int, counter: int) -> float:
    """Uniform in (0, 1) for (seed, stream, counter)."""
    z = seed + np.uint64(stream) * _C1 + np.uint64(counter) * _C2
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return (np.float64(z >> _S11) + 0.5) * _INV53


@njit(cache=True, nogil=True, inline="always")
def draw(seed: np.uint64, counters: np.ndarray, stream: int) -> float:
    """The next uniform of `stream`, advancing its counter."""
    c = counters[stream]
    counters[stream] = c + 1
    return uniform(seed, stream, c)


@njit(cache=True, nogil=True, inline="always")
def normal(u1: float, u2: float) -> float:
    """A standard normal from two uniforms (Box-Muller)."""
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, nogil=True, inline="always")
def exponential(u: float) -> float:
    """A unit-mean exponential from a uniform."""
    return -math.log(u)


@njit(cache=True, nogil=True, inline="always")
def quantile(q: np.ndarray, u: float) -> float:
    """Inverse CDF from evenly spaced quantiles q[0..n-1] (q[i] at probability i/(n-1))."""
    x = u * (q.shape[0] - 1)
    i = int(x)
    if i >= q.shape[0] - 1:
        return q[q.shape[0] - 1]
    f = x - i
    return q[i] + f * (q[i + 1] - q[i])
