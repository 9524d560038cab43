"""Synthetic markets: GBM / Heston / Merton price paths with microstructure, as MarketTwin events.

`paths` (seeded numba paths), `micro` (ticks, spread, depth, trades), `assets` (equity, crypto,
binary presets), `market` (BookBatch / TradeBatch / 1-minute BarBatch chunks).
"""

from libs.synth.assets import ASSETS, PRESETS, MarketConfig, resolve
from libs.synth.market import FeedChunk, SyntheticFeed
from libs.synth.micro import MicroParams
from libs.synth.paths import GBM, MODELS, Heston, Merton, PathGenerator, simulate

__all__ = [
    "ASSETS",
    "GBM",
    "MODELS",
    "PRESETS",
    "FeedChunk",
    "Heston",
    "MarketConfig",
    "Merton",
    "MicroParams",
    "PathGenerator",
    "SyntheticFeed",
    "resolve",
    "simulate",
]
