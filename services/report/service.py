"""report: reads ClickHouse and serves the run summary over NATS, and the HTTP API.

NATS request/reply on `svc.report.summary` (JSON reply). HTTP on MT_HTTP_PORT (default 8080,
0 = off): a Starlette app (`services.report.http_app`) served by uvicorn inside this service's
event loop — `GET /health`, `GET /report` (JSON), `GET /report.txt`, and the OHLCV bar manager's
routes (`/trading-data/*`, `/nightly-update/*`, `/data-analysis/completeness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import msgspec
import uvicorn
from nats.aio.msg import Msg

from proto import subjects
from services.report.http_app import build_app
from services.report.summary import build
from services.runtime import Service

STOP_WAIT_S = 10.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the host process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ReportService(Service):
    """Serves the summary and the HTTP API; holds no state of its own."""

    name = "report"
    uses_store = True

    async def start(self) -> None:
        self._sub = await self.ctx.bus.nc.subscribe(subjects.svc("report", "summary"), cb=self._on_request)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        port = self.ctx.settings.http_port
        if port:
            try:
                await self._start_http(self.ctx.settings.http_host, port)
            except BaseException:
                await self._sub.unsubscribe()
                raise

    async def _start_http(self, host: str, port: int) -> None:
        """Bind first (so a taken port fails start() with a clear OSError), then serve."""
        app = build_app(self.store, self.ctx.bus.nc, self.summary_json, self.log, self.ctx.settings)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"report: cannot listen on {host}:{port}: {e.strerror}") from None
        sock.listen(1024)
        sock.setblocking(False)
        config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off", access_log=False)
        self._server = _EmbeddedServer(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
                raise RuntimeError("report: the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        self.log.info("http listening", host=host, port=port)

    async def stop(self) -> None:
        await self._sub.unsubscribe()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._serving, STOP_WAIT_S)
            except TimeoutError:
                self._server.force_exit = True
                await asyncio.wait_for(self._serving, STOP_WAIT_S)

    async def summary_json(self) -> bytes:
        report = await asyncio.to_thread(build, self.store)
        return msgspec.json.encode(report)

    async def _on_request(self, msg: Msg) -> None:
        try:
            await msg.respond(await self.summary_json())
        except Exception as e:
            await msg.respond(msgspec.json.encode({"error": str(e)}))


SERVICE = ReportService
