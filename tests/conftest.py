"""Shared fixtures: a real nats-server on free ports and a real chDB store, each in a temp dir."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from libs import config
from libs.bus import Bus, LocalNatsServer
from libs.config import Settings
from proto import streams

DATA_DIR = Path(os.environ.get("MT_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def needs_data(*parts: str) -> Path:
    """The path of a shared data set, or skip the test saying where it was looked for."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set not found at {path} (it lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def bus(nats_server: LocalNatsServer) -> AsyncIterator[Bus]:
    b = await Bus.connect(nats_server.url, name="test")
    await b.ensure_streams(streams.ALL)
    yield b
    await b.close()


@pytest.fixture
def settings(tmp_path: Path, nats_server: LocalNatsServer) -> Settings:
    """Settings for a stack on the test's nats-server and a chDB store in the temp dir."""
    return config.load({}, home=tmp_path / "home", nats_url=nats_server.url, http_port=0)
