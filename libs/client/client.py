"""`MarketTwin`: the Python client of a running MarketTwin (over NATS)."""

from __future__ import annotations

import os

from libs.client.connection import Connection
from libs.client.simulation import Simulation


class MarketTwin:
    """A connection to MarketTwin at `nats_url` (default: the NATS_URL environment variable).

    Synchronous (nats-py runs on the client's own thread); use it as a context manager or
    call `close()`::

        with MarketTwin("nats://127.0.0.1:4222") as mt:
            job = mt.simulation.run(symbol="AMZN", cal_date="2012-06-21", n_runs=10)
            mt.simulation.wait(job["job_id"])
    """

    def __init__(self, nats_url: str | None = None, timeout_s: float = 30.0) -> None:
        url = nats_url or os.environ.get("NATS_URL", "")
        if not url:
            raise ValueError("MarketTwin needs a NATS server: pass nats_url='nats://host:4222' or set NATS_URL")
        self._conn = Connection(url, connect_timeout_s=min(10.0, timeout_s))
        self.simulation = Simulation(self._conn, timeout_s)

    @property
    def nats_url(self) -> str:
        return self._conn.url

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> MarketTwin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
