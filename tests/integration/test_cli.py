"""The `markettwin` command: bad input gets a clear error; `up` and `run` host real services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from libs.bus import LocalNatsServer, free_port
from services.cli import main
from services.runtime import service_names

EXE = [sys.executable, "-m", "services.cli"]


def test_services_are_discovered_from_the_folder() -> None:
    assert service_names() == ["detect", "ingest", "paper", "recorder", "report"]


def test_run_without_nats_url_names_the_variable(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    assert main(["run", "detect"]) == 2
    assert "NATS_URL" in capsys.readouterr().err


def test_unknown_service_in_up_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--services", "detect,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_bad_env_value_is_named(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("MT_SYNTH_RATE", "lots")
    assert main(["services"]) == 2
    assert "MT_SYNTH_RATE='lots'" in capsys.readouterr().err


def _get(url: str, deadline_s: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=20) as r:
                return r.status, r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_up_serves_the_report_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"MT_HOME": str(tmp_path / "home"), "MT_HTTP_PORT": str(port), "MT_INGEST_SOURCES": "none"}
    env.pop("NATS_URL", None)
    proc = subprocess.Popen([*EXE, "up"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert _get(f"http://127.0.0.1:{port}/health") == (200, "ok\n")
        status, body = _get(f"http://127.0.0.1:{port}/report.txt")
        assert status == 200 and "MarketTwin run report" in body and "book_tops" in body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "markettwin up: recorder, report, paper, detect, ingest" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_hosts_one_service_against_an_existing_nats(tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as nats:
        port = free_port()
        env = os.environ | {"MT_HOME": str(tmp_path / "home"), "NATS_URL": nats.url, "MT_HTTP_PORT": str(port)}
        proc = subprocess.Popen([*EXE, "run", "report"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert _get(f"http://127.0.0.1:{port}/health")[0] == 200
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert f"markettwin up: report on {nats.url}" in err
        finally:
            if proc.poll() is None:
                proc.kill()
