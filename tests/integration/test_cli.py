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
    assert service_names() == ["bars", "detect", "ingest", "paper", "recorder", "report", "sim", "simjobs"]


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


def _get(url: str, deadline_s: float = 30.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=20) as r:
                return r.status, r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_up_serves_the_report_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    admin = "admin-token-for-this-test"
    env = os.environ | {
        "MT_HOME": str(tmp_path / "home"),
        "MT_HTTP_PORT": str(port),
        "MT_INGEST_SOURCES": "none",
        "MT_ADMIN_TOKEN": admin,
    }
    env.pop("NATS_URL", None)
    proc = subprocess.Popen([*EXE, "up"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert _get(f"http://127.0.0.1:{port}/health") == (200, "ok\n")
        status, body = _get(f"http://127.0.0.1:{port}/report.txt", headers={"Authorization": f"Bearer {admin}"})
        assert proc.stderr is not None
        for line in proc.stderr:
            if "markettwin up:" in line:
                assert "markettwin up: recorder, report, paper, detect, ingest" in line
                break
        assert status == 200 and "MarketTwin run report" in body and "book_tops" in body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_hosts_one_service_against_an_existing_nats(tmp_path: Path) -> None:
    with LocalNatsServer(tmp_path / "nats") as nats:
        env = os.environ | {"MT_HOME": str(tmp_path / "home"), "NATS_URL": nats.url}
        env.pop("CLICKHOUSE_URL", None)
        proc = subprocess.Popen([*EXE, "run", "detect"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "markettwin up:" in line:
                    assert f"markettwin up: detect on {nats.url}" in line
                    break
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert not (tmp_path / "home" / "clickhouse").exists(), "detect needs no store"
        finally:
            if proc.poll() is None:
                proc.kill()


def test_run_of_a_store_service_needs_clickhouse_url(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    assert main(["run", "recorder"]) == 2
    assert "markettwin run recorder needs CLICKHOUSE_URL" in capsys.readouterr().err


def test_up_with_the_store_locked_by_another_process_fails_clearly(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, chdb.session as s; x = s.Session(sys.argv[1]); input()",
         str(tmp_path / "home" / "clickhouse")],
        stdin=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)
        env = os.environ | {"MT_HOME": str(tmp_path / "home"), "MT_HTTP_PORT": "0", "MT_INGEST_SOURCES": "none"}
        env.pop("NATS_URL", None)
        done = subprocess.run([*EXE, "up"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert "another MarketTwin process holds the ClickHouse data directory" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        holder.communicate("\n", timeout=30)


def test_demo_without_the_shared_data_runs_the_synthetic_market(tmp_path: Path) -> None:
    env = os.environ | {"MT_HOME": str(tmp_path / "home"), "MT_DATA_DIR": str(tmp_path / "no-data")}
    env.pop("NATS_URL", None)
    done = subprocess.run(
        [*EXE, "demo", "--synthetic-seconds", "2"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "skipping the Fed replay" in done.stderr and str(tmp_path / "no-data") in done.stderr
    assert "MarketTwin run report" in done.stdout
    book_rows = int(next(line for line in done.stdout.splitlines() if "book_tops" in line).split(":")[1])
    # at most ~2 s x 100 updates/s on each venue (fewer on a loaded machine), every instant on both
    assert 0 < book_rows <= 2 * 202 and book_rows % 2 == 0
    assert "generator heston:crypto?seed=7: 1 market hour -> 3,600 book rows" in done.stdout
    assert "OHLCV: skipped, no bars at" in done.stdout and "simulation: skipped" in done.stdout
