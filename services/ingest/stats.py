"""What an ingest source run published, one shape for every source (printed by the CLI, logged)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from proto.events import BarBatch, BookBatch, TradeBatch


class SourceStats(msgspec.Struct, kw_only=True):
    """Messages and rows by kind a source published, the market-time span and the wall seconds."""

    source: str
    messages: int = 0
    book_rows: int = 0
    trade_rows: int = 0
    bar_rows: int = 0
    first_ts: int = 0
    """Market time of the first row published (UTC ns; 0 before any)."""
    last_ts: int = 0
    seconds: float = 0.0

    def count(self, batches: Iterable[object]) -> None:
        """Add one published message per batch and its rows to the totals of its kind."""
        for b in batches:
            self.messages += 1
            if isinstance(b, BookBatch):
                self.book_rows += b.rows
            elif isinstance(b, TradeBatch):
                self.trade_rows += b.rows
            elif isinstance(b, BarBatch):
                self.bar_rows += b.rows


class ReplayStats(SourceStats, kw_only=True):
    """A file replay's stats, with the time spent reading and converting the file."""

    load_seconds: float = 0.0


class GeneratorStats(SourceStats, kw_only=True):
    """A generator run's stats, with the path steps and the market seconds generated."""

    steps: int = 0
    market_s: float = 0.0
