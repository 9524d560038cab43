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


def docker_available() -> bool:
    """True when a Docker engine answers (a docker CLI or client library alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def nats_container_url() -> Iterator[str]:
    """A NATS server (JetStream on) in a container, when a Docker engine is present."""
    if not docker_available():
        pytest.skip("Docker engine not available")
    from testcontainers.community.nats import NatsContainer

    with NatsContainer("nats:2.11-alpine", jetstream=True) as container:
        yield container.nats_uri()


@pytest.fixture(params=["local", pytest.param("container", marks=pytest.mark.docker)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A bus on a local nats-server, and (with Docker) on a NATS container, streams created."""
    local = request.param == "local"
    url = request.getfixturevalue("nats_server").url if local else request.getfixturevalue("nats_container_url")
    b = await Bus.connect(url, name="test")
    await b.ensure_streams(streams.ALL)
    yield b
    if not local:  # the container is shared by the session: leave it empty for the next test
        for d in streams.ALL:
            await b.js.delete_stream(d.name)
    await b.close()


@pytest.fixture
def settings(tmp_path: Path, nats_server: LocalNatsServer) -> Settings:
    """Settings for a stack on the test's nats-server and a chDB store in the temp dir."""
    return config.load({}, home=tmp_path / "home", nats_url=nats_server.url, http_port=0)
