"""How a service is hosted: alone (`markettwin run <service>`) or all in one process (`up`).

Each service gets its own NATS connection (as in production) and shares the process's
Store: chDB allows one process per data directory, which is why the embedded mode is
one process.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

import services
from libs.bus import Bus, LocalNatsServer, subscriptions_live
from libs.config import Settings
from libs.store import Store, open_store
from proto import streams


@dataclass
class ServiceContext:
    """What a running service is handed: settings, its own bus connection, the store."""

    settings: Settings
    bus: Bus
    store: Store | None
    log: Any


class Service:
    """A service: thin wiring of handlers around libs. Subclasses set `name`, and
    `uses_store` when they read or write ClickHouse."""

    name: str = ""
    uses_store: bool = False

    @property
    def store(self) -> Store:
        """The ClickHouse store (only for services with `uses_store`)."""
        if self.ctx.store is None:
            raise RuntimeError(f"service {self.name} was started without a store")
        return self.ctx.store

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.log = ctx.log

    async def start(self) -> None:
        """Subscribe and start background work; return once running."""

    async def stop(self) -> None:
        """Stop consuming and flush; the bus connection is closed by the host."""


def service_names() -> list[str]:
    """Every package under services/ with a service.py, i.e. every deployable service."""
    root = Path(services.__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(root)]) if (root / m.name / "service.py").exists())


def service_class(name: str) -> type[Service]:
    """The Service subclass defined by services/<name>/service.py."""
    if name not in service_names():
        raise ValueError(f"unknown service {name!r}; known: {', '.join(service_names())}")
    module = importlib.import_module(f"services.{name}.service")
    return module.SERVICE


@dataclass
class Stack:
    """A set of running services in this process, with the NATS server and store they use."""

    settings: Settings
    store: Store | None
    nats_url: str
    server: LocalNatsServer | None = None
    running: dict[str, Service] = field(default_factory=dict)
    buses: list[Bus] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, with_store: bool = True) -> Stack:
        """Start a local nats-server unless NATS_URL is set; open and migrate the store.

        Whatever was started is stopped again if a later step fails.
        """
        server = None
        store = None
        url = settings.nats_url
        try:
            if not url:
                server = await asyncio.to_thread(LocalNatsServer(settings.home / "nats").start)
                url = server.url
            if with_store:
                store = await asyncio.to_thread(open_store, settings)
                await asyncio.to_thread(store.migrate)
            stack = cls(settings=settings, store=store, nats_url=url, server=server)
            bus = await stack.connect("setup")
            await bus.ensure_streams(streams.ALL)
            return stack
        except BaseException:
            if store is not None:
                await asyncio.to_thread(store.close)
            if server is not None:
                await server.astop()
            raise

    async def connect(self, name: str) -> Bus:
        """A new NATS connection owned by the stack (closed with it)."""
        bus = await Bus.connect(self.nats_url, name=f"markettwin-{name}")
        self.buses.append(bus)
        return bus

    async def start(self, name: str) -> Service:
        """Start one service with its own connection."""
        bus = await self.connect(name)
        ctx = ServiceContext(
            settings=self.settings, bus=bus, store=self.store, log=structlog.get_logger().bind(service=name)
        )
        svc = service_class(name)(ctx)
        await svc.start()
        # the server has processed every subscription the service made: a request sent right after
        # start() returns (from any connection) reaches it instead of finding no responder
        await subscriptions_live(bus.nc)
        self.running[name] = svc
        ctx.log.info("service started")
        return svc

    async def stop_service(self, name: str) -> None:
        """Stop one service and close its connection (also when stopping fails)."""
        svc = self.running.pop(name)
        try:
            await svc.stop()
        finally:
            if svc.ctx.bus in self.buses:
                self.buses.remove(svc.ctx.bus)
            await svc.ctx.bus.close()

    async def close(self) -> None:
        """Stop services in reverse start order, close connections, the store and the server.

        Every step runs even when an earlier one fails (the first error is raised at the end):
        a store left open would keep chDB's directory locked, a server left running orphaned.
        """
        errors: list[BaseException] = []
        for name in reversed(list(self.running)):
            try:
                await self.stop_service(name)
            except Exception as e:
                structlog.get_logger().exception("service stop failed", service=name, error=str(e))
                errors.append(e)
        for bus in self.buses:
            try:
                await bus.close()
            except Exception as e:
                errors.append(e)
        self.buses.clear()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self.server is not None:
            await self.server.astop()
        if errors:
            raise errors[0]
