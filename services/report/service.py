"""report: reads ClickHouse and serves the run summary over NATS and HTTP.

NATS request/reply on `svc.report.summary` (JSON reply); HTTP on MT_HTTP_PORT (default
8080, 0 = off): `GET /health`, `GET /report` (JSON) and `GET /report.txt`.
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.aio.msg import Msg

from proto import subjects
from services.report.summary import build, render
from services.runtime import Service

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class ReportService(Service):
    """Serves the summary on request; holds no state of its own."""

    name = "report"
    uses_store = True

    async def start(self) -> None:
        self._sub = await self.ctx.bus.nc.subscribe(subjects.svc("report", "summary"), cb=self._on_request)
        self._server: asyncio.Server | None = None
        port = self.ctx.settings.http_port
        if port:
            host = self.ctx.settings.http_host
            self._server = await asyncio.start_server(self._http, host, port)
            self.log.info("http listening", host=host, port=port)

    async def stop(self) -> None:
        await self._sub.unsubscribe()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def summary_json(self) -> bytes:
        report = await asyncio.to_thread(build, self.store)
        return msgspec.json.encode(report)

    async def _on_request(self, msg: Msg) -> None:
        try:
            await msg.respond(await self.summary_json())
        except Exception as e:
            await msg.respond(msgspec.json.encode({"error": str(e)}))

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.1 handler: one GET per connection."""
        try:
            line = (await reader.readline()).decode(errors="replace").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            status, ctype, body = 404, "text/plain", b"not found\n"
            if len(line) < 2 or line[0] != "GET":
                status, body = 405, b"only GET\n"
            elif line[1] == "/health":
                status, body = 200, b"ok\n"
            elif line[1] == "/report":
                status, ctype, body = 200, "application/json", await self.summary_json()
            elif line[1] == "/report.txt":
                report = await asyncio.to_thread(build, self.store)
                status, body = 200, (render(report) + "\n").encode()
        except Exception as e:
            status, ctype, body = 500, "text/plain", f"{e}\n".encode()
        head = f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


SERVICE = ReportService
