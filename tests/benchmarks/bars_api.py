"""Bar API throughput: candles served per second by `GET /trading-data/data/{symbol}` (pages of
10,000 over real HTTP from chDB), and the raw store read beside it (what HTTP + JSON cost)."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from libs import config
from libs.bars.store import read_bars, write_bars
from services.runtime import Stack

BARS = 200_000
PAGE = 10_000


def line(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.6g} {unit}".rstrip(), flush=True)


def frame(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    px = 100 + np.cumsum(rng.normal(0, 0.05, n))
    ts = np.datetime64("2022-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(60, "s")
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).dt.replace_time_zone("UTC"),
            "open": px,
            "high": px + 0.1,
            "low": px - 0.1,
            "close": px + 0.02,
            "volume": rng.uniform(1, 100, n),
        }
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        stack = await Stack.open(config.load({}, home=Path(tmp) / "home", http_port=port))
        try:
            assert stack.store is not None
            write_bars(stack.store, "BENCH", frame(BARS), "1min")
            await stack.start("report")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                t0 = time.perf_counter()
                served = 0
                for page in range(1, BARS // PAGE + 1):
                    r = await http.get("/trading-data/data/BENCH", params={"page": page, "page_size": PAGE})
                    served += len(r.json()["candles"])
                dt_http = time.perf_counter() - t0
            t0 = time.perf_counter()
            for page in range(BARS // PAGE):
                read_bars(stack.store, "BENCH", order="desc", limit=PAGE, offset=page * PAGE)
            dt_store = time.perf_counter() - t0
        finally:
            await stack.close()
    assert served == BARS
    line("bars_api.candles_served_per_s", served / dt_http, "candles/s")
    line("bars_api.store_read_per_s", BARS / dt_store, "bars/s")


if __name__ == "__main__":
    asyncio.run(main())
