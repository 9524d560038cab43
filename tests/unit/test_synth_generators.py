"""The generator spec (JSON and short form, with clear errors) and the runner's pacing on a virtual clock."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import pytest

from libs.clock import VirtualClock
from proto import subjects
from proto.events import BarBatch, BookBatch, TradeBatch
from services.ingest.generators import (
    GeneratorSpec,
    add_arguments,
    parse_spec,
    run_generator,
    spec_from_args,
)


def test_short_form_and_json_give_the_same_spec() -> None:
    short = parse_spec("heston:crypto?seed=3&step_ms=100&kappa=2.5&trade_rate=3&instruments=BTC|ETH&bars=false")
    js = parse_spec(
        '{"model": "heston", "asset": "crypto", "seed": 3, "step_ms": 100, "params": {"kappa": 2.5},'
        ' "micro": {"trade_rate": 3}, "instruments": ["BTC", "ETH"], "bars": false}'
    )
    assert short == js
    assert short.params == {"kappa": 2.5} and short.micro == {"trade_rate": 3.0}
    assert parse_spec("binary") == GeneratorSpec(asset="binary")
    assert parse_spec("merton") == GeneratorSpec(model="merton")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gbm:equity?seed=-1", "seed=-1"),
        ("gbm:equity?seed=x", "seed='x'"),
        ("gbm:equity?volatility=3", "unknown key 'volatility'"),
        ("gbm:fx", "asset='fx'"),
        ("sabr:equity", "model='sabr'"),
        ("gbm:equity:x", "must look like model:asset"),
        ("gbm:equity?levels=0", "levels=0"),
        ("gbm:equity?start=yesterday", "start='yesterday'"),
        ('{"model": "gbm", "seeds": 1}', "unknown field `seeds`"),
        ('{"model": "gbm", "seed": "1"}', "Expected `int`, got `str` - at `$.seed`"),
        ('{"model": "gbm"', "not valid JSON"),
    ],
)
def test_bad_specs_raise_naming_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("`", ".").replace("$", r"\$").replace("?", r"\?")):
        parse_spec(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("heston:equity?rho=1.5", "rho=1.5"),
        ("gbm:equity?sigma=-0.2", "sigma=-0.2"),
        ("heston:crypto?kappa=0", "kappa=0.0"),
        ("gbm:binary?s0=1.5", "s0=1.5"),
        ("gbm:equity?tick=0", "tick=0.0"),
        ("gbm:equity?step_ms=7", "step_ms=7"),
    ],
)
def test_bad_parameters_raise_when_the_feed_is_built(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        parse_spec(text).feed(0)


def test_cli_options_build_the_spec() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--model", "merton", "--asset", "crypto", "--seed", "4", "--param", "lam=12", "--param", "trade_rate=2",
         "--instruments", "BTC,ETH", "--no-bars"]
    )  # fmt: skip
    spec = spec_from_args(args)
    assert spec == GeneratorSpec(
        model="merton", asset="crypto", seed=4, params={"lam": 12.0}, micro={"trade_rate": 2.0},
        instruments=["BTC", "ETH"], bars=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="'depth'"):
        spec_from_args(parser.parse_args(["--param", "depth=3"]))


class FakeTime:
    """Wall time that only moves when the runner sleeps."""

    def __init__(self) -> None:
        self.ns = 0
        self.sleeps: list[float] = []

    def wall_ns(self) -> int:
        return self.ns

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.ns += round(s * 1e9)


async def test_paced_run_releases_each_chunk_at_its_market_time() -> None:
    t = FakeTime()
    clock = VirtualClock(10.0, sleep=t.sleep, wall_ns=t.wall_ns)
    seen: list[tuple[int, int]] = []  # (wall ns when published, last book ts)
    start = 1_700_000_040_000_000_000

    async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
        for b in batches:
            if isinstance(b, BookBatch):
                seen.append((t.ns, b.book_ts[-1]))

    stats = await run_generator(publish, parse_spec("gbm:equity?step_ms=100"), 10.0, 120.0, start_ns=start, clock=clock)
    assert stats.steps == 1_200 and stats.book_rows == 1_200 and stats.market_s == 120.0
    for wall, last_ts in seen:
        assert wall >= (last_ts - start) / 10, "an event went out before its market time"
        assert wall - (last_ts - start) / 10 < 1e6
    assert t.ns == pytest.approx((start + 119_900_000_000 - start) / 10, abs=1e6)
    assert len(seen) > 100, "paced chunks span at most ~0.1 s of wall time"


async def test_unpaced_run_counts_and_subjects() -> None:
    out: list[BookBatch | TradeBatch | BarBatch] = []

    async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
        out.extend(batches)

    spec = parse_spec("binary?instruments=X|Y&step_ms=500&chunk_steps=100")
    stats = await run_generator(publish, spec, None, 90.0, start_ns=1_700_000_040_000_000_000)
    books = [b for b in out if isinstance(b, BookBatch)]
    trades = [b for b in out if isinstance(b, TradeBatch)]
    bars = [b for b in out if isinstance(b, BarBatch)]
    assert stats.steps == 180 and sum(b.rows for b in books) == stats.book_rows == 360
    assert sum(b.rows for b in trades) == stats.trade_rows
    assert sum(b.rows for b in bars) == stats.bar_rows == 4, "90 s from :40 touches 2 minutes x 2 instruments"
    assert stats.messages == len(out)
    assert subjects.of_batch(books[0]) == "md.book.synthetic._multi"
    assert subjects.of_batch(bars[0]) == "md.bar.synthetic._multi.1min"
    one = parse_spec("equity")
    single: list = []

    async def keep(batches: Sequence) -> None:
        single.extend(batches)

    await run_generator(keep, one, 0, 61.0, start_ns=0)
    assert {subjects.of_batch(b) for b in single} == {
        "md.book.synthetic.SYN-EQ", "md.trade.synthetic.SYN-EQ", "md.bar.synthetic.SYN-EQ.1min"
    }  # fmt: skip
    with pytest.raises(ValueError, match="duration_s=-1"):
        await run_generator(keep, one, None, -1)


async def test_a_paced_run_without_a_start_begins_now_never_in_the_past() -> None:
    t = FakeTime()
    clock = VirtualClock(1.0, sleep=t.sleep, wall_ns=t.wall_ns)
    books: list[BookBatch] = []
    bars: list[BarBatch] = []

    async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
        books.extend(b for b in batches if isinstance(b, BookBatch))
        bars.extend(b for b in batches if isinstance(b, BarBatch))

    before = time.time_ns()
    stats = await run_generator(publish, parse_spec("gbm:equity?step_ms=500"), 1.0, 3.0, clock=clock)
    after = time.time_ns()
    assert before <= stats.first_ts <= after  # now, not floored to the minute (up to 60 s in the past)
    assert books[0].book_ts[0] == stats.first_ts and stats.steps == 6
    minute = stats.first_ts // 60_000_000_000 * 60_000_000_000
    # the first bar is the current, partial minute (3 s may reach into the next one)
    assert bars[0].bar_ts[0] == minute and all(b.bar_ts[0] - minute in (0, 60_000_000_000) for b in bars)


async def test_an_explicit_start_is_reproducible_and_unpaced_runs_start_on_the_minute() -> None:
    out: list[list[int]] = []
    for _ in range(2):
        got: list[int] = []

        async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
            got.extend(ts for b in batches if isinstance(b, BookBatch) for ts in b.book_ts)  # noqa: B023

        await run_generator(publish, parse_spec("gbm:equity?start=2024-03-01T14:30:15Z"), None, 5.0)
        out.append(got)
    assert out[0] == out[1] and out[0][0] == 1_709_303_415_000_000_000
    stats = await run_generator(lambda b: asyncio.sleep(0), parse_spec("gbm:equity"), None, 1.0)
    assert stats.first_ts % 60_000_000_000 == 0
