"""Ingest sources wired into the service and the CLI, on a real nats-server and chDB."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto.units import PRICE_SCALE
from services.cli import main
from services.demo import RECORDERS
from services.runtime import Stack


async def test_a_generator_source_runs_inside_the_ingest_service(settings: Settings) -> None:
    settings = msgspec.structs.replace(settings, ingest_sources="binary?step_ms=100&seed=3")
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        await stack.start("ingest")
        bus = await stack.connect("test")
        for _ in range(100):  # the service paces at real time: 10 book rows a second
            await asyncio.sleep(0.1)
            if stack.store.table_counts()["book_tops"] >= 10:
                break
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        tops = stack.store.query_df("SELECT venue, bid_px, ask_px FROM {db}.book_tops")
        assert tops.height >= 10
        assert set(tops["venue"]) == {"synthetic"}
        bid, ask = tops["bid_px"].to_numpy(), tops["ask_px"].to_numpy()
        assert (bid < ask).all() and (bid > 0).all() and (ask < PRICE_SCALE).all()  # a binary: inside (0, $1)
        assert ((bid % 100) == 0).all()  # on the $0.01 grid
    finally:
        await stack.close()


async def test_an_unknown_source_is_named_when_ingest_starts(settings: Settings) -> None:
    stack = await Stack.open(msgspec.structs.replace(settings, ingest_sources="synthetic,nonsense"))
    try:
        with pytest.raises(ValueError, match="unknown source 'nonsense'"):
            await stack.start("ingest")
    finally:
        await stack.close()


async def test_markettwin_generate_publishes_the_requested_market_seconds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")
        monkeypatch.setenv("NATS_URL", stack.nats_url)
        monkeypatch.setenv("MT_HOME", str(settings.home))
        argv = ["generate", "--model", "merton", "--asset", "equity", "--seconds", "30", "--seed", "5", "--no-bars"]
        code = await asyncio.to_thread(main, argv)
        assert code == 0
        out = capsys.readouterr().out
        printed = msgspec.json.decode(out.strip().splitlines()[-1])
        assert printed["book_rows"] == 30 and printed["source"].startswith("merton:equity")
        assert await wait_idle(bus, RECORDERS, timeout_s=30)
        assert stack.store.table_counts()["book_tops"] == 30
        assert stack.store.table_counts()["md_trades"] == printed["trade_rows"]
    finally:
        await stack.close()


def test_generate_with_a_bad_parameter_names_it(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    assert main(["generate", "--param", "sigma=-1"]) == 2
    assert "sigma" in capsys.readouterr().err
