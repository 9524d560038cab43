"""Matching engine: a numba limit order book with price-time priority (`core`) and its
Python API (`book.OrderBook`)."""

from libs.lob.book import LobError, OpBatch, OrderBook, Trades
from libs.lob.core import BUY, SELL

__all__ = ["BUY", "SELL", "LobError", "OpBatch", "OrderBook", "Trades"]
